"""Bad landing files: each fails ingest naming the file and the rule, publishes nothing, and
once the file is delivered again the run gives the clean run's dataset_id."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pandas as pd
import pytest

from pipelines import features, ingest, lake, training_set
from pipelines.errors import DataError
from pipelines.lake import from_env as env_lake
from pipelines.spec import LoadedSpec
from tests.faults.invariants import (
    D1,
    D2,
    D3,
    D4,
    Case,
    assert_clear_error,
    assert_lake_sound,
    assert_nothing_published,
    landing,
    params,
    reland,
    run_clean,
)
from tests.unit.conftest import amend


def _text(transform):  # noqa: ANN001, ANN202 - a tiny adapter for the case table
    return lambda path: path.write_text(transform(path.read_text()))


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


CASES = [
    Case("empty-file", "`<file>: file is empty (0 bytes): the delivery wrote nothing`",
         lambda p: p.write_bytes(b""), ("file is empty (0 bytes)",)),
    Case("header-only", "`<file>: 0 rows, fewer than sensors.yaml: sources.readings.min_rows (1)`",
         lambda p: p.write_text("sensor,ts,value\n"),
         ("0 rows, fewer than sensors.yaml: sources.readings.min_rows (1)",)),
    Case("truncated-row", "`<file>: line 26 has 2 fields, the header has 3; the file is truncated`",
         _text(lambda t: t[:t.index("\nb,") + 5]),
         ("line 26 has 2 fields, the header has 3", "truncated: it ends mid-line")),
    Case("ragged-row", "`<file>: line 2 has 2 fields, the header has 3; the file is ragged`",
         _text(lambda t: t.replace(t.splitlines()[1], t.splitlines()[1].rsplit(",", 1)[0], 1)),
         ("line 2 has 2 fields, the header has 3", "ragged")),
    Case("wrong-delimiter", "`<file>: columns [...] are missing (schema drift); the header has one "
         "field: is the delimiter ',' right?`",
         _text(lambda t: t.replace(",", ";")), ("is the delimiter ',' right?",)),
    Case("non-utf8-bytes", "`<file>: cannot be read as csv: 'utf-8' codec can't decode byte 0xff`",
         lambda p: p.write_bytes(p.read_bytes().replace(b"\nb,", b"\n\xff\xfe,", 1)),
         ("'utf-8' codec can't decode byte 0xff",)),
    Case("unclosed-quote", "`<file>: line N: unexpected end of data (rule: a CSV file is complete "
         "and well formed)`", _text(lambda t: t.replace("\na,", '\n"a,', 1)),
         ("unexpected end of data", "a CSV file is complete and well formed")),
    Case("missing-day", "`<file>: missing: source 'readings' delivers a file every day`",
         lambda p: p.unlink(), ("missing: source 'readings' delivers a file every day",)),
    Case("extra-column", "`<file>: columns ['extra'] are not declared in the spec (schema drift)`",
         _text(lambda t: t.replace("\n", ",1\n").replace("value,1", "value,extra", 1)),
         ("columns ['extra'] are not declared in the spec (schema drift)",)),
    Case("missing-column", "`<file>: columns ['value'] declared in the spec are missing (schema "
         "drift)`", _text(lambda t: t.replace("value", "reading", 1)),
         ("columns ['value'] declared in the spec are missing (schema drift)",)),
    Case("duplicate-keys", "`<file>: 1 duplicate keys on ['sensor', 'ts'] (rule: keys are unique)`",
         _text(lambda t: t + t.splitlines()[1] + "\n"),
         ("1 duplicate keys on ['sensor', 'ts'] (rule: keys are unique)",)),
    Case("row-outside-its-day", "`<file>: column 'ts' has 1 rows outside 2024-01-02 (UTC day): ... "
         "(rule: a file holds only the period its path names; ...)`",
         _text(lambda t: t.replace("2024-01-02T05", "2024-01-03T05", 1)),
         ("rows outside 2024-01-02 (UTC day)", "a file holds only the period its path names")),
    Case("directory-for-file", "`<file>: cannot be read as csv: [Errno 21] Is a directory`",
         _directory, ("cannot be read as csv", "Is a directory")),
]


@pytest.mark.parametrize("case", params(*CASES))
def test_a_bad_file_publishes_nothing_and_a_fixed_one_gives_the_clean_id(
        tiny: LoadedSpec, clean_dataset_id: str, case: Case) -> None:
    """Invariant: a bad landing file fails ingest with a DataError naming the file and the
    rule; no raw partition of the range is visible or lying around; after the file is
    delivered again the run's dataset_id is the clean run's."""
    path = landing(tiny, D2)
    case.fault(path)
    with pytest.raises(DataError) as error:
        ingest.ingest(env_lake(), tiny, "readings", D1, D4)
    assert_clear_error(error, DataError, str(path), *case.needles)
    assert_nothing_published(tiny, "raw", "readings")
    reland(tiny, D2)
    assert run_clean(tiny) == clean_dataset_id
    assert_lake_sound()


def test_a_fifo_in_place_of_a_file_fails_without_hanging(
        tiny: LoadedSpec, clean_dataset_id: str) -> None:
    """Invariant: a named pipe where a file should be fails ingest (DataError naming the
    file) instead of blocking the task forever; nothing is published; a fixed file gives the
    clean dataset_id. The call runs in a thread with a timeout: should it ever block, the
    test opens the pipe itself (a reader then sees end of file) and fails.

    Sees: `<file>: file is empty (0 bytes)` (a pipe has no size).
    """
    path = landing(tiny, D2)
    path.unlink()
    os.mkfifo(path)
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            ingest.ingest(env_lake(), tiny, "readings", D1, D4)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():
        os.close(os.open(path, os.O_RDWR | os.O_NONBLOCK))  # release the blocked reader
        worker.join(timeout=10)
        pytest.fail(f"ingest blocked on the FIFO {path}")
    assert isinstance(outcome[0], DataError), outcome
    assert str(path) in str(outcome[0]) and "file is empty (0 bytes)" in str(outcome[0])
    assert_nothing_published(tiny, "raw", "readings")
    reland(tiny, D2)
    assert run_clean(tiny) == clean_dataset_id


def _as_parquet(spec: LoadedSpec) -> LoadedSpec:
    """The tiny spec reading Parquet files, its three CSV days delivered again as Parquet."""
    source = spec.pipeline.sources["readings"].model_copy(
        update={"format": "parquet", "path": "readings/{date}.parquet"})
    parquet = amend(spec, sources={"readings": source})
    for day in (D1, D2, D3):
        csv = landing(spec, day)
        frame = pd.read_csv(csv)
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        frame.to_parquet(landing(parquet, day), index=False)
    return parquet


def test_a_corrupt_parquet_file_fails_naming_it(tiny: LoadedSpec, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Invariant: a truncated Parquet delivery fails ingest with a DataError naming the file;
    nothing is published; the re-delivered file gives the dataset_id of a clean Parquet run
    (computed in a lake of its own).

    Sees: `<file>: cannot be read as parquet: ...` (Arrow's reason).
    """
    spec = _as_parquet(tiny)
    path = landing(spec, D2)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError) as error:
        ingest.ingest(env_lake(), spec, "readings", D1, D4)
    assert_clear_error(error, DataError, str(path), "cannot be read as parquet")
    assert_nothing_published(spec, "raw", "readings")
    path.write_bytes(good)
    fixed = run_clean(spec)
    monkeypatch.setenv("PITSTOP_LAKE", str(tmp_path / "clean-lake"))
    assert run_clean(spec) == fixed
    assert_lake_sound()


def test_a_bad_file_on_rerun_leaves_the_published_days_as_they_were(
        tiny: LoadedSpec, clean_dataset_id: str) -> None:
    """Invariant: re-ingesting a range whose file has gone bad fails and leaves the partitions
    published before byte for byte as they were (old, never half of new), so features and
    the training set still build to the clean dataset_id.

    Sees: `<file>: line 26 has 2 fields, the header has 3; the file is truncated`.
    """
    assert run_clean(tiny) == clean_dataset_id
    before = {p.path: p.sha256 for p in _raw(tiny)}
    path = landing(tiny, D2)
    path.write_text(path.read_text()[: path.read_text().index("\nb,") + 5])
    with pytest.raises(DataError, match="truncated"):
        ingest.ingest(env_lake(), tiny, "readings", D1, D4)
    assert {p.path: p.sha256 for p in _raw(tiny)} == before
    assert_lake_sound()
    features.compute_view(env_lake(), tiny, "last", D1, D4)
    assert training_set.prepare(env_lake(), tiny, D1, D4).training_set.dataset_id == clean_dataset_id


def _raw(spec: LoadedSpec) -> list[lake.Partition]:
    return lake.list_partitions(env_lake(), spec.name, "raw", "readings")
