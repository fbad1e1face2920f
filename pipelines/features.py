"""Feature views, point in time.

`compute_view` runs one feature view over a date range in one vectorized pass and publishes
one partition per day; each row carries `created_time` (event time plus the view's
availability lag, unless the hook says when it was created), which is what the training
set's as-of join (`pipelines/training_set.py`) compares with each row's cutoff.
"""

from __future__ import annotations

import bisect
import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from pipelines import chunking, ingest, lake, lineage, skipping
from pipelines.errors import DataError, SpecError
from pipelines.lineage import view_definitions_hash
from pipelines.provenance import ProducedBy
from pipelines.spec import LoadedSpec

EVENT_TIME = "event_time"
CREATED_TIME = "created_time"
AS_OF = "as_of"


def _utc(day: dt.date) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


def raw_partitions(store: lake.Lake, spec: LoadedSpec, sources: Iterable[str], start: dt.date,
                   end: dt.date) -> dict[str, list[lake.Partition]]:
    """The committed raw partitions of `[start, end)` per source (manifests only, no data).

    Every day of an events source since the pipeline's start must be ingested; a gap is an
    error that says which partition to ingest, never a silently thinner feature.
    """
    found = {}
    for name in sources:
        partitions = lake.list_partitions(store, spec.name, "raw", name, start, end)
        if spec.pipeline.sources[name].kind == "events":
            have = {p.day for p in partitions}
            first = max(start, spec.pipeline.start_date)
            if missing := [d for d in lake.days(first, end) if d not in have]:
                raise DataError(
                    f"raw/{name}: {len(missing)} day partitions missing from {missing[0]} "
                    f"(rule: ingest before computing features; run the ingest DAG for that range)"
                )
        found[name] = partitions
    return found


def input_record(store: lake.Lake, partition: lake.Partition) -> dict[str, Any]:
    """A partition as the manifests of what was made from it name it: path, sha256, rows."""
    return {"path": store.relative(partition.path), "sha256": partition.sha256,
            "rows": partition.rows}


def read_raw_inputs(store: lake.Lake, spec: LoadedSpec,
                    partitions: dict[str, list[lake.Partition]]
                    ) -> tuple[dict[str, pd.DataFrame], list[dict[str, Any]]]:
    """Raw rows per source, and the partitions read (`input_record`): `read_raw` verified
    each file against that sha256 as it read it."""
    frames = {name: ingest.read_raw(name, listed, spec.pipeline.sources[name].columns)
              .to_pandas() for name, listed in partitions.items()}
    return frames, [input_record(store, p) for listed in partitions.values() for p in listed]


@dataclass(frozen=True)
class ViewResult:
    """What one `compute_view` call published; small enough for XCom."""

    view: str
    start: str
    end: str
    rows: int
    partitions: int
    seconds: float
    tally: dict[str, int] = field(default_factory=dict)
    """Days skipped and computed, by reason (`skipping.tally`)."""


def _run_hook(spec: LoadedSpec, view_name: str, raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The view's function on its raw rows. An exception inside it is a bug in the hook,
    deterministic like a spec mistake, so it becomes a SpecError naming the field and the
    function (no retry); an OSError (a disk, a mount) is left as it is and may be retried."""
    function = spec.pipeline.feature_views[view_name].function
    try:
        frame = spec.resolve(function)(raw)
    except (DataError, SpecError, OSError):
        raise
    except Exception as exc:
        raise SpecError(f"{spec.path}: feature_views.{view_name}.function {function} raised "
                        f"{type(exc).__name__}: {exc}; fix the hook") from exc
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"feature view {view_name}: {function} returned a "
                        f"{type(frame).__name__}, not a pandas DataFrame of the keys, "
                        f"event_time and feature columns")
    return frame


def _check_view_output(frame: pd.DataFrame, view_name: str, keys: list[str]) -> None:
    for column in [*keys, EVENT_TIME]:
        if column not in frame.columns:
            raise DataError(f"feature view {view_name}: output lacks column {column!r}")
    for column in (EVENT_TIME, CREATED_TIME):
        if column in frame.columns and not isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            raise DataError(
                f"feature view {view_name}: column {column!r} must be timezone-aware UTC, "
                f"got {frame[column].dtype}"
            )


def _check_created_time(frame: pd.DataFrame, view_name: str, keys: list[str]) -> None:
    """No feature row is created before its event: a hook that says otherwise would let a
    training row see it before `availability_lag` has passed (leakage)."""
    early = ~(frame[CREATED_TIME] >= frame[EVENT_TIME])
    if count := int(early.sum()):
        row = frame.loc[early, [*keys, EVENT_TIME, CREATED_TIME]].iloc[0]
        example = {k: v.isoformat() if isinstance(v, pd.Timestamp) else v
                   for k, v in row.items()}
        raise DataError(
            f"feature view {view_name}: {count} rows have {CREATED_TIME} before {EVENT_TIME} "
            f"(or none), e.g. {example} (rule: a row is created no earlier than its event, "
            f"else it bypasses availability_lag); fix {CREATED_TIME} in the view's function, "
            "or leave it out and let availability_lag set it")


def compute_view(
    store: lake.Lake,
    spec: LoadedSpec,
    view_name: str,
    start: dt.date,
    end: dt.date,
    produced_by: ProducedBy | None = None,
    force: bool = False,
) -> ViewResult:
    """Compute one view for `[start, end)` and publish a partition per day (empty days too).

    A day whose committed partition was made from the same raw partitions (by sha256, the
    lookback days included), view definition and code is skipped, unless `force`; the other
    days are computed in one pass over the span they cover, which reads only their raw
    partitions. `rows` counts the rows of every day of the range either way.
    """
    began = time.perf_counter()
    if view_name not in spec.pipeline.feature_views:
        raise DataError(f"feature view {view_name!r} is not declared in {spec.path.name}; "
                        f"the views are {sorted(spec.pipeline.feature_views)}")
    back = _lookback(spec.pipeline.feature_views[view_name].lookback)
    listed, wanted, decided = _decide_view(store, spec, view_name, start, end, force)
    total = sum(d.kept.rows for d in decided.values() if d.kept)
    todo = {day: wanted[day] for day, d in decided.items() if d.kept is None}
    if todo:
        lo, hi = min(todo), max(todo) + dt.timedelta(days=1)
        raw, used = read_raw_inputs(store, spec, {
            name: [p for p in partitions if lo - back <= p.day < hi]
            for name, partitions in listed.items()})
        frame = view_rows(spec, view_name, _run_hook(spec, view_name, raw), lo, hi)
        total += _publish_days(store, spec, view_name, frame, used,
                               todo, produced_by or ProducedBy())
    return ViewResult(view_name, start.isoformat(), end.isoformat(), total,
                      len(wanted), round(time.perf_counter() - began, 3),
                      skipping.tally(d.decision for d in decided.values()))


def _decide_view(store: lake.Lake, spec: LoadedSpec, view_name: str, start: dt.date,
                 end: dt.date, force: bool
                 ) -> tuple[dict[str, list[lake.Partition]], dict[dt.date, skipping.Fingerprint],
                            dict[dt.date, skipping.DayDecision]]:
    """The raw partitions the view's days of `[start, end)` read (their lookback included),
    each day's fingerprint, and its decision."""
    view = spec.pipeline.feature_views[view_name]
    listed = raw_partitions(store, spec, view.sources, start - _lookback(view.lookback), end)
    wanted = day_fingerprints(store, spec, view_name, listed, start, end)
    return listed, wanted, skipping.decide_days(store, spec.name, "features", view_name,
                                                wanted, force)


def plan_chunks(store: lake.Lake, spec: LoadedSpec, spans: list[chunking.Span],
                views: list[str] | None = None, force: bool = False) -> chunking.StagePlan:
    """The (view, chunk) calls of `compute_view` a features run of `spans` needs
    (`pipelines/chunking.py`), for every view or the given ones."""
    def decider(name: str) -> chunking.Decider:
        return lambda lo, hi: {day: d.decision for day, d in _decide_view(
            store, spec, name, lo, hi, force=False)[2].items()}

    names = views or list(spec.pipeline.feature_views)
    return chunking.plan_stage(spans, {name: decider(name) for name in names}, force)


def day_fingerprints(store: lake.Lake, spec: LoadedSpec, view_name: str,
                     raw: dict[str, list[lake.Partition]], start: dt.date, end: dt.date
                     ) -> dict[dt.date, skipping.Fingerprint]:
    """The fingerprint of each day of `[start, end)`: the path and sha256 of every raw
    partition that can feed it (`_reads_day`), the view's definitions hash and the library's
    code version."""
    view = spec.pipeline.feature_views[view_name]
    definitions, code = view_definitions_hash(spec, view_name), lineage.library_version()
    named = sorted((p.day, store.relative(p.path), p.sha256)
                   for listed in raw.values() for p in listed)
    read_days = [read_day for read_day, _, _ in named]
    back = _lookback(view.lookback)

    def reads(day: dt.date) -> list[tuple[str, str]]:
        # the partitions of [day - lookback, day] (`_reads_day`), found by bisection: a
        # year of days against a year of partitions is otherwise a quadratic scan
        first = bisect.bisect_left(read_days, day - back)
        last = bisect.bisect_right(read_days, day)
        return [(path, sha256) for _, path, sha256 in named[first:last]]

    return {day: skipping.fingerprint(reads(day), definitions, code)
            for day in lake.days(start, end)}


def view_rows(spec: LoadedSpec, view_name: str, frame: pd.DataFrame, start: dt.date,
              end: dt.date) -> pd.DataFrame:
    """The hook's output as it is published: checked, with `created_time` (event time plus
    the availability lag unless the hook set it), rows without an event time dropped, cut
    to `[start, end)` (the lookback rows only fed the hook) and sorted, so that the same raw
    rows always give the same bytes. Pure: the lake is not touched."""
    view = spec.pipeline.feature_views[view_name]
    _check_view_output(frame, view_name, view.keys)
    if CREATED_TIME not in frame.columns:
        frame = frame.assign(**{CREATED_TIME: frame[EVENT_TIME] + view.availability_lag})
    frame = frame[frame[EVENT_TIME].notna()]
    _check_created_time(frame, view_name, view.keys)
    in_range = (frame[EVENT_TIME] >= _utc(start)) & (frame[EVENT_TIME] < _utc(end))
    return frame[in_range].sort_values([EVENT_TIME, *view.keys, CREATED_TIME], kind="stable")


def _publish_days(store: lake.Lake, spec: LoadedSpec, view_name: str, frame: pd.DataFrame,
                  used: list[dict[str, Any]],
                  fingerprints: dict[dt.date, skipping.Fingerprint],
                  produced_by: ProducedBy) -> int:
    """One partition per day of `fingerprints`, empty days too (a reader then knows the day
    was computed), each manifest naming only the raw partitions that could feed that day,
    the view's definitions hash and the day's fingerprint. Returns the rows published."""
    view = spec.pipeline.feature_views[view_name]
    day_of = frame[EVENT_TIME].dt.floor("D")
    definitions = view_definitions_hash(spec, view_name)
    total = 0
    for day, fingerprint in fingerprints.items():
        part = frame[day_of == _utc(day)]
        table = pa.Table.from_pandas(part, preserve_index=False)
        reads = [u for u in used if _reads_day(lake.day_of(u["path"]), day, view.lookback)]

        def write(tmp: Path, table: pa.Table = table, day: dt.date = day,
                  reads: list[dict[str, Any]] = reads,
                  fingerprint: skipping.Fingerprint = fingerprint) -> dict[str, Any]:
            lake.write_parquet(table, tmp / lake.DATA_FILE)
            return {"pipeline": spec.name, "dataset": f"features/{view_name}", "date": day.isoformat(),
                    "view": view_name, "definitions_hash": definitions, "inputs": reads,
                    "produced_by": produced_by.to_json(), **fingerprint.record()}

        lake.publish_dir(lake.partition_dir(store, spec.name, "features", view_name, day), write)
        total += len(part)
    return total


def _lookback(lookback: dt.timedelta) -> dt.timedelta:
    """The lookback rounded up to whole days: raw partitions are days."""
    return dt.timedelta(days=-(-lookback // dt.timedelta(days=1)))


def _reads_day(read_day: dt.date, day: dt.date, lookback: dt.timedelta) -> bool:
    """Whether a raw partition of `read_day` can feed features of `day`."""
    return day - _lookback(lookback) <= read_day <= day


def feature_partitions(
    store: lake.Lake, spec: LoadedSpec, view_name: str, start: dt.date, end: dt.date
) -> list[lake.Partition]:
    """Partitions a window's rows can see: back to the TTL (or all history), up to `end`."""
    view = spec.pipeline.feature_views[view_name]
    first = None if view.ttl is None else start - dt.timedelta(days=view.ttl.days + 1)
    partitions = lake.list_partitions(store, spec.name, "features", view_name, first, end)
    have = {p.day for p in partitions}
    if missing := [d for d in lake.days(max(start, spec.pipeline.start_date), end)
                   if d not in have]:
        raise DataError(
            f"features/{view_name}: {len(missing)} day partitions missing from {missing[0]} "
            f"(rule: compute features before the training set; run `pitstop backfill`)"
        )
    check_definitions(spec, view_name, partitions)
    return partitions


def check_definitions(spec: LoadedSpec, view_name: str, partitions: list[lake.Partition]) -> None:
    """Every partition holds rows of the view's current definition (its manifest's
    `definitions_hash`), so one training set never mixes two meanings of a feature. The
    error lists the stale days as ranges, each with the command that recomputes it."""
    current = view_definitions_hash(spec, view_name)
    stale = [p.day for p in partitions if p.manifest.get("definitions_hash") != current]
    if not stale:
        return
    spans = lake.merge_spans([(day, day + dt.timedelta(days=1)) for day in stale])
    ranges = ", ".join(str(lo) if hi - lo == dt.timedelta(days=1)
                       else f"{lo}..{hi - dt.timedelta(days=1)}" for lo, hi in spans)
    commands = "; ".join(f"`pitstop backfill {spec.path} --start {lo} --end {hi} "
                         f"--views {view_name} --reason 'view definition changed'`"
                         for lo, hi in spans)
    raise DataError(
        f"features/{view_name}: {len(stale)} of {len(partitions)} day partitions were computed "
        f"with another definition of the view than {spec.path.name} declares now ({ranges}) "
        f"(rule: a training set never mixes definitions of a view); recompute them: {commands}"
    )


def read_features(partitions: list[lake.Partition]) -> pa.Table:
    """Rows of the partitions with `as_of`, each file re-hashed against its manifest as it is
    read (`lake.read_partitions`): a corrupt partition fails here, before any join or fit."""
    table = lake.read_partitions(partitions)
    return table.append_column(AS_OF, table.column(EVENT_TIME))
