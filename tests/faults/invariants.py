"""The invariants every fault case checks after its fault, in one place.

- `assert_all_committed`: no visible partition holding files without a committed manifest,
  and no data anywhere in the lake outside a committed folder's committed generation (or the
  one it just replaced); what an interrupted writer leaves is what `pitstop doctor` reports,
  see `leftovers`;
- `assert_manifests_match`: every manifest matches its bytes (each file of its generation
  re-hashed), and no committed generation holds a file its manifest does not list;
- `assert_nothing_published`: a failed stage left no partition of its layer;
- `assert_trained_on_recorded`: a training set's manifest names the sha256 its inputs have
  now, and its own data file is the one recorded;
- `assert_clear_error`: the right exception type, naming what is at fault and the rule;
- `clean_dataset_id` / `rebuild`: after the input is fixed, a re-run gives the clean run's ID.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipelines import doctor, features, ingest, lake, training_set
from pipelines.lake import from_env as env_lake
from pipelines.spec import LoadedSpec, load_spec
from tests.unit import conftest as unit

D1, D2, D3, D4 = unit.D1, unit.D2, unit.D3, unit.D4
DATA_SUFFIXES = (".parquet", ".json", ".html")


def _committed_folders(root: Path) -> list[Path]:
    return sorted(m.parent for m in root.rglob(lake.MANIFEST) if not _hidden(m.parent, root))


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _kept(folder: Path, manifest: dict[str, Any]) -> set[str]:
    """Top-level entries of a committed folder a reader may be on: the committed generation
    and the one it replaced (kept until the next publish), or a pre-generation manifest's own
    files."""
    if "generation" in manifest:
        return {manifest["generation"], manifest.get("previous") or ""} - {""}
    return {f["name"].split("/")[0] for f in manifest["files"]}


def leftovers(root: Path | None = None) -> list[Path]:
    """What `pitstop doctor` reports in the lake (without --fix): uncommitted generations,
    temp manifests, stale locks, old-layout `.tmp-…`/`.trash-…` folders. Never read."""
    root = root or env_lake().root
    if not root.exists():
        return []
    return sorted(root / finding.where for finding in doctor.lake_findings(root))


def assert_all_committed(root: Path | None = None, allow_leftovers: bool = False) -> None:
    """Every `date=` folder holding files has a manifest (so `list_partitions` and a scan
    agree), and every data file in the lake lies in a committed folder's committed (or just
    replaced) generation; with `allow_leftovers`, what `pitstop doctor` reports (an
    interrupted writer's uncommitted generation, temp manifest, lock, hidden folder) may
    remain: readers never look in it."""
    root = root or env_lake().root
    if not root.exists():
        return
    committed = {folder: lake.read_manifest(folder) or {} for folder in _committed_folders(root)}
    found = leftovers(root)
    for folder in root.rglob("date=*"):
        if folder.is_dir() and not _hidden(folder, root) and folder not in committed:
            files = [p for p in folder.rglob("*") if p.is_file() and p.name != lake.LOCK]
            assert files == [], f"visible partition without manifest: {folder} holds {files}"
    for path in root.rglob("*"):
        if not path.is_file() or path.suffix not in DATA_SUFFIXES or path.name == lake.MANIFEST:
            continue
        if _hidden(path, root):
            assert allow_leftovers, f"stray data in a hidden folder: {path}"
            continue
        owner = next((f for f in committed if f in path.parents), None)
        assert owner is not None, f"stray data: {path}"
        top = path.relative_to(owner).parts[0]
        if top in _kept(owner, committed[owner]):
            continue
        assert allow_leftovers, f"stray data outside the committed generation: {path}"
        assert any(p == path or p in path.parents for p in found), \
            f"stray data that doctor does not report: {path}"
    if not allow_leftovers:
        assert found == [], f"leftovers doctor reports: {found}"


def assert_manifests_match(root: Path | None = None) -> int:
    """Re-hash every file every committed manifest lists (in its committed generation);
    returns how many were checked."""
    root = root or env_lake().root
    checked = 0
    for folder in _committed_folders(root) if root.exists() else []:
        manifest = json.loads((folder / lake.MANIFEST).read_text())
        generation = lake.generation_dir(folder, manifest)
        listed = {f["name"] for f in manifest["files"]}
        for entry in manifest["files"]:
            path = lake.committed_file(folder, entry["name"], manifest)
            assert path.is_file(), f"{path}: listed in its manifest but missing"
            assert lake.sha256_file(path) == entry["sha256"], f"{path}: bytes != manifest sha256"
            assert path.stat().st_size == entry["bytes"], f"{path}: size != manifest bytes"
            checked += 1
        skip = (lake.MANIFEST, lake.LOCK)
        present = {p.relative_to(generation).as_posix() for p in generation.rglob("*")
                   if p.is_file() and p.name not in skip} if "generation" in manifest else {
            p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and p.name not in skip}
        assert present <= listed, f"{folder}: files not in its manifest: {present - listed}"
    return checked


def assert_lake_sound(root: Path | None = None, allow_leftovers: bool = False) -> None:
    """Both lake invariants at once."""
    assert_all_committed(root, allow_leftovers)
    assert_manifests_match(root)


def assert_nothing_published(spec: LoadedSpec, layer: str, dataset: str) -> None:
    """No committed partition of this layer, and no data of it lying around either."""
    assert lake.list_partitions(env_lake(), spec.name, layer, dataset) == []
    folder = lake.pipeline_dir(env_lake(), spec.name, layer, dataset)
    stray = [p for p in folder.rglob("*") if p.is_file() and p.name != ".lock"] \
        if folder.exists() else []
    assert stray == [], f"stray files under {folder}: {stray}"
    assert_lake_sound()


def assert_trained_on_recorded(built: training_set.TrainingInput) -> None:
    """The bytes behind a training set are the bytes its manifest records, at every layer."""
    folder = env_lake().root / built.training_set.path
    manifest = lake.read_manifest(folder)
    assert manifest is not None, f"{folder}: no manifest"
    data = next(f for f in manifest["files"] if f["name"] == lake.DATA_FILE)
    assert lake.sha256_file(lake.committed_file(folder, lake.DATA_FILE, manifest)) == \
        data["sha256"]
    inputs = [*manifest["inputs"]["spine"],
              *(p for parts in manifest["inputs"]["features"].values() for p in parts)]
    assert inputs, "a training set records its inputs"
    for used in inputs:
        path = lake.committed_file(env_lake().root / used["path"])
        assert lake.sha256_file(path) == used["sha256"], f"{path}: not the bytes recorded"


def assert_clear_error(excinfo: pytest.ExceptionInfo[BaseException], kind: type[BaseException],
                       *needles: str) -> str:
    """The exception is `kind` and its message names every needle (file, column, field, rule)."""
    assert isinstance(excinfo.value, kind), f"{type(excinfo.value).__name__}: {excinfo.value}"
    message = str(excinfo.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def run_clean(spec: LoadedSpec) -> str:
    """Ingest, compute and build D1..D4 of the tiny pipeline: the dataset_id."""
    ingest.ingest(env_lake(), spec, "readings", D1, D4)
    features.compute_view(env_lake(), spec, "last", D1, D4)
    built = training_set.prepare(env_lake(), spec, D1, D4)
    assert_trained_on_recorded(built)
    return built.training_set.dataset_id


def make_tiny(folder: Path) -> LoadedSpec:
    """The unit tests' tiny spec (their SPEC, HOOKS and `write_readings`) in `folder`, for a
    session-wide clean run; the caller points PITSTOP_LAKE at `folder / "lake"`."""
    (folder / "expectations").mkdir(parents=True)
    (folder / "sensors").mkdir()
    (folder / "sensors" / "__init__.py").write_text("")
    (folder / "sensors" / "hooks.py").write_text(textwrap.dedent(unit.HOOKS))
    spec_file = folder / "sensors.yaml"
    spec_file.write_text(unit.SPEC.format(landing=folder / "landing",
                                          expectations=folder / "expectations"))
    for offset in range(3):
        unit.write_readings(folder / "landing", D1 + dt.timedelta(days=offset))
    return load_spec(spec_file)


def landing(spec: LoadedSpec, day: dt.date) -> Path:
    source = spec.pipeline.sources["readings"]
    midnight = dt.datetime.combine(day, dt.time(), dt.UTC)
    return ingest.landing_file(spec, source, ingest.delivery_at(source, midnight))


def reland(spec: LoadedSpec, *days: dt.date) -> None:
    """Fix the input: deliver these days' files again, as upstream first sent them."""
    for day in days or (D1, D2, D3):
        path = landing(spec, day)
        if path.is_dir():
            path.rmdir()
        elif path.exists() or path.is_symlink():
            path.unlink()
        unit.write_readings(spec.landing_dir(), day)


def flip_byte(path: Path, at: float = 0.5) -> None:
    """Invert one byte of a file, `at` a fraction of its length."""
    data = bytearray(path.read_bytes())
    index = min(len(data) - 1, int(len(data) * at))
    data[index] ^= 0xFF
    path.write_bytes(bytes(data))


@dataclass(frozen=True)
class Case:
    """One fault of a parametrized test: its id, what the user sees (the gist of the message,
    shown in README's table), the fault itself and the texts the error must name. `xfail`
    names a real defect not fixed yet: the case is a strict xfail until it is."""

    id: str
    sees: str
    fault: Callable[..., Any] | None = None
    needles: tuple[str, ...] = ()
    xfail: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def params(*cases: Case) -> list[Any]:
    """The cases as pytest params, a strict xfail for each that names a defect."""
    return [pytest.param(case, id=case.id, marks=[pytest.mark.xfail(
        strict=True, reason=case.xfail)] if case.xfail else []) for case in cases]
