"""Identity: the content hashes that name datasets, code and model/dataset pairs.

IDs are derived from content, never from clocks or counters, so the same inputs always get
the same ID: that is what lets a re-run recognise work already done and an auditor re-hash
what is stored to prove it has not changed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from pipelines import lake
from pipelines.errors import DataError
from pipelines.lake import sha256_file, sha256_json
from pipelines.provenance import ProducedBy

if TYPE_CHECKING:
    from pipelines.quality import QualitySummary
    from pipelines.spec import FeatureView, Label, LoadedSpec
    from pipelines.training_set import TrainingInput, TrainingSet

PACKAGE_DIR = Path(__file__).resolve().parent
LINEAGE_ARTIFACT = "lineage/lineage.json"
"""Where a model's run keeps its lineage record."""


def frame_content_hash(frame: pd.DataFrame, definitions_hash: str) -> str:
    """sha256 of every value (row order as given), the schema and the feature definitions.

    Callers pass rows in a canonical (key) order, so equal content gives an equal hash.
    """
    digest = hashlib.sha256()
    digest.update(sha256_json({c: str(t) for c, t in frame.dtypes.items()}).encode())
    digest.update(definitions_hash.encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def stored_content_hash(data_file: lake.LakePath, definitions_hash: str) -> str:
    """`frame_content_hash` of a stored training set, as a content ID to compare with its
    `dataset_id`, or why there is none (`missing`, `unreadable (…)`): bytes that no longer
    decode are a mismatch to report, not a crash."""
    try:
        return frame_content_hash(lake.read_frame(data_file), definitions_hash)
    except FileNotFoundError:
        return "missing"
    except (OSError, pa.ArrowException) as exc:
        return f"unreadable ({type(exc).__name__})"


def feature_definitions_hash(spec: LoadedSpec) -> str:
    """Hash of every view's and the label's declaration plus the source of the hooks-folder
    files its function runs (`LoadedSpec.hook_files`)."""
    pipeline = spec.pipeline
    parts: dict[str, Any] = {f"view:{name}": _declaration(spec, view)
                             for name, view in pipeline.feature_views.items()}
    parts["label"] = _declaration(spec, pipeline.label)
    parts["sources"] = {n: s.definition() for n, s in pipeline.sources.items()}
    return sha256_json(parts)


def view_definitions_hash(spec: LoadedSpec, view_name: str) -> str:
    """Hash of what one view's rows mean: its declaration, its hook's code and the sources it
    reads. Each feature partition records it, so a training set can refuse to mix rows of an
    old definition with rows of the current one; other views' changes leave it alone."""
    view = spec.pipeline.feature_views[view_name]
    return sha256_json({**_declaration(spec, view), "sources": {
        name: spec.pipeline.sources[name].definition() for name in view.sources}})


def _declaration(spec: LoadedSpec, hooked: FeatureView | Label) -> dict[str, Any]:
    """The hooked declaration and the source of every hooks-folder file its function runs,
    by path relative to the folder (the folder may move)."""
    return {"spec": hooked.model_dump(mode="json"),
            "code": {path.relative_to(spec.hooks_dir).as_posix(): sha256_file(path)
                     for path in spec.hook_files(hooked.function)}}


def _tree_files(folder: Path, label: str) -> dict[str, Path]:
    return {f"{label}/{p.relative_to(folder)}": p for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def _library_digests() -> dict[str, str]:
    return _folder_digests(PACKAGE_DIR)


@functools.cache
def _folder_digests(folder: Path) -> dict[str, str]:
    """The sha256 of each library file, read once per process: a process runs the code it
    imported, so an edit while it runs takes effect in the next process, and one run's
    partitions and pair never mix two library versions."""
    return {name: sha256_file(path) for name, path in _tree_files(folder, "pipelines").items()}


def library_version() -> str:
    """Hash of the library's own files: part of every partition's fingerprint, so a change to
    how rows are read, checked or joined recomputes what it made."""
    return sha256_json(_library_digests())


def code_files(spec: LoadedSpec) -> dict[str, Path]:
    """The code a model depends on, by location-independent name: the library, the spec,
    its hooks and its GX suites.

    The known-problems file and its `problems/` case folder are not code the model depends
    on: adding a problem must not change the next model's `pair_id`.
    """
    problems = spec.problems_path
    hooks = {name: path for name, path in _tree_files(spec.hooks_dir, f"hooks/{spec.name}").items()
             if problems is None
             or not (path == problems or path.is_relative_to(problems.parent / "problems"))}
    suites = [s.suite for s in spec.pipeline.sources.values() if s.suite]
    if spec.pipeline.training_suite:
        suites.append(spec.pipeline.training_suite)
    return {
        **_tree_files(PACKAGE_DIR, "pipelines"),
        f"spec/{spec.path.name}": spec.path,
        **hooks,
        **{f"expectations/{s}.json": spec.suite_path(s) for s in suites},
    }


NOT_CODE = {"evaluation": {"problems"}, "airflow": True, "description": True, "model": True,
            "split": True, "schedules": True, "score": True, "monitoring": True}
"""Spec fields left out of the spec's part of `code_version`: where the known problems live,
when and how Airflow schedules the DAGs, which alias scores, the monitoring limits and the
prose description do not decide the model (tuning a limit must not register a new version),
and `model` and `split` are hashed as the training config beside it."""


def spec_digest(spec: LoadedSpec) -> str:
    """Hash of what the spec declares, not of its text, and without `NOT_CODE`.

    Comments, key order and formatting never change it, nor does pointing the spec at a
    problems file for the first time: known problems judge models, they do not make them.
    """
    return sha256_json(spec.pipeline.model_dump(mode="json", exclude=NOT_CODE))


def code_digests(spec: LoadedSpec) -> dict[str, str]:
    """A digest per `code_files` entry: the file's sha256, the spec's `spec_digest`."""
    spec_name = f"spec/{spec.path.name}"
    library = _library_digests()
    return {name: library[name] if name in library
            else spec_digest(spec) if name == spec_name else sha256_file(path)
            for name, path in code_files(spec).items()}


def code_version(spec: LoadedSpec) -> str:
    """Hash of `code_digests`: unlike a commit, it is exact even in a dirty checkout."""
    return sha256_json(code_digests(spec))


def git_commit(path: Path) -> str | None:
    """The checkout's commit, with `-dirty` when it has uncommitted changes; None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=path, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def package_versions(names: tuple[str, ...] = (
    "pitstop", "apache-airflow", "mlflow", "great-expectations", "pandas", "scikit-learn",
    "duckdb", "pyarrow", "numpy",
)) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def training_config(spec: LoadedSpec) -> dict[str, Any]:
    """What decides the model given the data: estimator, params, seed, features, split."""
    return {"model": spec.pipeline.model.model_dump(mode="json"),
            "split": spec.pipeline.split.model_dump(mode="json")}


def pair_id(dataset_id: str, config: dict[str, Any], code: str) -> str:
    """The model/dataset pair: same data, config and code give the same pair, hence no duplicate."""
    return sha256_json({"dataset_id": dataset_id, "config": config, "code": code})


@dataclass(frozen=True)
class Pair:
    """The model/dataset pair a train run would register."""

    pair_id: str
    dataset_id: str
    code_version: str
    registered_version: str | None = None
    """The version that already holds this pair, if any: then nothing is trained."""


def plan_pair(spec: LoadedSpec, dataset_id: str) -> Pair:
    """The pair of this dataset with the spec's training config and the current code."""
    code = code_version(spec)
    return Pair(pair_id(dataset_id, training_config(spec), code), dataset_id, code)


def _manifest(store: lake.Lake, path: str) -> dict[str, Any]:
    manifest = lake.read_manifest(store.root / path)
    if manifest is None:
        raise DataError(f"{path}: no {lake.MANIFEST} (rule: only published partitions are used)")
    return manifest


def raw_partitions_used(store: lake.Lake, training_set: TrainingSet) -> list[dict[str, Any]]:
    """Every raw partition behind a training set: the spine's and those behind each feature."""
    manifest = _manifest(store, training_set.path)
    used = {p["path"]: p for p in manifest["inputs"]["spine"]}
    for partitions in manifest["inputs"]["features"].values():
        for partition in partitions:
            used.update({p["path"]: p
                         for p in _manifest(store, partition["path"]).get("inputs", [])})
    return sorted(used.values(), key=lambda p: p["path"])


def _partition(store: lake.Lake, path: str, sha256: str | None = None,
               **extra: Any) -> dict[str, Any]:
    """A partition as lineage names it: path, data file, rows, sha256, who produced it.

    `sha256` is the hash of the bytes read when the partition was used (verified then, and
    kept in the reader's manifest `inputs`); the manifest's own is used only for the training
    set, which its reader has just verified.
    """
    manifest = _manifest(store, path)
    data = next(f for f in manifest["files"] if f["name"] == lake.DATA_FILE)
    sha256 = sha256 or data["sha256"]
    # the generation holding these bytes, when it is still the committed one (`pin_inputs`)
    generation = ({"generation": manifest["generation"]}
                  if "generation" in manifest and data["sha256"] == sha256 else {})
    return {"path": path, "file": lake.DATA_FILE, "rows": data.get("rows"), "sha256": sha256,
            **generation, "produced_by": manifest.get("produced_by", {}), **extra}


PIN_THREADS = 16


def pin_inputs(store: lake.Lake, record: dict[str, Any]) -> list[str]:
    """Pin every generation a lineage record names (`lake.pin`): the training set, its
    feature and raw partitions and the gate's GX result stay in the lake when their folders
    are republished, so `pitstop verify` and `reproduce` of this version still find them.
    Called before the run is logged: a pin without a run keeps a few files, a run without
    its pins could lose its evidence. Returns the folders whose generation was no longer
    committed (republished since the set was built), which cannot be pinned."""
    gate = PurePosixPath(record["checks"]["training_set"]["result"])
    named = [(p["path"], p.get("generation")) for p in
             [record["training_set"], *record["feature_partitions"], *record["raw_partitions"]]]
    if lake.GENERATION.fullmatch(gate.parent.name):
        named.append((str(gate.parent.parent), gate.parent.name))
    named = [(path, generation) for path, generation in named if generation]
    # threads: on an object store each pin is a few requests, and a year has thousands
    with ThreadPoolExecutor(max_workers=PIN_THREADS) as pool:
        kept = list(pool.map(lambda pair: lake.pin(store.root / pair[0], pair[1]), named))
    return [path for (path, _), pinned in zip(named, kept, strict=True) if not pinned]


def _raw_inputs(store: lake.Lake, training_set: TrainingSet
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The raw partitions a training set was built from, each with its landing files and GX
    check, and those checks once each (a month chunk's result serves all its days)."""
    raw = []
    checks: dict[str, dict[str, Any]] = {}
    for used in raw_partitions_used(store, training_set):
        part = _partition(store, used["path"], used["sha256"])
        raw_manifest = _manifest(store, used["path"])
        part["source_files"] = raw_manifest.get("source_files", [])
        if query := raw_manifest.get("source_query"):
            part["source_query"] = query
        if quality := raw_manifest.get("quality"):
            part["check"] = quality["result"]
            checks.setdefault(quality["result"], {
                "suite": quality["suite"], "success": quality["success"],
                "result": quality["result"]})
        raw.append(part)
    return raw, sorted(checks.values(), key=lambda c: c["result"])


def _checks(store: lake.Lake, spec: LoadedSpec, quality_report: QualitySummary,
            raw_checks: list[dict[str, Any]]) -> dict[str, Any]:
    """The gate's GX result (hashed, and where its run copy is), the raw checks, and the
    hash of every suite the pipeline names."""
    suites = {name: sha256_file(spec.suite_path(name)) for name in {
        *(s.suite for s in spec.pipeline.sources.values() if s.suite),
        spec.pipeline.training_suite}}
    return {
        "training_set": {"suite": quality_report.suite, "success": quality_report.success,
                         "result": quality_report.result_path,
                         "sha256": sha256_file(store.root / quality_report.result_path),
                         "artifact": "quality/validation_result.json",
                         "data_docs": "quality/data_docs/index.html"},
        "raw": raw_checks,
        "suites": suites,
    }


def lineage_record(
    store: lake.Lake,
    spec: LoadedSpec,
    built: TrainingInput,
    quality_report: QualitySummary,
    pair: Pair,
    context: ProducedBy,
) -> dict[str, Any]:
    """Everything a model version was made from, each input named by its content hash.

    Logged as `lineage/lineage.json` on the model's run; `pitstop trace`, `verify` and
    `reproduce` read it back, so MLflow plus the lake is all an auditor needs.
    """
    training_set = built.training_set
    manifest = _manifest(store, training_set.path)
    raw, raw_checks = _raw_inputs(store, training_set)
    return {
        "format": 1, "pipeline": spec.name, "pair_id": pair.pair_id,
        "dataset_id": training_set.dataset_id,
        "training_set": {**_partition(store, training_set.path), "window": manifest["window"],
                         "columns": manifest["columns"]},
        "feature_definitions_hash": feature_definitions_hash(spec),
        "feature_partitions": [_partition(store, p["path"], p["sha256"], view=view)
                               for view, parts in sorted(manifest["inputs"]["features"].items())
                               for p in parts],
        "raw_partitions": raw,
        "spec": {"file": spec.path.name, "path": str(spec.path), "sha256": sha256_file(spec.path),
                 "artifact": f"lineage/spec/{spec.path.name}"},
        "checks": _checks(store, spec, quality_report, raw_checks),
        "code": {"version": pair.code_version, "git_commit": git_commit(spec.path.parent),
                 "files": code_digests(spec)},
        "packages": package_versions(),
        "training": {"config": training_config(spec),
                     "split": {k: v.isoformat() for k, v in vars(built.split).items()}},
        "airflow": {"train": {"dag_id": context.dag_id, "run_id": context.run_id,
                              "task_id": context.task_id, "try": context.try_number},
                    "triggered_by": context.triggered_by, "reason": context.reason},
    }
