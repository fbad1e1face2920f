"""Ingestion: landing files of a date range into immutable, validated raw day partitions.

One call handles one source over `[start, end)` in a single pass: read each day's file, check
it against the spec (columns, types, keys, the day it claims to hold), validate the whole
range with the source's GX suite, then publish one partition per day. Nothing is published
unless every file of the range passed, so a bad file never leaves a half-ingested range.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import lake, quality
from pipelines.errors import DataError
from pipelines.spec import FILE_COLUMN as FILE
from pipelines.spec import PARTITION_DAY, LoadedSpec, Source

SQL_TYPES = {"int": "BIGINT", "float": "DOUBLE", "str": "VARCHAR", "bool": "BOOLEAN",
             "timestamp": "TIMESTAMPTZ"}


@dataclass(frozen=True)
class IngestResult:
    """What one ingest call published; small enough for XCom."""

    source: str
    start: str
    end: str
    rows: int
    partitions: list[dict[str, Any]] = field(default_factory=list)
    quality: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """The XCom form: the partitions counted, not listed (they are in the manifests)."""
        return {**self.to_dict(), "partitions": len(self.partitions)}


def announcement(chunks: list[dict[str, str]], run_id: str) -> dict[str, str]:
    """The `extra` of a raw asset event: the whole range an ingest run wrote, and the run.

    A features run triggered by the event computes exactly that range.
    """
    return {"start": min(c["start"] for c in chunks), "end": max(c["end"] for c in chunks),
            "run_id": run_id}


def landing_file(spec: LoadedSpec, source: Source, day: dt.date) -> Path:
    return spec.landing_dir() / source.path.format(date=day.isoformat())


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
                        f"(schema drift){hint}")
    if extra := [c for c in found if c not in source.columns]:
        raise DataError(f"{path}: columns {extra} are not declared in the spec (schema drift)")


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
    files = [str(p) for p in paths]
    delimiter = source.delimiter.replace("'", "''")
    reader = (
        f"read_csv(?, header = true, all_varchar = true, union_by_name = true, "
        f"delim = '{delimiter}', quote = '\"', escape = '\"', strict_mode = true, "
        f"filename = '{FILE}', hive_partitioning = false)"
        if source.format == "csv"
        else f"read_parquet(?, union_by_name = true, filename = '{FILE}', "
             f"hive_partitioning = false)"
    )
    try:
        con.execute(f"CREATE TEMP TABLE delivered AS SELECT * FROM {reader}", [files])
    except duckdb.Error as exc:
        if len(paths) > 1:
            for path in paths:
                read_landing_files([path], source)
        if source.format == "csv":
            _check_csv_shape(paths[0], source)
        first = str(exc).strip().splitlines()[0]
        raise DataError(f"{paths[0]}: cannot be read as {source.format}: {first}") from exc
    bad_checks = ", ".join(
        f'count(*) FILTER (WHERE "{c}" IS NOT NULL AND TRY_CAST("{c}" AS {SQL_TYPES[t]}) IS NULL)'
        for c, t in source.columns.items()
    )
    for file, *bad in con.execute(
            f"SELECT {FILE}, {bad_checks} FROM delivered GROUP BY {FILE} ORDER BY {FILE}").fetchall():
        for (column, kind), count in zip(source.columns.items(), bad, strict=True):
            if count:
                raise DataError(f"{file}: column {column!r} has {count} values that are not {kind}")
    casts = ", ".join(
        f'TRY_CAST("{c}" AS {SQL_TYPES[t]}) AS "{c}"' for c, t in source.columns.items()
    )
    con.execute(f"CREATE TEMP TABLE typed AS SELECT {FILE}, {casts} FROM delivered")
    con.execute("SET TimeZone = 'UTC'")  # naive strings were read in the source's zone
    typed = con.sql(f"SELECT * FROM typed ORDER BY {FILE}").to_arrow_table()
    by_file = typed.column(FILE)
    tables = {}
    for path in paths:
        rows = typed.filter(pc.equal(by_file, str(path)))
        tables[path] = rows.drop_columns([FILE])
    return tables


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


def check_rows(table: pa.Table, path: Path, source: Source, day: dt.date) -> None:
    """Keys present and unique; every event inside the file's day (no rows from the future)."""
    for key in source.keys:
        if nulls := table.column(key).null_count:
            raise DataError(f"{path}: column {key!r} has {nulls} nulls (rule: keys are never null)")
    if table.num_rows:
        counts = table.group_by(source.keys).aggregate([([], "count_all")])
        dupes = counts.filter(pc.greater(counts["count_all"], 1))
        if dupes.num_rows:
            example = {k: dupes.column(k)[0].as_py() for k in source.keys}
            raise DataError(
                f"{path}: {dupes.num_rows} duplicate keys on {source.keys} "
                f"(rule: keys are unique), e.g. {example}"
            )
    if source.event_time and table.num_rows:
        times = table.column(source.event_time)
        if nulls := times.null_count:
            raise DataError(
                f"{path}: column {source.event_time!r} has {nulls} nulls (rule: every event is dated)"
            )
        lo = dt.datetime.combine(day, dt.time(), dt.UTC)
        hi = lo + dt.timedelta(days=1)
        outside = pc.or_(pc.less(times, pa.scalar(lo, times.type)),
                         pc.greater_equal(times, pa.scalar(hi, times.type)))
        if count := pc.sum(outside).as_py():
            first = times.filter(outside)[0].as_py()
            raise DataError(
                f"{path}: column {source.event_time!r} has {count} rows outside {day} "
                f"(rule: a daily file holds only its own UTC day), e.g. {first.isoformat()}"
            )


def check_values(table: pa.Table, path: Path, source: Source, field: str,
                 now: dt.datetime) -> None:
    """Enough rows, finite numbers, no events from the future: the rules that hold for every
    source, with or without a GX suite. `field` names the source in the spec
    (`sensors.yaml: sources.readings`) so each message says which setting to change."""
    if table.num_rows < source.min_rows:
        raise DataError(f"{path}: {table.num_rows} rows, fewer than {field}.min_rows "
                        f"({source.min_rows}) (rule: a landing file holds a whole delivery); "
                        f"deliver the file again, or set {field}.min_rows: {table.num_rows} "
                        "if such a file is expected")
    infinite = {c: pc.sum(pc.is_inf(table.column(c))).as_py() or 0
                for c, t in source.columns.items() if t == "float"}
    if (bad := {c: n for c, n in infinite.items() if n}) and not source.allow_infinite:
        counts = ", ".join(f"column {c!r} has {n}" for c, n in bad.items())
        raise DataError(f"{path}: infinite values (inf or -inf): {counts} (rule: numbers are "
                        f"finite); fix the export upstream, or set {field}.allow_infinite: true")
    if source.event_time and table.num_rows:
        times = table.column(source.event_time)
        limit = now + source.future_tolerance
        later = pc.greater(times, pa.scalar(limit, times.type))
        if count := pc.sum(later).as_py():
            first = times.filter(later)[0].as_py()
            raise DataError(
                f"{path}: column {source.event_time!r} has {count} rows later than the run's "
                f"clock {now.isoformat()} plus {field}.future_tolerance "
                f"({source.future_tolerance}), e.g. {first.isoformat()} (rule: no events from "
                f"the future); check the upstream clock and {field}.timezone")


def ingest(
    spec: LoadedSpec,
    source_name: str,
    start: dt.date,
    end: dt.date,
    produced_by: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> IngestResult:
    """Ingest `[start, end)` of one source; see the module docstring for the guarantees.

    `now` is the run's clock (an Airflow task passes its run's start; default: this call's
    time): files and events later than it plus the source's `future_tolerance` are refused.
    """
    now = now or dt.datetime.now(dt.UTC)
    source = spec.pipeline.sources[source_name]
    field = f"{spec.path.name}: sources.{source_name}"
    found = _landed(spec, source_name, start, end, now)
    delivered = []
    for path, table in read_landing_files(list(found), source).items():
        check_rows(table, path, source, found[path])
        check_values(table, path, source, field, now)
        delivered.append((found[path], path, table))

    report = None
    if source.suite and delivered:
        whole = pa.concat_tables([t for _, _, t in delivered])
        report = quality.validate(
            whole.to_pandas(),
            spec.suite_path(source.suite),
            data_name=f"{source_name} files {delivered[0][1].name}..{delivered[-1][1].name} "
            f"under {delivered[0][1].parent}",
            out_dir=lake.pipeline_dir(spec.name, "_quality", "raw", source_name, f"{start}_{end}"),
            pipeline=spec.name,
        )
        quality.require_valid(report)

    sort_keys = ([source.event_time] if source.event_time else []) + source.keys
    partitions = []
    for day, path, table in delivered:
        ordered = table.sort_by([(k, "ascending") for k in sort_keys])
        folder = lake.partition_dir(spec.name, "raw", source_name, day)

        def write(tmp: Path, ordered: pa.Table = ordered, path: Path = path,
                  day: dt.date = day) -> dict[str, Any]:
            lake.write_parquet(ordered, tmp / lake.DATA_FILE)
            return {
                "pipeline": spec.name,
                "dataset": f"raw/{source_name}",
                "date": day.isoformat(),
                "source_file": {"path": str(path), "sha256": lake.sha256_file(path),
                                "bytes": path.stat().st_size},
                "schema": dict(source.columns),
                "quality": _quality_summary(report),
                "produced_by": produced_by or {},
            }

        manifest = lake.publish_dir(folder, write)
        data = next(f for f in manifest["files"] if f["name"] == lake.DATA_FILE)
        partitions.append({"date": day.isoformat(), "path": lake.relative(folder),
                           "rows": data["rows"], "sha256": data["sha256"]})
    return IngestResult(
        source=source_name, start=start.isoformat(), end=end.isoformat(),
        rows=sum(p["rows"] for p in partitions), partitions=partitions,
        quality=_quality_summary(report),
    )


def _landed(spec: LoadedSpec, source_name: str, start: dt.date, end: dt.date,
            now: dt.datetime) -> dict[Path, dt.date]:
    """The landing files of `[start, end)` by day: every day's for an events source. A file
    named for a day that starts after `now` plus the source's `future_tolerance` is refused."""
    source = spec.pipeline.sources[source_name]
    found: dict[Path, dt.date] = {}
    for day in lake.days(start, end):
        path = landing_file(spec, source, day)
        if path.exists() and dt.datetime.combine(day, dt.time(), dt.UTC) > (
                now + source.future_tolerance):
            raise DataError(f"{path}: dated {day}, after the run's clock {now.isoformat()} plus "
                            f"{spec.path.name}: sources.{source_name}.future_tolerance "
                            f"({source.future_tolerance}) (rule: no files from the future); "
                            "check the upstream clock, or ingest a range that has happened")
        if path.exists():
            found[path] = day
        elif source.kind != "snapshot":
            raise DataError(f"{path}: missing: source {source_name!r} delivers a file every day")
    return found


def _quality_summary(report: quality.ValidationReport | None) -> dict[str, Any] | None:
    if report is None:
        return None
    return {"suite": report.suite, "success": report.success,
            "result": lake.relative(report.result_path)}


def read_raw(
    source_name: str, partitions: list[lake.Partition], columns: dict[str, str]
) -> pa.Table:
    """Raw rows of the given partitions, with `_partition_day` (UTC midnight of delivery).

    Hive partitioning is off: the `date=` folder name must never replace a column of the
    source that happens to be called `date`. The day comes from the path, read explicitly.
    Every file is re-hashed against its manifest as it is read (`lake.read_verified`).
    """
    fields = [pa.field(c, _ARROW_TYPES[t]) for c, t in columns.items()]
    fields.append(pa.field(PARTITION_DAY, pa.timestamp("us", tz="UTC")))
    if not partitions:
        return pa.schema(fields).empty_table()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return lake.read_verified(partitions, lambda paths: con.sql(
        f"SELECT * EXCLUDE ({FILE}), "
        f"CAST(regexp_extract({FILE}, 'date=([0-9-]+)', 1) AS DATE)::TIMESTAMPTZ "
        f"AS {PARTITION_DAY} FROM read_parquet(?, filename = '{FILE}', hive_partitioning = false)",
        params=[paths],
    ).to_arrow_table())


_ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(), "bool": pa.bool_(),
                "timestamp": pa.timestamp("us", tz="UTC")}
