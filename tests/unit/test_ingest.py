"""Ingestion publishes one checked partition per day, and bad files fail naming file and rule."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipelines import ingest, lake
from pipelines.errors import DataError
from pipelines.lake import from_env as env_lake
from pipelines.spec import LoadedSpec
from tests.unit.conftest import amend

D1, D2, D4 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 4)


def _file(spec: LoadedSpec, day: dt.date) -> Path:
    source = spec.pipeline.sources["readings"]
    midnight = dt.datetime.combine(day, dt.time(), dt.UTC)
    return ingest.landing_file(spec, source, ingest.delivery_at(source, midnight))


def test_ingest_publishes_a_partition_per_day(tiny: LoadedSpec) -> None:
    result = ingest.ingest(env_lake(), tiny, "readings", D1, dt.date(2024, 1, 4))
    assert [p["date"] for p in result.partitions] == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert result.rows == 3 * 72
    partitions = lake.list_partitions(env_lake(), "sensors", "raw", "readings")
    assert [p.rows for p in partitions] == [72, 72, 72]
    table = pd.read_parquet(partitions[0].data_path)
    assert str(table["ts"].dtype) == "datetime64[us, UTC]"
    manifest = partitions[0].manifest
    assert [f["sha256"] for f in manifest["source_files"]] == [lake.sha256_file(_file(tiny, D1))]


def test_rerun_changes_no_checksum(tiny: LoadedSpec) -> None:
    first = ingest.ingest(env_lake(), tiny, "readings", D1, D4)
    second = ingest.ingest(env_lake(), tiny, "readings", D1, D4)
    assert [p["sha256"] for p in first.partitions] == [p["sha256"] for p in second.partitions]


def _set_values(path: Path, *values: str | None) -> None:
    """Replace the `value` of the first rows with these texts (None drops the field)."""
    text = path.read_text()
    for value in values:
        text = re.sub(r"Z,0\.\d+\n", "Z\n" if value is None else f"Z,{value}#\n", text, count=1)
    path.write_text(text.replace("#", ""))


def _assert_nothing_published(tiny: LoadedSpec) -> None:
    assert lake.list_partitions(env_lake(), "sensors", "raw", "readings") == []


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
    (lambda f: f.write_text(f.read_text()[:f.read_text().index("\nb,") + 5]),
     "line 26 has 2 fields, the header has 3; the file is truncated: it ends mid-line"),
    (lambda f: _set_values(f, None), "line 2 has 2 fields, the header has 3; the file is ragged"),
    (lambda f: f.write_text(f.read_text().replace("\na,", '\n"a,', 1)),
     "unexpected end of data"),
    (lambda f: f.write_bytes(f.read_bytes().replace(b"\nb,", b"\n\xff\xfe,", 1)),
     "'utf-8' codec can't decode byte 0xff"),
    (lambda f: f.write_bytes(b""), "file is empty (0 bytes)"),
    (lambda f: f.write_text("sensor,ts,value\n"),
     "0 rows, fewer than sensors.yaml: sources.readings.min_rows (1)"),
    (lambda f: _set_values(f, "inf", "-inf", "Infinity", "NaN", "nan"),
     "column 'value' has 5 (rule: numbers are finite"),
    (lambda f: f.write_text(f.read_text().replace(",", ";")), "is the delimiter ',' right?"),
])
def test_bad_file_fails_naming_file_and_rule(tiny: LoadedSpec, corrupt: callable,
                                             message: str) -> None:
    path = _file(tiny, D2)
    corrupt(path)
    with pytest.raises(DataError) as error:
        ingest.ingest(env_lake(), tiny, "readings", D1, D4)
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


def _with(spec: LoadedSpec, **fields: object) -> LoadedSpec:
    """The tiny spec with these fields of its `readings` source changed."""
    source = spec.pipeline.sources["readings"].model_copy(update=fields)
    return amend(spec, sources={"readings": source})


def test_the_declared_delimiter_is_used_never_a_guessed_one(tiny: LoadedSpec) -> None:
    for day in (D1, D2, dt.date(2024, 1, 3)):
        path = _file(tiny, day)
        path.write_text(path.read_text().replace(",", ";").replace("\na;", '\n"a;x";', 1))
    semicolons = _with(tiny, delimiter=";")
    result = ingest.ingest(env_lake(), semicolons, "readings", D1, D4)
    assert result.rows == 3 * 72
    first = lake.list_partitions(env_lake(), "sensors", "raw", "readings")[0]
    sensors = pd.read_parquet(first.data_path)["sensor"]
    assert sensors.iloc[0] == "a;x"  # a quoted delimiter is data
    with pytest.raises(DataError, match="is the delimiter ',' right"):
        ingest.ingest(env_lake(), tiny, "readings", D1, D4)


def test_min_rows_zero_accepts_a_day_without_rows(tiny: LoadedSpec) -> None:
    _file(tiny, D2).write_text("sensor,ts,value\n")
    result = ingest.ingest(env_lake(), _with(tiny, min_rows=0), "readings", D1, D4)
    assert [p["rows"] for p in result.partitions] == [72, 0, 72]
    with pytest.raises(DataError, match=r"72 rows, fewer than .*min_rows \(100\)"):
        ingest.ingest(env_lake(), _with(tiny, min_rows=100), "readings", D1, D4)


def test_infinite_values_pass_only_when_the_source_allows_them(tiny: LoadedSpec) -> None:
    _set_values(_file(tiny, D2), "inf", "NaN")
    assert ingest.ingest(env_lake(), _with(tiny, allow_infinite=True), "readings", D1, D4).rows == 3 * 72
    with pytest.raises(DataError, match="set sensors.yaml: sources.readings.allow_infinite: true"):
        ingest.ingest(env_lake(), tiny, "readings", D1, D4)


def test_an_empty_float_field_is_a_null_not_a_nan(tiny: LoadedSpec) -> None:
    """The finite rule refuses NaN, never a missing value: an empty field reads as null."""
    _set_values(_file(tiny, D2), "", "")
    assert ingest.ingest(env_lake(), tiny, "readings", D1, D4).rows == 3 * 72
    table = pq.read_table(lake.list_partitions(env_lake(), "sensors", "raw", "readings")[1].data_path)
    assert table.column("value").null_count == 2


def test_infinite_values_fail_a_source_without_a_suite(tiny: LoadedSpec) -> None:
    """Parquet keeps inf as a float: the rule holds for every format, suite or not."""
    assert tiny.pipeline.sources["readings"].suite is None
    path = _file(tiny, D1)
    frame = pd.read_csv(path)
    frame.loc[4, "value"] = float("-inf")
    frame["ts"] = pd.to_datetime(frame["ts"])
    parquet = path.with_suffix(".parquet")
    frame.to_parquet(parquet)
    source = _with(tiny, format="parquet", path="readings/{date}.parquet")
    with pytest.raises(DataError) as error:
        ingest.ingest(env_lake(), source, "readings", D1, D2)
    assert str(parquet) in str(error.value) and "column 'value' has 1" in str(error.value)


NOON_D2 = dt.datetime(2024, 1, 2, 12, tzinfo=dt.UTC)


def test_events_later_than_the_clock_and_tolerance_fail(tiny: LoadedSpec) -> None:
    with pytest.raises(DataError) as error:
        ingest.ingest(env_lake(), tiny, "readings", D1, dt.date(2024, 1, 3),
                      now=NOON_D2 - dt.timedelta(days=1))
    message = str(error.value)
    assert str(_file(tiny, D2)) in message
    assert "'ts' has 33 rows later than the run's clock 2024-01-01T12:00:00+00:00" in message
    assert "sources.readings.future_tolerance (1 day, 0:00:00)" in message
    assert "e.g. 2024-01-02T13:00:00+00:00" in message
    _assert_nothing_published(tiny)
    later = _with(tiny, future_tolerance=dt.timedelta(hours=12))
    assert ingest.ingest(env_lake(), later, "readings", D1, D2, now=NOON_D2).rows == 72
    assert ingest.ingest(env_lake(), tiny, "readings", D1, D4, now=NOON_D2 + dt.timedelta(days=1)).rows == 216


def test_a_file_dated_beyond_the_tolerance_is_refused_by_name(tiny: LoadedSpec) -> None:
    with pytest.raises(DataError) as error:
        ingest.ingest(env_lake(), tiny, "readings", D1, D4, now=NOON_D2 - dt.timedelta(days=1))
    assert f"{_file(tiny, dt.date(2024, 1, 3))}: dated 2024-01-03 (UTC day), after the run's clock" \
        in str(error.value)


def test_a_suite_failure_over_several_files_names_the_file_holding_the_bad_rows(
        tiny: LoadedSpec) -> None:
    from pipelines.quality import ValidationFailed
    from pipelines.spec import load_spec
    from tests.unit.conftest import D1, D4, between_suite

    between_suite(tiny, "sensors_readings", "value", 1.0)
    tiny.path.write_text(tiny.path.read_text().replace(
        "    event_time: ts\n", "    event_time: ts\n    suite: sensors_readings\n"))
    spec = load_spec(tiny.path)
    bad = spec.landing_dir() / "readings" / "2024-01-02.csv"
    frame = pd.read_csv(bad)
    frame.loc[5, "value"] = 7.5
    bad.write_text(frame.to_csv(index=False))
    with pytest.raises(ValidationFailed) as error:
        ingest.ingest(env_lake(), spec, "readings", D1, D4)
    message = str(error.value)
    assert "files readings/2024-01-01.csv..readings/2024-01-03.csv" in message
    assert ("expect_column_values_to_be_between on column 'value': 1 rows break it (0.46% of "
            "those checked), such as [7.5], in readings/2024-01-02.csv (rows sensor=a "
            "ts=2024-01-02 05:00:00+00:00); rule " in message)
    assert "rule {'min_value': 0.0, 'max_value': 1.0}" in message and "7.5" in message
    assert lake.list_partitions(env_lake(), "sensors", "raw", "readings") == []
