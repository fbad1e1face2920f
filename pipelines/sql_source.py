"""Database sources: the rows of one interval of a table or query, typed as the spec declares.

Ingest calls `read_interval` instead of reading landing files, then checks and publishes the
rows exactly as it does a file's. The library never resolves an Airflow connection: the
ingest task does, and passes the URL in (only `pipelines/orchestration` imports Airflow).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from pipelines.errors import DataError, SpecError
from pipelines.lake import ARROW_TYPES
from pipelines.spec import Database, Source


@dataclass(frozen=True)
class QueryRows:
    """One interval's rows of a database source, and how they were selected."""

    table: pa.Table
    connection: str
    """The URL without its password."""
    query: str
    """The SELECT as run, with `:start` and `:end` bound to the interval's UTC bounds."""


def database_url(database: Database, resolved: str | None, field: str) -> str:
    """The URL to connect with: the spec's `url` with environment variables expanded, or the
    one the ingest task resolved from `conn_id`; `field` names the setting in messages."""
    if database.url is not None:
        return os.path.expandvars(database.url)
    if resolved is None:
        raise SpecError(f"{field}.database.conn_id {database.conn_id!r} is an Airflow "
                        "connection, which only an Airflow task resolves; run ingest through "
                        "Airflow (pitstop run), or give database.url instead")
    return resolved


def redacted(url: str, field: str) -> str:
    """The URL as manifests and messages show it: without its password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        # `URL.set(password=None)` leaves the password as it is: None means "unchanged"
        return make_url(url)._replace(password=None).render_as_string(hide_password=False)
    except ArgumentError as exc:
        raise SpecError(f"{field}.database: {exc}; write a SQLAlchemy URL such as "
                        "postgresql+psycopg2://user@host/database") from exc


def read_interval(url: str, source: Source, field: str, start: dt.datetime,
                  end: dt.datetime) -> QueryRows:
    """The rows whose `time_column` is in `[start, end)`, with the spec's columns and types.

    A connection that fails is an infrastructure fault (retried); a query the database
    refuses, or columns and values that do not fit the spec, are data errors (not retried).
    """
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    assert source.database is not None
    connection = redacted(url, field)
    query = source.database.selection()
    where = f"{connection}: {source.database.table or 'query'}"
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as con:
            try:
                result = con.execute(sqlalchemy.text(query), {"start": start, "end": end})
            except sqlalchemy.exc.ProgrammingError as exc:
                first = str(exc.orig).strip().splitlines()[0]
                raise DataError(f"{where}: the database refused {field}.database's rows: "
                                f"{first}; check the table, query and time_column") from exc
            names = list(result.keys())
            rows = result.fetchall()
    finally:
        engine.dispose()
    _check_columns(names, source, where)
    values = dict(zip(names, zip(*rows, strict=True), strict=True)) if rows else {}
    table = pa.table({c: _typed(values.get(c, ()), t, c, source.timezone, where)
                      for c, t in source.columns.items()})
    return QueryRows(table, connection, f"{query} [start={start.isoformat()}, "
                                        f"end={end.isoformat()}]")


def _check_columns(names: list[str], source: Source, where: str) -> None:
    if missing := [c for c in source.columns if c not in names]:
        raise DataError(f"{where}: columns {missing} declared in the spec are missing from the "
                        "result (schema drift); select them in `query`, or remove them from "
                        "the source's `columns` and from the hooks reading them")
    if extra := [c for c in names if c not in source.columns]:
        raise DataError(f"{where}: columns {extra} are not declared in the spec (schema drift); "
                        "declare them, or select only the declared ones with `query`")


def _utc(zone: str) -> Callable[[Any], Any]:
    """Aware datetimes to UTC; naive ones read in `zone`, as naive strings in files are."""
    local = ZoneInfo(zone)
    return lambda value: (value if value.tzinfo else value.replace(tzinfo=local)
                          ).astimezone(dt.UTC)


def _iso_time(value: Any) -> Any:
    """An ISO-8601 string as a datetime, anything else as it is. SQLite has no timestamp type
    (its driver returns the text stored), and a CSV's times are strings too; a string that is
    not ISO-8601 stays a string, which `_typed` refuses by name."""
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


_ACCEPTED: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (float, int), "str": (str,), "bool": (bool,),
    "timestamp": (dt.datetime,)}
"""The Python values each declared type takes from the driver; `bool` is an `int` in Python,
so it is refused for numbers explicitly."""


def _typed(values: Sequence[Any], kind: str, column: str, zone: str, where: str) -> pa.Array:
    """One column as its declared Arrow type; a value of another type fails naming it."""
    if kind == "timestamp":
        values = [_iso_time(v) for v in values]
    accepted = _ACCEPTED[kind]
    bad = next((v for v in values if v is not None and (
        not isinstance(v, accepted) or (isinstance(v, bool) and kind != "bool"))), None)
    if bad is not None:
        raise DataError(f"{where}: column {column!r} holds {type(bad).__name__} values (e.g. "
                        f"{bad!r}), but the spec declares it {kind}; cast it in a `query` "
                        f"(e.g. CAST({column} AS ...)) or change its type in the spec")
    if kind == "timestamp":
        values = [None if v is None else _utc(zone)(v) for v in values]
    return pa.array(values, type=ARROW_TYPES[kind])


def rows_sha256(table: pa.Table, keys: list[str]) -> str:
    """sha256 of the rows sorted by `keys`, serialised as one Arrow IPC stream (schema then
    a single record batch): the same rows give the same hash whatever order the database
    returned them in."""
    ordered = table.sort_by([(k, "ascending") for k in keys]).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, ordered.schema) as writer:
        writer.write_table(ordered, max_chunksize=max(ordered.num_rows, 1))
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()
