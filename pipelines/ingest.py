"""Ingestion: landing files of a date range into immutable, validated raw day partitions.

One call handles one source over the UTC days `[start, end)` in a single pass: read every
file whose period (an hour, a UTC or local day, a month) overlaps them, check each against the
spec (columns, types, keys, the period it claims to hold), validate the range's rows with the
source's GX suite, then publish one partition per UTC day. Nothing is published unless every
file of the range passed, so a bad file never leaves a half-ingested range.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import chunking, lake, lineage, quality, skipping, sql_source
from pipelines.errors import DataError
from pipelines.provenance import ProducedBy
from pipelines.spec import FILE_COLUMN as FILE
from pipelines.spec import PARTITION_DAY, PERIOD_PLACEHOLDERS, LoadedSpec, Source

if TYPE_CHECKING:
    import pandas as pd

SQL_TYPES = {"int": "BIGINT", "float": "DOUBLE", "str": "VARCHAR", "bool": "BOOLEAN",
             "timestamp": "TIMESTAMPTZ"}


Origin = Path | str
"""Where rows came from: a landing file, or a database source's table or query (a string
naming the connection without its password)."""


@dataclass(frozen=True)
class IngestResult:
    """What one ingest call published; small enough for XCom."""

    source: str
    start: str
    end: str
    rows: int
    partitions: list[dict[str, Any]] = field(default_factory=list)
    quality: dict[str, Any] | None = None
    tally: dict[str, int] = field(default_factory=dict)
    """Days skipped and computed, by reason (`skipping.tally`)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """The XCom form: the partitions counted, not listed (they are in the manifests)."""
        return {**self.to_dict(), "partitions": len(self.partitions)}


def announcement(spans: list[tuple[dt.date, dt.date]], run_id: str) -> dict[str, str]:
    """The `extra` of a raw asset event: the whole range an ingest run covered, and the run.

    A features run triggered by the event decides exactly that range: the whole range, not
    just the days that changed, since a changed day feeds the features of the days after it
    that look back on it.
    """
    return {"start": min(lo for lo, _ in spans).isoformat(),
            "end": max(hi for _, hi in spans).isoformat(), "run_id": run_id}


@dataclass(frozen=True)
class Delivery:
    """The period one landing file holds: the placeholder values naming it and its UTC
    bounds (`start` inclusive, `end` exclusive)."""

    names: dict[str, str]
    start: dt.datetime
    end: dt.datetime
    label: str
    """The period as messages name it: `2013-03-10 (America/New_York day)`."""

    def span(self) -> str:
        """The bounds in UTC and the length, which shows a 23- or 25-hour local day."""
        hours = (self.end - self.start) / dt.timedelta(hours=1)
        return f"{self.start.isoformat()} to {self.end.isoformat()}, {hours:g} h"


def _utc(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def _wall_period(wall: dt.datetime, period: str) -> tuple[dt.datetime, dt.datetime]:
    """The naive wall-clock bounds of the period holding the wall-clock time `wall`."""
    if period == "hour":
        first = dt.datetime.combine(wall.date(), dt.time(wall.hour))
        return first, first + dt.timedelta(hours=1)
    if period == "day":
        first = dt.datetime.combine(wall.date(), dt.time())
        return first, first + dt.timedelta(days=1)
    first = dt.datetime(wall.year, wall.month, 1)
    return first, (first + dt.timedelta(days=32)).replace(day=1)


def delivery_at(source: Source, instant: dt.datetime) -> Delivery:
    """The period of `source`'s files that holds the aware `instant`.

    Periods are cut on the wall clock of the path's zone, so an instant's file is the one
    named by its wall-clock date and hour there. Each bound is a wall-clock time at its first
    occurrence (`fold=0`; in a gap, the instant the gap ends): a repeated hour then lasts two
    hours, and a skipped hour is never the period of any instant, so it needs no file.
    """
    local = source.period_zone == "local"
    zone = ZoneInfo(source.timezone) if local else dt.UTC
    first, after = _wall_period(instant.astimezone(zone).replace(tzinfo=None), source.period)
    names = {"date": f"{first:%Y-%m-%d}", "hour": f"{first:%H}", "month": f"{first:%Y-%m}"}
    shown = first.strftime({"day": "%Y-%m-%d", "hour": "%Y-%m-%d %H:00", "month": "%Y-%m"}
                           [source.period])
    return Delivery(
        names={name: names[name] for name in PERIOD_PLACEHOLDERS[source.period]},
        start=first.replace(tzinfo=zone, fold=0).astimezone(dt.UTC),
        end=after.replace(tzinfo=zone, fold=0).astimezone(dt.UTC),
        label=f"{shown} ({source.timezone if local else 'UTC'} {source.period})")


def deliveries(source: Source, start: dt.date, end: dt.date) -> Iterator[Delivery]:
    """Every period of `source`'s files that overlaps the UTC days `[start, end)`, in order
    (lazily: a search for the first landed file stops early)."""
    cursor = _utc(start)
    while cursor < _utc(end):
        delivery = delivery_at(source, cursor)
        yield delivery
        cursor = delivery.end


def landing_file(spec: LoadedSpec, source: Source, delivery: Delivery) -> Path:
    return spec.landing_dir() / source.path.format(**delivery.names)


def _connect(timezone: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"SET TimeZone = '{timezone}'")
    return con


def _header(path: Path, source: Source) -> list[str]:
    """Column names of one delivered file, read without parsing its rows."""
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: file is empty (0 bytes): the delivery wrote nothing; "
                            "deliver the file again")
        if source.format == "parquet":
            return pq.read_schema(path).names
        with open(path, newline="", encoding="utf-8") as handle:
            return next(csv.reader(handle, delimiter=source.delimiter), [])
    except (OSError, UnicodeDecodeError, csv.Error, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot be read as {source.format}: {exc}") from exc


def _check_header(path: Path, source: Source) -> None:
    found = _header(path, source)
    if missing := [c for c in source.columns if c not in found]:
        hint = (f"; the header has one field: is the delimiter {source.delimiter!r} right?"
                if len(found) == 1 and source.format == "csv" else "")
        raise DataError(f"{path}: columns {missing} declared in the spec are missing "
                        f"(schema drift){hint}; deliver the file again with them, or, if the "
                        "source dropped them for good, remove them from the source's `columns` "
                        "and from the hooks reading them")
    if extra := [c for c in found if c not in source.columns]:
        raise DataError(f"{path}: columns {extra} are not declared in the spec (schema drift); "
                        "deliver the file again without them, or declare them in the "
                        "source's `columns`")


def read_landing_files(paths: list[Path], source: Source) -> dict[Path, pa.Table]:
    """Read delivered files with the spec's schema in one DuckDB pass, one table per file.

    Every problem names the file and the column: headers are checked file by file first, and
    a parse error in the combined read is narrowed down to the file that caused it.
    """
    for path in paths:
        _check_header(path, source)
    if not paths:
        return {}
    con = _connect(source.timezone)
    try:
        con.execute(f"CREATE TEMP TABLE delivered AS SELECT * FROM {_reader(source)}",
                    [[str(p) for p in paths]])
    except duckdb.Error as exc:
        if len(paths) > 1:
            for path in paths:
                read_landing_files([path], source)
        if source.format == "csv":
            _check_csv_shape(paths[0], source)
        first = str(exc).strip().splitlines()[0]
        raise DataError(f"{paths[0]}: cannot be read as {source.format}: {first}") from exc
    _check_types(con, source)
    casts = ", ".join(
        f'TRY_CAST("{c}" AS {SQL_TYPES[t]}) AS "{c}"' for c, t in source.columns.items()
    )
    con.execute(f"CREATE TEMP TABLE typed AS SELECT {FILE}, {casts} FROM delivered")
    con.execute("SET TimeZone = 'UTC'")  # naive strings were read in the source's zone
    typed = con.sql(f"SELECT * FROM typed ORDER BY {FILE}").to_arrow_table()
    by_file = typed.column(FILE)
    return {path: typed.filter(pc.equal(by_file, str(path))).drop_columns([FILE])
            for path in paths}


def _reader(source: Source) -> str:
    """The DuckDB table function for the source's format: every CSV field read as text (so a
    bad value is found and named, not guessed into a type), the delimiter the spec declares,
    strict about ragged lines; no hive partitioning, so a folder never replaces a column."""
    if source.format != "csv":
        return (f"read_parquet(?, union_by_name = true, filename = '{FILE}', "
                f"hive_partitioning = false)")
    delimiter = source.delimiter.replace("'", "''")
    return (f"read_csv(?, header = true, all_varchar = true, union_by_name = true, "
            f"delim = '{delimiter}', quote = '\"', escape = '\"', strict_mode = true, "
            f"filename = '{FILE}', hive_partitioning = false)")


def _check_types(con: duckdb.DuckDBPyConnection, source: Source) -> None:
    """Refuse the first file with a value its column's declared type cannot hold, counted."""
    bad_checks = ", ".join(
        f'count(*) FILTER (WHERE "{c}" IS NOT NULL AND TRY_CAST("{c}" AS {SQL_TYPES[t]}) IS NULL)'
        for c, t in source.columns.items()
    )
    for file, *bad in con.execute(
            f"SELECT {FILE}, {bad_checks} FROM delivered GROUP BY {FILE} ORDER BY {FILE}").fetchall():
        for (column, kind), count in zip(source.columns.items(), bad, strict=True):
            if count:
                raise DataError(f"{file}: column {column!r} has {count} values that are not {kind}")


def _check_csv_shape(path: Path, source: Source) -> None:
    """Name the first line whose field count differs from the header's: a ragged file, or a
    truncated one when that line is the last and the file ends mid-line.

    Called only when DuckDB refused the file, whose own message names neither the line nor
    the cause.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle, delimiter=source.delimiter, strict=True)
        try:
            width = len(next(rows, []))
            bad = next(((rows.line_num, row) for row in rows if row and len(row) != width), None)
            last = bad is not None and next(rows, None) is None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: line {rows.line_num}: {exc} (rule: a CSV file is "
                            "complete and well formed); deliver the whole file again") from exc
    if bad is None:
        return
    line, row = bad
    kind = ("truncated: it ends mid-line" if last and not _ends_with_newline(path)
            else "ragged")
    raise DataError(f"{path}: line {line} has {len(row)} fields, the header has {width}; the "
                    f"file is {kind} (rule: every row has the header's fields, delimiter "
                    f"{source.delimiter!r}); deliver the whole file again")


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, 2)
        return handle.read(1) in (b"\n", b"\r")


def read_landing_file(path: Path, source: Source) -> pa.Table:
    """Read one delivered file with the spec's schema; every problem names file and column."""
    return read_landing_files([path], source)[path]


def _check_unique(table: pa.Table, where: str, source: Source) -> None:
    """No two rows of `where` (a file, or the files of one UTC day) share their keys."""
    if not table.num_rows:
        return
    counts = table.group_by(source.keys).aggregate([([], "count_all")])
    dupes = counts.filter(pc.greater(counts["count_all"], 1))
    if dupes.num_rows:
        example = {k: dupes.column(k)[0].as_py() for k in source.keys}
        raise DataError(f"{where}: {dupes.num_rows} duplicate keys on {source.keys} "
                        f"(rule: keys are unique), e.g. {example}")


def _within(times: pa.ChunkedArray, start: dt.datetime, end: dt.datetime) -> pa.ChunkedArray:
    """Which `times` fall in `[start, end)`."""
    return pc.and_(pc.greater_equal(times, pa.scalar(start, times.type)),
                   pc.less(times, pa.scalar(end, times.type)))


def check_rows(table: pa.Table, path: Origin, source: Source, delivery: Delivery) -> None:
    """Keys present and unique; every event inside the file's period (no rows from another)."""
    for key in source.keys:
        if nulls := table.column(key).null_count:
            raise DataError(f"{path}: column {key!r} has {nulls} nulls (rule: keys are never null)")
    _check_unique(table, str(path), source)
    if source.event_time and table.num_rows:
        times = table.column(source.event_time)
        if nulls := times.null_count:
            raise DataError(
                f"{path}: column {source.event_time!r} has {nulls} nulls (rule: every event is dated)"
            )
        count, first = _flagged(times, pc.invert(_within(times, delivery.start, delivery.end)))
        if count:
            raise DataError(
                f"{path}: column {source.event_time!r} has {count} rows outside {delivery.label}: "
                f"{delivery.span()} (rule: a file holds only the period its path names; check "
                f"the source's period, period_zone and timezone), e.g. {first.isoformat()}"
            )


def _flagged(times: pa.ChunkedArray, mask: pa.ChunkedArray) -> tuple[int, Any]:
    """How many event times a rule flags, and the first of them (for the message)."""
    count = pc.sum(mask).as_py() or 0
    return count, times.filter(mask)[0].as_py() if count else None


def check_values(table: pa.Table, path: Origin, source: Source, field: str,
                 now: dt.datetime) -> None:
    """Enough rows, finite numbers, no events from the future: the rules that hold for every
    source, with or without a GX suite. `field` names the source in the spec
    (`sensors.yaml: sources.readings`) so each message says which setting to change."""
    if table.num_rows < source.min_rows:
        raise DataError(f"{path}: {table.num_rows} rows, fewer than {field}.min_rows "
                        f"({source.min_rows}) (rule: a landing file holds a whole delivery); "
                        f"deliver the file again, or set {field}.min_rows: {table.num_rows} "
                        "if such a file is expected")
    not_finite = {c: pc.sum(pc.invert(pc.is_finite(table.column(c)))).as_py() or 0
                  for c, t in source.columns.items() if t == "float"}
    if (bad := {c: n for c, n in not_finite.items() if n}) and not source.allow_infinite:
        counts = ", ".join(f"column {c!r} has {n}" for c, n in bad.items())
        raise DataError(f"{path}: values that are not finite (NaN, inf or -inf): {counts} "
                        f"(rule: numbers are finite; a missing value is an empty field, which "
                        f"is null); fix the export upstream, or set {field}.allow_infinite: true")
    if source.event_time and table.num_rows:
        times = table.column(source.event_time)
        limit = now + source.future_tolerance
        count, first = _flagged(times, pc.greater(times, pa.scalar(limit, times.type)))
        if count:
            raise DataError(
                f"{path}: column {source.event_time!r} has {count} rows later than the run's "
                f"clock {now.isoformat()} plus {field}.future_tolerance "
                f"({source.future_tolerance}), e.g. {first.isoformat()} (rule: no events from "
                f"the future); check the upstream clock and {field}.timezone")


def ingest(
    store: lake.Lake,
    spec: LoadedSpec,
    source_name: str,
    start: dt.date,
    end: dt.date,
    produced_by: ProducedBy | None = None,
    now: dt.datetime | None = None,
    database_url: str | None = None,
    force: bool = False,
) -> IngestResult:
    """Ingest the UTC days `[start, end)` of one source (guarantees: the module docstring).

    `now` is the run's clock (an Airflow task passes its run's start; default: this call's
    time): files and events later than it plus the source's `future_tolerance` are refused.
    `database_url` is a database source's `conn_id` resolved (only Airflow can). A day of the
    same inputs, definition and code (`day_fingerprints`) is skipped unless `force`.
    """
    if not start < end:
        raise DataError(f"ingest {source_name}: end {end} must be after start {start} "
                        "(end is exclusive)")
    now = now or dt.datetime.now(dt.UTC)
    planned = (_plan_files(store, spec, source_name, start, end, now, force)
               if spec.pipeline.sources[source_name].database is None
               else _plan_database(store, spec, source_name, start, end, now, force,
                                   database_url))
    kept = [_partition_summary(store, d.kept) for d in planned.decided.values() if d.kept]
    report = _validate(store, spec, source_name, planned.days)
    partitions = sorted(kept + [
        _publish_day(store, spec, source_name, rows, planned.origin(rows),
                     _quality_summary(store, report), produced_by or ProducedBy(),
                     planned.wanted[rows.day]) for rows in planned.days],
        key=lambda p: p["date"])
    return IngestResult(
        source=source_name, start=start.isoformat(), end=end.isoformat(),
        rows=sum(p["rows"] for p in partitions), partitions=partitions,
        quality=_quality_summary(store, report),
        tally=skipping.tally(d.decision for d in planned.decided.values()),
    )


@dataclass(frozen=True)
class Planned:
    """A range's days as ingest decides them: each day's fingerprint and decision, the rows
    of the days to publish, and how their manifests record where the rows came from."""

    wanted: dict[dt.date, skipping.Fingerprint]
    decided: dict[dt.date, skipping.DayDecision]
    days: list[DayRows]
    origin: Callable[[DayRows], dict[str, Any]]


def _plan_files(store: lake.Lake, spec: LoadedSpec, source_name: str, start: dt.date,
                end: dt.date, now: dt.datetime, force: bool) -> Planned:
    """A file source: days are decided on their landing files' sha256 before any is read,
    and only the files of days to recompute are read and checked."""
    found, files, wanted, decided = _decide_files(store, spec, source_name, start, end, now,
                                                  force)
    days = _checked_days(spec, source_name, found,
                         [d for d, v in decided.items() if not v.kept], now)
    return Planned(wanted, decided, days,
                   lambda rows: {"source_files": [files[p] for p in rows.origins]})


def _decide_files(store: lake.Lake, spec: LoadedSpec, source_name: str, start: dt.date,
                  end: dt.date, now: dt.datetime, force: bool
                  ) -> tuple[dict[Path, Delivery], dict[Path, dict[str, Any]],
                             dict[dt.date, skipping.Fingerprint],
                             dict[dt.date, skipping.DayDecision]]:
    """A file source's landing files of the range (checked to be there and not from the
    future), their records (sha256), and each day's fingerprint and decision; no file is read
    but to be hashed."""
    source = spec.pipeline.sources[source_name]
    found = _landed(spec, source_name, start, end, now)
    files = {path: _file_record(path, source) for path in found}
    landing = spec.landing_dir()
    wanted = day_fingerprints(spec, source_name, {
        day: [(str(p.relative_to(landing)), files[p]["sha256"]) for p in paths]
        for day, paths in _files_by_day(found, lake.days(start, end)).items()})
    return found, files, wanted, skipping.decide_days(store, spec.name, "raw", source_name,
                                                      wanted, force)


def plan_chunks(store: lake.Lake, spec: LoadedSpec, spans: list[chunking.Span],
                now: dt.datetime, force: bool = False) -> chunking.StagePlan:
    """The (source, chunk) calls an ingest run of `spans` needs (`pipelines/chunking.py`):
    a file source's days are decided on its landing files' sha256, as `ingest` decides
    them; a database source keeps every chunk (its rows are read to be hashed)."""
    def decider(name: str) -> chunking.Decider | None:
        if spec.pipeline.sources[name].database is not None:
            return None
        return lambda lo, hi: {day: d.decision for day, d in _decide_files(
            store, spec, name, lo, hi, now, force=False)[3].items()}

    return chunking.plan_stage(spans, {name: decider(name) for name in spec.pipeline.sources},
                               force)


def _plan_database(store: lake.Lake, spec: LoadedSpec, source_name: str, start: dt.date,
                   end: dt.date, now: dt.datetime, force: bool,
                   database_url: str | None) -> Planned:
    """A database source: the range's rows are read (there is no file to hash), and a day is
    decided on its rows' sha256."""
    source = spec.pipeline.sources[source_name]
    read, every = _database_days(spec, source_name, database_url, start, end, now)
    hashes = {rows.day: sql_source.rows_sha256(rows.table, source.keys) for rows in every}
    wanted = day_fingerprints(spec, source_name, {
        rows.day: [(str(rows.origins[0]), hashes[rows.day])] for rows in every})
    decided = skipping.decide_days(store, spec.name, "raw", source_name, wanted, force)
    return Planned(wanted, decided, [rows for rows in every if not decided[rows.day].kept],
                   lambda rows: {"source_query": {
                       "connection": read.connection, "query": read.query,
                       "rows": rows.table.num_rows, "sha256": hashes[rows.day]}})


def _checked_days(spec: LoadedSpec, source_name: str, found: dict[Path, Delivery],
                  todo: list[dt.date], now: dt.datetime) -> list[DayRows]:
    """The rows of each day in `todo`, from only the landing files that overlap those days,
    each file checked against the spec (`check_rows`, `check_values`) as it is read."""
    source = spec.pipeline.sources[source_name]
    field = f"{spec.path.name}: sources.{source_name}"
    needed = {path: delivery for path, delivery in found.items()
              if any(_overlaps(delivery, day) for day in todo)}
    tables = read_landing_files(list(needed), source)
    for path, table in tables.items():
        check_rows(table, path, source, needed[path])
        check_values(table, path, source, field, now)
    return split_days(source, needed, tables, todo)


def day_fingerprints(spec: LoadedSpec, source_name: str,
                     inputs: dict[dt.date, list[tuple[str, str]]]
                     ) -> dict[dt.date, skipping.Fingerprint]:
    """The fingerprint of each UTC day that has inputs: each input's name and sha256 (the
    landing files overlapping the day, by name under the landing folder; or the database
    rows of the day), the source's spec section, its GX suite file and the library's code
    version."""
    source = spec.pipeline.sources[source_name]
    definition = {"source": source.model_dump(mode="json"),
                  "suite": lake.sha256_file(spec.suite_path(source.suite)) if source.suite
                  else None}
    code = lineage.library_version()
    return {day: skipping.fingerprint(named, definition, code)
            for day, named in inputs.items() if named}


def _database_days(spec: LoadedSpec, source_name: str, database_url: str | None,
                   start: dt.date, end: dt.date, now: dt.datetime
                   ) -> tuple[sql_source.QueryRows, list[DayRows]]:
    """A database source's rows of `[start, end)`, read in one query, checked against the
    spec like a file, and cut into UTC days (every day's rows are read: their hash is what
    tells an unchanged day)."""
    source = spec.pipeline.sources[source_name]
    assert source.database is not None
    field = f"{spec.path.name}: sources.{source_name}"
    url = sql_source.database_url(source.database, database_url, field)
    read = sql_source.read_interval(url, source, field, _utc(start), _utc(end))
    where = f"{read.connection}: {source.database.table or 'query'}"
    found: dict[Origin, Delivery] = {
        where: Delivery({}, _utc(start), _utc(end), f"the UTC days {start}..{end}")}
    check_rows(read.table, where, source, found[where])
    check_values(read.table, where, source, field, now)
    return read, split_days(source, found, {where: read.table}, lake.days(start, end))


def _overlaps(delivery: Delivery, day: dt.date) -> bool:
    """Whether a file's period holds rows of the UTC `day`."""
    return delivery.start < _utc(day + dt.timedelta(days=1)) and delivery.end > _utc(day)


def _files_by_day(found: dict[Origin, Delivery], days: Iterable[dt.date]
                  ) -> dict[dt.date, list[Origin]]:
    """For each UTC day of `days`, the landing files whose period overlaps it, in `found`'s
    order. Each file visits only the days of its own period: a year of days against a year
    of files is otherwise a quadratic scan."""
    by_day: dict[dt.date, list[Origin]] = {day: [] for day in days}
    for path, delivery in found.items():
        # from the UTC day holding the period's start, each day that begins before its end
        day = delivery.start.astimezone(dt.UTC).date()
        while _utc(day) < delivery.end:
            if day in by_day:
                by_day[day].append(path)
            day += dt.timedelta(days=1)
    return by_day


@dataclass(frozen=True)
class DayRows:
    """What one raw partition publishes: a UTC day's rows, from every file overlapping it."""

    day: dt.date
    origins: list[Origin]
    table: pa.Table
    origin_rows: tuple[int, ...] = ()
    """How many of the table's rows came from each origin, in order (empty: not known)."""


def split_days(source: Source, found: dict[Origin, Delivery], tables: dict[Origin, pa.Table],
               days: Iterable[dt.date]) -> list[DayRows]:
    """The rows of each UTC day of `days` that has a file, from the files whose period
    overlaps it: a day's hour files, both local days around it, its month's file.

    A source without `event_time` has one file per UTC day (the spec says so), taken whole.
    Keys are checked across the day's files, since each file was checked only on its own.
    """
    cut = []
    for day, paths in _files_by_day(found, days).items():
        if not paths:
            continue
        lo, hi = _utc(day), _utc(day + dt.timedelta(days=1))
        parts = [
            tables[path] if source.event_time is None
            else tables[path].filter(_within(tables[path].column(source.event_time), lo, hi))
            for path in paths]
        table = pa.concat_tables(parts)
        if len(paths) > 1:
            _check_unique(table, f"{paths[0]} .. {paths[-1]} ({len(paths)} files holding rows "
                                 f"of the UTC day {day})", source)
        cut.append(DayRows(day, paths, table, tuple(part.num_rows for part in parts)))
    return cut


def _validate(store: lake.Lake, spec: LoadedSpec, source_name: str, days: list[DayRows]
              ) -> quality.ValidationReport | None:
    """The source's GX suite over the rows about to be published; None without a suite.
    Its result is kept under `_quality_span(days)`."""
    source = spec.pipeline.sources[source_name]
    if not source.suite or not days:
        return None
    landing = spec.landing_dir()
    first, last = days[0].origins[0], days[-1].origins[-1]
    if not (isinstance(first, Path) and isinstance(last, Path)):
        origin = str(first)
    elif first == last:
        origin = f"file {first.relative_to(landing)} under {landing}"
    else:
        origin = f"files {first.relative_to(landing)}..{last.relative_to(landing)} under {landing}"
    frame = pa.concat_tables([rows.table for rows in days]).to_pandas()
    span = f"{days[0].day}" + (f"..{days[-1].day}" if days[-1].day != days[0].day else "")
    report = quality.validate(
        frame, spec.suite_path(source.suite),
        data_name=f"{source_name} rows of {span} from {origin}",
        out_dir=lake.pipeline_dir(store, spec.name, "_quality", "raw", source_name,
                                  _quality_span(days)),
        pipeline=spec.name,
    )
    quality.require_valid(
        report, f"Nothing of these days was published: fix the rows at the source and deliver "
        f"them again, or, if the rule is wrong, change {spec.suite_path(source.suite)}; then "
        "run the ingest again.",
        _failing_rows_origins(days, landing, frame[list(source.keys)]))
    return report


def _failing_rows_origins(days: list[DayRows], landing: Path, keys: pd.DataFrame
                          ) -> Callable[[quality.Failure], str]:
    """Where a failed expectation's rows are: the landing files (or the table) holding them
    and the first rows' keys (GX's `partial_unexpected_index_list`, positions in the
    validated rows: the days' tables in order), so a suite failure over a month of files
    names the file to fix, and one over a table the rows."""
    origins: list[Origin] = []
    ends: list[int] = []
    for rows in days:
        for origin, count in zip(rows.origins, rows.origin_rows, strict=False):
            origins.append(origin)
            ends.append((ends[-1] if ends else 0) + count)

    def locate(failure: quality.Failure) -> str:
        positions = [i for i in failure.observed.get("partial_unexpected_index_list") or []
                     if isinstance(i, int)]
        files = dict.fromkeys(origins[at] for i in positions
                              if (at := bisect.bisect_right(ends, i)) < len(origins))
        if not files:
            return ""
        named = ", ".join(str(f.relative_to(landing)) if isinstance(f, Path) and
                          f.is_relative_to(landing) else str(f) for f in files)
        rows = [i for i in positions if 0 <= i < len(keys)]
        return f"in {named}" + (f" (rows {_row_keys(keys, rows)})" if rows and len(keys.columns)
                                else "")

    return locate


def _row_keys(keys: pd.DataFrame, positions: list[int]) -> str:
    """The source's key columns of the first rows at `positions`, as `sensor=a ts=…`."""
    shown = [" ".join(f"{column}={value}" for column, value in row.items())
             for _, row in keys.iloc[positions[:quality.SAMPLE_VALUES]].iterrows()]
    more = f" and {len(positions) - len(shown)} more" if len(positions) > len(shown) else ""
    return "; ".join(shown) + more


def _quality_span(days: list[DayRows]) -> str:
    """The folder of one validation: the UTC days it covered, `<first>_<day after last>`,
    and when skipped days leave gaps in that span, a hash of which days. A manifest names the
    result its day was validated in, so a later run validating other days of a span must
    never replace it: a skipped day keeps its manifest and that result."""
    first, last = days[0].day, days[-1].day
    span = f"{first}_{last + dt.timedelta(days=1)}"
    if len(days) == (last - first).days + 1:
        return span
    which = ",".join(rows.day.isoformat() for rows in days)
    return f"{span}-{hashlib.sha256(which.encode()).hexdigest()[:12]}"


def _file_record(path: Path, source: Source) -> dict[str, Any]:
    """A landing file as a raw manifest names it: path, sha256 and size. Its header is
    checked first, so a folder, a FIFO or an empty file is refused by name before hashing
    (which would fail on a folder and block on a FIFO)."""
    _check_header(path, source)
    return {"path": str(path), "sha256": lake.sha256_file(path), "bytes": path.stat().st_size}


def _publish_day(store: lake.Lake, spec: LoadedSpec, source_name: str, rows: DayRows,
                 origin: dict[str, Any], quality_summary: dict[str, Any] | None,
                 produced_by: ProducedBy, fingerprint: skipping.Fingerprint) -> dict[str, Any]:
    """Publish one UTC day's partition, sorted by event time and keys; its summary.

    `origin` is the manifest's record of where the rows came from: `source_files` (each
    landing file with its sha256) or `source_query` (connection, query, rows, sha256)."""
    source = spec.pipeline.sources[source_name]
    sort_keys = ([source.event_time] if source.event_time else []) + source.keys
    ordered = rows.table.sort_by([(k, "ascending") for k in sort_keys])
    folder = lake.partition_dir(store, spec.name, "raw", source_name, rows.day)

    def write(tmp: Path) -> dict[str, Any]:
        lake.write_parquet(ordered, tmp / lake.DATA_FILE)
        return {"pipeline": spec.name, "dataset": f"raw/{source_name}",
                "date": rows.day.isoformat(), **origin,
                "schema": dict(source.columns), "quality": quality_summary,
                "produced_by": produced_by.to_json(), **fingerprint.record()}

    return _partition_summary(store, lake.Partition(folder, rows.day,
                                                    lake.publish_dir(folder, write)))


def _partition_summary(store: lake.Lake, partition: lake.Partition) -> dict[str, Any]:
    """A published day as an ingest result lists it, whether published now or skipped."""
    return {"date": partition.day.isoformat(), "path": store.relative(partition.path),
            "rows": partition.rows, "sha256": partition.sha256}


def _landed(spec: LoadedSpec, source_name: str, start: dt.date, end: dt.date,
            now: dt.datetime) -> dict[Path, Delivery]:
    """The landing files whose period overlaps the UTC days `[start, end)`, with their
    periods: all of them for an events source, so a missing one is named here."""
    source = spec.pipeline.sources[source_name]
    found: dict[Path, Delivery] = {}
    for delivery in deliveries(source, start, end):
        path = landing_file(spec, source, delivery)
        if path.exists():
            _check_not_future(path, delivery, spec, source_name, now)
            found[path] = delivery
        elif source.kind != "snapshot":
            raise DataError(f"{path}: missing: source {source_name!r} delivers a file every "
                            f"{source.period}, and the UTC days {start}..{end} need the one of "
                            f"{delivery.label}; land it, or ingest a range it is not part of")
    return found


def _check_not_future(path: Path, delivery: Delivery, spec: LoadedSpec, source_name: str,
                      now: dt.datetime) -> None:
    """Refuse a file whose period starts after the run's clock plus `future_tolerance`, and
    a month file whose month has not ended by then: it cannot hold the whole month yet, and
    the days published from it would be short."""
    source = spec.pipeline.sources[source_name]
    limit = now + source.future_tolerance
    setting = f"{spec.path.name}: sources.{source_name}.future_tolerance ({source.future_tolerance})"
    if delivery.start > limit:
        raise DataError(f"{path}: dated {delivery.label}, after the run's clock "
                        f"{now.isoformat()} plus {setting} (rule: no files from the future); "
                        "check the upstream clock, or ingest a range that has happened")
    if source.period == "month" and delivery.end > limit:
        raise DataError(f"{path}: holds {delivery.label}, which ends {delivery.end.isoformat()}, "
                        f"after the run's clock {now.isoformat()} plus {setting} (rule: a month "
                        "file holds the whole month, or its days would be published short); "
                        "ingest the month's days once it has ended and its file is complete")


def _quality_summary(store: lake.Lake, report: quality.ValidationReport | None
                     ) -> dict[str, Any] | None:
    if report is None:
        return None
    return {"suite": report.suite, "success": report.success,
            "result": store.relative(report.result_path)}


def read_raw(
    source_name: str, partitions: list[lake.Partition], columns: dict[str, str]
) -> pa.Table:
    """Raw rows of the given partitions, with `_partition_day` (UTC midnight of their day),
    each file re-hashed against its manifest as it is read (`lake.read_partitions`)."""
    fields = [pa.field(c, lake.ARROW_TYPES[t]) for c, t in columns.items()]
    fields.append(pa.field(PARTITION_DAY, pa.timestamp("us", tz="UTC")))
    if not partitions:
        return pa.schema(fields).empty_table()
    return lake.read_partitions(partitions, day_column=PARTITION_DAY)


