"""Feature views: per-day partitions, availability lag, lookback inputs, raw gaps refused.

Training sets built from the views are in `test_training_set.py`, backfills in
`test_backfill.py`.
"""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines import features, ingest, lake
from pipelines.errors import DataError
from pipelines.lake import from_env as env_lake
from pipelines.spec import LoadedSpec

from .conftest import D1, D2, D4, amend


def test_view_publishes_every_day_with_created_time(ingested: LoadedSpec) -> None:
    result = features.compute_view(env_lake(), ingested, "last", D1, D4)
    assert result.partitions == 3 and result.rows == 3 * 72
    part = lake.list_partitions(env_lake(), "sensors", "features", "last")[1]
    frame = pd.read_parquet(part.data_path)
    assert (frame["created_time"] - frame["event_time"] == pd.Timedelta(minutes=10)).all()
    assert (frame["event_time"].dt.date == part.day).all()
    assert {p["path"].rsplit("=", 1)[1] for p in part.manifest["inputs"]} == {
        "2024-01-01", "2024-01-02"}  # the day and its one-day lookback


def test_view_needs_its_raw_partitions(tiny: LoadedSpec) -> None:
    ingest.ingest(env_lake(), tiny, "readings", D1, D2)
    with pytest.raises(DataError, match="raw/readings: 2 day partitions missing from 2024-01-02"):
        features.compute_view(env_lake(), tiny, "last", D1, D4)


HOOKS = '''

def created_early(raw):
    """Sensor b's rows claim to exist 5 minutes before their event."""
    frame = last_value(raw)
    shift = pd.to_timedelta((frame["sensor"] == "b").astype(int) * 5, unit="min")
    return frame.assign(created_time=frame["event_time"] - shift)


def created_at_event(raw):
    return last_value(raw).assign(created_time=lambda f: f["event_time"])


def created_naive(raw):
    frame = last_value(raw)
    return frame.assign(created_time=frame["event_time"].dt.tz_localize(None))
'''


def _hooked(spec: LoadedSpec, function: str) -> LoadedSpec:
    """The spec with view `last` computed by another function of the hooks module."""
    with open(spec.hook_file("hooks:last_value"), "a") as handle:
        handle.write(HOOKS)
    view = spec.pipeline.feature_views["last"].model_copy(update={"function": function})
    return amend(spec, feature_views={"last": view})


def test_a_row_created_before_its_event_fails_the_view(ingested: LoadedSpec) -> None:
    with pytest.raises(DataError) as error:
        features.compute_view(env_lake(), _hooked(ingested, "hooks:created_early"), "last", D1, D4)
    assert str(error.value).startswith(
        "feature view last: 72 rows have created_time before event_time (or none), e.g. "
        "{'sensor': 'b', 'event_time': '2024-01-01T00:00:00+00:00', "
        "'created_time': '2023-12-31T23:55:00+00:00'}")
    assert lake.list_partitions(env_lake(), "sensors", "features", "last") == []


def test_created_time_must_be_timezone_aware(ingested: LoadedSpec) -> None:
    with pytest.raises(DataError, match="'created_time' must be timezone-aware UTC"):
        features.compute_view(env_lake(), _hooked(ingested, "hooks:created_naive"), "last", D1, D4)


def test_a_row_created_at_its_event_is_accepted(ingested: LoadedSpec) -> None:
    result = features.compute_view(env_lake(), _hooked(ingested, "hooks:created_at_event"), "last", D1, D4)
    frame = pd.read_parquet(lake.list_partitions(env_lake(), "sensors", "features", "last")[0].data_path)
    assert result.rows == 3 * 72 and (frame["created_time"] == frame["event_time"]).all()
