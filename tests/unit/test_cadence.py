"""Source cadence: hour, local-day and month files land in one raw partition per UTC day.

The landing files here are laid out with pandas' own time-zone conversion (the wall-clock
date and hour of each row), independently of the period arithmetic in `pipelines/ingest.py`.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipelines import ingest, lake, validation
from pipelines.errors import DataError, SpecError
from pipelines.lake import from_env as env_lake
from pipelines.spec import (
    PARTITION_DAY,
    PATH_PLACEHOLDERS,
    PERIOD_PLACEHOLDERS,
    LoadedSpec,
    Source,
    load_spec,
)
from tests.unit.conftest import amend

NY = "America/New_York"
LATER = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
"""A run clock after every file here, so only the rule under test can fail."""
WALL = {"day": "%Y-%m-%d", "hour": "%Y-%m-%d/%H", "month": "%Y-%m"}
"""How each period's path names a wall-clock time (the templates of `LAYOUTS`)."""
LAYOUTS = {"day": "{date}.csv", "hour": "{date}/{hour}.csv", "month": "{month}.csv"}


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _cadenced(tiny: LoadedSpec, folder: str, period: str = "day", zone: str = "UTC",
              **fields: Any) -> LoadedSpec:
    """The tiny spec whose `readings` arrive in `folder/` per `period` of `zone` (validated)."""
    base = tiny.pipeline.sources["readings"].model_dump(exclude_unset=True)
    local = {"period_zone": "local", "timezone": zone} if zone != "UTC" else {}
    source = Source.model_validate({**base, "path": f"{folder}/{LAYOUTS[period]}",
                                    "period": period, "min_rows": 0, **local, **fields})
    return amend(tiny, sources={"readings": source})


def _readings(start: str, end: str, every: str = "30min") -> pd.DataFrame:
    """Readings of sensor `a` every `every` from `start` to `end` (UTC, end excluded)."""
    times = pd.date_range(pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC"),
                          freq=every, inclusive="left")
    return pd.DataFrame({"sensor": "a", "ts": times, "value": range(len(times))}).astype(
        {"value": float})


def _land(spec: LoadedSpec, rows: pd.DataFrame, start: str, end: str) -> dict[str, int]:
    """Write the source's files for the UTC days `[start, end)`: each row in the file its
    wall-clock time names, and a (maybe header-only) file for every period those days touch.
    Returns the rows per file, by path relative to the landing folder."""
    source = spec.pipeline.sources["readings"]
    zone = source.timezone if source.period_zone == "local" else "UTC"
    folder = source.path.split("/")[0]
    grid = pd.date_range(pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC"),
                         freq="15min", inclusive="left")
    names = rows["ts"].dt.tz_convert(zone).dt.strftime(WALL[source.period])
    counts = {}
    for name in grid.tz_convert(zone).strftime(WALL[source.period]).unique():
        out = spec.landing_dir() / folder / f"{name}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        chosen = rows[names == name]
        chosen.assign(ts=chosen["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(out, index=False)
        counts[f"{folder}/{name}.csv"] = len(chosen)
    return counts


def _ingest(spec: LoadedSpec, start: str, end: str, now: dt.datetime = LATER
            ) -> ingest.IngestResult:
    return ingest.ingest(env_lake(), spec, "readings", dt.date.fromisoformat(start),
                         dt.date.fromisoformat(end), now=now)


def _published(spec: LoadedSpec) -> dict[str, tuple[int, list[str]]]:
    """Each raw partition's rows and the landing files its manifest names (relative)."""
    landing = spec.landing_dir()
    return {p.day.isoformat(): (p.rows, [str(Path(f["path"]).relative_to(landing))
                                         for f in p.manifest["source_files"]])
            for p in lake.list_partitions(env_lake(), "sensors", "raw", "readings")}


# --- the spec -----------------------------------------------------------------------------

def test_every_period_names_known_placeholders() -> None:
    assert {n for names in PERIOD_PLACEHOLDERS.values() for n in names} == set(PATH_PLACEHOLDERS)


@pytest.mark.parametrize(("change", "message"), [
    ({"period": "hour"}, "sources.readings.path: Value error, 'readings/{date}.csv' names the "
     "placeholders ['date'], but period: hour needs ['date', 'hour']: write {date} (the file's "
     "day, YYYY-MM-DD) and {hour} (the file's hour, 00-23)"),
    ({"period": "month"}, "but period: month needs ['month']: write {month}"),
    ({"path": "readings/{month}.csv"}, "names the placeholders ['month'], but period: day "
     "needs ['date']"),
    ({"path": "readings/{day}.csv"}, "names the placeholders ['day'], but period: day"),
    ({"path": "readings/{date}/{hour}.csv"}, "['date', 'hour'], but period: day needs ['date']"),
    ({"path": "readings/{date.csv"}, "sources.readings.path: Value error, 'readings/{date.csv' "
     "is not a path template"),
    ({"period_zone": "local"}, "sources.readings: Value error, period_zone: local names periods "
     "of the source's `timezone`, which is not set"),
    ({"period_zone": "local", "timezone": "Mars/Olympus"}, "timezone 'Mars/Olympus' is not a "
     "time zone pitstop knows"),
    ({"period": "week"}, "sources.readings.period: Value error, 'week' is not a delivery "
     "period; use day, hour or month. Files of another cadence (one per week, say) are a "
     "`kind: snapshot` source"),
    ({"kind": "snapshot", "event_time": None, "columns": {"sensor": "str", "value": "float"},
      "keys": ["sensor"], "period": "month", "path": "readings/{month}.csv"},
     "a source without `event_time` is published under the UTC day its file names, so it needs "
     "period: day and period_zone: utc"),
])
def test_placeholders_and_zone_are_checked_at_load(tiny: LoadedSpec, change: dict[str, Any],
                                                   message: str) -> None:
    data = yaml.safe_load(tiny.path.read_text())
    data["sources"]["readings"].update(change)
    broken = tiny.path.with_name("broken.yaml")
    broken.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as error:
        load_spec(broken, check=False)
    assert str(error.value).startswith(f"{broken}: ")
    assert message in str(error.value)


@pytest.mark.parametrize(("period", "path"), [
    ("day", "x/{date}.csv"), ("hour", "x/{date}/{hour}.csv"), ("hour", "x/{hour}-{date}.csv"),
    ("month", "x/{month}.parquet"), ("day", "x/{date}/{date}.csv")])
def test_paths_that_fit_their_period_load(tiny: LoadedSpec, period: str, path: str) -> None:
    source = Source.model_validate({**tiny.pipeline.sources["readings"].model_dump(),
                                    "period": period, "path": path})
    assert (source.period, source.period_zone) == (period, "utc")


# --- periods ------------------------------------------------------------------------------

def _source(period: str, zone: str = "UTC") -> Source:
    local = {"period_zone": "local", "timezone": zone} if zone != "UTC" else {}
    return Source.model_validate({"path": f"x/{LAYOUTS[period]}", "period": period,
                                  "event_time": "ts", "keys": ["ts"],
                                  "columns": {"ts": "timestamp"}, **local})


@pytest.mark.parametrize(("day", "hours", "files"), [
    ("2013-03-10", 23, ["2013-03-09", "2013-03-10"]),
    ("2013-11-03", 25, ["2013-11-02", "2013-11-03"]),
    ("2013-06-01", 24, ["2013-05-31", "2013-06-01"])])
def test_a_utc_day_needs_the_two_local_days_around_it(day: str, hours: int,
                                                      files: list[str]) -> None:
    source = _source("day", NY)
    start = dt.date.fromisoformat(day)
    found = list(ingest.deliveries(source, start, start + dt.timedelta(days=1)))
    assert [d.names["date"] for d in found] == files
    local_day = found[1]
    assert (local_day.end - local_day.start) == dt.timedelta(hours=hours)
    assert local_day.label == f"{day} ({NY} day)"


def test_local_hours_of_daylight_saving_days() -> None:
    """The repeated 01 of 2013-11-03 is one two-hour file; the skipped 02 of 2013-03-10 none."""
    source = _source("hour", NY)
    fall = list(ingest.deliveries(source, dt.date(2013, 11, 3), dt.date(2013, 11, 4)))
    assert len(fall) == 23  # 24 UTC hours, two of which share the local hour 01
    repeated = next(d for d in fall if d.names == {"date": "2013-11-03", "hour": "01"})
    assert (repeated.start, repeated.end) == (_utc("2013-11-03T05:00"), _utc("2013-11-03T07:00"))
    assert repeated.span().endswith(", 2 h")
    spring = list(ingest.deliveries(source, dt.date(2013, 3, 10), dt.date(2013, 3, 11)))
    hours_of_the_10th = [d.names["hour"] for d in spring if d.names["date"] == "2013-03-10"]
    assert hours_of_the_10th == ["00", "01", *(f"{h:02d}" for h in range(3, 20))]
    assert all(d.end - d.start == dt.timedelta(hours=1) for d in spring)


def test_utc_hours_and_months() -> None:
    hours = list(ingest.deliveries(_source("hour"), dt.date(2013, 11, 3), dt.date(2013, 11, 4)))
    assert [d.names for d in hours] == [{"date": "2013-11-03", "hour": f"{h:02d}"}
                                        for h in range(24)]
    month = list(ingest.deliveries(_source("month"), dt.date(2013, 2, 27), dt.date(2013, 3, 2)))
    assert [(d.names, d.start, d.end) for d in month] == [
        ({"month": "2013-02"}, _utc("2013-02-01T00:00"), _utc("2013-03-01T00:00")),
        ({"month": "2013-03"}, _utc("2013-03-01T00:00"), _utc("2013-04-01T00:00"))]


CHANGES = [(NY, "2013-03-10T07:00"), (NY, "2013-11-03T06:00"),
           ("Australia/Lord_Howe", "2013-10-05T15:30"), ("Australia/Lord_Howe", "2013-04-06T15:00"),
           ("America/Sao_Paulo", "2018-11-04T03:00"), ("America/Sao_Paulo", "2019-02-17T02:00")]
"""Daylight-saving changes (UTC): New York's, Lord Howe's half hour, Sao Paulo's at midnight."""
NEAR_A_CHANGE = st.sampled_from(CHANGES).flatmap(lambda change: st.tuples(
    st.just(change[0]), st.integers(-4 * 3600, 4 * 3600).map(
        lambda seconds: _utc(change[1]) + dt.timedelta(seconds=seconds))))
ANYWHERE = st.tuples(st.sampled_from(["UTC", NY, "Asia/Kolkata", "Asia/Kathmandu"]),
                     st.datetimes(min_value=dt.datetime(2010, 1, 1),
                                  max_value=dt.datetime(2020, 1, 1), timezones=st.just(dt.UTC)))


@settings(max_examples=300, deadline=None)
@given(st.one_of(NEAR_A_CHANGE, ANYWHERE), st.sampled_from(["day", "hour", "month"]))
def test_every_instant_has_one_period_named_by_its_wall_clock(
        where: tuple[str, dt.datetime], period: str) -> None:
    zone, instant = where
    source = _source(period, zone)
    delivery = ingest.delivery_at(source, instant)
    assert delivery.start <= instant < delivery.end
    wall = pd.Timestamp(instant).tz_convert(zone).strftime(WALL[period])
    assert source.path.format(**delivery.names) == f"x/{wall}.csv"
    assert ingest.delivery_at(source, delivery.end).start == delivery.end  # periods tile time


# --- ingest -------------------------------------------------------------------------------

def test_hour_files_make_one_partition_per_utc_day(tiny: LoadedSpec) -> None:
    spec = _cadenced(tiny, "hourly", "hour")
    counts = _land(spec, _readings("2024-01-01", "2024-01-03"), "2024-01-01", "2024-01-03")
    assert len(counts) == 48
    result = _ingest(spec, "2024-01-01", "2024-01-03")
    assert [(p["date"], p["rows"]) for p in result.partitions] == [
        ("2024-01-01", 48), ("2024-01-02", 48)]
    published = _published(spec)
    assert published["2024-01-02"][1] == [f"hourly/2024-01-02/{h:02d}.csv" for h in range(24)]
    manifest = lake.list_partitions(env_lake(), "sensors", "raw", "readings")[0].manifest
    first = spec.landing_dir() / "hourly/2024-01-01/00.csv"
    assert manifest["source_files"][0] == {"path": str(first), "sha256": lake.sha256_file(first),
                                           "bytes": first.stat().st_size}


def test_local_day_files_on_daylight_saving_days(tiny: LoadedSpec) -> None:
    """A 23- and a 25-hour local day; each UTC day takes its rows from two local files."""
    spec = _cadenced(tiny, "orders", "day", NY)
    spring = _land(spec, _readings("2013-03-09", "2013-03-12"), "2013-03-09", "2013-03-12")
    fall = _land(spec, _readings("2013-11-02", "2013-11-05"), "2013-11-02", "2013-11-05")
    assert (spring["orders/2013-03-10.csv"], fall["orders/2013-11-03.csv"]) == (46, 50)
    _ingest(spec, "2013-03-10", "2013-03-11")
    _ingest(spec, "2013-11-03", "2013-11-05")
    assert _published(spec) == {
        "2013-03-10": (48, ["orders/2013-03-09.csv", "orders/2013-03-10.csv"]),
        "2013-11-03": (48, ["orders/2013-11-02.csv", "orders/2013-11-03.csv"]),
        "2013-11-04": (48, ["orders/2013-11-03.csv", "orders/2013-11-04.csv"])}
    day = lake.list_partitions(env_lake(), "sensors", "raw", "readings")[0]
    times = pd.read_parquet(day.data_path)["ts"]
    assert (times.min(), times.max()) == (pd.Timestamp("2013-03-10", tz="UTC"),
                                          pd.Timestamp("2013-03-10T23:30", tz="UTC"))


def test_naive_local_times_in_local_day_files(tiny: LoadedSpec) -> None:
    """Naive times are read in `timezone` and then cut into UTC days (23-hour day)."""
    spec = _cadenced(tiny, "orders", "day", NY)
    _land(spec, _readings("2013-03-09", "2013-03-12"), "2013-03-09", "2013-03-12")
    for name in ("2013-03-09", "2013-03-10"):
        path = spec.landing_dir() / f"orders/{name}.csv"
        frame = pd.read_csv(path, parse_dates=["ts"])
        frame["ts"] = frame["ts"].dt.tz_convert(NY).dt.strftime("%Y-%m-%d %H:%M:%S")
        frame.to_csv(path, index=False)
    assert [p["rows"] for p in _ingest(spec, "2013-03-10", "2013-03-11").partitions] == [48]


def test_local_hour_files_on_daylight_saving_days(tiny: LoadedSpec) -> None:
    spec = _cadenced(tiny, "events", "hour", NY)
    counts = {**_land(spec, _readings("2013-03-10", "2013-03-11"), "2013-03-10", "2013-03-11"),
              **_land(spec, _readings("2013-11-03", "2013-11-04"), "2013-11-03", "2013-11-04")}
    assert counts["events/2013-11-03/01.csv"] == 4  # 01:00-01:59 EDT, then again EST
    assert "events/2013-03-10/02.csv" not in counts  # 02:00-02:59 never happened
    _ingest(spec, "2013-03-10", "2013-03-11")
    _ingest(spec, "2013-11-03", "2013-11-04")
    published = _published(spec)
    assert {day: rows for day, (rows, _) in published.items()} == {
        "2013-03-10": 48, "2013-11-03": 48}
    assert len(published["2013-11-03"][1]) == 23
    assert published["2013-03-10"][1][:3] == ["events/2013-03-09/19.csv",
                                              "events/2013-03-09/20.csv",
                                              "events/2013-03-09/21.csv"]


def test_one_day_of_a_month_file(tiny: LoadedSpec) -> None:
    """The month file is read (and checked) whole; only the ingested day is published."""
    spec = _cadenced(tiny, "invoices", "month")
    _land(spec, _readings("2013-03-01", "2013-04-01", "6h"), "2013-03-01", "2013-04-01")
    result = _ingest(spec, "2013-03-10", "2013-03-11")
    assert [(p["date"], p["rows"]) for p in result.partitions] == [("2013-03-10", 4)]
    assert _published(spec) == {"2013-03-10": (4, ["invoices/2013-03.csv"])}


def test_a_month_file_is_refused_before_its_month_has_ended(tiny: LoadedSpec) -> None:
    spec = _cadenced(tiny, "invoices", "month")
    _land(spec, _readings("2013-03-01", "2013-03-20", "6h"), "2013-03-01", "2013-04-01")
    with pytest.raises(DataError) as error:
        _ingest(spec, "2013-03-10", "2013-03-11", now=_utc("2013-03-20T06:00"))
    assert str(error.value).startswith(
        f"{spec.landing_dir() / 'invoices/2013-03.csv'}: holds 2013-03 (UTC month), which ends "
        "2013-04-01T00:00:00+00:00, after the run's clock 2013-03-20T06:00:00+00:00 plus "
        "sensors.yaml: sources.readings.future_tolerance (1 day, 0:00:00) (rule: a month file "
        "holds the whole month")
    assert lake.list_partitions(env_lake(), "sensors", "raw", "readings") == []
    assert _ingest(spec, "2013-03-10", "2013-03-11", now=_utc("2013-03-31T06:00")).rows == 4


@pytest.mark.parametrize(("period", "zone", "missing"), [
    ("hour", "UTC", "hourly/2024-01-01/07.csv"),
    ("day", NY, "hourly/2023-12-31.csv"),
    ("month", "UTC", "hourly/2024-01.csv")])
def test_a_missing_file_is_named(tiny: LoadedSpec, period: str, zone: str, missing: str) -> None:
    spec = _cadenced(tiny, "hourly", period, zone)
    _land(spec, _readings("2023-12-31", "2024-01-03"), "2023-12-31", "2024-01-03")
    (spec.landing_dir() / missing).unlink()
    with pytest.raises(DataError) as error:
        _ingest(spec, "2024-01-01", "2024-01-03")
    assert str(error.value).startswith(f"{spec.landing_dir() / missing}: missing: source "
                                       f"'readings' delivers a file every {period}")
    assert lake.list_partitions(env_lake(), "sensors", "raw", "readings") == []


@pytest.mark.parametrize(("period", "zone", "file", "edit", "message"), [
    ("hour", "UTC", "2013-03-10/05.csv", ("T05:30", "T06:30"),
     r"05.csv: column 'ts' has 1 rows outside 2013-03-10 05:00 \(UTC hour\): .* e.g. "
     r"2013-03-10T06:30:00\+00:00"),
    ("day", NY, "2013-03-09.csv", ("2013-03-10T04:30", "2013-03-10T05:30"),
     r"rows outside 2013-03-09 \(America/New_York day\): 2013-03-09T05:00:00\+00:00 to "
     r"2013-03-10T05:00:00\+00:00, 24 h"),
    ("month", "UTC", "2013-03.csv", ("2013-03-09T12:30", "2013-04-09T12:30"),  # not the day read
     r"2013-03.csv: column 'ts' has 1 rows outside 2013-03 \(UTC month\): "
     r"2013-03-01T00:00:00\+00:00 to 2013-04-01T00:00:00\+00:00, 744 h")])
def test_rows_outside_their_files_period_fail(tiny: LoadedSpec, period: str, zone: str,
                                              file: str, edit: tuple[str, str],
                                              message: str) -> None:
    spec = _cadenced(tiny, "files", period, zone)
    _land(spec, _readings("2013-03-09", "2013-03-11"), "2013-03-09", "2013-03-11")
    path = spec.landing_dir() / "files" / file
    path.write_text(path.read_text().replace(*edit))
    with pytest.raises(DataError, match=message):
        _ingest(spec, "2013-03-10", "2013-03-11")
    assert lake.list_partitions(env_lake(), "sensors", "raw", "readings") == []


def test_keys_are_unique_across_the_files_of_a_day(tiny: LoadedSpec) -> None:
    spec = _cadenced(tiny, "hourly", "hour", keys=["sensor", "value"])
    rows = _readings("2024-01-01", "2024-01-02")
    _land(spec, rows.assign(value=rows["value"] % 2), "2024-01-01", "2024-01-02")
    with pytest.raises(DataError, match=r"hourly/2024-01-01/00.csv .. .*hourly/2024-01-01/23.csv "
                       r"\(24 files holding rows of the UTC day 2024-01-01\): 2 duplicate keys"):
        _ingest(spec, "2024-01-01", "2024-01-02")


def test_validate_samples_the_first_landed_file_of_any_cadence(tiny: LoadedSpec) -> None:
    """`pitstop validate` runs hooks on the first landed file, dated as ingest would date it."""
    spec = _cadenced(tiny, "orders", "day", NY, min_rows=1)
    _land(spec, _readings("2024-01-01", "2024-01-03"), "2024-01-01", "2024-01-03")
    frame, path = validation.landed_sample(spec, "readings")
    assert path == spec.landing_dir() / "orders/2023-12-31.csv"  # 2024-01-01 00:00-05:00 UTC
    assert set(frame[PARTITION_DAY]) == {pd.Timestamp("2024-01-01", tz="UTC")}
    assert len(frame) == 10


# --- the property: any cadence gives the partitions one daily UTC file gives --------------

CADENCES = [("hour", "UTC"), ("hour", NY), ("day", NY), ("month", "UTC"), ("day", "Asia/Kolkata")]
MINUTES = 2 * 24 * 60
"""The window: the UTC days 2013-11-02 and 2013-11-03 (New York's 25-hour day)."""


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sets(st.tuples(st.sampled_from("abc"), st.integers(0, MINUTES - 1)), max_size=40))
@example({("a", 0), ("a", 1440), ("b", 1440), ("c", MINUTES - 1)})  # rows at UTC midnights
@pytest.mark.parametrize(("period", "zone"), CADENCES)
def test_any_cadence_publishes_what_daily_utc_files_do(tiny: LoadedSpec, period: str, zone: str,
                                                       rows: set[tuple[str, int]]) -> None:
    for folder in ("daily", "cadenced"):
        shutil.rmtree(tiny.landing_dir() / folder, ignore_errors=True)
    base = pd.Timestamp("2013-11-02", tz="UTC")
    frame = pd.DataFrame({"sensor": [s for s, _ in sorted(rows)],
                          "ts": pd.to_datetime([base + pd.Timedelta(minutes=m)
                                                for _, m in sorted(rows)], utc=True),
                          "value": [float(m % 7) for _, m in sorted(rows)]})
    cut = {}
    for spec in (_cadenced(tiny, "daily"), _cadenced(tiny, "cadenced", period, zone)):
        _land(spec, frame, "2013-11-02", "2013-11-04")
        result = _ingest(spec, "2013-11-02", "2013-11-04")
        cut[spec.pipeline.sources["readings"].path] = [
            (p["date"], p["rows"], p["sha256"]) for p in result.partitions]
    daily, cadenced = cut.values()
    assert cadenced == daily
    assert sum(rows for _, rows, _ in daily) == len(frame)
