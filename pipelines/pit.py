"""The point-in-time join: each spine row gets the feature values that were known at its time.

Why a set-based plan and not a bare ASOF JOIN: an ASOF JOIN on `feature_time` alone picks an
arbitrary row among equal feature times and cannot hide rows that were written later than the
spine time (late corrections, backfilled history). So the plan is:

1. a row is visible from `greatest(feature_time, created_time)` with `known_at_time` (and
   `created_time`), else from its `feature_time`. One window sort of the feature rows per
   key along (visibility, (ft, ct)) marks the rows that become their key's winner at their
   visibility time: the last of their visibility time whose (ft, ct) equals the running max
   so far (one HUGEINT encodes the pair, so the comparisons are numeric; a STRUCT max was
   3× slower). Without `known_at_time` that is the latest row of each key and ft;
2. the same order puts rows tied on (keys, ft, ct) next to each other: only tied rows are
   compared for differing values, exactly (no silent pick, no hash collisions), and exact
   duplicates are harmless (a copy equals the running max, it does not exceed it);
3. the spine is ASOF-joined on visibility time straight onto the winner rows, their values
   included: rows that can never win are gone before the join, and no join back to the
   feature rows fetches the values;
4. the TTL applies to the winner's `feature_time`; the result is put back in spine order by
   each row's position, which for Parquet input is `file_row_number` plus the file's offset
   (no sort to number the rows).

Every step is a DuckDB sort, window, aggregate or join under a fixed `memory_limit`
(`settings.pit_memory_limit`), so it streams from Parquet and spills to disk instead of
growing with the input; no Python touches individual rows.
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

from pipelines import lake, settings
from pipelines.errors import DataError

__all__ = ["TableLike", "point_in_time_join"]

TableLike = pd.DataFrame | pa.Table | str | Path
"""A pandas DataFrame, an Arrow table, or a Parquet file, folder or glob."""

ROW = "__pitstop_row"
FT, CT, VISIBLE, WINNER = "__pitstop_ft", "__pitstop_ct", "__pitstop_visible", "__pitstop_win"
TIED = "__pitstop_tied"
TZ_TYPE = "TIMESTAMP WITH TIME ZONE"
NAIVE_HINT = (
    "timestamps must be timezone-aware: declare the source's `timezone:` in the pipeline "
    "spec (e.g. `timezone: America/New_York`) or convert the column with "
    "`tz_localize`/`tz_convert` before joining"
)
# (ft, ct) as one HUGEINT ordered like the pair: ft in the high 64 bits, ct shifted to be
# non-negative in the low 64 bits (epoch microseconds fit in 63 bits either side of 1970)
PAIR_CODE = (f"(epoch_us({FT})::HUGEINT * 18446744073709551616 "
             f"+ (epoch_us({CT})::HUGEINT + 9223372036854775808))")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _parquet_files(path: str | Path) -> list[str]:
    text = str(path)
    if any(ch in text for ch in "*?["):
        return [text]
    folder = Path(text)
    if folder.is_dir():
        files = [str(p) for p in lake.committed_parquet(folder)]
        if not files:
            raise DataError(f"{folder}: no Parquet files in this folder")
        return files
    if not folder.exists():
        raise DataError(f"{folder}: file not found")
    return [text]


def _register(con: duckdb.DuckDBPyConnection, name: str, data: TableLike,
              numbered: bool) -> None:
    """Expose `data` as view `name`; with `numbered`, add ROW = its position in the input.

    For Parquet the position is the row's number in its file plus the rows of the files
    before it (files in name order, as read from the footers), so numbering needs no sort.
    """
    if isinstance(data, (str, Path)):
        files = "[" + ", ".join(map(_literal, _parquet_files(data))) + "]"
        if not numbered:
            con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM read_parquet({files}, "
                        f"hive_partitioning = false)")
            return
        counts = con.execute(f"SELECT file_name, sum(num_rows) FROM parquet_file_metadata({files}) "
                             f"GROUP BY file_name ORDER BY file_name").fetchall()
        scan = (f"read_parquet({files}, filename = '__pitstop_file', file_row_number = true, "
                f"hive_partitioning = false)")
        if len(counts) == 1:
            con.execute(f"CREATE TEMP VIEW {name} AS SELECT * EXCLUDE (__pitstop_file, "
                        f"file_row_number), file_row_number AS {ROW} FROM {scan}")
            return
        offsets = np.concatenate([[0], np.cumsum([n for _, n in counts])[:-1]])
        rows = ", ".join(f"({_literal(f)}, {int(o)})" for (f, _), o in zip(counts, offsets, strict=True))
        con.execute(f"CREATE TEMP TABLE {name}_offsets(file VARCHAR, start BIGINT)")
        con.execute(f"INSERT INTO {name}_offsets VALUES {rows}")
        con.execute(f"CREATE TEMP VIEW {name} AS SELECT p.* EXCLUDE (__pitstop_file, "
                    f"file_row_number), p.file_row_number + o.start AS {ROW} FROM {scan} p "
                    f"JOIN {name}_offsets o ON p.__pitstop_file = o.file")
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


def _visible(by_visibility: bool) -> str:
    """The time from which a feature row is visible, as an expression: computed where it is
    used rather than stored beside ft and ct in `ranked` (10M rows: 80 MB less)."""
    return f"greatest({FT}, {CT})" if by_visibility else FT


def _rank_feature_rows(con: duckdb.DuckDBPyConnection, keys: list[str], feature_time: str,
                       created_time: str | None, values: list[str], by_visibility: bool) -> None:
    """Table `ranked`: every usable feature row flagged WINNER (the key's winner from the
    time it becomes visible on) and TIED (the next row has its keys, ft and ct);
    then the input rules are checked.

    One window sort per key along (visible, code) does it all. A row becomes the winner at
    its visibility time iff it is the last of its (keys, visible) group and no row visible
    so far has a greater (ft, ct): a running max of the code equal to its own code. Rows
    sharing (keys, ft, ct) have the same visible time and code, so they sit next to each other
    (`lead` finds them) and an exact duplicate equals, not exceeds, the running max:
    duplicates need no separate pass. Without `by_visibility` rows are visible from ft, the
    code grows along the order and the winner is simply the last row of its (keys, ft).
    """
    code, visible = "__pitstop_code", _visible(by_visibility)
    last_of_time = f"coalesce(lead({visible}) OVER w <> {visible}, true)"
    record = (f" AND max({code}) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
              f" = {code}" if by_visibility else "")
    con.execute(f"""
        CREATE TEMP TABLE ranked AS
        SELECT * EXCLUDE ({code}), {last_of_time}{record} AS {WINNER},
               coalesce(lead({code}) OVER w = {code}, false) AS {TIED}
        FROM (SELECT *, {PAIR_CODE} AS {code} FROM feats_src)
        WINDOW w AS (PARTITION BY {', '.join(map(_q, keys))} ORDER BY {visible}, {code})
    """)
    nulls, tied = con.execute(f"SELECT count(*) FILTER ({CT} IS NULL), count(*) FILTER ({TIED}) "
                              f"FROM ranked").fetchall()[0]
    if created_time and nulls:
        raise DataError(f"features: {nulls} rows have a null {created_time!r} "
                        f"(rule: every feature row needs the time it was written)")
    if tied:
        _refuse_conflicting_ties(con, keys, feature_time, values)


def _refuse_conflicting_ties(con: duckdb.DuckDBPyConnection, keys: list[str],
                             feature_time: str, values: list[str]) -> None:
    """Rows that tie on keys, ft and ct may repeat one value, never hold two: which would win
    is undefined, so the first conflicting group is named instead."""
    tie_list = ", ".join([*map(_q, keys), FT, CT])
    value_list = "".join(f", {_q(c)}" for c in values)
    found = con.sql(  # through Arrow: DuckDB's own fetch of TIMESTAMPTZ needs pytz
        f"SELECT {tie_list}, count(*) AS n FROM (SELECT DISTINCT {tie_list}{value_list} "
        f"FROM ranked WHERE ({tie_list}) IN (SELECT ({tie_list}) FROM ranked WHERE {TIED})) "
        f"GROUP BY ALL HAVING n > 1 ORDER BY {tie_list} LIMIT 1"
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


def _checked_arguments(keys: Sequence[str], ttl: dt.timedelta | None) -> list[str]:
    """The keys as a list, once the arguments no data could fix are refused."""
    if not keys:
        raise ValueError("point_in_time_join needs at least one key")
    if ttl is not None and ttl < dt.timedelta(0):
        raise ValueError(f"ttl must not be negative, got {ttl}")
    return list(keys)


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
    DuckDB works within `PITSTOP_PIT_MEMORY_LIMIT` and spills under `PITSTOP_PIT_TEMP_DIR`
    (see `pipelines.settings`).
    Raises DataError on naive timestamps, missing columns, name clashes and conflicting ties.
    """
    keys = _checked_arguments(keys, ttl)
    with tempfile.TemporaryDirectory(prefix="pitstop-pit-", dir=settings.pit_spill_root()) as spill:
        con = duckdb.connect(config={"temp_directory": spill,
                                     "memory_limit": settings.pit_memory_limit()})
        try:
            con.execute("SET TimeZone = 'UTC'")
            table = _join(con, spine, features, keys, spine_time, feature_time, created_time,
                          ttl, known_at_time, prefix or "", output)
        finally:
            con.close()  # DuckDB's memory is freed before pandas needs its own
    # column by column, each Arrow buffer freed once converted: the result is not held twice
    return (pd.DataFrame() if table is None
            else table.to_pandas(split_blocks=True, self_destruct=True))


def _join(con: duckdb.DuckDBPyConnection, spine: TableLike, features: TableLike,
          keys: list[str], spine_time: str, feature_time: str, created_time: str | None,
          ttl: dt.timedelta | None, known_at_time: bool, prefix: str,
          output: str | Path | None) -> pa.Table | None:
    """The plan of the module docstring on one connection: inputs checked, feature rows
    ranked along visibility time, then the spine ASOF-joined onto the winners; the result
    as Arrow, or None once written to `output`."""
    _register(con, "spine_in", spine, numbered=True)
    _register(con, "feats_in", features, numbered=False)
    spine_cols, values = _checked_columns(con, keys, spine_time, feature_time, created_time)
    named = {c: prefix + c for c in values}
    if clashes := sorted(n for n in named.values() if n in spine_cols):
        raise DataError(f"feature columns {clashes} clash with spine columns; pass prefix= "
                        f"to name them apart")
    _usable_feature_rows(con, keys, feature_time, created_time, values)
    con.execute("SET preserve_insertion_order = false")  # the final query has its ORDER BY
    by_visibility = bool(created_time and known_at_time)
    _rank_feature_rows(con, keys, feature_time, created_time, values, by_visibility)
    con.execute("SET preserve_insertion_order = true")
    query = _final_query(keys, list(spine_cols), spine_time, ttl, values, named,
                         _visible(by_visibility))
    if output is not None:
        con.execute(f"COPY ({query}) TO {_literal(str(Path(output)))} "
                    f"(FORMAT parquet, COMPRESSION zstd)")
        return None
    return con.sql(query).to_arrow_table()


def _checked_columns(con: duckdb.DuckDBPyConnection, keys: list[str], spine_time: str,
                     feature_time: str, created_time: str | None
                     ) -> tuple[dict[str, str], list[str]]:
    """The spine's columns (name -> type, without the row number) and the feature value
    columns (every feature column but the keys and times), after checking that both sides
    hold the keys and timezone-aware times: a naive time would join hours apart."""
    spine_cols = {c: t for c, t in _columns(con, "spine_in").items() if c != ROW}
    feat_cols = _columns(con, "feats_in")
    times = [feature_time] + ([created_time] if created_time else [])
    _check_columns("spine", spine_cols, [*keys, spine_time], [spine_time])
    _check_columns("features", feat_cols, [*keys, *times], times)
    return spine_cols, [c for c in feat_cols if c not in {*keys, *times}]


def _usable_feature_rows(con: duckdb.DuckDBPyConnection, keys: list[str], feature_time: str,
                         created_time: str | None, values: list[str]) -> None:
    """View `feats_src`: the feature rows that can match (no null key or feature time), with
    the times under fixed names so the queries need not know the caller's; without
    created_time, ct = ft."""
    created = _q(created_time) if created_time else _q(feature_time)
    not_null = " AND ".join(f"{_q(c)} IS NOT NULL" for c in [*keys, feature_time])
    value_list = "".join(f", {_q(c)}" for c in values)
    con.execute(f"CREATE TEMP VIEW feats_src AS SELECT {', '.join(map(_q, keys))}, "
                f"{_q(feature_time)} AS {FT}, {created} AS {CT}{value_list} "
                f"FROM feats_in WHERE {not_null}")


def _final_query(keys: list[str], spine_cols: list[str], spine_time: str,
                 ttl: dt.timedelta | None, values: list[str], named: dict[str, str],
                 visible: str) -> str:
    """The one query that ASOF-joins the spine onto the WINNER rows of `ranked` (one per key
    and visibility time, so the join lands on the winner itself and its values ride along),
    applies the TTL to the winner's feature time and puts the rows back in spine order."""
    inner = [f"{ROW}_v{i}" for i in range(len(values))]  # apart from the spine's names
    renamed = "".join(f", {_q(c)} AS {v}" for c, v in zip(values, inner, strict=True))
    timeline = (f"(SELECT {', '.join(map(_q, keys))}, {visible} AS {VISIBLE}, {FT}{renamed} "
                f"FROM ranked WHERE {WINNER})")
    on_keys = " AND ".join(f"s.{_q(k)} = t.{_q(k)}" for k in keys)
    spine_list = ", ".join(f"w.{_q(c)}" for c in spine_cols)
    fresh = None if ttl is None else (
        f"w.{FT} >= w.{_q(spine_time)} - INTERVAL '{int(ttl.total_seconds() * 1e6)} microseconds'")
    picked = "".join(f", {f'w.{v}' if fresh is None else f'CASE WHEN {fresh} THEN w.{v} END'}"
                     f" AS {_q(named[c])}" for c, v in zip(values, inner, strict=True))
    carried = "".join(f", t.{v}" for v in inner)
    return f"""
        WITH w AS (
            SELECT s.*, t.{FT}{carried}
            FROM spine_in s ASOF LEFT JOIN {timeline} t
              ON {on_keys} AND s.{_q(spine_time)} >= t.{VISIBLE}
        )
        SELECT {spine_list}{picked} FROM w
        ORDER BY w.{ROW}
    """
