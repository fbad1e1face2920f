"""Unit tests for pipelines/chunking.py: which chunks a stage maps tasks over."""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines.chunking import Chunk, StagePlan, plan_stage
from pipelines.errors import DataError
from pipelines.skipping import CHANGED, NEW, UNCHANGED, Decision

D = dt.date
JAN, FEB, MAR = D(2024, 1, 1), D(2024, 2, 1), D(2024, 3, 1)
SKIP, NEW_DAY, CHANGED_DAY = Decision(True, UNCHANGED), Decision(False, NEW), Decision(False, CHANGED)
SKIPPED = SKIP.label


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


def deciding(todo: dict[dt.date, Decision]):  # noqa: ANN201
    """A decider: every day unchanged but those in `todo`; records the spans it was asked."""
    asked: list[tuple[dt.date, dt.date]] = []

    def decide(start: dt.date, end: dt.date) -> dict[dt.date, Decision]:
        asked.append((start, end))
        return {day: todo.get(day, SKIP) for day in _days(start, end)}

    decide.asked = asked  # type: ignore[attr-defined]
    return decide


def test_an_unchanged_range_maps_no_chunk_and_tallies_every_day() -> None:
    plan = plan_stage([(JAN, MAR)], {"orders": deciding({})}, force=False)
    assert plan == StagePlan([], {SKIPPED: 60})


def test_a_chunk_is_cut_to_its_first_and_last_day_to_compute() -> None:
    todo = {D(2024, 1, 10): CHANGED_DAY, D(2024, 1, 12): NEW_DAY, D(2024, 2, 29): NEW_DAY}
    plan = plan_stage([(JAN, MAR)], {"orders": deciding(todo)}, force=False)
    assert plan.chunks == [Chunk("orders", D(2024, 1, 10), D(2024, 1, 13)),
                           Chunk("orders", D(2024, 2, 29), MAR)]
    # the days outside the cut chunks; 2024-01-11 is inside one, and its task tallies it
    assert plan.tally == {SKIPPED: 60 - 4}


def test_every_unit_is_planned_on_its_own() -> None:
    plan = plan_stage([(JAN, FEB)], {"a": deciding({}), "b": deciding({D(2024, 1, 5): NEW_DAY})},
                      force=False)
    assert plan.chunks == [Chunk("b", D(2024, 1, 5), D(2024, 1, 6))]
    assert plan.tally == {SKIPPED: 31 + 30}


def test_force_maps_every_month_chunk_whole_without_deciding() -> None:
    decide = deciding({})
    plan = plan_stage([(D(2024, 1, 20), D(2024, 2, 3))], {"orders": decide}, force=True)
    assert plan == StagePlan([Chunk("orders", D(2024, 1, 20), FEB),
                              Chunk("orders", FEB, D(2024, 2, 3))], {})
    assert decide.asked == []


def test_a_unit_without_a_decider_keeps_every_chunk() -> None:
    plan = plan_stage([(JAN, MAR)], {"table": None, "files": deciding({})}, force=False)
    assert plan.chunks == [Chunk("table", JAN, FEB), Chunk("table", FEB, MAR)]
    assert plan.tally == {SKIPPED: 60}


def test_a_decision_that_fails_leaves_every_chunk_to_its_task() -> None:
    def broken(start: dt.date, end: dt.date) -> dict[dt.date, Decision]:
        raise DataError("orders/2024-01-03.csv: missing")

    plan = plan_stage([(JAN, MAR)], {"orders": broken}, force=False)
    assert plan == StagePlan([Chunk("orders", JAN, FEB), Chunk("orders", FEB, MAR)], {})


def test_an_unexpected_error_is_not_swallowed() -> None:
    def broken(start: dt.date, end: dt.date) -> dict[dt.date, Decision]:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        plan_stage([(JAN, FEB)], {"orders": broken}, force=False)


def test_each_span_is_decided_once_and_days_without_partitions_are_not_counted() -> None:
    sparse = {D(2024, 1, 1): SKIP, D(2024, 3, 5): NEW_DAY}  # a snapshot source: few days

    def decide(start: dt.date, end: dt.date) -> dict[dt.date, Decision]:
        asked.append((start, end))
        return {day: d for day, d in sparse.items() if start <= day < end}

    asked: list[tuple[dt.date, dt.date]] = []
    spans = [(JAN, FEB), (MAR, D(2024, 4, 1))]
    plan = plan_stage(spans, {"planes": decide}, force=False)
    assert asked == spans
    assert plan == StagePlan([Chunk("planes", D(2024, 3, 5), D(2024, 3, 6))], {SKIPPED: 1})
