"""Feature views and training sets: per-day partitions, TTL, availability lag, no leakage."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from pipelines import features, ingest, lake
from pipelines.errors import DataError
from pipelines.spec import LoadedSpec

from .conftest import write_readings

D1, D3, D4 = dt.date(2024, 1, 1), dt.date(2024, 1, 3), dt.date(2024, 1, 4)


@pytest.fixture
def ingested(tiny: LoadedSpec) -> LoadedSpec:
    ingest.ingest(tiny, "readings", D1, D4)
    return tiny


def test_view_publishes_every_day_with_created_time(ingested: LoadedSpec) -> None:
    result = features.compute_view(ingested, "last", D1, D4)
    assert result.partitions == 3 and result.rows == 3 * 72
    part = lake.list_partitions("features", "last")[1]
    frame = pd.read_parquet(part.data_path)
    assert (frame["created_time"] - frame["event_time"] == pd.Timedelta(minutes=10)).all()
    assert (frame["event_time"].dt.date == part.day).all()
    assert {p["path"].rsplit("=", 1)[1] for p in part.manifest["inputs"]} == {
        "2024-01-01", "2024-01-02"}  # the day and its one-day lookback


def test_view_needs_its_raw_partitions(tiny: LoadedSpec) -> None:
    ingest.ingest(tiny, "readings", D1, dt.date(2024, 1, 2))
    with pytest.raises(DataError, match="raw/readings: 2 day partitions missing from 2024-01-02"):
        features.compute_view(tiny, "last", D1, D4)


def test_training_set_respects_lag_and_ttl(ingested: LoadedSpec) -> None:
    features.compute_view(ingested, "last", D1, D4)
    frame, inputs = features.assemble_training_frame(ingested, D1, D4)
    assert len(frame) == 3 * 72 and frame["reading_id"].is_unique
    seen = frame.dropna(subset=["last__as_of"])
    # visible = created (event + 10 min) at or before the cutoff (reading time - 30 min)
    assert (seen["last__as_of"] + pd.Timedelta(minutes=10) <= seen["cutoff"]).all()
    # hourly readings, cutoff 30 min before the hour: the winner is the reading one hour back
    assert (seen["cutoff"] - seen["last__as_of"] == pd.Timedelta(minutes=30)).all()
    first = frame[frame["cutoff"] < pd.Timestamp("2024-01-01T00:10Z")]
    assert first["last__value"].isna().all()  # nothing known yet at the very start
    assert len(inputs["features"]["last"]) == 3


def test_future_data_never_changes_past_rows(ingested: LoadedSpec) -> None:
    """Rewrite the whole last day: rows whose cutoff precedes it must not change."""
    features.compute_view(ingested, "last", D1, D4)
    before, _ = features.assemble_training_frame(ingested, D1, D4)
    write_readings(ingested.landing_dir(), D3, seed=99)
    ingest.ingest(ingested, "readings", D3, D4)
    features.compute_view(ingested, "last", D3, D4)
    after, _ = features.assemble_training_frame(ingested, D1, D4)
    past = before["cutoff"] < pd.Timestamp(D3, tz="UTC")
    seen = ["last__value", "last__as_of"]
    pd.testing.assert_frame_equal(before.loc[past, seen], after.loc[past, seen])
    assert not before[~past]["last__value"].equals(after[~past]["last__value"])


def test_dataset_id_is_content_addressed(ingested: LoadedSpec) -> None:
    features.compute_view(ingested, "last", D1, D4)
    first = features.build_training_set(ingested, D1, D4)
    again = features.build_training_set(ingested, D1, D4)
    assert first.dataset_id == again.dataset_id and len(first.dataset_id) == 64
    shorter = features.build_training_set(ingested, D1, D3)
    assert shorter.dataset_id != first.dataset_id
    manifest = lake.read_manifest(lake.lake_root() / first.path)
    assert manifest["dataset_id"] == first.dataset_id and manifest["rows"] == 216


def test_backfill_reruns_replace_partitions(ingested: LoadedSpec) -> None:
    lines: list[str] = []
    features.backfill(ingested, D1, D4, progress=lines.append)
    sums = [p.sha256 for p in lake.list_partitions("features", "last")]
    features.backfill(ingested, D1, D4, progress=lines.append)
    assert [p.sha256 for p in lake.list_partitions("features", "last")] == sums
    assert len(sums) == 3 and lines[0].startswith("[1/1] last 2024-01-01..2024-01-04")
    with pytest.raises(DataError, match="unknown feature views"):
        features.backfill(ingested, D1, D4, views=["nope"])


@pytest.mark.parametrize(("start", "end", "views", "message"), [
    (D3, D1, None, "end 2024-01-01 must be after start 2024-01-03"),
    (dt.date(2023, 12, 31), D3, None, "before the pipeline's start_date 2024-01-01"),
    (D1, D1 + dt.timedelta(days=800), None, "800 days is longer than 731"),
    (D1, D4, ["last", "nope"], r"unknown feature views \['nope'\]; choose from \['last'\]"),
    (D1, dt.date(2024, 1, 6), None,
     "raw/readings has no data for 2 days of the range, from 2024-01-04 to 2024-01-05"),
])
def test_backfill_requests_are_checked_before_writing(
        ingested: LoadedSpec, start: dt.date, end: dt.date, views: list[str] | None,
        message: str) -> None:
    with pytest.raises(DataError, match=message):
        features.plan_backfill(ingested, start, end, views)
    assert lake.list_partitions("features", "last") == []


def test_backfill_plan_is_views_by_month_chunks(ingested: LoadedSpec) -> None:
    plan = features.plan_backfill(ingested, D1, D4)
    assert plan == [("last", (D1, D4))]
