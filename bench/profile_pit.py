"""Where pitstop's point-in-time join spends its time, and what a leaner plan would cost.

    .venv/bin/python bench/profile_pit.py --case 1Mx10M [--known-at-time] [--variant both]

`current`: runs pipelines.pit.point_in_time_join unchanged, with DuckDB's JSON profiler on, and
prints the wall time of every statement it issues plus the heaviest operators of each.
`proposed`: a prototype of the plan suggested in bench/README.md ("pitstop performance"), same
semantics (exact duplicates collapsed, error on conflicting ties, known_at_time, TTL, spine
order), timed the same way and compared row by row with the current output.
This is a diagnostic; it does not change pipelines/pit.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import duckdb

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import compare  # noqa: E402
import generate  # noqa: E402
from run import CASES  # noqa: E402

KEY, TIME, CREATED = "entity_id", "event_timestamp", "created"
VALUES = [f"f{i}" for i in range(5)]


class Profiled:
    """A DuckDB connection that times each statement and keeps its profile."""

    def __init__(self, con: duckdb.DuckDBPyConnection, folder: Path):
        self._con, self._folder, self.steps = con, folder, []

    def _run(self, method: str, query: str, *args):
        out = self._folder / f"step{len(self.steps)}.json"
        self._con.execute(f"SET profiling_output = '{out}'")
        t0 = time.perf_counter()
        result = getattr(self._con, method)(query, *args)
        if method == "sql":  # lazy relation: materialize inside the timing
            result = result.to_arrow_table()
        seconds = time.perf_counter() - t0
        self.steps.append({"seconds": seconds, "sql": " ".join(query.split())[:160],
                           "profile": out})
        return result if method != "sql" else _Rel(result)

    def execute(self, query: str, *args):
        return self._run("execute", query, *args)

    def sql(self, query: str, *args):
        return self._run("sql", query, *args)

    def __getattr__(self, name):
        return getattr(self._con, name)


class _Rel:
    def __init__(self, table):
        self._t = table

    def to_arrow_table(self):
        return self._t


def _operators(profile: Path, top: int = 4) -> list[tuple[float, str]]:
    if not profile.exists():
        return []
    found: list[tuple[float, str]] = []

    def walk(node):
        name = node.get("type") or node.get("operator_type") or node.get("operator_name") or ""
        timing = node.get("timing", node.get("operator_timing", 0.0)) or 0.0
        extra = node.get("extra_info", {})
        detail = ""
        if isinstance(extra, dict):
            for k in ("Join Type", "Groups", "Aggregates", "Order By", "Function", "Table"):
                if k in extra:
                    detail = f" {k}: {str(extra[k])[:70]}"
                    break
        rows = node.get("intermediate_rows") or node.get("operator_cardinality")
        if name and name != "RESULT_COLLECTOR":
            found.append((timing, f"{name.strip()}{detail}" + (f" [{rows:,} rows]" if rows else "")))
        for child in node.get("children", []):
            walk(child)

    root = json.loads(profile.read_text())
    for node in root.get("operator", []) if isinstance(root.get("operator"), list) else [root]:
        walk(node)
    return sorted(found, reverse=True)[:top]


def profile_current(spine: Path, feats: Path, out: Path, ttl: dt.timedelta,
                    known_at_time: bool) -> float:
    from engines import _shim_register
    from pipelines import pit

    folder = Path(tempfile.mkdtemp(prefix="pit-profile-"))
    real_connect = duckdb.connect
    holder: dict = {}

    def connect(*args, **kwargs):
        con = real_connect(*args, **kwargs)
        con.execute("SET enable_profiling = 'json'")
        holder["con"] = Profiled(con, folder)
        return holder["con"]

    pit.duckdb.connect = connect
    try:
        t0 = time.perf_counter()
        try:
            pit.point_in_time_join(str(spine), str(feats), [KEY], TIME, TIME, CREATED, ttl,
                                   known_at_time, output=str(out))
        except duckdb.BinderException:
            _shim_register(pit)
            t0 = time.perf_counter()
            pit.point_in_time_join(str(spine), str(feats), [KEY], TIME, TIME, CREATED, ttl,
                                   known_at_time, output=str(out))
        total = time.perf_counter() - t0
    finally:
        pit.duckdb.connect = real_connect
    print(f"current pit.py: {total:.2f} s total")
    _print_steps(holder["con"].steps)
    return total


def _print_steps(steps: list[dict]) -> None:
    """Wall seconds per statement; below it the heaviest operators (CPU seconds, all threads)."""
    for step in steps:
        if step["seconds"] < 0.05:
            continue
        print(f"  {step['seconds']:7.2f} s  {step['sql']}")
        for timing, op in _operators(step["profile"]):
            print(f"             {timing:6.2f} s  {op}")


def proposed(spine: Path, feats: Path, out: Path, ttl: dt.timedelta, known_at_time: bool,
             memory_limit: str | None) -> float:
    """The suggested plan, written out for these column names."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pit-proposed-") as spill:
        raw = duckdb.connect(config={"temp_directory": spill})
        raw.execute("SET enable_profiling = 'json'")
        con = Profiled(raw, Path(spill))
        con.execute("SET TimeZone = 'UTC'")
        if memory_limit:
            con.execute(f"SET memory_limit = '{memory_limit}'")
        files = [str(spine)]
        # (1) spine order without a sort: file_row_number plus each file's offset
        counts = con.execute(
            "SELECT file_name, sum(num_rows) FROM parquet_file_metadata(?) GROUP BY ALL "
            "ORDER BY file_name", [files]).fetchall()
        offsets, acc = [], 0
        for name, n in counts:
            offsets.append(f"('{name}', {acc})")
            acc += n
        con.execute(f"CREATE TEMP TABLE spine_offsets(f VARCHAR, o BIGINT)")
        con.execute(f"INSERT INTO spine_offsets VALUES {', '.join(offsets)}")
        vals = ", ".join(VALUES)
        con.execute("SET preserve_insertion_order = false")
        # (2) dedupe and detect conflicting ties in ONE numeric aggregate (no SELECT DISTINCT
        #     over every column, no second GROUP BY)
        firsts = ", ".join(f"any_value({v}) AS {v}" for v in VALUES)
        # a 64-bit hash of the row's values: rows of a group differ iff min != max
        # (up to a 2^-64 collision); NULLs hash to a fixed value, so null vs value differs
        clash = f"min(hash({vals})) != max(hash({vals}))"
        con.execute(f"""
            CREATE TEMP TABLE feats AS
            SELECT {KEY}, {TIME} AS ft, {CREATED} AS ct, {firsts}, ({clash}) AS clash
            FROM read_parquet('{feats}')
            WHERE {KEY} IS NOT NULL AND {TIME} IS NOT NULL
            GROUP BY ALL
        """)
        n_clash = con.execute("SELECT count(*) FROM feats WHERE clash").fetchone()[0]
        assert n_clash == 0, "conflicting ties (pitstop raises DataError here)"
        # (3) the winner order (ft, ct) as ONE HUGEINT, so max() and the running max are
        #     numeric instead of struct comparisons
        code = ("(epoch_us(ft)::HUGEINT * 18446744073709551616 "
                "+ (epoch_us(ct)::HUGEINT + 9223372036854775808))")
        if known_at_time:
            con.execute(f"""
                CREATE TEMP TABLE timeline AS
                SELECT {KEY}, visible,
                       max(best) OVER (PARTITION BY {KEY} ORDER BY visible
                                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS w
                FROM (SELECT {KEY}, greatest(ft, ct) AS visible, max({code}) AS best
                      FROM feats GROUP BY ALL)
            """)
            winner = "JOIN"
        else:  # visible = ft: the winner of (key, ft) is its latest ct; carry the values
            picks = ", ".join(f"arg_max({v}, ct) AS {v}" for v in VALUES)
            con.execute(f"""
                CREATE TEMP TABLE timeline AS
                SELECT {KEY}, ft AS visible, ft AS w_ft, {picks}
                FROM feats GROUP BY {KEY}, ft
            """)
            winner = "CARRY"
        con.execute("SET preserve_insertion_order = true")
        us = int(ttl.total_seconds() * 1e6)
        files_sql = "[" + ", ".join(f"'{f}'" for f in files) + "]"
        spine_sql = (f"SELECT p.* EXCLUDE (filename, file_row_number), "
                     f"file_row_number + o.o AS row_ "
                     f"FROM read_parquet({files_sql}, filename = true, file_row_number = true) p "
                     f"JOIN spine_offsets o ON p.filename = o.f")
        if winner == "CARRY":
            fresh = f"t.w_ft >= s.{TIME} - INTERVAL '{us} microseconds'"
            picked = ", ".join(f"CASE WHEN {fresh} THEN t.{v} END AS {v}" for v in VALUES)
            body = f"""
                SELECT s.* EXCLUDE (row_), {picked}
                FROM s ASOF LEFT JOIN timeline t
                  ON s.{KEY} = t.{KEY} AND s.{TIME} >= t.visible
                ORDER BY s.row_"""
        else:  # decode the winner and fetch its values (only for spine rows that have one)
            ft = "make_timestamp((w // 18446744073709551616)::BIGINT)"
            ct = "make_timestamp(((w % 18446744073709551616) - 9223372036854775808)::BIGINT)"
            picked = ", ".join(f"f.{v}" for v in VALUES)
            body = f"""
                , won AS (
                    SELECT s.*, {ft}::TIMESTAMPTZ AS w_ft, {ct}::TIMESTAMPTZ AS w_ct
                    FROM s ASOF LEFT JOIN timeline t
                      ON s.{KEY} = t.{KEY} AND s.{TIME} >= t.visible
                )
                SELECT won.* EXCLUDE (row_, w_ft, w_ct), {picked}
                FROM won LEFT JOIN feats f
                  ON won.{KEY} = f.{KEY} AND f.ft = won.w_ft AND f.ct = won.w_ct
                 AND f.ft >= won.{TIME} - INTERVAL '{us} microseconds'
                ORDER BY won.row_"""
        con.execute(f"COPY (WITH s AS ({spine_sql}) {body}) "
                    f"TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
        total = time.perf_counter() - t0
        _print_steps(con.steps)
        con.close()
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="1Mx10M", choices=list(CASES))
    ap.add_argument("--known-at-time", action="store_true", help="pitstop's default semantics")
    ap.add_argument("--variant", default="both", choices=["current", "proposed", "both"])
    ap.add_argument("--memory-limit", help="DuckDB memory_limit for the proposed plan, e.g. 3GB")
    a = ap.parse_args()
    spine_rows, feature_rows, _, _ = CASES[a.case]
    spine, feats = generate.case_files(spine_rows, feature_rows)
    ttl = dt.timedelta(days=1)
    work = generate.DATA / "profile"
    work.mkdir(parents=True, exist_ok=True)
    tag = "kat" if a.known_at_time else "nokat"
    cur, new = work / f"{a.case}_{tag}_current.parquet", work / f"{a.case}_{tag}_proposed.parquet"
    if a.variant in {"current", "both"}:
        profile_current(spine, feats, cur, ttl, a.known_at_time)
    if a.variant in {"proposed", "both"}:
        seconds = proposed(spine, feats, new, ttl, a.known_at_time, a.memory_limit)
        print(f"proposed plan: {seconds:.2f} s total")
        if cur.exists():
            print("  " + compare.summary("proposed vs current", compare.compare(
                str(cur), str(new), str(spine))))


if __name__ == "__main__":
    main()
