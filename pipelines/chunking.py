"""Which chunks of a range a stage maps tasks over: only those holding a day to compute.

A stage's range is cut at calendar months (`lake.month_chunks`), one mapped task per unit (an
ingest source, a feature view) and chunk. Most runs find most days unchanged
(`pipelines/skipping.py`), and a mapped task that only skips still costs a task instance: a
slot on a worker and several Execution API calls, about 0.1 s each in `dag.test()` and more on
a real executor, which made task overhead most of an unchanged run. So the stage's first
task decides every unit's days once, as its chunk tasks would, and maps only the chunks that
hold a day to compute, each cut to the days from its first to its last such day.

The days it leaves out are tallied, with their reasons, in its own result. The chunk tasks
decide their days again when they run (an input may have changed in between), so no day is
skipped on the planner's word alone and each is counted once. A unit the planner cannot decide
cheaply (a database source is read to be hashed) or whose decision fails (a missing file, a
gap in the raw data) keeps every chunk: its chunk tasks compute it, or fail with the error in
their own task, as they did before there was a planner.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pipelines import lake, skipping
from pipelines.errors import DataError, SpecError

log = logging.getLogger(__name__)

Span = tuple[dt.date, dt.date]
Decider = Callable[[dt.date, dt.date], Mapping[dt.date, skipping.Decision]]
"""A unit's decision for each day of `[start, end)` that has a partition to make."""


@dataclass(frozen=True)
class Chunk:
    """One mapped task: a unit's days `[start, end)`."""

    unit: str
    start: dt.date
    end: dt.date


@dataclass(frozen=True)
class StagePlan:
    """The chunks a stage runs, and the tally of the days it left out (`skipping.tally`)."""

    chunks: list[Chunk]
    tally: dict[str, int] = field(default_factory=dict)


def plan_stage(spans: Sequence[Span], deciders: Mapping[str, Decider | None],
               force: bool) -> StagePlan:
    """The chunks of every unit's month chunks of `spans` that hold a day to compute.

    `deciders` gives each unit's decider, or None for a unit that cannot be decided before
    its chunks run. With `force` every chunk runs whole.
    """
    chunks: list[Chunk] = []
    left_out: list[skipping.Decision] = []
    for unit, decider in deciders.items():
        for lo, hi in spans:
            decided = None if force or decider is None else _decided(unit, decider, lo, hi)
            for first, after in lake.month_chunks(lo, hi):
                if decided is None:
                    chunks.append(Chunk(unit, first, after))
                    continue
                inside = {day: d for day, d in decided.items() if first <= day < after}
                if todo := [day for day, d in inside.items() if not d.skip]:
                    cut = Chunk(unit, min(todo), max(todo) + dt.timedelta(days=1))
                    chunks.append(cut)
                    left_out += [d for day, d in inside.items() if not cut.start <= day < cut.end]
                else:
                    left_out += inside.values()
    return StagePlan(chunks, skipping.tally(left_out))


def _decided(unit: str, decider: Decider, start: dt.date, end: dt.date
             ) -> Mapping[dt.date, skipping.Decision] | None:
    """The unit's decisions, or None when deciding fails: the chunk tasks then run and
    report the error where it belongs."""
    try:
        return decider(start, end)
    except (DataError, SpecError) as exc:
        log.info("%s %s..%s: not decided here, every chunk runs (%s)", unit, start, end, exc)
        return None
