"""Feature backfills: requests checked before anything is written, month chunks, reruns that
replace partitions whole."""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines import backfill, ingest, lake
from pipelines.errors import DataError
from pipelines.lake import from_env as env_lake
from pipelines.settings import MAX_BACKFILL_DAYS
from pipelines.spec import LoadedSpec

from .conftest import D1, D3, D4, write_readings


def test_backfill_reruns_replace_partitions(ingested: LoadedSpec) -> None:
    lines: list[str] = []
    results = backfill.backfill(env_lake(), ingested, D1, D4, progress=lines.append)
    assert [(r.view, r.start, r.end, r.rows) for r in results] == [
        ("last", "2024-01-01", "2024-01-04", 216)]
    sums = [p.sha256 for p in lake.list_partitions(env_lake(), "sensors", "features", "last")]
    backfill.backfill(env_lake(), ingested, D1, D4, progress=lines.append)
    assert [p.sha256 for p in lake.list_partitions(env_lake(), "sensors", "features", "last")] == sums
    assert len(sums) == 3 and lines[0].startswith("[1/1] last 2024-01-01..2024-01-04: 216 rows")
    with pytest.raises(DataError, match="unknown feature views"):
        backfill.backfill(env_lake(), ingested, D1, D4, views=["nope"])


@pytest.mark.parametrize(("start", "end", "views", "message"), [
    (D3, D1, None, "end 2024-01-01 must be after start 2024-01-03"),
    (D1, D1, None, "end 2024-01-01 must be after start 2024-01-01"),
    (dt.date(2023, 12, 31), D3, None, "before the pipeline's start_date 2024-01-01"),
    (D1, D1 + dt.timedelta(days=800), None, f"800 days is longer than {MAX_BACKFILL_DAYS}"),
    (D1, D1 + dt.timedelta(days=MAX_BACKFILL_DAYS + 1), None,
     f"{MAX_BACKFILL_DAYS + 1} days is longer than {MAX_BACKFILL_DAYS}; split the range"),
    # exactly the limit is allowed: what stops it is the missing raw data, not the length
    (D1, D1 + dt.timedelta(days=MAX_BACKFILL_DAYS), None,
     f"raw/readings has no data for {MAX_BACKFILL_DAYS - 3} days"),
    (D1, D4, ["last", "nope"], r"unknown feature views \['nope'\]; choose from \['last'\]"),
    (D1, dt.date(2024, 1, 6), None,
     r"raw/readings has no data for 2 days the range needs \(its views read 1d of history "
     r"before 2024-01-01\), from 2024-01-04 to 2024-01-05; ingest them first or end the range "
     "before 2024-01-04"),
], ids=["reversed", "empty", "before-start-date", "too-long", "one-past-the-limit",
        "at-the-limit", "unknown-view", "raw-gap"])
def test_backfill_requests_are_checked_before_writing(
        ingested: LoadedSpec, start: dt.date, end: dt.date, views: list[str] | None,
        message: str) -> None:
    with pytest.raises(DataError, match=message):
        backfill.plan_backfill(env_lake(), ingested, start, end, views)
    with pytest.raises(DataError, match=message):
        backfill.backfill(env_lake(), ingested, start, end, views, progress=lambda line: None)
    assert lake.list_partitions(env_lake(), "sensors", "features", "last") == []


def test_backfill_max_days_is_two_years() -> None:
    assert MAX_BACKFILL_DAYS == 731


def test_backfill_plan_is_views_by_month_chunks(ingested: LoadedSpec) -> None:
    assert backfill.plan_backfill(env_lake(), ingested, D1, D4) == [("last", (D1, D4))]
    assert backfill.plan_backfill(env_lake(), ingested, D1, D4, ["last"]) == [("last", (D1, D4))]


def _land(spec: LoadedSpec, start: dt.date, end: dt.date) -> None:
    """Readings for `[start, end)` landed and ingested."""
    for day in lake.days(start, end):
        write_readings(spec.landing_dir(), day)
    ingest.ingest(env_lake(), spec, "readings", start, end)


JAN29, JAN30, FEB1, FEB3 = (dt.date(2024, 1, 29), dt.date(2024, 1, 30), dt.date(2024, 2, 1),
                            dt.date(2024, 2, 3))


def test_a_backfill_across_months_runs_one_chunk_per_month(ingested: LoadedSpec) -> None:
    """Jan 30 to Feb 2: two chunks, split at the month boundary, each its own compute."""
    _land(ingested, JAN29, FEB3)  # Jan 29 is the first day's one-day lookback
    assert backfill.plan_backfill(env_lake(), ingested, JAN30, FEB3) == [
        ("last", (JAN30, FEB1)), ("last", (FEB1, FEB3))]
    lines: list[str] = []
    results = backfill.backfill(env_lake(), ingested, JAN30, FEB3, progress=lines.append)
    assert [(r.start, r.end, r.partitions) for r in results] == [
        ("2024-01-30", "2024-02-01", 2), ("2024-02-01", "2024-02-03", 2)]
    assert [line.split(":")[0] for line in lines] == [
        "[1/2] last 2024-01-30..2024-02-01", "[2/2] last 2024-02-01..2024-02-03"]
    assert [p.day for p in lake.list_partitions(env_lake(), "sensors", "features", "last")
            ] == lake.days(JAN30, FEB3)


def test_a_backfill_whose_lookback_has_no_raw_data_is_refused_by_the_plan(
        ingested: LoadedSpec) -> None:
    _land(ingested, JAN30, FEB3)  # the view's one-day lookback needs Jan 29 too
    with pytest.raises(DataError, match="raw/readings.* 2024-01-29"):
        backfill.plan_backfill(env_lake(), ingested, JAN30, FEB3)


def test_the_backfill_dags_plan_maps_only_chunks_holding_a_day_to_compute(
        ingested: LoadedSpec) -> None:
    """Across two months: before any compute both chunks; after it none (every day tallied
    as skipped); a changed raw day only its own month's chunk, cut to the days that read it;
    `force` every chunk again. A bad request is refused as by `plan_backfill`."""
    from pipelines.chunking import Chunk

    _land(ingested, JAN29, FEB3)
    store = env_lake()
    fresh = backfill.plan_backfill_chunks(store, ingested, JAN30, FEB3)
    assert fresh.chunks == [Chunk("last", JAN30, FEB1), Chunk("last", FEB1, FEB3)]
    backfill.backfill(store, ingested, JAN30, FEB3, progress=lambda line: None)
    done = backfill.plan_backfill_chunks(store, ingested, JAN30, FEB3)
    assert done.chunks == [] and sum(done.tally.values()) == 4
    write_readings(ingested.landing_dir(), FEB1, seed=5)
    ingest.ingest(store, ingested, "readings", FEB1, dt.date(2024, 2, 2))
    changed = backfill.plan_backfill_chunks(store, ingested, JAN30, FEB3)
    assert changed.chunks == [Chunk("last", FEB1, FEB3)]  # Feb 1 and Feb 2 (lookback 1d)
    forced = backfill.plan_backfill_chunks(store, ingested, JAN30, FEB3, force=True)
    assert forced.chunks == fresh.chunks
    with pytest.raises(DataError, match="end 2024-01-30 must be after start"):
        backfill.plan_backfill_chunks(store, ingested, FEB3, JAN30)
