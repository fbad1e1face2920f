"""Full-2013 chunked feature backfill on the CeleryExecutor with 1 and with 2 workers.

    make bench-celery                 # = .venv/bin/python bench/celery_workers.py
    .venv/bin/python bench/celery_workers.py --reuse   # keep --home's landed, ingested 2013

Lands and ingests all of 2013 once (as bench/backfill_throughput.py does), then for each
worker count starts `pitstop up --executor celery --workers N` on a fresh Airflow DB (the
lake kept), runs `flights_delay_backfill` over 2013 from its form (48 mapped tasks) as the
scientist, records wall time and CPU, the workers each task ran on, and the data files'
sha256, and stops the services. The two runs must write identical bytes. The result, as a
ratio, replaces the Celery section of bench/BACKFILL.md; raw figures go to
bench/celery_results.json. Never run by the tests.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from backfill_throughput import (  # noqa: E402
    END,
    PITSTOP,
    RESULTS_MD,
    ROOT,
    START,
    Meter,
    chunked,
    feature_rows_and_hashes,
)

from tests.integration.live import DAG_IDS, Live, free_port, service_env  # noqa: E402

RESULTS_JSON = BENCH / "celery_results.json"
SECTION = "## CeleryExecutor: 1 and 2 workers"


def one_count(home: Path, workers: int, ingest: bool) -> dict[str, Any]:
    """Start the stack with `workers` Celery workers, (ingest 2013,) backfill it; stop."""
    subprocess.run(["rm", "-rf", str(home / "airflow"), str(home / "workers"),
                    str(home / "postgres"), str(home / "redis")], check=True)
    env = {**service_env(home, free_port(), free_port()), "PITSTOP_REDIS_PORT": str(free_port())}
    result: dict[str, Any] = {"workers": workers}
    try:
        up = subprocess.run([str(PITSTOP), "up", "--executor", "celery", "--workers",
                             str(workers)], env=env, cwd=ROOT, capture_output=True, text=True)
        if up.returncode != 0:
            raise RuntimeError(up.stdout + up.stderr)
        live = Live(home, int(env["PITSTOP_AIRFLOW_PORT"]), int(env["PITSTOP_MLFLOW_PORT"]))
        live.wait_dags(DAG_IDS)
        meter = Meter({int(p.read_text()) for p in (home / "run").glob("*.pid")})
        if ingest:
            live.unpause("flights_delay_ingest")
            with meter:
                _, state = live.run_and_wait("flights_delay_ingest", {
                    "start": START.isoformat(), "end": END.isoformat()}, timeout=3600)
            result["ingest"] = {"state": state, **meter.figures}
            print(f"  ingest {state} in {meter.seconds:.0f} s", flush=True)
        live.unpause("flights_delay_backfill")
        result["chunked"] = chunked(live, meter)
        tasks = live.call("auditor", "GET", "/dags/flights_delay_backfill/dagRuns/"
                          f"{result['chunked']['run_id']}/taskInstances",
                          params={"task_id": "compute_chunk", "limit": 100}).json()
        result["tasks_by_worker"] = dict(collections.Counter(
            t["hostname"].split("@")[0] for t in tasks["task_instances"]))
        result["rows"], result["hashes"] = feature_rows_and_hashes(live.lake())
        print(f"  {workers} worker(s): {result['chunked']['state']} in "
              f"{result['chunked']['wall_seconds']:.0f} s, tasks {result['tasks_by_worker']}",
              flush=True)
    finally:
        subprocess.run([str(PITSTOP), "down"], env=env, cwd=ROOT, capture_output=True)
    return result


def render(one: dict[str, Any], two: dict[str, Any], when: str) -> str:
    rows = [f"| {r['workers']} | {r['chunked']['state']} | {r['chunked']['wall_seconds']:.0f} s "
            f"| {r['rows']:,} | {r['tasks_by_worker']} | {r['chunked']['services_cpu_seconds']:.0f} s "
            f"| {r['chunked']['other_cpu_seconds']:.0f} s |" for r in (one, two)]
    identical = one["hashes"] == two["hashes"] and len(one["hashes"]) == 1460
    ratio = one["chunked"]["wall_seconds"] / two["chunked"]["wall_seconds"]
    return "\n".join([
        SECTION, "",
        f"Measured {when} by `bench/celery_workers.py` on the same 2 cores: "
        "`pitstop up --executor celery --workers N` (Redis broker, worker concurrency "
        "PARALLELISM / N), `flights_delay_backfill` over 2013 from its form, 48 mapped tasks.", "",
        "| workers | state | wall | feature rows | tasks per worker | services CPU | other CPU |",
        "| --- | --- | --- | --- | --- | --- | --- |", *rows, "",
        f"**1 worker / 2 workers wall time: {ratio:.2f}**. Identical data files: "
        f"{'yes, all 1,460' if identical else 'NO'}. Both workers share the 2 cores, so a "
        "second worker adds task slots only as far as the cores are idle.", ""])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("/tmp/pitstop-bench-celery"))
    parser.add_argument("--reuse", action="store_true",
                        help="keep --home's landed and ingested 2013 from an earlier run")
    args = parser.parse_args()
    home = args.home.resolve()
    reuse = args.reuse and (home / "lake" / "flights_delay" / "raw").exists()
    if not reuse:
        subprocess.run(["rm", "-rf", str(home)], check=True)
        home.mkdir(parents=True)
        print(f"PITSTOP_HOME={home}; landing 2013 ...", flush=True)
        subprocess.run([sys.executable, str(ROOT / "dags" / "flights_delay" / "land.py"),
                        "--start", START.isoformat(), "--end", END.isoformat()],
                       env=service_env(home, 0, 0), cwd=ROOT, check=True)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    one = one_count(home, 1, ingest=not reuse)
    two = one_count(home, 2, ingest=False)
    RESULTS_JSON.write_text(json.dumps({"when": when, "runs": [
        {k: v for k, v in r.items() if k != "hashes"} for r in (one, two)]}, indent=2) + "\n")
    text = RESULTS_MD.read_text()
    kept = text.split(SECTION)[0].rstrip("\n")
    RESULTS_MD.write_text(f"{kept}\n\n{render(one, two, when)}")
    return 0 if one["hashes"] == two["hashes"] else 1


if __name__ == "__main__":
    sys.exit(main())
