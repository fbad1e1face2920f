"""Bad parameters: a range or a name that cannot be right is refused before anything is
written, with a message saying what to change."""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines import backfill, features, ingest, training_set
from pipelines.errors import DataError
from pipelines.lake import from_env as env_lake
from pipelines.orchestration.runner import check_request
from pipelines.spec import LoadedSpec
from tests.faults.invariants import (
    D1,
    D3,
    D4,
    Case,
    assert_clear_error,
    assert_lake_sound,
    assert_nothing_published,
    params,
)

BACKFILLS = [
    Case("end-before-start", "`backfill: end 2024-01-01 must be after start 2024-01-03 (end is "
         "exclusive)`", (D3, D1, None), ("end 2024-01-01 must be after start 2024-01-03",)),
    Case("over-backfill-limit", "`backfill: 800 days is longer than 731; split the range`",
         (D1, D1 + dt.timedelta(days=800), None), ("800 days is longer than 731",
                                                   "split the range")),
    Case("before-start-date", "`backfill: start 2023-12-25 is before the pipeline's start_date "
         "2024-01-01; start on or after it`", (dt.date(2023, 12, 25), D3, None),
         ("start 2023-12-25 is before the pipeline's start_date 2024-01-01",)),
    Case("unknown-view", "`unknown feature views ['lasst']; choose from ['last']`",
         (D1, D4, ["lasst"]), ("unknown feature views ['lasst']; choose from ['last']",)),
    Case("raw-not-ingested", "`backfill: raw/readings has no data for 2 days the range needs ..., "
         "from 2024-01-04 to 2024-01-05; ingest them first or end the range before 2024-01-04`",
         (D1, D4 + dt.timedelta(days=2), None),
         ("raw/readings has no data for 2 days", "ingest them first")),
]

@pytest.mark.parametrize("case", params(*BACKFILLS))
def test_a_bad_backfill_request_writes_nothing(ingested: LoadedSpec, case: Case) -> None:
    """Invariant: `backfill` checks the whole request (`plan_backfill`) before computing any
    chunk: a DataError saying what to change, and no feature partition published."""
    start, end, views = case.fault
    with pytest.raises(DataError) as error:
        backfill.backfill(env_lake(), ingested, start, end, views, progress=lambda _: None)
    assert_clear_error(error, DataError, *case.needles)
    assert_nothing_published(ingested, "features", "last")

def test_a_run_ending_before_it_starts_is_refused_before_any_stage(tiny: LoadedSpec) -> None:
    """Invariant: `pitstop run` refuses end <= start before ingest runs (`check_request`).

    Sees: `run: --end 2024-01-01 must be after --start 2024-01-04 (end is exclusive)`.
    """
    with pytest.raises(DataError) as error:
        check_request(tiny, D4, D1, None, "test")
    assert_clear_error(error, DataError, "--end 2024-01-01 must be after --start 2024-01-04")
    assert_nothing_published(tiny, "raw", "readings")

def test_an_evaluation_start_outside_the_window_builds_no_training_set(
        ingested: LoadedSpec) -> None:
    """Invariant: a split whose evaluation start is outside the window is refused before the
    training set is built: nothing is published under datasets/.

    Sees: `split: evaluation start 2024-01-10 must fall inside the window
    2024-01-01..2024-01-04 (rule: both train and evaluation sets are non-empty)`.
    """
    features.compute_view(env_lake(), ingested, "last", D1, D4)
    with pytest.raises(DataError) as error:
        training_set.prepare(env_lake(), ingested, D1, D4, eval_start=dt.date(2024, 1, 10))
    assert_clear_error(error, DataError, "evaluation start 2024-01-10 must fall inside the window")
    assert_nothing_published(ingested, "datasets", "")

def test_features_before_ingest_name_the_missing_partitions(tiny: LoadedSpec) -> None:
    """Invariant: computing a view whose raw days are not ingested fails with a DataError
    naming the first missing partition and the command to run; no feature is published.

    Sees: `raw/readings: 3 day partitions missing from 2024-01-01 (rule: ingest before
    computing features; run the ingest DAG for that range)`.
    """
    with pytest.raises(DataError) as error:
        features.compute_view(env_lake(), tiny, "last", D1, D4)
    assert_clear_error(error, DataError, "raw/readings: 3 day partitions missing from 2024-01-01",
                       "run the ingest DAG")
    assert_nothing_published(tiny, "features", "last")

def test_an_ingest_range_ending_before_it_starts_is_refused(tiny: LoadedSpec) -> None:
    """Invariant: ingest of an empty or reversed range is an error saying so, not a
    success that published nothing.

    Sees: `ingest readings: end 2024-01-01 must be after start 2024-01-04 (end is exclusive)`.
    """
    with pytest.raises(DataError, match="must be after"):
        ingest.ingest(env_lake(), tiny, "readings", D4, D1)
    assert_lake_sound()

def test_an_unknown_view_name_is_a_clear_error(ingested: LoadedSpec) -> None:
    """Invariant: computing a view the spec does not declare is a DataError naming the view
    and the ones declared (as `backfill` says), not a bare KeyError.

    Sees: `feature view 'lasst' is not declared in sensors.yaml; the views are ['last']`.
    """
    with pytest.raises(DataError, match=r"'lasst'.*\['last'\]"):
        features.compute_view(env_lake(), ingested, "lasst", D1, D4)

