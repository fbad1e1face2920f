"""Full-2013 feature backfill through the real scheduler, both ways a scientist can start it.

    make bench-backfill                               # = .venv/bin/python bench/backfill_throughput.py
    .venv/bin/python bench/backfill_throughput.py --max-active-runs 2 --daily-timeout 1800

Lands all of 2013 (`dags/flights_delay/land.py`), starts Airflow and MLflow with `pitstop up`
on their own PITSTOP_HOME and free ports, ingests 2013 through `flights_delay_ingest` (the
features DAG is kept paused meanwhile so the raw Asset events do not start a features run),
then times, as the scientist:

1. chunked: `flights_delay_backfill` over [2013-01-01, 2014-01-01), all views, from its form
   (REST trigger): 12 months x 4 views = 48 mapped tasks;
2. daily: Airflow's backfill (`POST /api/v2/backfills`, once, the DAG unpaused, as the UI's
   dialog sends it) of `flights_delay_features` over the same range: 365 daily runs of 5
   tasks each, `--max-active-runs` at a time.

Each prints and records wall time, feature rows written and rows/s, plus the CPU the
services used and what other processes took from the 2 cores meanwhile (contention). Both
ways must write byte-identical data files; the script checks. Results go to
bench/backfill_results.json and bench/BACKFILL.md. `pitstop down` runs at the end, always.
Never run by the tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

import pipelines.lake  # noqa: E402
from tests.integration.live import DAG_IDS, Live, free_port, service_env  # noqa: E402

PITSTOP = Path(sys.executable).parent / "pitstop"
START, END = dt.date(2013, 1, 1), dt.date(2014, 1, 1)
VIEWS = ("origin_weather", "origin_delays", "carrier_delays", "plane")
RESULTS_JSON = BENCH / "backfill_results.json"
RESULTS_MD = BENCH / "BACKFILL.md"


def busy_cpu_seconds() -> float:
    """CPU seconds all processes have used since boot (user+nice+system+irq+softirq+steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def services_cpu_seconds(sessions: set[int]) -> float:
    """CPU seconds of every live process in the services' sessions, reaped children included.

    Each service leads its own session (`pitstop up`); task processes run inside the
    scheduler's. A process's own time plus its reaped children's counts every second once.
    """
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) in sessions:  # field 6 of stat: session id
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


class Meter:
    """Wall time, the services' CPU and everyone else's CPU over one measured step."""

    def __init__(self, sessions: set[int]) -> None:
        self.sessions = sessions

    def __enter__(self) -> Meter:
        self.load = os.getloadavg()[0]
        self.busy, self.ours = busy_cpu_seconds(), services_cpu_seconds(self.sessions)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *_: Any) -> None:
        self.seconds = time.perf_counter() - self.t0
        ours = services_cpu_seconds(self.sessions) - self.ours
        busy = busy_cpu_seconds() - self.busy
        self.figures = {"wall_seconds": round(self.seconds, 1),
                        "services_cpu_seconds": round(ours, 1),
                        "other_cpu_seconds": round(max(0.0, busy - ours), 1),
                        "cpu_capacity_seconds": round(self.seconds * (os.cpu_count() or 1), 1),
                        "loadavg_1m_before": round(self.load, 2),
                        "loadavg_1m_after": round(os.getloadavg()[0], 2)}


def feature_rows_and_hashes(lake: Path) -> tuple[int, dict[str, str]]:
    """Rows in the 2013 feature partitions of every view, and each data file's sha256."""
    import pyarrow.parquet as pq

    rows, hashes = 0, {}
    for view in VIEWS:
        for day in range((END - START).days):
            date = (START + dt.timedelta(days=day)).isoformat()
            folder = lake / "features" / view / f"date={date}"
            if pipelines.lake.read_manifest(folder) is not None:
                data = pipelines.lake.committed_file(folder)
                rows += pq.read_metadata(data).num_rows
                hashes[f"{view}/{date}"] = hashlib.sha256(data.read_bytes()).hexdigest()
    return rows, hashes


def wait_backfill(live: Live, backfill_id: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if live.call("auditor", "GET", f"/backfills/{backfill_id}").json().get("completed_at"):
            return True
        time.sleep(5)
    return False


def run_states(live: Live, dag_id: str, **params: Any) -> dict[str, int]:
    states: dict[str, int] = {}
    offset = 0
    while True:
        page = live.call("auditor", "GET", f"/dags/{dag_id}/dagRuns",
                         params={"limit": 100, "offset": offset, **params}).json()["dag_runs"]
        for run in page:
            states[run["state"]] = states.get(run["state"], 0) + 1
        if len(page) < 100:
            return states
        offset += 100


def chunked(live: Live, meter: Meter) -> dict[str, Any]:
    # forced: the benchmark measures computing the year, and the DAG plans only days to compute
    conf = {"start": START.isoformat(), "end": END.isoformat(), "views": list(VIEWS),
            "reason": "bench: full 2013 in monthly chunks", "force": True}
    with meter:
        run_id, state = live.run_and_wait("flights_delay_backfill", conf, timeout=3600)
    tasks = live.call("auditor", "GET", f"/dags/flights_delay_backfill/dagRuns/{run_id}"
                      "/taskInstances", params={"limit": 100}).json()["task_instances"]
    return {"state": state, "run_id": run_id,
            "tasks": sum(1 for t in tasks if t["task_id"] == "compute_chunk"), **meter.figures}


def daily(live: Live, meter: Meter, max_active_runs: int, timeout: float) -> dict[str, Any]:
    body = {"dag_id": "flights_delay_features", "from_date": f"{START}T00:00:00Z",
            "to_date": f"{END}T00:00:00Z", "reprocess_behavior": "completed",
            "max_active_runs": max_active_runs, "run_backwards": False, "dag_run_conf": {}}
    planned = live.call("scientist", "POST", "/backfills/dry_run", json=body).json()
    live.unpause("flights_delay_features")  # as a scientist's DAG is: no pause trick
    with meter:
        response = live.create_backfill("scientist", body)
        response.raise_for_status()
        done = wait_backfill(live, response.json()["id"], timeout)
    states = run_states(live, "flights_delay_features", run_type="backfill")
    return {"planned_runs": planned.get("total_entries"), "completed": done,
            "run_states": states, "max_active_runs": max_active_runs, **meter.figures}


def rates(result: dict[str, Any], rows: int) -> dict[str, Any]:
    return {**result, "feature_rows": rows,
            "rows_per_second": round(rows / result["wall_seconds"]) if rows else 0}


def _seconds(value: float | None) -> str:
    return "an unrecorded time (an earlier run)" if value is None else f"{value:.0f} s"


def render(results: dict[str, Any]) -> str:
    c, d, m = results["chunked"], results.get("daily"), results["machine"]
    lines = [
        "# Full-2013 feature backfill through the real scheduler",
        "",
        f"Measured {results['when']} by `make bench-backfill` (bench/backfill_throughput.py) on "
        f"{m['cpus']} cores, Python {m['python']}, LocalExecutor on SQLite, "
        f"`AIRFLOW__CORE__PARALLELISM={m['parallelism']}`. 4 feature views x 365 days = 1,460 "
        "day partitions; ingest of 2013 beforehand took "
        f"{_seconds(results['ingest'].get('wall_seconds'))}.",
        "",
        "| way | what runs | wall | feature rows | rows/s | services CPU | other processes' CPU |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| `flights_delay_backfill` (form), monthly chunks | 1 run, {c['tasks']} mapped tasks "
        f"(12 months x 4 views), state {c['state']} | **{c['wall_seconds']:.0f} s** | "
        f"{c['feature_rows']:,} | {c['rows_per_second']:,} | {c['services_cpu_seconds']:.0f} s | "
        f"{c['other_cpu_seconds']:.0f} s |",
    ]
    if d:
        states = ", ".join(f"{n} {s}" for s, n in sorted(d["run_states"].items()))
        finished = "" if d["completed"] else " (stopped at the time limit: partial)"
        lines.append(
            f"| Airflow Backfill of `flights_delay_features` | {d['planned_runs']} daily runs x 5 "
            f"tasks, max_active_runs={d['max_active_runs']}: {states}{finished} | "
            f"**{d['wall_seconds']:.0f} s** | {d['feature_rows']:,} | {d['rows_per_second']:,} | "
            f"{d['services_cpu_seconds']:.0f} s | {d['other_cpu_seconds']:.0f} s |")
    lines += ["", f"Identical data files both ways: {results.get('identical', 'not compared')}.",
              "", "Contention: *other processes' CPU* is the machine's busy CPU time during the "
              "step less the services' own (api-server, scheduler and every task process, "
              "dag-processor, triggerer, MLflow); the capacity was "
              f"{c['cpu_capacity_seconds']:.0f} CPU-s for the chunked step"
              + (f" and {d['cpu_capacity_seconds']:.0f} CPU-s for the daily one" if d else "")
              + f". Load average before/after: chunked {c['loadavg_1m_before']}/"
              f"{c['loadavg_1m_after']}"
              + (f", daily {d['loadavg_1m_before']}/{d['loadavg_1m_after']}" if d else "") + ".",
              "", results.get("notes", "")]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("/tmp/pitstop-bench-backfill"),
                        help="PITSTOP_HOME of the benchmark's services (lake, DBs, logs)")
    parser.add_argument("--max-active-runs", type=int, default=2,
                        help="runs of the daily backfill at a time (2 suits 2 cores)")
    parser.add_argument("--daily-timeout", type=float, default=3600,
                        help="seconds before the daily backfill is recorded as partial")
    parser.add_argument("--skip-daily", action="store_true")
    parser.add_argument("--reuse", action="store_true",
                        help="keep --home's landed and ingested 2013 from an earlier run "
                        "(its ingest figures are kept too) instead of starting afresh")
    parser.add_argument("--notes", default="", help="a paragraph added to BACKFILL.md")
    args = parser.parse_args()

    home = args.home.resolve()
    if (home / "run").exists() and any((home / "run").glob("*.pid")):
        print(f"{home} has services running; `PITSTOP_HOME={home} pitstop down` first")
        return 1
    earlier = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    reuse = args.reuse and (home / "lake" / "flights_delay" / "raw").exists()
    # A reused home keeps the landing files and the lake; Airflow starts on a fresh DB.
    for stale in ([home] if not reuse else [home / "airflow", home / "logs"]):
        subprocess.run(["rm", "-rf", str(stale)], check=True)
    home.mkdir(parents=True, exist_ok=True)
    env = service_env(home, free_port(), free_port())
    ports = int(env["PITSTOP_AIRFLOW_PORT"]), int(env["PITSTOP_MLFLOW_PORT"])
    if not reuse:
        print(f"PITSTOP_HOME={home}; landing 2013 ...", flush=True)
        subprocess.run([sys.executable, str(ROOT / "dags" / "flights_delay" / "land.py"),
                        "--start", START.isoformat(), "--end", END.isoformat()],
                       env=env, cwd=ROOT, check=True)
    results: dict[str, Any] = {"when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "parallelism": None}, "notes": args.notes}
    if reuse:
        results["ingest"] = {**earlier.get("ingest", {"wall_seconds": None}),
                             "by_an_earlier_run": earlier.get("when", "yes")}
    try:
        up = subprocess.run([str(PITSTOP), "up"], env=env, cwd=ROOT, capture_output=True,
                            text=True)
        if up.returncode != 0:
            print(up.stdout + up.stderr)
            return 1
        from pipelines.orchestration.local import PARALLELISM

        results["machine"]["parallelism"] = PARALLELISM
        live = Live(home, *ports)
        live.wait_dags(DAG_IDS)
        sessions = {int(p.read_text()) for p in (home / "run").glob("*.pid")}
        meter = Meter(sessions)
        if not reuse:
            live.unpause("flights_delay_ingest")  # features stays paused: no asset-triggered run
            print("ingesting 2013 ...", flush=True)
            with meter:
                _, state = live.run_and_wait("flights_delay_ingest", {
                    "start": START.isoformat(), "end": END.isoformat()}, timeout=3600)
            results["ingest"] = {"state": state, **meter.figures}
            print(f"  {state} in {meter.seconds:.0f} s", flush=True)
            if state != "success":
                return 1

        live.unpause("flights_delay_backfill")
        print("chunked: flights_delay_backfill over 2013 ...", flush=True)
        result = chunked(live, meter)
        rows, chunked_hashes = feature_rows_and_hashes(live.lake())
        results["chunked"] = rates(result, rows)
        print(f"  {result['state']} in {result['wall_seconds']:.0f} s, {rows:,} rows, "
              f"{results['chunked']['rows_per_second']:,} rows/s", flush=True)

        if not args.skip_daily:
            print(f"daily: Airflow backfill of flights_delay_features, 365 runs, "
                  f"max_active_runs={args.max_active_runs} ...", flush=True)
            result = daily(live, meter, args.max_active_runs, args.daily_timeout)
            rows, daily_hashes = feature_rows_and_hashes(live.lake())
            results["daily"] = rates(result, rows)
            changed = sorted(k for k in chunked_hashes if daily_hashes.get(k) != chunked_hashes[k])
            results["identical"] = ("yes, all 1,460" if not changed and len(daily_hashes) == 1460
                                    else f"no: {len(changed)} differ, e.g. {changed[:3]}")
            print(f"  {result['run_states']} in {result['wall_seconds']:.0f} s, "
                  f"{results['daily']['rows_per_second']:,} rows/s; identical: "
                  f"{results['identical']}", flush=True)
    finally:
        down = subprocess.run([str(PITSTOP), "down"], env=env, cwd=ROOT, capture_output=True,
                              text=True)
        print(down.stdout.strip() or down.stderr.strip())
        RESULTS_JSON.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if "chunked" not in results:
        return 1
    RESULTS_MD.write_text(render(results))
    print(f"wrote {RESULTS_MD.relative_to(ROOT)} and {RESULTS_JSON.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
