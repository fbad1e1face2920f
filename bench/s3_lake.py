"""The flights example over 2013 with its lake in an S3 bucket, against the same run on a folder.

    make bench-s3                              # = .venv/bin/python bench/s3_lake.py
    .venv/bin/python bench/s3_lake.py --end 2013-01-22 --eval-start 2013-01-15  # to try it

Both ways run `pitstop run dags/flights_delay.yaml --json` as a user does, each with a fresh
`PITSTOP_HOME` of its own (Airflow DB, MLflow store) and one landing folder landed once
beforehand (`PITSTOP_LANDING`), so the only difference is `PITSTOP_LAKE`: the default folder,
or `s3://<bucket>/lake` on a SeaweedFS started for the run on free ports (the tests' own
`tests/s3server.py`, stopped at the end). Timed: the wall seconds of each `pitstop run`, the
local one first. Printed: both times, the ratio S3 / folder, and whether both runs gave the
same `dataset_id` (they must: the storage never changes the data). See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import s3server  # noqa: E402

BIN = Path(sys.executable).parent
SPEC = ROOT / "dags" / "flights_delay.yaml"


def timed_run(env: dict[str, str], window: list[str]) -> tuple[float, dict]:
    """Wall seconds and the JSON summary of one `pitstop run`; raises with its log's tail."""
    began = time.perf_counter()
    done = subprocess.run([str(BIN / "pitstop"), "run", str(SPEC), *window, "--json",
                           "--reason", "bench s3"],
                          env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"pitstop run failed ({done.returncode}): {done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2013, 1, 1))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2014, 1, 1))
    parser.add_argument("--eval-start", type=dt.date.fromisoformat,
                        help="for a window shorter than the spec's eval_days")
    args = parser.parse_args()
    window = ["--start", str(args.start), "--end", str(args.end)] + (
        ["--eval-start", str(args.eval_start)] if args.eval_start else [])
    with tempfile.TemporaryDirectory(prefix="pitstop-bench-s3-") as scratch:
        work = Path(scratch)
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("PITSTOP_", "AWS_", "MLFLOW_", "AIRFLOW_"))}
        base["PITSTOP_LANDING"] = str(work / "landing")
        subprocess.run([str(BIN / "python"), str(ROOT / "dags" / "flights_delay" / "land.py"),
                        "--start", str(args.start), "--end", str(args.end)],
                       env={**base, "PITSTOP_HOME": str(work / "land")}, check=True,
                       capture_output=True)
        server = s3server.start(work / "seaweedfs")
        try:
            url = f"s3://{server.new_bucket()}/lake"
            print(f"flights example {args.start}..{args.end}, `pitstop run`: folder vs {url} "
                  f"on SeaweedFS; python {platform.python_version()}, {os.cpu_count()} cpus, "
                  "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()), flush=True)
            local, local_summary = timed_run({**base, "PITSTOP_HOME": str(work / "local")},
                                             window)
            print(f"folder  {local:8.1f} s", flush=True)
            remote, remote_summary = timed_run(
                {**base, "PITSTOP_HOME": str(work / "s3"), **server.env(url)}, window)
            print(f"s3      {remote:8.1f} s", flush=True)
        finally:
            s3server.stop(server.pid)
    same = local_summary["dataset_id"] == remote_summary["dataset_id"]
    print(f"ratio s3 / folder: {remote / local:.2f}x; dataset_id "
          f"{'identical' if same else 'DIFFERENT'} ({local_summary['dataset_id'][:12]}…, "
          f"{local_summary['training_set']['rows']:,} rows)")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
