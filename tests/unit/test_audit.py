"""trace, verify and reference parsing on one small, real lineage record.

The record has the layout `lineage.lineage_record` writes (two raw and two feature day
partitions, a training set, the logged spec, GX result and model files) but is built by hand,
so no pipeline runs: its lake files are real files in this test's own lake, its artifacts are
logged to a real run in the session's MLflow store (tests/conftest.py), and every hash in it
is the sha256 of the file it names. A test that tampers with a file flips one byte of it.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest

from pipelines import audit, lake, registry, settings
from pipelines.audit import Mismatch, Subject
from pipelines.errors import LineageError
from pipelines.lake import from_env as env_lake
from pipelines.lineage import LINEAGE_ARTIFACT, frame_content_hash

MODEL_FILES = {"MLmodel": "flavors: {}\n", "model.skops": "not really a model\n"}
GX_RESULT = "quality/training_sets/sensors/validation_result.json"


def hex64() -> str:
    """An id no other record in the session's MLflow store has."""
    return uuid.uuid4().hex * 2


def publish(root: Path, path: str, frame: pd.DataFrame, **fields: Any) -> dict[str, Any]:
    """One published lake partition, as a lineage record names it."""
    def write(tmp: Path) -> dict[str, Any]:
        frame.to_parquet(tmp / lake.DATA_FILE, index=False)
        return {}

    (entry,) = lake.publish_dir(root / path, write)["files"]
    return {"path": path, "file": lake.DATA_FILE, "rows": len(frame), "sha256": entry["sha256"],
            **fields}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def lake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "lake"
    monkeypatch.setenv("PITSTOP_LAKE", str(root))
    return root


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """The spec and the model files, as they were before they were logged."""
    write(tmp_path / "files" / "sensors.yaml", "name: sensors\n")
    for name, text in MODEL_FILES.items():
        write(tmp_path / "files" / "model" / name, text)
    return tmp_path / "files"


def record_of(root: Path, files: Path, run_id: str) -> dict[str, Any]:
    """Publish the lake files and return the record naming them."""
    definitions = hex64()  # part of the dataset_id, so the id is this record's own
    readings = pd.DataFrame({"sensor": ["a", "b"], "value": [0.25, 0.75]})
    raw = [publish(root, f"raw/readings/date=2024-01-0{day}", readings.assign(day=day),
                   produced_by={"run_id": "ingest-run"},
                   source_files=[{"path": f"readings/2024-01-0{day}.csv", "sha256": "c" * 64}],
                   check=f"quality/raw/readings/date=2024-01-0{day}/validation_result.json")
           for day in (1, 2)]
    features = [publish(root, f"features/last/date=2024-01-0{day}", readings, view="last",
                        produced_by={"run_id": f"features-run-{day}"}) for day in (1, 2)]
    training = publish(root, "training_sets/sensors/window=2024-01-01_2024-01-03",
                       pd.DataFrame({"reading_id": ["a-1", "b-1", "a-2", "b-2"],
                                     "last__value": [0.25, 0.75, 0.25, 0.75],
                                     "high": [0, 1, 0, 1]}),
                       produced_by={"run_id": "train-run"})
    dataset_id = frame_content_hash(
        pd.read_parquet(lake.committed_file(root / training["path"])), definitions)
    gx = write(root / GX_RESULT, '{"success": true}')
    spec = files / "sensors.yaml"
    return {
        "format": 1, "pipeline": "sensors", "pair_id": hex64(), "dataset_id": dataset_id,
        "training_set": {**training, "window": {"start": "2024-01-01", "end": "2024-01-03"},
                         "columns": ["reading_id", "last__value", "high"]},
        "feature_definitions_hash": definitions,
        "feature_partitions": features,
        "raw_partitions": raw,
        "spec": {"file": spec.name, "path": str(spec), "sha256": lake.sha256_file(spec),
                 "artifact": f"lineage/spec/{spec.name}"},
        "checks": {
            "training_set": {"suite": "sensors_training_set", "success": True,
                             "result": GX_RESULT, "sha256": lake.sha256_file(gx),
                             "artifact": "quality/validation_result.json",
                             "data_docs": "quality/data_docs/index.html"},
            "raw": [{"suite": "readings", "success": True, "result": p["check"]} for p in raw],
            "suites": {},
        },
        "code": {"version": "e" * 64, "git_commit": "0123abc",
                 "files": {"pipelines/lake.py": "f" * 64}},
        "packages": {"pandas": "2.2.0", "mlflow": "3.17.0"},
        "training": {"config": {}, "split": {"train_start": "2024-01-01",
                                             "eval_start": "2024-01-02", "end": "2024-01-03"}},
        "model": {"model_id": "m-tiny", "uri": f"runs:/{run_id}/model", "run_id": run_id,
                  "files": {n: lake.sha256_file(files / "model" / n) for n in MODEL_FILES}},
        "airflow": {"train": {"dag_id": "sensors_train", "run_id": "manual__2024-01-03",
                              "task_id": "train_model", "try": 1},
                    "triggered_by": "scientist", "reason": "audit test"},
    }


def tags_of(record: dict[str, Any]) -> dict[str, str]:
    """A version's tags as `train` writes them for this record."""
    return {"pair_id": record["pair_id"], "dataset_id": record["dataset_id"],
            "lineage_sha256": lake.sha256_json(record), "verdict": "passed"}


@dataclasses.dataclass(frozen=True)
class Stored:
    """A version as verify sees it, and where its files are on disk to tamper with."""

    subject: Subject
    lake: Path
    artifacts: Path
    """The run's artifact folder."""


@pytest.fixture
def stored(lake_root: Path, files: Path) -> Stored:
    """The lake files and a real run holding the lineage record, spec, GX result and model."""
    with mlflow.start_run(experiment_id=registry.experiment_id(
            f"test-audit-{uuid.uuid4().hex[:8]}")) as run:
        record = record_of(lake_root, files, run.info.run_id)
        mlflow.log_artifact(str(files / "sensors.yaml"), "lineage/spec")
        mlflow.log_artifact(str(lake_root / GX_RESULT), "quality")
        mlflow.log_artifacts(str(files / "model"), "model")
    registry.log_json(run.info.run_id, record, LINEAGE_ARTIFACT)
    subject = Subject("sensors", "1", run.info.run_id, ["champion"], tags_of(record), record)
    return Stored(subject, lake_root, Path(urllib.parse.urlparse(run.info.artifact_uri).path))


def test_trace_lays_out_the_chain(lake_root: Path, files: Path) -> None:
    rec = record_of(lake_root, files, "run-1")
    subject = Subject("sensors", "3", "run-1", ["champion"], tags_of(rec), rec)
    training = rec["training_set"]
    assert audit.trace_lines(subject) == [
        "sensors version 3  (verdict passed, alias champion)",
        f"  pair_id {rec['pair_id']}",
        "└─ run run-1  model m-tiny",
        "   airflow sensors_train / manual__2024-01-03 (try 1), triggered by scientist, "
        "reason 'audit test'",
        f"   └─ training set {rec['dataset_id']}",
        f"      {training['path']}/data.parquet  4 rows  sha256 {training['sha256']}",
        "      window 2024-01-01..2024-01-03, split {'train_start': '2024-01-01', "
        "'eval_start': '2024-01-02', 'end': '2024-01-03'}",
        "      ├─ features/last: 2 partitions 2024-01-01..2024-01-02, 4 rows, by 2 Airflow "
        "run(s) features-run-1, features-run-2",
        "      ├─ raw/readings: 2 partitions 2024-01-01..2024-01-02, 4 rows",
        "      │    from 2 source files, e.g. readings/2024-01-01.csv",
        "   checks",
        "      sensors_training_set: passed (artifact quality/validation_result.json, "
        "Data Docs quality/data_docs/index.html)",
        "      readings: passed (quality/raw/readings/date=2024-01-01/validation_result.json)",
        "      readings: passed (quality/raw/readings/date=2024-01-02/validation_result.json)",
        "   code",
        "      version " + "e" * 64 + ", git 0123abc, 1 files",
        "      mlflow 3.17.0, pandas 2.2.0",
        f"   spec sensors.yaml sha256 {rec['spec']['sha256']}",
        f"   feature definitions {rec['feature_definitions_hash']}",
    ]


def test_trace_counts_a_source_file_of_several_partitions_once(lake_root: Path,
                                                               files: Path) -> None:
    rec = record_of(lake_root, files, "run-1")
    for part in rec["raw_partitions"]:  # a month file feeds every day of its month
        part["source_files"] = [{"path": "readings/2024-01.csv", "sha256": "c" * 64}]
    lines = audit.trace_lines(Subject("sensors", "3", "run-1", [], {}, rec))
    assert "      │    from 1 source files, e.g. readings/2024-01.csv" in lines


def test_trace_names_the_query_of_database_partitions(lake_root: Path, files: Path) -> None:
    rec = record_of(lake_root, files, "run-1")
    for part in rec["raw_partitions"]:
        del part["source_files"]
        part["source_query"] = {"connection": "postgresql://reader@db/warehouse",
                                "query": "SELECT * FROM readings WHERE ...", "rows": 3,
                                "sha256": "d" * 64}
    lines = audit.trace_lines(Subject("sensors", "3", "run-1", [], {}, rec))
    assert ("      │    from postgresql://reader@db/warehouse: SELECT * FROM readings WHERE ..."
            in lines)
    assert not any("source files" in line for line in lines)


def test_trace_shortens_long_lists_and_shows_failures(lake_root: Path, files: Path) -> None:
    rec = record_of(lake_root, files, "run-1")
    view = rec["feature_partitions"][0]
    rec["feature_partitions"] = [{**view, "path": f"features/last/date=2024-01-0{day}",
                                  "produced_by": {"run_id": f"run-{day}"}} for day in (3, 1, 2)]
    rec["raw_partitions"] = [{k: v for k, v in p.items() if k != "source_files"}
                             for p in rec["raw_partitions"]]
    rec["checks"]["training_set"]["success"] = False
    rec["checks"]["raw"] = [{"suite": "readings", "success": n != 2, "result": f"r{n}.json"}
                            for n in range(8)]
    lines = audit.trace_lines(Subject("sensors", "3", "run-1", [], {}, rec))
    assert lines[0] == "sensors version 3  (verdict ?)"
    assert ("      ├─ features/last: 3 partitions 2024-01-01..2024-01-03, 6 rows, by 3 Airflow "
            "run(s) run-1, run-2 …") in lines
    assert not any("source files" in line for line in lines)
    assert any(line.startswith("      sensors_training_set: FAILED (") for line in lines)
    raw_checks = [line.strip() for line in lines if line.strip().startswith(("readings:", "…"))]
    assert raw_checks == ["readings: passed (r0.json)", "readings: passed (r1.json)",
                          "readings: FAILED (r2.json)", "readings: passed (r3.json)",
                          "readings: passed (r4.json)", "readings: passed (r5.json)",
                          "… and 2 more raw checks"]


def flip_one_byte(file: Path, at: int | None = None) -> str:
    """Change one byte of `file` (the middle one unless `at`); its new sha256."""
    data = bytearray(file.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0xFF
    file.write_bytes(bytes(data))
    return lake.sha256_file(file)


CHECKED = 3 + 5 + 1 + 2 + 1 + len(MODEL_FILES)
"""Three tags, five lake files, the training set's content, two run artifacts, the lake's GX
result, model files."""


def test_an_untouched_version_verifies_intact(stored: Stored) -> None:
    result = audit.verify_subject(env_lake(), stored.subject)
    assert result.mismatches == []
    assert result.intact and result.checked == CHECKED


def lake_file(stored: Stored, part: dict[str, Any]) -> tuple[str, Path]:
    """How verify names a recorded lake file, and the file."""
    return f"{part['path']}/{part['file']}", lake.committed_file(stored.lake / part["path"],
                                                                  part["file"])


def at(file: Path) -> str | None:
    """Where verify says a mismatched lake file's bytes are: the file in its generation."""
    return env_lake().relative(file) if file.is_relative_to(env_lake().root) else None


def artifact(path: str) -> Callable[[Stored], tuple[str, Path]]:
    return lambda stored: (f"run artifact {path}", stored.artifacts / path)


@pytest.mark.parametrize(("locate", "recorded"), [
    (lambda s: lake_file(s, s.subject.record["raw_partitions"][1]),
     lambda rec: rec["raw_partitions"][1]["sha256"]),
    (lambda s: lake_file(s, s.subject.record["feature_partitions"][0]),
     lambda rec: rec["feature_partitions"][0]["sha256"]),
    (artifact("lineage/spec/sensors.yaml"), lambda rec: rec["spec"]["sha256"]),
    (artifact("quality/validation_result.json"),
     lambda rec: rec["checks"]["training_set"]["sha256"]),
    (lambda s: ("model m-tiny file model.skops", s.artifacts / "model/model.skops"),
     lambda rec: rec["model"]["files"]["model.skops"]),
], ids=["raw-partition", "feature-partition", "spec-artifact", "gx-artifact", "model-file"])
def test_a_flipped_byte_is_named_with_both_hashes(stored: Stored, locate: Callable,
                                                  recorded: Callable) -> None:
    what, file = locate(stored)
    found = flip_one_byte(file)
    result = audit.verify_subject(env_lake(), stored.subject)
    assert result.mismatches == [Mismatch(what, recorded(stored.subject.record), found, at(file))]
    assert not result.intact and result.checked == CHECKED


def test_a_missing_lake_file_is_reported_missing(stored: Stored) -> None:
    part = stored.subject.record["raw_partitions"][0]
    what, file = lake_file(stored, part)
    file.unlink()
    assert audit.verify_subject(env_lake(), stored.subject).mismatches == [
        Mismatch(what, part["sha256"], "missing")]


def test_a_partition_republished_with_the_same_bytes_stays_intact(stored: Stored) -> None:
    """A backfill rewrites a day byte for byte into a new generation: verify follows the
    manifest to the new file rather than the path the old one had."""
    part = stored.subject.record["raw_partitions"][0]
    _, before = lake_file(stored, part)
    publish(stored.lake, part["path"], pd.read_parquet(before))
    _, after = lake_file(stored, part)
    assert after != before
    assert audit.verify_subject(env_lake(), stored.subject).mismatches == []


def test_a_rewritten_training_set_fails_its_hash_and_its_content_id(stored: Stored) -> None:
    """Rewritten as valid Parquet with one value changed: both checks name it."""
    rec = stored.subject.record
    what, file = lake_file(stored, rec["training_set"])
    frame = pd.read_parquet(file)
    frame.loc[0, "last__value"] = 0.5
    frame.to_parquet(file, index=False)
    assert audit.verify_subject(env_lake(), stored.subject).mismatches == [
        Mismatch(what, rec["training_set"]["sha256"], lake.sha256_file(file), at(file)),
        Mismatch("dataset_id (content of the training set)", rec["dataset_id"],
                 frame_content_hash(frame, rec["feature_definitions_hash"]))]


def test_a_corrupt_training_set_is_a_mismatch_not_a_crash(stored: Stored) -> None:
    """Most one-byte changes leave Parquet unreadable; one in the footer's magic always does."""
    what, file = lake_file(stored, stored.subject.record["training_set"])
    found = flip_one_byte(file, at=-1)
    mismatches = audit.verify_subject(env_lake(), stored.subject).mismatches
    assert Mismatch(what, stored.subject.record["training_set"]["sha256"], found,
                    at(file)) in mismatches


@pytest.mark.parametrize(("change", "what"), [
    (lambda s: dataclasses.replace(s, tags={**s.tags, "pair_id": hex64()}), "tag pair_id"),
    (lambda s: dataclasses.replace(s, tags={**s.tags, "dataset_id": hex64()}),
     "tag dataset_id"),
    (lambda s: dataclasses.replace(s, record={**s.record, "airflow": {
        **s.record["airflow"], "reason": "edited afterwards"}}),
     "lineage.json (tag lineage_sha256)"),
], ids=["pair_id", "dataset_id", "edited-record"])
def test_the_record_is_checked_against_the_version_tags(stored: Stored, change: Callable,
                                                        what: str) -> None:
    (mismatch,) = audit.verify_subject(env_lake(), change(stored.subject)).mismatches
    assert mismatch.what == what and mismatch.expected != mismatch.actual


@pytest.fixture
def registered(stored: Stored) -> str:
    """Two versions of a fresh model on the stored run, sharing its dataset; v1 is champion.

    v2's pair_id tag is not its record's (another config on the same data, say)."""
    name, subject = f"test-audit-{uuid.uuid4().hex[:12]}", stored.subject
    client = registry.client()
    client.create_registered_model(name)
    for tags in (subject.tags, {**subject.tags, "pair_id": hex64()}):
        client.create_model_version(name, f"runs:/{subject.run_id}/model",
                                    run_id=subject.run_id, tags=tags)
    client.set_registered_model_alias(name, "champion", "1")
    return name


@pytest.mark.parametrize(("ref", "versions"), [
    (lambda name, s: f"{name}@champion", ["1"]),
    (lambda name, s: f"{name}/2", ["2"]),
    (lambda name, s: s.tags["pair_id"], ["1"]),
    (lambda name, s: s.record["dataset_id"], ["1", "2"]),
], ids=["alias", "version", "pair_id", "dataset_id"])
def test_a_reference_names_its_versions(stored: Stored, registered: str, ref: Callable,
                                        versions: list[str]) -> None:
    found = audit._versions(ref(registered, stored.subject))
    assert [(v.name, str(v.version)) for v in found] == [(registered, v) for v in versions]


def test_a_dataset_id_resolves_and_verifies_every_version_trained_on_it(
        stored: Stored, registered: str) -> None:
    first, second = audit.resolve(stored.subject.record["dataset_id"])
    assert first == dataclasses.replace(stored.subject, name=registered)
    assert (second.version, second.aliases, second.record) == ("2", [], stored.subject.record)
    checked = audit.verify(env_lake(), stored.subject.record["dataset_id"])
    assert [(v.version, [m.what for m in v.mismatches]) for v in checked] == [
        ("1", []), ("2", ["tag pair_id"])]


UNKNOWN = hex64()


@pytest.mark.parametrize(("ref", "says"), [
    ("nonsense", "nonsense: not a reference; use NAME@ALIAS, NAME/VERSION, a pair_id or a "
                 "dataset_id (64 hex digits)"),
    (UNKNOWN, UNKNOWN + ": no model version has this pair_id or dataset_id ({store})"),
    ("{name}@nobody", "{name}@nobody: no such model version in MLflow ({store})"),
    ("{name}/99", "{name}/99: no such model version in MLflow ({store})"),
    ("no-such-model/1", "no-such-model/1: no registered model 'no-such-model' in MLflow ({store})"),
], ids=["nonsense", "unknown-id", "unknown-alias", "unknown-version", "unknown-model"])
def test_a_bad_reference_says_what_is_wrong(registered: str, ref: str, says: str) -> None:
    """The message names the reference and, where MLflow was asked, which store."""
    store = f"tracking store {settings.mlflow_tracking_uri()}"
    with pytest.raises(LineageError, match=re.escape(says.format(name=registered, store=store))):
        audit._versions(ref.format(name=registered))


def test_a_version_without_a_lineage_record_cannot_be_resolved(registered: str) -> None:
    client = registry.client()
    with mlflow.start_run(experiment_id=registry.experiment_id(
            f"test-audit-{uuid.uuid4().hex[:8]}")) as bare:
        pass
    client.create_model_version(registered, f"runs:/{bare.info.run_id}/model",
                                run_id=bare.info.run_id)
    with pytest.raises(LineageError, match=re.escape(
            f"run {bare.info.run_id}: artifact {LINEAGE_ARTIFACT} cannot be read")):
        audit.resolve(f"{registered}/3")
