"""Feature backfills: recompute views over a long range, checked before anything is written.

A request (range, views) is planned into (view, month chunk) units of work; each unit is
one `compute_view` call, so a backfill replaces partitions whole and a rerun gives the same
bytes.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from pipelines import chunking, lake, skipping
from pipelines.errors import DataError
from pipelines.features import ViewResult, compute_view, plan_chunks
from pipelines.provenance import ProducedBy
from pipelines.settings import MAX_BACKFILL_DAYS
from pipelines.spec import LoadedSpec


def plan_backfill(store: lake.Lake, spec: LoadedSpec, start: dt.date, end: dt.date,
                  views: list[str] | None = None) -> list[tuple[str, tuple[dt.date, dt.date]]]:
    """Check a backfill request and split it into (view, month chunk) units of work.

    Every rule a request can break is checked here, before anything is written, and the
    message says what to change.
    """
    names = views or list(spec.pipeline.feature_views)
    if unknown := [v for v in names if v not in spec.pipeline.feature_views]:
        raise DataError(f"unknown feature views {unknown}; choose from "
                        f"{sorted(spec.pipeline.feature_views)}")
    if not start < end:
        raise DataError(f"backfill: end {end} must be after start {start} (end is exclusive)")
    if start < spec.pipeline.start_date:
        raise DataError(f"backfill: start {start} is before the pipeline's start_date "
                        f"{spec.pipeline.start_date}; start on or after it")
    if (end - start).days > MAX_BACKFILL_DAYS:
        raise DataError(f"backfill: {(end - start).days} days is longer than "
                        f"{MAX_BACKFILL_DAYS}; split the range")
    views = [spec.pipeline.feature_views[v] for v in names]
    for source in sorted({s for view in views for s in view.sources}):
        if spec.pipeline.sources[source].kind != "events":
            continue
        lookback = max(-(-view.lookback // dt.timedelta(days=1))
                       for view in views if source in view.sources)
        first = max(spec.pipeline.start_date, start - dt.timedelta(days=lookback))
        have = {p.day for p in lake.list_partitions(store, spec.name, "raw", source, first, end)}
        if missing := [d for d in lake.days(first, end) if d not in have]:
            raise DataError(f"backfill: raw/{source} has no data for {len(missing)} days the "
                            f"range needs (its views read {lookback}d of history before {start}), "
                            f"from {missing[0]} to {missing[-1]}; ingest them first"
                            + (f" or end the range before {missing[0]}"
                               if missing[0] >= start else ""))
    return [(v, chunk) for chunk in lake.month_chunks(start, end) for v in names]


def plan_backfill_chunks(store: lake.Lake, spec: LoadedSpec, start: dt.date, end: dt.date,
                         views: list[str] | None = None, force: bool = False
                         ) -> chunking.StagePlan:
    """The backfill DAG's plan: the request checked whole (`plan_backfill`), then only the
    (view, month) chunks holding a day to compute, cut to those days, as a features run
    plans them (`features.plan_chunks`); `force` keeps every chunk."""
    plan_backfill(store, spec, start, end, views)
    return plan_chunks(store, spec, [(start, end)], views, force)


def backfill(
    store: lake.Lake,
    spec: LoadedSpec,
    start: dt.date,
    end: dt.date,
    views: list[str] | None = None,
    progress: Callable[[str], None] = print,
    produced_by: ProducedBy | None = None,
    force: bool = False,
) -> list[ViewResult]:
    """Recompute views over `[start, end)` in month chunks; reruns replace partitions whole.

    `produced_by` (who, why, which command) goes into every partition's manifest. Days whose
    raw inputs, view definition and code are unchanged are skipped unless `force`.
    """
    chunks = plan_backfill(store, spec, start, end, views)
    results, began = [], time.perf_counter()
    for done, (view_name, (lo, hi)) in enumerate(chunks, start=1):
        results.append(compute_view(store, spec, view_name, lo, hi, produced_by=produced_by,
                                    force=force))
        rows = sum(r.rows for r in results)
        elapsed = time.perf_counter() - began
        progress(f"[{done}/{len(chunks)}] {view_name} {lo}..{hi}: {results[-1].rows} rows "
                 f"({rows / max(elapsed, 1e-9):,.0f} rows/s overall; "
                 f"{skipping.describe(results[-1].tally)})")
    return results
