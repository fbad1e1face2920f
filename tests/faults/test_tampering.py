"""Changed bytes at every layer of a recorded training run, and who catches them.

`recorded` is the tiny pipeline built, its training set gated by a real GX suite and its
lineage record made by `lineage.lineage_record`, exactly what a registered version's run
holds. `audit.verify_subject` checks it; the only stand-in is the MLflow artifact store: the
run's artifacts (the spec and GX result as they were logged) are copies in a folder of the
test, and the model has no files, so no tracking store is needed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from pipelines import audit, doctor, features, ingest, lake, lineage, quality, training_set
from pipelines.errors import DataError
from pipelines.lake import from_env as env_lake
from pipelines.provenance import ProducedBy
from pipelines.spec import LoadedSpec
from pipelines.training_set import TrainingInput
from tests.faults.invariants import D1, D2, D4, Case, assert_clear_error, flip_byte, params
from tests.unit.conftest import write_readings

SUITE = {"name": "sensors_training_set", "expectations": [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "reading_id"}},
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "high",
                                                            "value_set": [0, 1]}}]}


@dataclass(frozen=True)
class Recorded:
    spec: LoadedSpec
    built: TrainingInput
    subject: audit.Subject

    def verify(self) -> audit.Verification:
        return audit.verify_subject(env_lake(), self.subject)

    def file(self, layer: str) -> Path:
        """The committed data file of one layer the record names: raw D2, features D2, the
        set (in the generation its manifest names)."""
        if layer == "training set":
            return lake.committed_file(env_lake().root / self.built.training_set.path)
        dataset = "raw/readings" if layer == "raw" else "features/last"
        return lake.committed_file(lake.pipeline_dir(env_lake(), "sensors", *dataset.split("/"),
                                                     f"date={D2}"))


@pytest.fixture
def recorded(ingested: LoadedSpec, built: TrainingInput, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Recorded:
    (ingested.expectations_dir / "sensors_training_set.json").write_text(json.dumps(SUITE))
    gate = quality.validate_training_set(env_lake(), ingested, built.training_set)
    pair = lineage.plan_pair(ingested, built.training_set.dataset_id)
    record = lineage.lineage_record(env_lake(), ingested, built, gate, pair,
                                    ProducedBy(dag_id="sensors_train"))
    assert lineage.pin_inputs(env_lake(), record) == []  # as `steps.train_model` does
    record["model"] = {"uri": "models:/sensors/1", "model_id": "m-faults", "files": {}}
    store = tmp_path / "artifacts"  # the run's artifacts as they were logged
    for artifact, source in ((record["spec"]["artifact"], ingested.path),
                             (record["checks"]["training_set"]["artifact"],
                              env_lake().root / gate.result_path)):
        (store / artifact).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, store / artifact)
    monkeypatch.setattr(audit, "_download", lambda run_id, path, into: store / path)
    monkeypatch.setattr(audit.registry, "artifact_hashes", lambda uri: {})
    tags = {"lineage_sha256": lake.sha256_json(record), "pair_id": pair.pair_id,
            "dataset_id": pair.dataset_id}
    subject = audit.Subject("sensors", "1", "run-faults", ["champion"], tags, record)
    result = audit.verify_subject(env_lake(), subject)
    assert result.intact and result.checked >= 10, result
    return Recorded(ingested, built, subject)


def _named(result: audit.Verification) -> set[str]:
    return {m.what for m in result.mismatches}


def _rel(path: Path) -> str:
    """How `verify` names a committed file: as lineage records it, by its published folder
    and file name (`.../date=2024-01-02/data.parquet`), not by the generation it is in now
    (docs/lineage.md: a day republished byte for byte still verifies)."""
    folder = path.parent.parent if lake.GENERATION.fullmatch(path.parent.name) else path.parent
    return env_lake().relative(folder) + "/" + path.name


@pytest.mark.parametrize("layer", ["raw", "features"])
def test_a_flipped_byte_in_a_partition_is_named_by_verify(recorded: Recorded, layer: str) -> None:
    """Invariant: every manifest matches its bytes, and `verify` names the one file whose
    bytes changed (raw or feature partition), with the recorded and the actual sha256.

    Sees: `verify` not intact, one mismatch
    `sensors/<layer>/.../date=2024-01-02/data.parquet`
    with the recorded and the actual sha256.
    """
    path = recorded.file(layer)
    flip_byte(path)
    result = recorded.verify()
    assert not result.intact
    assert _named(result) == {_rel(path)}
    (mismatch,) = result.mismatches
    assert mismatch.actual == lake.sha256_file(path) != mismatch.expected
    assert mismatch.at == env_lake().relative(path)  # where the changed bytes are, g-… included
    assert mismatch.republished is None  # changed under its manifest: no re-publication


def test_a_flipped_byte_in_the_training_set_fails_its_hash_and_content(recorded: Recorded) -> None:
    """Invariant: nothing is trained on bytes other than those recorded: a changed training
    set fails both its file sha256 and its dataset_id (the content hash), and nothing else.

    Sees: two mismatches, `sensors/datasets/<id>/data.parquet` and `dataset_id (content of
    the training set)` (`unreadable (...)` when the bytes no longer decode).
    """
    path = recorded.file("training set")
    flip_byte(path)
    assert _named(recorded.verify()) == {_rel(path), "dataset_id (content of the training set)"}


@pytest.mark.parametrize("layer", ["raw", "features", "training set"])
def test_a_deleted_data_file_is_reported_missing(recorded: Recorded, layer: str) -> None:
    """Invariant: a data file deleted from the lake is a mismatch of `verify` saying
    `missing`, never a crash or an intact verdict.

    Sees: mismatch `<path>/data.parquet`, expected the recorded sha256, actual `missing`.
    """
    path = recorded.file(layer)
    path.unlink()
    result = recorded.verify()
    assert {m.actual for m in result.mismatches if m.what == _rel(path)} == {"missing"}


def test_a_flipped_byte_in_the_lakes_gx_result_is_named_by_verify(recorded: Recorded) -> None:
    """Invariant: every manifest matches its bytes: the gate's GX result in the lake
    (`_quality/datasets/<id>/validation_result.json`) changed after the run is named by
    `verify`.

    Sees: mismatch `<pipeline>/_quality/datasets/<id>/g-…/validation_result.json`, expected
    the recorded sha256.
    """
    check = recorded.subject.record["checks"]["training_set"]
    path = env_lake().root / check["result"]
    flip_byte(path, at=0.3)
    assert _rel(path) in _named(recorded.verify())


def test_a_deleted_raw_manifest_hides_the_partition_from_readers(recorded: Recorded) -> None:
    """Invariant: no visible partition without a committed manifest: once a raw partition's
    manifest is gone, `list_partitions` no longer returns it and features refuse the gap by
    name, instead of reading uncommitted data.

    Sees: `raw/readings: 1 day partitions missing from 2024-01-02 (rule: ingest before
    computing features; run the ingest DAG for that range)`.
    """
    folder = recorded.file("raw").parent.parent  # the day folder, not its generation
    (folder / lake.MANIFEST).unlink()
    assert D2 not in {p.day for p in lake.list_partitions(env_lake(), "sensors", "raw", "readings")}
    with pytest.raises(DataError) as error:
        features.compute_view(env_lake(), recorded.spec, "last", D1, D4)
    assert_clear_error(error, DataError, "raw/readings: 1 day partitions missing from 2024-01-02")


def _rewrite(path: Path) -> None:
    """Replace a Parquet file with a valid one of other content: changed bytes a reader
    decodes without noticing."""
    frame = pd.read_parquet(path)
    column = next(c for c in ("value", "last__value", "high") if c in frame.columns)
    frame.loc[frame.index[0], column] = 1 - frame.loc[frame.index[0], column]
    frame.to_parquet(path, index=False)


def _read(recorded: Recorded, layer: str) -> None:
    spec = recorded.spec
    if layer == "raw":  # forced: unforced, every day's inputs are unchanged and nothing is read
        features.compute_view(env_lake(), spec, "last", D1, D4, force=True)
    elif layer == "features":
        training_set.assemble_training_frame(env_lake(), spec, D1, D4)
    else:
        quality.validate_training_set(env_lake(), spec, recorded.built.training_set)


RULE = "the sha256 its manifest records (rule: data is read only as published"

READERS = [
    Case("raw-changed", "`<raw D2 folder>/g-<hex>/data.parquet: sha256 <found> (N bytes) is not "
         "<recorded>, the sha256 its manifest records (rule: data is read only as published; "
         "...); re-ingest that day from its landing file: trigger sensors_ingest ...`",
         "raw", ("raw/readings/date=2024-01-02", RULE, "re-ingest that day")),
    Case("features-changed", "`<feature D2 folder>/g-<hex>/data.parquet: sha256 <found> (N bytes) "
         "is not <recorded>, the sha256 its manifest records (rule: data is read only as "
         "published; ...); recompute that day: `pitstop backfill ...``", "features",
         ("features/last/date=2024-01-02", RULE, "pitstop backfill")),
    Case("training-set-changed", "`<set folder>/g-<hex>/data.parquet: sha256 <found> … is not "
         "<recorded>, the sha256 its manifest records (rule: …); rebuild it: run the train DAG "
         "over <window> again …`, before the GX gate runs", "training set",
         ("datasets/", "sha256")),
    Case("raw-data-file-deleted", "`<raw D2 folder>/g-<hex>/data.parquet: sha256 missing (no "
         "file) is not <recorded>, the sha256 its manifest records (rule: ...)`", "raw-deleted",
         ("raw/readings/date=2024-01-02", "sha256 missing (no file)", RULE)),
]


@pytest.mark.parametrize("case", params(*READERS))
def test_a_reader_refuses_bytes_its_manifest_does_not_record(recorded: Recorded,
                                                             case: Case) -> None:
    """Invariant: nothing is computed, trained or validated on bytes other than those
    recorded: the reader of each layer refuses a data file whose bytes are not its
    manifest's, with a DataError naming the partition and the sha256 rule."""
    layer = case.fault.removesuffix("-deleted")
    path = recorded.file(layer)
    if case.fault.endswith("-deleted"):
        path.unlink()
    else:
        _rewrite(path)
    with pytest.raises(DataError) as error:
        _read(recorded, layer)
    assert_clear_error(error, DataError, *case.needles)


def _redeliver(spec: LoadedSpec, seed: int) -> None:
    """D2's landing file delivered again with other values and the chain run over it: raw D2
    and the feature days reading it are republished, and a new training set is built. Twice
    is enough to remove an unpinned generation (`publish_dir` keeps one replaced one)."""
    write_readings(spec.landing_dir(), D2, seed=seed)
    run = ProducedBy(dag_id="sensors_ingest", run_id=f"redelivery-{seed}", reason="re-delivered")
    ingest.ingest(env_lake(), spec, "readings", D1, D4, produced_by=run)
    features.compute_view(env_lake(), spec, "last", D1, D4)
    training_set.prepare(env_lake(), spec, D1, D4)


def test_a_re_delivery_after_training_leaves_the_version_verifiable(recorded: Recorded) -> None:
    """Invariant: the bytes a version was trained on stay in the lake: after D2's landing
    file is delivered again twice, republishing raw D2, the feature days reading it and the
    training set each time, `verify` still finds every recorded byte (the generations its
    lineage names were pinned when its run was logged), the training set rebuilt from its
    recorded raw partitions has its dataset_id, and `doctor` takes no pinned generation for
    a leftover.

    Sees: nothing: intact, the same dataset_id, no leftover.
    """
    used = recorded.file("raw")
    for seed in (7, 8):
        _redeliver(recorded.spec, seed)
    assert recorded.file("raw") != used and used.exists()
    assert recorded.verify().intact
    rebuilt, _ = audit._rebuild(env_lake(), recorded.spec, recorded.subject.record)
    assert rebuilt == recorded.subject.record["dataset_id"]
    assert doctor.lake_findings(env_lake().root, fix=True) == []
    assert used.exists()


def test_bytes_lost_to_a_re_publication_are_named_with_its_run(recorded: Recorded) -> None:
    """Invariant: `verify` tells a recorded re-publication from changed bytes: when the bytes
    a version used are gone (a version logged before pins existed; here its pins are
    deleted) and its folders were republished, each mismatch names the run that republished
    it, its reason, and the source files that changed.

    Sees: `republished by dag_id sensors_ingest run_id redelivery-8, reason 're-delivered';
    source files changed since: <landing>/readings/2024-01-02.csv; the bytes this version
    used were not kept (...)`.
    """
    for pins in list(env_lake().root.rglob(lake.PINS)):
        shutil.rmtree(pins)
    for seed in (7, 8):
        _redeliver(recorded.spec, seed)
    result = recorded.verify()
    raw = next(m for m in result.mismatches if m.what.startswith("sensors/raw/readings/"))
    assert raw.republished is not None
    assert raw.republished.startswith(
        "republished by dag_id sensors_ingest run_id redelivery-8, reason 're-delivered'")
    assert f"source files changed since: {recorded.spec.landing_dir()}/readings/{D2}.csv" in (
        raw.republished)
    assert all(m.republished for m in result.mismatches if "/date=" in m.what)
