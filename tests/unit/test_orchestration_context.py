"""What a task reads from its Airflow context: its window, its triggering spans, who ran it.

The contexts here are small fakes of what the task runner passes (`ti` and `dag_run` as plain
attribute objects, asset events as objects with `.extra`), so every branch is reached
without a scheduler.
"""

from __future__ import annotations

import datetime as dt
import getpass
import re
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.api.datamodels._generated import DagRunType
from airflow.sdk.exceptions import AirflowFailException

from pipelines.orchestration.context import DAG_TEST_USER, run_clock, run_context, triggering_spans, window
from pipelines.provenance import ProducedBy

D = dt.date


def at(iso: str) -> dt.datetime:
    return dt.datetime.fromisoformat(iso).replace(tzinfo=dt.UTC)


def context(params: dict[str, Any] | None = None, interval: tuple[str, str] | None = None,
            run_after: str = "2013-03-05T12:00:00", events: Any = None,
            **dag_run: Any) -> dict[str, Any]:
    """A task context; without `interval`, a manual run's (no data interval)."""
    start, end = (at(interval[0]), at(interval[1])) if interval else (None, None)
    return {
        "params": params or {},
        "data_interval_start": start,
        "data_interval_end": end,
        "dag_run": SimpleNamespace(run_after=at(run_after), **dag_run),
        "ti": SimpleNamespace(dag_id="sensors_train", run_id="manual__2013-03-05",
                              task_id="build_training_set", map_index=-1, try_number=2),
        "triggering_asset_events": events,
    }


DAY = ("2013-03-04T00:00:00", "2013-03-05T00:00:00")


@pytest.mark.parametrize(("ctx", "default_start", "expected"), [
    (context(interval=DAY), None, (D(2013, 3, 4), D(2013, 3, 5))),
    (context(interval=("2013-03-01T00:00:00", "2013-03-08T00:00:00")), None,
     (D(2013, 3, 1), D(2013, 3, 8))),
    # a manual run has no interval: the day before it was triggered
    (context(run_after="2013-03-05T12:00:00"), None, (D(2013, 3, 4), D(2013, 3, 5))),
    (context(run_after="2013-03-05T00:00:00"), None, (D(2013, 3, 4), D(2013, 3, 5))),
    # params win over the interval, each on its own
    (context({"start": "2013-01-10", "end": "2013-02-01"}, DAY), None,
     (D(2013, 1, 10), D(2013, 2, 1))),
    (context({"start": "2013-02-01"}, DAY), None, (D(2013, 2, 1), D(2013, 3, 5))),
    (context({"end": "2013-03-10"}, DAY), None, (D(2013, 3, 4), D(2013, 3, 10))),
    # default_start replaces the interval's start, never a start param
    (context(interval=DAY), D(2013, 1, 1), (D(2013, 1, 1), D(2013, 3, 5))),
    (context(), D(2013, 1, 1), (D(2013, 1, 1), D(2013, 3, 5))),
    (context({"start": "2013-02-01"}, DAY), D(2013, 1, 1), (D(2013, 2, 1), D(2013, 3, 5))),
], ids=["interval", "week", "manual", "manual-midnight", "params", "start-param",
        "end-param", "default-start", "manual-default-start", "start-param-beats-default"])
def test_window(ctx: dict[str, Any], default_start: dt.date | None,
                expected: tuple[dt.date, dt.date]) -> None:
    assert window(ctx, default_start=default_start) == expected


@pytest.mark.parametrize(("ctx", "default_start", "says"), [
    (context({"start": "2013-03-05"}, DAY), None, "start 2013-03-05 must be before end 2013-03-05"),
    (context({"start": "2013-03-06", "end": "2013-03-01"}), None,
     "start 2013-03-06 must be before end 2013-03-01"),
    (context(interval=DAY), D(2013, 4, 1), "start 2013-04-01 must be before end 2013-03-05"),
], ids=["empty", "reversed", "default-start-after-end"])
def test_an_empty_or_reversed_window_fails_without_retry(ctx: dict[str, Any],
                                                         default_start: dt.date | None,
                                                         says: str) -> None:
    with pytest.raises(AirflowFailException, match=re.escape(says)):
        window(ctx, default_start=default_start)


def event(start: str, end: str) -> SimpleNamespace:
    return SimpleNamespace(extra={"start": start, "end": end})


@pytest.mark.parametrize("events", [None, {}, {"raw.flights": []}],
                         ids=["scheduled", "no-assets", "no-events"])
def test_no_triggering_events_no_spans(events: Any) -> None:
    assert triggering_spans(context(interval=DAY, events=events)) == []


def test_spans_of_every_asset_are_merged() -> None:
    """Overlapping and touching ranges become one span; a gap stays a gap."""
    events = {
        "raw.flights": [event("2013-01-01", "2013-01-03"), event("2013-01-20", "2013-01-22")],
        "raw.weather": [event("2013-01-02", "2013-01-05"), event("2013-01-05", "2013-01-07")],
        "raw.planes": [event("2013-01-01", "2013-01-02")],
    }
    assert triggering_spans(context(events=events)) == [
        (D(2013, 1, 1), D(2013, 1, 7)), (D(2013, 1, 20), D(2013, 1, 22))]


@pytest.mark.parametrize("extra", [
    None, {}, {"start": "2013-01-01"}, {"end": "2013-01-02"},
    {"start": "2013-02-30", "end": "2013-03-02"}, {"start": 20130101, "end": 20130102},
], ids=["no-extra", "empty-extra", "no-end", "no-start", "bad-date", "not-a-string"])
def test_an_event_without_a_range_fails_saying_what_to_add(extra: Any) -> None:
    events = {"raw.flights": [event("2013-01-01", "2013-01-02"), SimpleNamespace(extra=extra)]}
    with pytest.raises(AirflowFailException, match=re.escape(
            "asset event without a valid range: each raw asset event needs "
            "extra={'start': 'YYYY-MM-DD', 'end': 'YYYY-MM-DD'}")):
        triggering_spans(context(events=events))


def test_run_context_records_who_ran_what_and_why() -> None:
    ctx = context({"reason": "retrain after the February fix"}, DAY,
                  triggering_user_name="scientist", run_type=DagRunType.MANUAL)
    assert run_context(ctx) == ProducedBy(
        dag_id="sensors_train", run_id="manual__2013-03-05", task_id="build_training_set",
        map_index=-1, try_number=2, triggered_by="scientist",
        reason="retrain after the February fix")
    assert run_context(ctx).to_json()["try"] == 2  # as Airflow names it, in every manifest


def test_run_context_without_a_user_or_reason() -> None:
    recorded = run_context(context(interval=DAY, triggering_user_name=None,
                                   run_type=DagRunType.SCHEDULED))
    assert recorded.reason is None and "reason" not in recorded.to_json()
    assert recorded.triggered_by  # falls back to the run type, never empty


@pytest.mark.parametrize("run_type", [DagRunType.SCHEDULED, DagRunType.ASSET_TRIGGERED,
                                      DagRunType.BACKFILL])
def test_run_context_names_the_run_type_when_nobody_triggered(run_type: DagRunType) -> None:
    recorded = run_context(context(interval=DAY, triggering_user_name=None, run_type=run_type))
    assert recorded.triggered_by == run_type.value


def test_the_run_clock_is_when_the_run_started_else_when_it_was_due() -> None:
    started = context(start_date=at("2013-03-05T12:03:00"))
    assert run_clock(started) == at("2013-03-05T12:03:00")
    assert run_clock(context(start_date=None)) == at("2013-03-05T12:00:00")


def test_a_dag_test_run_names_the_os_user_who_ran_it() -> None:
    """`dag.test()` calls every run's user "dag_test"; `pitstop run` runs tasks in-process,
    so the record names the person at the shell instead."""
    recorded = run_context(context(interval=DAY, triggering_user_name=DAG_TEST_USER,
                                   run_type=DagRunType.MANUAL))
    assert recorded.triggered_by == getpass.getuser() != DAG_TEST_USER
