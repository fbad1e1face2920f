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
        name = node.get("operator_name") or node.get("operator_type") or ""
        timing = node.get("operator_timing", 0.0)
        extra = node.get("extra_info", {})
        detail = ""
        if isinstance(extra, dict):
            for k in ("Join Type", "Groups", "Aggregates", "Order By", "Function"):
                if k in extra:
                    detail = f" {k}: {str(extra[k])[:60]}"
                    break
        if name:
            found.append((timing, f"{name.strip()}{detail}"))
        for child in node.get("children", []):
            walk(child)

    walk(json.loads(profile.read_text()))
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
    for step in holder["con"].steps:
        if step["seconds"] < 0.05:
            continue
        print(f"  {step['seconds']:7.2f} s  {step['sql']}")
        for timing, op in _operators(step["profile"]):
            print(f"             {timing:6.2f} s  {op}")
    return total


def proposed(spine: Path, feats: Path, out: Path, ttl: dt.timedelta, known_at_time: bool,
             memory_limit: str | None) -> float:
    """The suggested plan, written out for these column names."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pit-proposed-") as spill:
        con = duckdb.connect(config={"temp_directory": spill})
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
        vstruct = "struct_pack(" + ", ".join(f"{v} := {v}" for v in VALUES) + ")"
        # (2) dedupe and find conflicting ties in one aggregate; keep values as one struct
        con.execute("SET preserve_insertion_order = false")
        con.execute(f"""
            CREATE TEMP TABLE feats AS
            SELECT {KEY}, {TIME} AS ft, {CREATED} AS ct,
                   min({vstruct}) AS v, max({vstruct}) IS DISTINCT FROM min({vstruct}) AS clash
            FROM read_parquet('{feats}')
            WHERE {KEY} IS NOT NULL AND {TIME} IS NOT NULL
            GROUP BY ALL
        """)
        clash = con.execute("SELECT count(*) FROM feats WHERE clash").fetchone()[0]
        assert clash == 0, "conflicting ties (pitstop raises DataError here)"
        # (3) the timeline carries the winner's values: no join back to the features
        if known_at_time:
            con.execute("""
                CREATE TEMP TABLE timeline AS
                SELECT entity_id, visible,
                       max(best) OVER (PARTITION BY entity_id ORDER BY visible
                                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS w
                FROM (SELECT entity_id, greatest(ft, ct) AS visible,
                             max(struct_pack(ft := ft, ct := ct, v := v)) AS best
                      FROM feats GROUP BY ALL)
            """)
        else:  # visible = ft: the running max is the (key, ft) group's own latest ct
            con.execute("""
                CREATE TEMP TABLE timeline AS
                SELECT entity_id, ft AS visible,
                       max(struct_pack(ft := ft, ct := ct, v := v)) AS w
                FROM feats GROUP BY ALL
            """)
        con.execute("SET preserve_insertion_order = true")
        us = int(ttl.total_seconds() * 1e6)
        fresh = f"t.w.ft >= s.{TIME} - INTERVAL '{us} microseconds'"
        picked = ", ".join(f"CASE WHEN {fresh} THEN t.w.v.{v} END AS {v}" for v in VALUES)
        files_sql = "[" + ", ".join(f"'{f}'" for f in files) + "]"
        con.execute(f"""
            COPY (
                WITH s AS (
                    SELECT p.* EXCLUDE (filename, file_row_number),
                           file_row_number + o.o AS row_
                    FROM read_parquet({files_sql}, filename = true, file_row_number = true) p
                    JOIN spine_offsets o ON p.filename = o.f
                )
                SELECT s.* EXCLUDE (row_), {picked}
                FROM s ASOF LEFT JOIN timeline t
                  ON s.{KEY} = t.{KEY} AND s.{TIME} >= t.visible
                ORDER BY s.row_
            ) TO '{out}' (FORMAT parquet, COMPRESSION zstd)
        """)
        con.close()
    return time.perf_counter() - t0


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
