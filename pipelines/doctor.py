"""`pitstop doctor`: what killed writers and tasks left behind, and with `--fix`, clearing it.

A publication commits when its manifest replaces the old one (`lake.publish_dir`), so a
writer killed at any point leaves the old committed partition or the new one, plus files no
manifest names. Those, lock files nobody holds, the `.tmp-*`/`.trash-*` folders of the
layout before generations, and MLflow runs left RUNNING are what this module finds. It
never touches what a manifest or a pin names (`lake.pin`: the generations a model's lineage
uses), nor what a live writer holds: a generation being written carries its writer's flock,
and a manifest being committed sits under the folder's lock. Airflow dag runs left running
are found by `orchestration/abandoned.py`.

An object store has no flock to tell a live writer from a dead one, so there a generation no
manifest names is a leftover once its newest object is older than the age rule
(`--older-than`, the same rule as abandoned runs): a writer uploads for minutes, not hours.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import lake, lake_objects, registry, settings

LEGACY = re.compile(r"\.(tmp|trash)-(.+)-[0-9a-f]{32}")
"""A folder of the layout before generations: built under `.tmp-`, swapped out to `.trash-`."""


@dataclass(frozen=True)
class Finding:
    """One leftover: what it is, where, and what `--fix` did about it."""

    kind: str
    """`uncommitted`, `superseded`, `stale lock`, `legacy temp`, `legacy trash`,
    `mlflow run` or `airflow dag run`."""
    where: str
    """A lake-relative path, an MLflow run id, or `<dag_id> <run_id>`."""
    detail: str
    """Why it is a leftover, in a sentence that says what --fix does."""
    action: str = ""
    """What --fix did (`removed`, `restored`, `marked FAILED`); empty when nothing was done."""


def _where(path: Path, root: Path) -> str:
    """A local leftover's lake-relative path, as findings name it."""
    return path.relative_to(root).as_posix()


def _remove(path: Path) -> str:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    return "removed"


def _busy(path: Path) -> bool:
    """Whether a live process holds `path`'s flock (a path gone meanwhile is not busy)."""
    try:
        return lake.held(path)
    except FileNotFoundError:
        return False


def _release(folder: Path) -> str:
    """Take the folder's lock if nobody holds it; letting go deletes the lock file."""
    with lake.locked(folder, wait=False) as got:
        return "removed" if got else ""


def _remove_locked(path: Path, folder: Path) -> str:
    """Remove `path` under the folder's lock, so never while a commit is under way."""
    with lake.locked(folder, wait=False) as got:
        return _remove(path) if got else ""


def _named(manifest: dict[str, Any] | None) -> set[str]:
    """Entries of a published folder its manifest names: the committed generation and the one
    it replaced (readers may still be on it), or a pre-generation manifest's own files."""
    if manifest is None:
        return set()
    if "generation" in manifest:
        return {manifest["generation"], manifest.get("previous") or ""}
    return {f["name"].split("/")[0] for f in manifest["files"]}


def _unnamed(path: Path, folder: Path) -> tuple[str, str, Callable[[], str]] | None:
    """Kind, detail and fix of an entry of a published folder its manifest does not name;
    None when a live writer owns it."""
    if lake.GENERATION.fullmatch(path.name) and path.is_dir():
        if _busy(path):
            return None
        return ("uncommitted", "a generation no manifest names: its writer was killed before "
                "committing, or before removing the one it superseded; --fix removes it",
                lambda: _remove(path))
    if path.name.startswith(lake.MANIFEST_TMP):
        if _busy(folder / lake.LOCK):
            return None
        return ("uncommitted", "a manifest its writer was killed committing; --fix removes it",
                lambda: _remove_locked(path, folder))
    return ("superseded", "a file of the layout before generations that a later publication "
            "replaced; --fix removes it", lambda: _remove(path))


def _published_folder(folder: Path, root: Path, fix: bool) -> list[Finding]:
    named = {lake.MANIFEST, lake.LOCK, lake.PINS, *_named(lake.read_manifest(folder)),
             *lake.pinned_generations(folder)}
    found = []
    for path in sorted(p for p in folder.iterdir() if p.name not in named):
        if (verdict := _unnamed(path, folder)) is None:
            continue
        kind, detail, repair = verdict
        try:
            action = repair() if fix else ""
        except FileNotFoundError:  # its writer finished or removed it meanwhile
            continue
        found.append(Finding(kind, _where(path, root), detail, action))
    return found


def _legacy(path: Path, root: Path, fix: bool) -> Finding:
    """A `.tmp-` folder is uncommitted; a `.trash-` folder is superseded, unless the folder it
    was swapped out of is gone (a writer killed between the two renames): then it holds the
    last committed version, and --fix puts it back."""
    kind, name = LEGACY.fullmatch(path.name).group(1, 2)  # type: ignore[union-attr]
    final = path.parent / name
    where = _where(path, root)
    if kind == "tmp":
        return Finding("legacy temp", where, f"an unpublished build of {name}; --fix removes it",
                       _remove(path) if fix else "")
    if lake.read_manifest(final) is not None:
        return Finding("legacy trash", where, f"a replaced version of {name}; --fix removes it",
                       _remove(path) if fix else "")
    restore = fix and not final.exists()
    if restore:
        os.rename(path, final)
    return Finding("legacy trash", where,
                   f"the last committed version of {name}, which is missing; --fix moves it "
                   f"back (only while {name}/ does not exist; else republish the day)",
                   "restored" if restore else "")


def lake_findings(root: Path, fix: bool = False) -> list[Finding]:
    """Every leftover under the local lake folder `root`, removed (or restored) when `fix`."""
    found: list[Finding] = []
    for here, dirs, files in os.walk(root) if root.exists() else []:
        folder = Path(here)
        if lake.LOCK in files and not _busy(folder / lake.LOCK):
            found.append(Finding("stale lock", _where(folder / lake.LOCK, root),
                                 "a lock file no process holds (its writer was killed); "
                                 "--fix removes it", _release(folder) if fix else ""))
        found += [_legacy(folder / d, root, fix) for d in sorted(dirs) if LEGACY.fullmatch(d)]
        if lake.MANIFEST in files or any(lake.GENERATION.fullmatch(d) for d in dirs) or any(
                f.startswith(lake.MANIFEST_TMP) for f in files):
            found += _published_folder(folder, root, fix)
            dirs[:] = []
        else:
            dirs[:] = sorted(d for d in dirs if not LEGACY.fullmatch(d))
    return found


def _generations(store: lake.Lake) -> dict[tuple[str, str], dt.datetime]:
    """Every generation in an object-store lake, as (its folder, its name), with the time
    its newest object was written."""
    newest: dict[tuple[str, str], dt.datetime] = {}
    root = store.root.path
    for key, info in store.fs.find(root, detail=True).items():
        parts = key.removeprefix(root + "/").split("/")
        at = next((i for i, part in enumerate(parts) if lake.GENERATION.fullmatch(part)), None)
        if at is not None:
            where = ("/".join(parts[:at]), parts[at])
            newest[where] = max(newest.get(where, info["LastModified"]), info["LastModified"])
    return newest


def object_findings(store: lake.Lake, started_before: dt.datetime,
                    fix: bool = False) -> list[Finding]:
    """Generations of an object-store lake that no manifest names and that were last written
    before `started_before`: what writers killed before their commit (or before removing
    the generation they superseded) left. Younger ones may be a live writer's, and stay."""
    found, named = [], {}
    for (folder, generation), written in sorted(_generations(store).items()):
        if folder not in named:
            named[folder] = (_named(lake.read_manifest(store.root / folder))
                             | lake.pinned_generations(store.root / folder))
        if generation in named[folder] or written >= started_before:
            continue
        path = store.root / folder / generation
        if fix:
            lake_objects.remove(path)
        found.append(Finding(
            "uncommitted", f"{folder}/{generation}",
            f"a generation no manifest names, last written {written:%Y-%m-%d %H:%M} UTC: its "
            "writer was killed before committing, or before removing the one it superseded; "
            "--fix removes it", "removed" if fix else ""))
    return found


def _store_exists() -> bool:
    """A local SQLite store that was never created has no runs (and is not created here)."""
    uri = settings.mlflow_tracking_uri()
    return not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).exists()


def mlflow_findings(pipelines: list[str], started_before: dt.datetime,
                    fix: bool = False) -> list[Finding]:
    """Runs of the pipelines' experiments still RUNNING that started before `started_before`:
    a task killed while it logged (the run ends FINISHED or FAILED otherwise). --fix marks
    them FAILED, as a failed evaluation does."""
    if not pipelines or not _store_exists():
        return []
    client = registry.client()
    experiments = {e.experiment_id: e.name for name in pipelines
                   if (e := client.get_experiment_by_name(name)) is not None}
    if not experiments:
        return []
    before = int(started_before.timestamp() * 1000)
    runs = client.search_runs(list(experiments), "attributes.status = 'RUNNING' and "
                              f"attributes.start_time < {before}", max_results=1000)
    found = []
    for run in runs:
        started = dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.UTC)
        if fix:
            registry.end_run(run.info.run_id, "FAILED")
        found.append(Finding(
            "mlflow run", run.info.run_id,
            f"RUNNING since {started:%Y-%m-%d %H:%M} UTC in experiment "
            f"{experiments[run.info.experiment_id]}; --fix marks it FAILED",
            "marked FAILED" if fix else ""))
    return found


def pipelines_in(root: lake.LakePath) -> list[str]:
    """The pipelines of a lake: each owns one top-level folder, named by its spec."""
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []


def examine(store: lake.Lake, started_before: dt.datetime, fix: bool = False) -> list[Finding]:
    """The lake's leftovers and the pipelines' abandoned MLflow runs."""
    found = (lake_findings(Path(store.url), fix) if store.local
             else object_findings(store, started_before, fix))
    return found + mlflow_findings(pipelines_in(store.root), started_before, fix)


def lines(found: list[Finding], fix: bool) -> list[str]:
    """The report `pitstop doctor` prints: one line per finding, then a count."""
    out = [f"{f.kind:<15} {f.where}: {f.detail}" + (f"  [{f.action or 'left as is'}]" if fix
                                                     else "") for f in found]
    left = sum(not f.action for f in found)
    out.append(f"{len(found)} found, {len(found) - left} fixed" if found else "nothing found")
    return out
