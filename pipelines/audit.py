"""The auditor's questions, answered from MLflow and the lake alone: trace, verify, reproduce.

Every registered version's run holds `lineage/lineage.json` (see `lineage.lineage_record`),
whose own hash is the version's `lineage_sha256` tag. From a reference (`name@alias`,
`name/version`, a `pair_id` or a `dataset_id`) we find the version(s), read the record, and:

- `trace` lays the chain out: version → run → training set → feature and raw partitions →
  source files; checks; code; Airflow runs;
- `verify` re-hashes everything the record names (lake files, the record itself, the logged
  spec, GX result and model files) and lists every mismatch;
- `reproduce` rebuilds the training set from the recorded raw partitions in a scratch lake,
  checks its `dataset_id`, refits with the recorded config and compares predictions with the
  registered model on the evaluation rows. It writes nothing to MLflow or the real lake.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import lake, registry, settings
from pipelines.errors import DataError, LineageError
from pipelines.lineage import LINEAGE_ARTIFACT

HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Subject:
    """One registered version and its lineage record."""

    name: str
    version: str
    run_id: str
    aliases: list[str]
    tags: dict[str, str]
    record: dict[str, Any]


def _versions(ref: str) -> list[Any]:
    """Model versions a reference names; LineageError when there are none."""
    if (named := _model_ref(ref)) is not None:
        return [_named_version(ref, *named)]
    if HEX64.match(ref):
        client = registry.client()
        found = [*client.search_model_versions(f"tags.pair_id = '{ref}'"),
                 *client.search_model_versions(f"tags.dataset_id = '{ref}'")]
        if found:
            return sorted({(v.name, str(v.version)): v for v in found}.values(),
                          key=lambda v: (v.name, int(v.version)))
        raise LineageError(f"{ref}: no model version has this pair_id or dataset_id "
                           f"({settings_hint()})")
    raise LineageError(f"{ref}: not a reference; use NAME@ALIAS, NAME/VERSION, a pair_id or "
                       f"a dataset_id (64 hex digits)")


def _model_ref(ref: str) -> tuple[str, str, str] | None:
    """`NAME@ALIAS` as (name, "@", alias), `NAME/VERSION` as (name, "/", version), else None."""
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return name, "@", alias
    if "/" in ref:
        name, version = ref.rsplit("/", 1)
        return name, "/", version
    return None


def _named_version(ref: str, name: str, kind: str, which: str) -> Any:
    """The version an alias or number names. The model is searched for first: basic-auth
    MLflow answers a read of a missing model with 403, which must not read as "refused"."""
    from mlflow.exceptions import MlflowException

    if not registry.model_exists(name):
        raise LineageError(f"{ref}: no registered model {name!r} in MLflow ({settings_hint()})")
    client = registry.client()
    try:
        if kind == "@":
            return client.get_model_version_by_alias(name, which)
        return client.get_model_version(name, which)
    except MlflowException as exc:
        if not registry.absent(exc):
            raise
        raise LineageError(f"{ref}: no such model version in MLflow "
                           f"({settings_hint()}): {exc.message}") from exc


def settings_hint() -> str:
    return f"tracking store {settings.mlflow_tracking_uri()}"


def _download(run_id: str, path: str, into: Path) -> Path:
    import mlflow.artifacts

    registry.client()
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path,
                                                        dst_path=str(into)))
    except Exception as exc:  # MLflow raises several types for a missing artifact
        raise LineageError(f"run {run_id}: artifact {path} cannot be read: {exc}") from exc


def resolve(ref: str) -> list[Subject]:
    """The versions `ref` names, each with its lineage record."""
    client = registry.client()
    subjects = []
    for version in _versions(ref):
        full = client.get_registered_model(version.name)
        aliases = sorted(a for a, v in (full.aliases or {}).items() if str(v) == str(version.version))
        with tempfile.TemporaryDirectory(prefix="pitstop-lineage-") as tmp:
            record = json.loads(_download(version.run_id, LINEAGE_ARTIFACT, Path(tmp)).read_text())
        subjects.append(Subject(version.name, str(version.version), version.run_id, aliases,
                                dict(version.tags), record))
    return subjects


def _span(partitions: list[dict[str, Any]]) -> str:
    days = sorted(lake.day_of(p["path"]).isoformat() for p in partitions)
    return f"{days[0]}..{days[-1]}" if days else "none"


def _by_dataset(partitions: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for part in partitions:
        grouped.setdefault(lake.dataset_of(part["path"]), []).append(part)
    return grouped


def trace_lines(subject: Subject) -> list[str]:
    """The lineage chain of one version as an indented tree, for people."""
    rec, tags = subject.record, subject.tags
    training = rec["training_set"]
    airflow = rec["airflow"]
    alias = f", alias {', '.join(subject.aliases)}" if subject.aliases else ""
    return [
        f"{subject.name} version {subject.version}  (verdict {tags.get('verdict', '?')}{alias})",
        f"  pair_id {rec['pair_id']}",
        f"└─ run {subject.run_id}  model {rec['model']['model_id']}",
        (f"   airflow {airflow['train']['dag_id']} / {airflow['train']['run_id']} "
        f"(try {airflow['train']['try']}), triggered by {airflow.get('triggered_by')}, "
        f"reason {airflow.get('reason')!r}"),
        f"   └─ training set {rec['dataset_id']}",
        (f"      {training['path']}/{training['file']}  {training['rows']} rows  "
        f"sha256 {training['sha256']}"),
        (f"      window {training['window']['start']}..{training['window']['end']}, split "
        f"{rec['training']['split']}"),
        *_input_lines(rec),
        *_check_lines(rec["checks"]),
        "   code",
        (f"      version {rec['code']['version']}, git {rec['code']['git_commit']}, "
        f"{len(rec['code']['files'])} files"),
        "      " + ", ".join(f"{k} {v}" for k, v in sorted(rec["packages"].items())),
        f"   spec {rec['spec']['file']} sha256 {rec['spec']['sha256']}",
        f"   feature definitions {rec['feature_definitions_hash']}",
    ]


def _input_lines(rec: dict[str, Any]) -> list[str]:
    """One line per feature and raw dataset: its partitions, rows, and who produced them or
    which landing files (counted once: a month file feeds many partitions) or database query
    (its connection without password, one day's bounds as an example) they came from."""
    lines = []
    for dataset, parts in sorted(_by_dataset(rec["feature_partitions"]).items()):
        producers = sorted({str(p["produced_by"].get("run_id")) for p in parts})
        lines.append(f"      ├─ {dataset}: {len(parts)} partitions {_span(parts)}, "
                     f"{sum(p['rows'] or 0 for p in parts)} rows, by {len(producers)} "
                     f"Airflow run(s) {', '.join(producers[:2])}{' …' if len(producers) > 2 else ''}")
    for dataset, parts in sorted(_by_dataset(rec["raw_partitions"]).items()):
        sources = list(dict.fromkeys(
            file["path"] for p in parts for file in p.get("source_files", [])))
        lines.append(f"      ├─ {dataset}: {len(parts)} partitions {_span(parts)}, "
                     f"{sum(p['rows'] or 0 for p in parts)} rows")
        if sources:
            lines.append(f"      │    from {len(sources)} source files, e.g. {sources[0]}")
        if queries := list(dict.fromkeys(
                p["source_query"]["connection"] for p in parts if "source_query" in p)):
            query = next(p["source_query"]["query"] for p in parts if "source_query" in p)
            lines.append(f"      │    from {', '.join(queries)}: {query}")
    return lines


def _check_lines(checks: dict[str, Any]) -> list[str]:
    """The gate's check and the first six raw checks (a year has hundreds)."""
    ts_check = checks["training_set"]
    return [
        "   checks",
        (f"      {ts_check['suite']}: {'passed' if ts_check['success'] else 'FAILED'} "
        f"(artifact {ts_check['artifact']}, Data Docs {ts_check['data_docs']})"),
        *(f"      {c['suite']}: {'passed' if c['success'] else 'FAILED'} ({c['result']})"
          for c in checks["raw"][:6]),
        *([f"      … and {len(checks['raw']) - 6} more raw checks"] if len(checks["raw"]) > 6
          else []),
    ]


def trace(ref: str) -> dict[str, Any]:
    """Lineage of every version `ref` names; from a dataset_id, every version trained on it."""
    subjects = resolve(ref)
    return {"ref": ref, "versions": [
        {"name": s.name, "version": s.version, "run_id": s.run_id, "aliases": s.aliases,
         "tags": s.tags, "lineage": s.record} for s in subjects]}


@dataclass(frozen=True)
class Mismatch:
    """One stored thing whose hash is not what was recorded."""

    what: str
    expected: str
    actual: str
    at: str | None = None
    """The lake file holding the bytes now (`…/g-<generation>/data.parquet`) when `what`
    names a partition by its published folder, as lineage records it."""
    republished: str | None = None
    """For a partition whose folder was republished since, by whom and why (`republished`):
    the difference is a recorded re-publication, not bytes changed under a manifest."""


@dataclass
class Verification:
    """Everything `verify` checked for one version."""

    name: str
    version: str
    checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    def expect(self, what: str, expected: str | None, actual: str | None,
               at: str | None = None, republished: str | None = None) -> None:
        self.checked += 1
        if expected != actual:
            self.mismatches.append(Mismatch(what, str(expected), str(actual), at, republished))

    @property
    def intact(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "intact": self.intact}


def _lake_file(store: lake.Lake, part: dict[str, Any]) -> lake.LakePath | None:
    """The recorded file of a partition, or None if gone: in the generation lineage names
    (pinned when the run was logged, so it outlives a re-publication), else as the folder's
    manifest names it now (a record without generations, or bytes republished unchanged)."""
    if (kept := _kept_file(store, part)) is not None:
        return kept
    try:
        file = lake.committed_file(store.root / part["path"], part["file"])
    except DataError:
        return None
    return file if file.exists() else None


def _kept_file(store: lake.Lake, part: dict[str, Any]) -> lake.LakePath | None:
    """The partition's file in the generation lineage recorded, when it is still there."""
    generation = part.get("generation")
    file = store.root / part["path"] / generation / part["file"] if generation else None
    return file if file is not None and file.exists() else None


def republished(store: lake.Lake, part: dict[str, Any]) -> str | None:
    """Why a partition's recorded bytes are not in the lake, when its folder was republished
    since: by which task run, for what reason, and whether from other source files (a
    re-delivery), as the current manifest says. None when the recorded generation is still
    there, the folder still commits the recorded bytes or holds no manifest: then something
    else changed them."""
    if _kept_file(store, part) is not None:
        return None
    manifest = lake.read_manifest(store.root / part["path"])
    if manifest is None or lake.data_sha256(manifest) == part["sha256"]:
        return None
    who = manifest.get("produced_by") or {}
    run = " ".join(f"{k} {who[k]}" for k in ("dag_id", "run_id", "task_id", "command")
                   if who.get(k)) or "an unrecorded writer"
    why = f", reason {who['reason']!r}" if who.get("reason") else ""
    recorded = {f["path"]: f["sha256"] for f in part.get("source_files", [])}
    now = {f["path"]: f["sha256"] for f in manifest.get("source_files", [])}
    changed = sorted(path for path in recorded.keys() | now.keys()
                     if recorded.get(path) != now.get(path))
    source = f"; source files changed since: {', '.join(changed)}" if changed else ""
    return (f"republished by {run}{why}{source}; the bytes this version used were not kept "
            "(recorded before pinning, or removed outside pitstop)")


def _file_sha(file: lake.LakePath | None) -> str:
    return lake.sha256_file(file) if file and file.exists() else "missing"


def _gx_result(store: lake.Lake, recorded: str) -> tuple[str, lake.LakePath]:
    """The gate's GX result in the lake, named by its published folder like every partition,
    and the generation lineage recorded. A later re-validation of the same training set (a
    re-run) publishes a new generation and, two later, removes this one: then only the run's
    copy, checked above, is left to compare, and a missing lake copy is no mismatch."""
    path = store.root / recorded
    folder = path.parent.parent if lake.GENERATION.fullmatch(path.parent.name) else path.parent
    return f"{store.relative(folder)}/{path.name}", path


def _lake_sha(store: lake.Lake, part: dict[str, Any]) -> str:
    return _file_sha(_lake_file(store, part))


def verify_subject(store: lake.Lake, subject: Subject) -> Verification:
    """Re-hash every stored input and artifact of one version against its record."""
    from pipelines.lineage import stored_content_hash

    rec, result = subject.record, Verification(subject.name, subject.version)
    result.expect("lineage.json (tag lineage_sha256)", subject.tags.get("lineage_sha256"),
                  lake.sha256_json(rec))
    result.expect("tag pair_id", subject.tags.get("pair_id"), rec["pair_id"])
    result.expect("tag dataset_id", subject.tags.get("dataset_id"), rec["dataset_id"])
    training = rec["training_set"]
    for part in [training, *rec["feature_partitions"], *rec["raw_partitions"]]:
        file = _lake_file(store, part)
        found = _file_sha(file)
        result.expect(f"{part['path']}/{part['file']}", part["sha256"], found,
                      store.relative(file) if file else None,
                      republished(store, part) if found != part["sha256"] else None)
    if data_file := _lake_file(store, training):
        result.expect("dataset_id (content of the training set)", rec["dataset_id"],
                      stored_content_hash(data_file, rec["feature_definitions_hash"]))
    with tempfile.TemporaryDirectory(prefix="pitstop-verify-") as tmp:
        spec_copy = _download(subject.run_id, rec["spec"]["artifact"], Path(tmp))
        result.expect(f"run artifact {rec['spec']['artifact']}", rec["spec"]["sha256"],
                      lake.sha256_file(spec_copy))
        check = rec["checks"]["training_set"]
        result_copy = _download(subject.run_id, check["artifact"], Path(tmp))
        result.expect(f"run artifact {check['artifact']}", check["sha256"],
                      lake.sha256_file(result_copy))
    gx_result, gx_file = _gx_result(store, check["result"])
    if gx_file.exists():
        result.expect(gx_result, check["sha256"], lake.sha256_file(gx_file))
    actual_model = registry.artifact_hashes(rec["model"]["uri"])
    for name, sha in sorted(rec["model"]["files"].items()):
        result.expect(f"model {rec['model']['model_id']} file {name}", sha,
                      actual_model.get(name, "missing"))
    return result


def verify(store: lake.Lake, ref: str) -> list[Verification]:
    return [verify_subject(store, s) for s in resolve(ref)]


@dataclass
class Reproduction:
    """What `reproduce` rebuilt and whether it matched."""

    name: str
    version: str
    checks: dict[str, bool] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return bool(self.checks) and all(self.checks.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "identical": self.identical}


def reproduce_subject(store: lake.Lake, subject: Subject,
                      spec_path: Path | None = None) -> Reproduction:
    """Rebuild the training set from the recorded raw partitions and refit; compare."""
    from pipelines.spec import load_spec

    rec = subject.record
    out = Reproduction(subject.name, subject.version)
    spec = load_spec(spec_path or Path(rec["spec"]["path"]))
    _compare_code(spec, rec, out)
    for part in rec["raw_partitions"]:
        actual = _lake_sha(store, part)
        if actual != part["sha256"]:
            why = republished(store, part)
            raise LineageError(f"{part['path']}/{part['file']}: sha256 {actual} is not the "
                               f"recorded {part['sha256']}"
                               + (f": {why}" if why else "; run `pitstop verify` first"))
    rebuilt, frame = _rebuild(store, spec, rec)
    out.details["dataset_id"] = {"recorded": rec["dataset_id"], "rebuilt": rebuilt}
    out.checks["dataset_id identical"] = rebuilt == rec["dataset_id"]
    _compare_predictions(spec, subject, frame, out)
    return out


def _compare_code(spec: Any, rec: dict[str, Any], out: Reproduction) -> None:
    """Whether the spec and code files are those recorded: a reproduction with other code
    says so instead of passing for the original."""
    from pipelines import lineage

    out.checks["spec unchanged"] = lake.sha256_file(spec.path) == rec["spec"]["sha256"]
    now_files = lineage.code_digests(spec)
    changed = sorted(n for n in {*now_files, *rec["code"]["files"]}
                     if now_files.get(n) != rec["code"]["files"].get(n))
    out.checks["code unchanged"] = not changed
    out.details["code files changed"] = changed


def _rebuild(store: lake.Lake, spec: Any, rec: dict[str, Any]) -> tuple[str, Any]:
    """The dataset_id and rows of the training set rebuilt in a scratch lake (a local folder,
    whatever the real lake is) from copies of the recorded raw partitions, so nothing is
    written to the real lake."""
    from pipelines import features, training_set

    window = rec["training_set"]["window"]
    start, end = dt.date.fromisoformat(window["start"]), dt.date.fromisoformat(window["end"])
    with tempfile.TemporaryDirectory(prefix="pitstop-reproduce-") as folder:
        scratch = lake.open_lake(folder)
        for part in rec["raw_partitions"]:
            _copy_recorded(store, part, Path(folder) / part["path"])
        for view, parts in _by_view(rec["feature_partitions"]).items():
            days = [lake.day_of(p["path"]) for p in parts]
            features.compute_view(scratch, spec, view, min(days),
                                  max(days) + dt.timedelta(days=1))
        rebuilt = training_set.build_training_set(scratch, spec, start, end)
        return rebuilt.dataset_id, training_set.read_training_set(scratch, rebuilt)


def _copy_recorded(store: lake.Lake, part: dict[str, Any], target: Path) -> None:
    """Copy a raw partition's folder into the scratch lake as it was when the version was
    trained: a pinned generation that is no longer committed is committed there again,
    with the manifest its pin kept."""
    folder = store.root / part["path"]
    store.copy_to(folder, target)
    generation = part.get("generation")
    if generation and (lake.read_manifest(folder) or {}).get("generation") != generation and (
            kept := lake.pinned_manifest(folder, generation)) is not None:
        (target / lake.MANIFEST).write_text(lake.manifest_text(kept))


def _compare_predictions(spec: Any, subject: Subject, frame: Any, out: Reproduction) -> None:
    """Refit on the rebuilt train rows with the recorded split and compare its predictions
    on the evaluation rows with the registered model's, exactly."""
    from pipelines import train, training_set

    split = training_set.Split(**{k: dt.date.fromisoformat(v)
                                  for k, v in subject.record["training"]["split"].items()})
    train_rows, evaluation = training_set.split_frame(frame, spec, split)
    refit = train.fit(spec, train_rows)
    registered = registry.load_model(f"models:/{subject.name}/{subject.version}")
    new, old = train.predict(refit, evaluation), train.predict(registered, evaluation)
    out.details["evaluation rows"] = len(evaluation)
    out.details["max abs prediction difference"] = float(np.max(np.abs(new - old))) if len(
        new) else 0.0
    out.checks["predictions identical"] = bool(np.array_equal(new, old))


def _by_view(partitions: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for part in partitions:
        grouped.setdefault(part["view"], []).append(part)
    return grouped


def reproduce(store: lake.Lake, ref: str, spec_path: Path | None = None) -> list[Reproduction]:
    return [reproduce_subject(store, s, spec_path) for s in resolve(ref)]
