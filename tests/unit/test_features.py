"""Feature views: per-day partitions, availability lag, lookback inputs, raw gaps refused.

Training sets built from the views are in `test_training_set.py`, backfills in
`test_backfill.py`.
"""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines import features, ingest, lake
from pipelines.errors import DataError
from pipelines.spec import LoadedSpec

from .conftest import D1, D2, D4


def test_view_publishes_every_day_with_created_time(ingested: LoadedSpec) -> None:
    result = features.compute_view(ingested, "last", D1, D4)
    assert result.partitions == 3 and result.rows == 3 * 72
    part = lake.list_partitions("sensors", "features", "last")[1]
    frame = pd.read_parquet(part.data_path)
    assert (frame["created_time"] - frame["event_time"] == pd.Timedelta(minutes=10)).all()
    assert (frame["event_time"].dt.date == part.day).all()
    assert {p["path"].rsplit("=", 1)[1] for p in part.manifest["inputs"]} == {
        "2024-01-01", "2024-01-02"}  # the day and its one-day lookback


def test_view_needs_its_raw_partitions(tiny: LoadedSpec) -> None:
    ingest.ingest(tiny, "readings", D1, D2)
    with pytest.raises(DataError, match="raw/readings: 2 day partitions missing from 2024-01-02"):
        features.compute_view(tiny, "last", D1, D4)
