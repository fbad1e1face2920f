"""The point-in-time join: each spine row gets the feature values that were known at its time.

Why a set-based plan and not a bare ASOF JOIN: an ASOF JOIN on `feature_time` alone picks an
arbitrary row among equal feature times and cannot hide rows that were written later than the
spine time (late corrections, backfilled history). So the plan is:

1. collapse exact duplicate feature rows; equal keys and times with different values are an
   error (no silent pick);
2. give each feature row the moment it became visible: `greatest(feature_time, created_time)`
   when `known_at_time` (the default), else `feature_time`;
3. per key, along visibility, keep the running winner: the greatest `(feature_time,
   created_time)` among everything visible so far;
4. ASOF JOIN the spine onto that timeline (`spine_time >= visible_from`), apply the TTL to the
   winner's `feature_time`, then fetch the winner's values with an equi-join.

Every step is a DuckDB sort, window or join, so it streams from Parquet and spills past
memory; no Python touches individual rows.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.errors import DataError

__all__ = ["TableLike", "point_in_time_join"]

TableLike = pd.DataFrame | pa.Table | str | Path
"""A pandas DataFrame, an Arrow table, or a Parquet file, folder or glob."""

ROW = "__pitstop_row"
FT, CT, VISIBLE, WINNER = "__pitstop_ft", "__pitstop_ct", "__pitstop_visible", "__pitstop_win"
TZ_TYPE = "TIMESTAMP WITH TIME ZONE"
NAIVE_HINT = (
    "timestamps must be timezone-aware: declare the source's `timezone:` in the pipeline "
    "spec (e.g. `timezone: America/New_York`) or convert the column with "
    "`tz_localize`/`tz_convert` before joining"
)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _parquet_files(path: str | Path) -> list[str]:
    text = str(path)
    if any(ch in text for ch in "*?["):
        return [text]
    folder = Path(text)
    if folder.is_dir():
        files = sorted(str(p) for p in folder.rglob("*.parquet"))
        if not files:
            raise DataError(f"{folder}: no Parquet files in this folder")
        return files
    if not folder.exists():
        raise DataError(f"{folder}: file not found")
    return [text]


def _register(con: duckdb.DuckDBPyConnection, name: str, data: TableLike,
              numbered: bool) -> None:
    """Expose `data` as view `name`; with `numbered`, add ROW = its position in the input."""
    if isinstance(data, (str, Path)):
        files = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in _parquet_files(data)) + "]"
        if numbered:
            con.execute(
                f"CREATE TEMP VIEW {name} AS SELECT * EXCLUDE (__pitstop_file, file_row_number), "
                f"row_number() OVER (ORDER BY __pitstop_file, file_row_number) - 1 AS {ROW} "
                f"FROM read_parquet({files}, filename = '__pitstop_file', file_row_number = true)"
            )
        else:
            con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM read_parquet({files})")
        return
    if isinstance(data, pd.DataFrame):
        table = pa.Table.from_pandas(data, preserve_index=False)
    elif isinstance(data, pa.Table):
        table = data
    else:
        raise TypeError(f"expected a DataFrame, Arrow table or Parquet path, got {type(data)}")
    if numbered:
        table = table.append_column(ROW, pa.array(np.arange(len(table), dtype=np.int64)))
    con.register(name, table)


def _columns(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
    return {row[0]: row[1] for row in con.execute(f"DESCRIBE {name}").fetchall()}


def _check_columns(side: str, found: dict[str, str], needed: Sequence[str],
                   times: Sequence[str]) -> None:
    if missing := [c for c in needed if c not in found]:
        raise DataError(f"{side}: columns {missing} are missing (have {sorted(found)})")
    for column in times:
        if found[column] != TZ_TYPE:
            raise DataError(f"{side}: column {column!r} is {found[column]}; {NAIVE_HINT}")


def _check_conflicts(con: duckdb.DuckDBPyConnection, keys: list[str],
                     feature_time: str) -> None:
    """Rows that tie on keys and both times must agree on every value (after dedup)."""
    group = ", ".join([*map(_q, keys), FT, CT])
    found = con.sql(  # through Arrow: DuckDB's own fetch of TIMESTAMPTZ needs pytz
        f"SELECT {group}, count(*) AS n FROM feats GROUP BY {group} HAVING n > 1 "
        f"ORDER BY {group} LIMIT 1"
    ).to_arrow_table().to_pylist()
    if found:
        clash = list(found[0].values())
        where = ", ".join(f"{k}={v!r}" for k, v in zip(keys, clash, strict=False))
        stamp = clash[len(keys)]
        raise DataError(
            f"features: {clash[-1]} rows with {where} and {feature_time}={stamp.isoformat()} "
            f"(same created time) hold different values (rule: one value per key and time; "
            f"give corrections a later created time)"
        )


def point_in_time_join(
    spine: TableLike,
    features: TableLike,
    keys: Sequence[str],
    spine_time: str,
    feature_time: str,
    created_time: str | None = None,
    ttl: dt.timedelta | None = None,
    known_at_time: bool = True,
    prefix: str | None = None,
    output: str | Path | None = None,
) -> pd.DataFrame:
    """As-of join `features` onto `spine`: one row per spine row, in spine order.

    A feature row is a candidate for a spine row when its keys are equal (null keys never
    match), `feature_time <= spine_time`, `feature_time >= spine_time - ttl` (with a TTL) and,
    with `created_time` and `known_at_time`, `created_time <= spine_time`. The winner has the
    greatest `feature_time`, then the greatest `created_time`. No candidate gives nulls.

    The result holds every spine column plus every feature column other than the keys and
    time columns, named `prefix + column`. With `output`, the result is written there as
    Parquet instead (for spines larger than memory) and an empty frame is returned.
    Raises DataError on naive timestamps, missing columns, name clashes and conflicting ties.
    """
    keys = list(keys)
    if not keys:
        raise ValueError("point_in_time_join needs at least one key")
    if ttl is not None and ttl < dt.timedelta(0):
        raise ValueError(f"ttl must not be negative, got {ttl}")
    with tempfile.TemporaryDirectory(prefix="pitstop-pit-") as spill:
        con = duckdb.connect(config={"temp_directory": spill})
        try:
            con.execute("SET TimeZone = 'UTC'")
            return _join(con, spine, features, keys, spine_time, feature_time, created_time,
                         ttl, known_at_time, prefix or "", output)
        finally:
            con.close()


def _join(con: duckdb.DuckDBPyConnection, spine: TableLike, features: TableLike,
          keys: list[str], spine_time: str, feature_time: str, created_time: str | None,
          ttl: dt.timedelta | None, known_at_time: bool, prefix: str,
          output: str | Path | None) -> pd.DataFrame:
    _register(con, "spine_in", spine, numbered=True)
    _register(con, "feats_in", features, numbered=False)
    spine_cols = {c: t for c, t in _columns(con, "spine_in").items() if c != ROW}
    feat_cols = _columns(con, "feats_in")
    times = [feature_time] + ([created_time] if created_time else [])
    _check_columns("spine", spine_cols, [*keys, spine_time], [spine_time])
    _check_columns("features", feat_cols, [*keys, *times], times)
    values = [c for c in feat_cols if c not in {*keys, *times}]
    named = {c: prefix + c for c in values}
    if clashes := sorted(n for n in named.values() if n in spine_cols):
        raise DataError(f"feature columns {clashes} clash with spine columns; pass prefix= "
                        f"to name them apart")

    key_list = ", ".join(map(_q, keys))
    created = _q(created_time) if created_time else _q(feature_time)
    not_null = " AND ".join(f"{_q(c)} IS NOT NULL" for c in [*keys, feature_time])
    value_list = "".join(f", {_q(c)}" for c in values)
    con.execute(
        f"CREATE TEMP TABLE feats AS SELECT DISTINCT {key_list}, {_q(feature_time)} AS {FT}, "
        f"{created} AS {CT}{value_list} FROM feats_in WHERE {not_null}"
    )
    if created_time and (nulls := con.execute(
            f"SELECT count(*) FROM feats WHERE {CT} IS NULL").fetchall()[0][0]):
        raise DataError(f"features: {nulls} rows have a null {created_time!r} "
                        f"(rule: every feature row needs the time it was written)")
    _check_conflicts(con, keys, feature_time)

    visible = f"greatest({FT}, {CT})" if created_time and known_at_time else FT
    con.execute(f"""
        CREATE TEMP TABLE timeline AS
        SELECT {key_list}, {VISIBLE},
               max(best) OVER (PARTITION BY {key_list} ORDER BY {VISIBLE}
                               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS {WINNER}
        FROM (SELECT {key_list}, {visible} AS {VISIBLE},
                     max(struct_pack(ft := {FT}, ct := {CT})) AS best
              FROM feats GROUP BY ALL)
    """)
    on_keys = " AND ".join(f"s.{_q(k)} = t.{_q(k)}" for k in keys)
    fetch_keys = " AND ".join(f"w.{_q(k)} = f.{_q(k)}" for k in keys)
    fresh = (f" AND f.{FT} >= w.{_q(spine_time)} - INTERVAL '{int(ttl.total_seconds() * 1e6)} "
             f"microseconds'" if ttl is not None else "")
    picked = "".join(f", f.{_q(c)} AS {_q(named[c])}" for c in values)
    spine_list = ", ".join(f"w.{_q(c)}" for c in spine_cols)
    query = f"""
        WITH winners AS (
            SELECT s.*, t.{WINNER}.ft AS {FT}, t.{WINNER}.ct AS {CT}
            FROM spine_in s ASOF LEFT JOIN timeline t
              ON {on_keys} AND s.{_q(spine_time)} >= t.{VISIBLE}
        )
        SELECT {spine_list}{picked}
        FROM winners w LEFT JOIN feats f
          ON {fetch_keys} AND f.{FT} = w.{FT} AND f.{CT} = w.{CT}{fresh}
        ORDER BY w.{ROW}
    """
    if output is not None:
        con.execute(f"COPY ({query}) TO '{Path(output)}' (FORMAT parquet, COMPRESSION zstd)")
        return pd.DataFrame()
    return con.sql(query).to_arrow_table().to_pandas()
