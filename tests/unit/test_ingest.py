"""Ingestion publishes one checked partition per day, and bad files fail naming file and rule."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from pipelines import ingest, lake
from pipelines.errors import DataError
from pipelines.spec import LoadedSpec

D1, D2, D4 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 4)


def _file(spec: LoadedSpec, day: dt.date) -> Path:
    return ingest.landing_file(spec, spec.pipeline.sources["readings"], day)


def test_ingest_publishes_a_partition_per_day(tiny: LoadedSpec) -> None:
    result = ingest.ingest(tiny, "readings", D1, dt.date(2024, 1, 4))
    assert [p["date"] for p in result.partitions] == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert result.rows == 3 * 72
    partitions = lake.list_partitions("sensors", "raw", "readings")
    assert [p.rows for p in partitions] == [72, 72, 72]
    table = pd.read_parquet(partitions[0].data_path)
    assert str(table["ts"].dtype) == "datetime64[us, UTC]"
    manifest = partitions[0].manifest
    assert manifest["source_file"]["sha256"] == lake.sha256_file(_file(tiny, D1))


def test_rerun_changes_no_checksum(tiny: LoadedSpec) -> None:
    first = ingest.ingest(tiny, "readings", D1, D4)
    second = ingest.ingest(tiny, "readings", D1, D4)
    assert [p["sha256"] for p in first.partitions] == [p["sha256"] for p in second.partitions]


def _assert_nothing_published(tiny: LoadedSpec) -> None:
    assert lake.list_partitions("sensors", "raw", "readings") == []


@pytest.mark.parametrize(("corrupt", "message"), [
    (lambda f: f.unlink(), "missing"),
    (lambda f: f.write_text(f.read_text().replace("value", "reading")), "schema drift"),
    (lambda f: f.write_text(f.read_text().replace("sensor,ts,value",
                                                  "sensor,ts,value,extra")
                            .replace("\n", ",1\n").replace("extra,1", "extra")), "schema drift"),
    (lambda f: f.write_text(f.read_text().replace(",0.", ",zero.", 1)),
     "'value' has 1 values that are not float"),
    (lambda f: f.write_text(f.read_text() + f.read_text().splitlines()[1] + "\n"),
     "duplicate keys"),
    (lambda f: f.write_text(f.read_text().replace("\na,", "\n,", 1)), "'sensor' has 1 nulls"),
    (lambda f: f.write_text(f.read_text().replace("2024-01-02T05", "2024-02-02T05")),
     "rows outside 2024-01-02"),
    (lambda f: f.write_bytes(b"\x00\xff\xfe garbage" * 10), "readings/2024-01-02.csv"),
])
def test_bad_file_fails_naming_file_and_rule(tiny: LoadedSpec, corrupt: callable,
                                             message: str) -> None:
    path = _file(tiny, D2)
    corrupt(path)
    with pytest.raises(DataError) as error:
        ingest.ingest(tiny, "readings", D1, D4)
    assert str(path) in str(error.value)
    assert message in str(error.value)
    _assert_nothing_published(tiny)


def test_naive_timestamps_are_read_in_the_source_zone(tiny: LoadedSpec, tmp_path: Path) -> None:
    path = _file(tiny, D1)
    path.write_text(path.read_text().replace("Z,", ","))
    table = ingest.read_landing_file(path, tiny.pipeline.sources["readings"])
    assert table.column("ts")[0].as_py() == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    ny = tiny.pipeline.sources["readings"].model_copy(update={"timezone": "America/New_York"})
    shifted = ingest.read_landing_file(path, ny)
    assert shifted.column("ts")[0].as_py() == dt.datetime(2024, 1, 1, 5, tzinfo=dt.UTC)
