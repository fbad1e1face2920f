"""Bytes are verified before use: every raw, feature and training-set file is re-hashed
against its manifest as it is read, a mismatch names the file, both hashes and the repair,
a corrupt training set is republished from its inputs, and lineage records what was read."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from pipelines import features, lake, lineage, quality, training_set
from pipelines.errors import DataError, LineageError
from pipelines.lake import from_env as env_lake
from pipelines.provenance import ProducedBy
from pipelines.spec import LoadedSpec
from pipelines.training_set import TrainingInput

from .conftest import D1, D2, D4


def flip_byte(path: Path, keep_mtime: bool = True) -> str:
    """Invert one byte in the middle of `path` in place, as a bad disk or a probe would,
    putting its mtime back (size and mtime then look untouched); returns the new sha256."""
    stat = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(stat.st_size // 2)
        byte = handle.read(1)
        handle.seek(stat.st_size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    return lake.sha256_file(path)


def truncate(path: Path) -> str:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - 100)
    return lake.sha256_file(path)


def _raw(spec: LoadedSpec, day: dt.date) -> lake.Partition:
    return next(p for p in lake.list_partitions(env_lake(), spec.name, "raw", "readings") if p.day == day)


def _feature(spec: LoadedSpec, day: dt.date) -> lake.Partition:
    return next(p for p in lake.list_partitions(env_lake(), spec.name, "features", "last") if p.day == day)


def _raised_in(error: pytest.ExceptionInfo[BaseException], function: str) -> bool:
    return any(entry.name == function for entry in error.traceback)


def _says(error: pytest.ExceptionInfo[BaseException], path: Path, expected: str,
          found: str) -> None:
    message = str(error.value)
    assert message.startswith(f"{path}: sha256 {found} ")
    assert f"is not {expected}, the sha256 its manifest records" in message


@pytest.mark.parametrize("damage", [flip_byte, truncate], ids=["flipped-byte", "truncated"])
def test_a_damaged_raw_partition_stops_the_features(ingested: LoadedSpec, damage) -> None:
    part = _raw(ingested, D2)
    found = damage(part.data_path)
    with pytest.raises(DataError) as error:
        features.compute_view(env_lake(), ingested, "last", D1, D4)
    _says(error, part.data_path, part.sha256, found)
    assert "re-ingest that day from its landing file: trigger sensors_ingest with start " \
           "2024-01-02 and end 2024-01-03" in str(error.value)
    assert _raised_in(error, "read_raw")
    assert lake.list_partitions(env_lake(), ingested.name, "features", "last") == []


def test_a_flipped_byte_is_caught_after_a_clean_read_even_with_its_mtime_restored(
        ingested: LoadedSpec) -> None:
    """The same file read twice in one process: no earlier verification is trusted. (The
    second call is forced: unforced, it skips every day, whose inputs' manifests are the
    same, and reads no raw file at all.)"""
    assert features.compute_view(env_lake(), ingested, "last", D1, D4).rows == 216
    part = _raw(ingested, D1)
    before = part.data_path.stat()
    found = flip_byte(part.data_path)
    after = part.data_path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size, before.st_mtime_ns, before.st_ino)
    with pytest.raises(DataError) as error:
        features.compute_view(env_lake(), ingested, "last", D1, D4, force=True)
    _says(error, part.data_path, part.sha256, found)


@pytest.mark.parametrize("damage", [flip_byte, truncate], ids=["flipped-byte", "truncated"])
def test_a_damaged_feature_partition_stops_the_training_set(ingested: LoadedSpec,
                                                            damage) -> None:
    features.compute_view(env_lake(), ingested, "last", D1, D4)
    part = _feature(ingested, D2)
    found = damage(part.data_path)
    with pytest.raises(DataError) as error:
        training_set.build_training_set(env_lake(), ingested, D1, D4)
    _says(error, part.data_path, part.sha256, found)
    assert ("recompute that day: `pitstop backfill <sensors spec> --start 2024-01-02 "
            "--end 2024-01-03 --views last --reason 'corrupt partition'`") in str(error.value)
    assert _raised_in(error, "read_features")
    assert not lake.pipeline_dir(env_lake(), "sensors", "datasets").exists()


def test_a_removed_data_file_is_named_missing(ingested: LoadedSpec) -> None:
    features.compute_view(env_lake(), ingested, "last", D1, D4)
    part = _feature(ingested, D1)
    part.data_path.unlink()
    with pytest.raises(DataError, match=r"sha256 missing \(no file\) is not [0-9a-f]{64}"):
        training_set.build_training_set(env_lake(), ingested, D1, D4)


def test_a_file_replaced_during_the_read_is_refused(ingested: LoadedSpec) -> None:
    """What was read must be what the manifest names: a republication mid-read is caught."""
    parts = lake.list_partitions(env_lake(), ingested.name, "raw", "readings")

    def read(paths: list[str]) -> int:
        replacement = parts[1].path.parent / "replacement"
        replacement.write_bytes(parts[1].data_path.read_bytes())
        os.replace(replacement, parts[1].data_path)  # same bytes, another file
        return len(paths)

    with pytest.raises(LineageError, match=f"{parts[1].data_path}: replaced while it was read"):
        lake.read_verified(parts, read)
    assert lake.read_verified(parts, len) == 3


def test_a_verified_read_reads_what_the_manifests_name(ingested: LoadedSpec) -> None:
    parts = lake.list_partitions(env_lake(), ingested.name, "raw", "readings")
    assert lake.read_verified(parts, list) == [str(p.data_path) for p in parts]


# --- training sets ---------------------------------------------------------------------------


def _data_file(built: TrainingInput) -> Path:
    return lake.committed_file(env_lake().root / built.training_set.path)


def test_reading_a_corrupt_training_set_fails_before_any_fit(built: TrainingInput) -> None:
    data = _data_file(built)
    expected = lake.sha256_file(data)
    found = flip_byte(data)
    with pytest.raises(DataError) as error:
        training_set.read_training_set(env_lake(), built.training_set)
    message = str(error.value)
    assert message.startswith(f"{data}: sha256 {found} ") and f"is not {expected}" in message
    assert "run the train DAG over 2024-01-01..2024-01-04 again" in message


def _rewrite(data: Path, frame: pd.DataFrame) -> None:
    """Replace a set's rows and its manifest's hash together: only the content ID can tell."""
    lake.write_parquet(pa.Table.from_pandas(frame, preserve_index=False), data)
    folder = data.parent.parent  # the set's folder; `data` is in its committed generation
    manifest = lake.read_manifest(folder)
    manifest["files"][0]["sha256"] = lake.sha256_file(data)
    (folder / lake.MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", [
    flip_byte,
    truncate,
    lambda data: _rewrite(data, pd.read_parquet(data).iloc[1:]),
    lambda data: _rewrite(data, pd.read_parquet(data).assign(high=0)),
], ids=["flipped-byte", "truncated", "row-dropped-manifest-rehashed",
        "values-changed-manifest-rehashed"])
def test_a_rerun_republishes_a_corrupt_training_set(ingested: LoadedSpec, built: TrainingInput,
                                                    damage, caplog: pytest.LogCaptureFixture
                                                    ) -> None:
    data = _data_file(built)
    good = data.read_bytes()
    damage(data)
    with caplog.at_level(logging.WARNING, logger="pipelines.training_set"):
        again = training_set.build_training_set(env_lake(), ingested, D1, D4)
    assert again == built.training_set
    assert _data_file(built).read_bytes() == good  # a new generation, committed
    frame, _ = training_set.assemble_training_frame(env_lake(), ingested, D1, D4)
    pd.testing.assert_frame_equal(training_set.read_training_set(env_lake(), again), frame)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"training set {again.dataset_id} is corrupt: {data}")
    assert warning.endswith("it is published again from the inputs it was just built from")


def test_an_intact_training_set_is_reused_untouched(ingested: LoadedSpec, built: TrainingInput,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    data = _data_file(built)
    inode = data.stat().st_ino
    with caplog.at_level(logging.WARNING, logger="pipelines.training_set"):
        assert training_set.build_training_set(env_lake(), ingested, D1, D4) == built.training_set
    assert data.stat().st_ino == inode and caplog.records == []


# --- lineage records the bytes read -----------------------------------------------------------


def test_lineage_records_the_hashes_read_not_a_later_manifest(ingested: LoadedSpec,
                                                              built: TrainingInput) -> None:
    """A feature partition republished after the set was built keeps its read hash in the
    record (so `verify` then reports the lake no longer holds it), not the new manifest's."""
    spec = ingested
    spec.suite_path("sensors_training_set").write_text(json.dumps(
        {"name": "sensors_training_set", "expectations": []}))
    read = _feature(spec, D2)

    def one_row_less(tmp: Path) -> dict:
        rows = pd.read_parquet(read.data_path).iloc[1:]
        lake.write_parquet(pa.Table.from_pandas(rows, preserve_index=False), tmp / lake.DATA_FILE)
        return dict(read.manifest)

    lake.publish_dir(read.path, one_row_less)
    assert _feature(spec, D2).sha256 != read.sha256
    result = lake.pipeline_dir(env_lake(), spec.name, "result.json")
    result.write_text("{}")
    report = quality.QualitySummary("sensors_training_set", True, 0, 0, env_lake().relative(result),
                                    "", "")
    pair = lineage.plan_pair(spec, built.training_set.dataset_id)
    record = lineage.lineage_record(env_lake(), spec, built, report, pair, ProducedBy())
    recorded = {p["path"]: p["sha256"] for p in record["feature_partitions"]}
    assert recorded[env_lake().relative(read.path)] == read.sha256
    assert {p["path"]: p["sha256"] for p in record["raw_partitions"]} == {
        env_lake().relative(p.path): p.sha256
        for p in lake.list_partitions(env_lake(), spec.name, "raw", "readings")}
