"""Where pitstop's point-in-time join spends its time.

    .venv/bin/python bench/profile_pit.py --case 1Mx10M [--known-at-time] [--pandas]
    PITSTOP_PIT_MEMORY_LIMIT=2GiB .venv/bin/python bench/profile_pit.py --case huge

Runs pipelines.pit.point_in_time_join from the working tree unchanged, with DuckDB's JSON
profiler on, and prints the wall time of every statement it issues plus the heaviest
operators of each (CPU seconds summed over threads). A diagnostic: it changes nothing.
With --pandas the join returns its DataFrame instead of writing Parquet, and the process's
peak RSS is printed: what a caller holding the result in memory needs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import duckdb

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

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


def profile(spine: Path, feats: Path, out: Path | None, ttl: dt.timedelta,
            known_at_time: bool) -> float:
    """Run the join once on the case's files with every statement profiled; total seconds."""
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
        pit.point_in_time_join(str(spine), str(feats), [KEY], TIME, TIME, CREATED, ttl,
                               known_at_time, output=None if out is None else str(out))
        total = time.perf_counter() - t0
    finally:
        pit.duckdb.connect = real_connect
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(f"pit.py: {total:.2f} s total, peak RSS of this process {peak:.2f} GiB")
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="1Mx10M", choices=list(CASES))
    ap.add_argument("--known-at-time", action="store_true", help="pitstop's default semantics")
    ap.add_argument("--pandas", action="store_true", help="return a DataFrame, no Parquet")
    a = ap.parse_args()
    spine_rows, feature_rows, _, _ = CASES[a.case]
    spine, feats = generate.case_files(spine_rows, feature_rows)
    work = generate.DATA / "profile"
    work.mkdir(parents=True, exist_ok=True)
    tag = "kat" if a.known_at_time else "nokat"
    out = None if a.pandas else work / f"{a.case}_{tag}.parquet"
    profile(spine, feats, out, dt.timedelta(days=1), a.known_at_time)


if __name__ == "__main__":
    main()
