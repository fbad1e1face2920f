"""Feature views and training sets, point in time.

`compute_view` runs one feature view over a date range in one vectorized pass and publishes
one partition per day. `build_training_set` takes the label spine of a window and as-of joins
every view onto it with `point_in_time_join`, so each row sees only feature rows that existed
(were created) at its cutoff and are younger than the view's TTL. `backfill` recomputes views
over a long range in month-sized chunks.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from pipelines import ingest, lake
from pipelines.errors import DataError
from pipelines.lineage import feature_definitions_hash, frame_content_hash
from pipelines.pit import point_in_time_join
from pipelines.spec import LoadedSpec

__all__ = ["backfill", "build_training_set", "compute_view", "point_in_time_join"]

EVENT_TIME = "event_time"
CREATED_TIME = "created_time"
AS_OF = "as_of"


def _utc(day: dt.date) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


def raw_inputs(
    spec: LoadedSpec, sources: Iterable[str], start: dt.date, end: dt.date
) -> tuple[dict[str, pd.DataFrame], list[dict[str, Any]]]:
    """Raw rows of `[start, end)` per source, and the partitions read (path, sha256, rows).

    Every day of an events source since the pipeline's start must be ingested; a gap is an
    error that says which partition to ingest, never a silently thinner feature.
    """
    frames, used = {}, []
    for name in sources:
        source = spec.pipeline.sources[name]
        partitions = lake.list_partitions("raw", name, start, end)
        if source.kind == "events":
            have = {p.day for p in partitions}
            first = max(start, spec.pipeline.start_date)
            if missing := [d for d in lake.days(first, end) if d not in have]:
                raise DataError(
                    f"raw/{name}: {len(missing)} day partitions missing from {missing[0]} "
                    f"(rule: ingest before computing features; run the ingest DAG for that range)"
                )
        frames[name] = ingest.read_raw(name, partitions, source.columns).to_pandas()
        used += [{"path": lake.relative(p.path), "sha256": p.sha256, "rows": p.rows}
                 for p in partitions]
    return frames, used


@dataclass(frozen=True)
class ViewResult:
    """What one `compute_view` call published; small enough for XCom."""

    view: str
    start: str
    end: str
    rows: int
    partitions: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_view_output(frame: pd.DataFrame, view_name: str, keys: list[str]) -> None:
    for column in [*keys, EVENT_TIME]:
        if column not in frame.columns:
            raise DataError(f"feature view {view_name}: output lacks column {column!r}")
    if not isinstance(frame[EVENT_TIME].dtype, pd.DatetimeTZDtype):
        raise DataError(
            f"feature view {view_name}: column {EVENT_TIME!r} must be timezone-aware UTC, "
            f"got {frame[EVENT_TIME].dtype}"
        )


def compute_view(
    spec: LoadedSpec,
    view_name: str,
    start: dt.date,
    end: dt.date,
    produced_by: dict[str, Any] | None = None,
) -> ViewResult:
    """Compute one view for `[start, end)` and publish a partition per day (empty days too)."""
    began = time.perf_counter()
    view = spec.pipeline.feature_views[view_name]
    history = start - dt.timedelta(days=-(-view.lookback // dt.timedelta(days=1)))
    raw, used = raw_inputs(spec, view.sources, history, end)
    frame = spec.resolve(view.function)(raw)
    _check_view_output(frame, view_name, view.keys)
    if CREATED_TIME not in frame.columns:
        frame[CREATED_TIME] = frame[EVENT_TIME] + view.availability_lag
    frame = frame[frame[EVENT_TIME].notna()]
    in_range = (frame[EVENT_TIME] >= _utc(start)) & (frame[EVENT_TIME] < _utc(end))
    frame = frame[in_range].sort_values([EVENT_TIME, *view.keys, CREATED_TIME], kind="stable")
    day_of = frame[EVENT_TIME].dt.floor("D")
    definitions = feature_definitions_hash(spec)
    total = 0
    for day in lake.days(start, end):
        part = frame[day_of == _utc(day)]
        table = pa.Table.from_pandas(part, preserve_index=False)
        reads = [u for u in used if _reads_day(u["path"], day, view.lookback)]

        def write(tmp: Path, table: pa.Table = table, day: dt.date = day,
                  reads: list[dict[str, Any]] = reads) -> dict[str, Any]:
            lake.write_parquet(table, tmp / lake.DATA_FILE)
            return {"dataset": f"features/{view_name}", "date": day.isoformat(),
                    "view": view_name, "definitions_hash": definitions, "inputs": reads,
                    "produced_by": produced_by or {}}

        lake.publish_dir(lake.partition_dir("features", view_name, day), write)
        total += len(part)
    return ViewResult(view_name, start.isoformat(), end.isoformat(), total,
                      len(lake.days(start, end)), round(time.perf_counter() - began, 3))


def _reads_day(path: str, day: dt.date, lookback: dt.timedelta) -> bool:
    """Whether a raw partition (by its date) can feed features of `day`."""
    read_day = dt.date.fromisoformat(path.rsplit("date=", 1)[1][:10])
    return day - dt.timedelta(days=-(-lookback // dt.timedelta(days=1))) <= read_day <= day


def feature_partitions(
    spec: LoadedSpec, view_name: str, start: dt.date, end: dt.date
) -> list[lake.Partition]:
    """Partitions a window's rows can see: back to the TTL (or all history), up to `end`."""
    view = spec.pipeline.feature_views[view_name]
    first = None if view.ttl is None else start - dt.timedelta(days=view.ttl.days + 1)
    partitions = lake.list_partitions("features", view_name, first, end)
    have = {p.day for p in partitions}
    if missing := [d for d in lake.days(max(start, spec.pipeline.start_date), end)
                   if d not in have]:
        raise DataError(
            f"features/{view_name}: {len(missing)} day partitions missing from {missing[0]} "
            f"(rule: compute features before the training set; run `pitstop backfill`)"
        )
    return partitions


def _read_features(partitions: list[lake.Partition]) -> pa.Table:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con.sql(
        f"SELECT *, {EVENT_TIME} AS {AS_OF} FROM read_parquet(?)",
        params=[[str(p.data_path) for p in partitions]],
    ).to_arrow_table()


@dataclass(frozen=True)
class TrainingSet:
    """A published training set: content-addressed by `dataset_id`."""

    dataset_id: str
    path: str
    rows: int
    start: str
    end: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def assemble_training_frame(
    spec: LoadedSpec, start: dt.date, end: dt.date
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Spine of `[start, end)` as-of joined to every view; also returns the inputs used."""
    label = spec.pipeline.label
    raw, spine_inputs = raw_inputs(spec, label.sources, start, end)
    spine = spec.resolve(label.function)(raw)
    for column in (label.entity, label.prediction_time, label.target):
        if column not in spine.columns:
            raise DataError(f"label {label.function}: output lacks column {column!r}")
    if spine[label.entity].isna().any() or spine[label.entity].duplicated().any():
        raise DataError(f"label {label.function}: column {label.entity!r} must be unique, non-null")
    feature_inputs: dict[str, list[dict[str, Any]]] = {}
    for view_name, view in spec.pipeline.feature_views.items():
        partitions = feature_partitions(spec, view_name, start, end)
        feature_inputs[view_name] = [
            {"path": lake.relative(p.path), "sha256": p.sha256, "rows": p.rows}
            for p in partitions
        ]
        spine = point_in_time_join(
            spine, _read_features(partitions), keys=view.keys,
            spine_time=label.prediction_time, feature_time=EVENT_TIME,
            created_time=CREATED_TIME, ttl=view.ttl, prefix=f"{view_name}__",
        )
    frame = spine.sort_values(label.entity, kind="stable").reset_index(drop=True)
    return frame, {"spine": spine_inputs, "features": feature_inputs}


def build_training_set(
    spec: LoadedSpec,
    start: dt.date,
    end: dt.date,
    produced_by: dict[str, Any] | None = None,
) -> TrainingSet:
    """Build, hash and publish the training set of `[start, end)`; same content, same ID."""
    frame, inputs = assemble_training_frame(spec, start, end)
    definitions = feature_definitions_hash(spec)
    dataset_id = frame_content_hash(frame, definitions)
    folder = lake.lake_root() / "datasets" / spec.name / dataset_id
    if lake.read_manifest(folder) is None:

        def write(tmp: Path) -> dict[str, Any]:
            lake.write_parquet(pa.Table.from_pandas(frame, preserve_index=False),
                               tmp / lake.DATA_FILE)
            return {"dataset": f"datasets/{spec.name}", "dataset_id": dataset_id,
                    "window": {"start": start.isoformat(), "end": end.isoformat()},
                    "rows": len(frame), "columns": {c: str(t) for c, t in frame.dtypes.items()},
                    "definitions_hash": definitions, "inputs": inputs,
                    "produced_by": produced_by or {}}

        lake.publish_dir(folder, write)
    return TrainingSet(dataset_id, lake.relative(folder), len(frame),
                       start.isoformat(), end.isoformat())


MAX_BACKFILL_DAYS = 731


def plan_backfill(spec: LoadedSpec, start: dt.date, end: dt.date, views: list[str] | None = None
                  ) -> list[tuple[str, tuple[dt.date, dt.date]]]:
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
    for source in sorted({s for v in names for s in spec.pipeline.feature_views[v].sources}):
        if spec.pipeline.sources[source].kind != "events":
            continue
        have = {p.day for p in lake.list_partitions("raw", source, start, end)}
        if missing := [d for d in lake.days(start, end) if d not in have]:
            raise DataError(f"backfill: raw/{source} has no data for {len(missing)} days of "
                            f"the range, from {missing[0]} to {missing[-1]}; ingest them first "
                            f"or end the range before {missing[0]}")
    return [(v, chunk) for chunk in lake.month_chunks(start, end) for v in names]


def backfill(
    spec: LoadedSpec,
    start: dt.date,
    end: dt.date,
    views: list[str] | None = None,
    progress: Callable[[str], None] = print,
) -> list[ViewResult]:
    """Recompute views over `[start, end)` in month chunks; reruns replace partitions whole."""
    chunks = plan_backfill(spec, start, end, views)
    results, began = [], time.perf_counter()
    for done, (view_name, (lo, hi)) in enumerate(chunks, start=1):
        results.append(compute_view(spec, view_name, lo, hi))
        rows = sum(r.rows for r in results)
        elapsed = time.perf_counter() - began
        progress(f"[{done}/{len(chunks)}] {view_name} {lo}..{hi}: {results[-1].rows} rows "
                 f"({rows / max(elapsed, 1e-9):,.0f} rows/s overall)")
    return results
