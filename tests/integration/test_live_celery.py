"""`pitstop up --executor celery --workers 2`: a chunked backfill's mapped tasks run on both
workers, and publish the same bytes as the same backfill computed without Airflow.

Its own stack (PostgreSQL, Redis, Airflow, MLflow, two workers) on free ports and its own
PITSTOP_HOME, for four days of data: the shared `live` fixture runs the LocalExecutor.
The tasks succeeding on workers that hold no `jwt_secret` is the Execution API's token
(issued by the scheduler, checked by the api-server) working for them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines import lake
from tests.integration.conftest import PITSTOP, ROOT, land, pitstop_up
from tests.integration.live import Live, free_port, service_env

pytestmark = [pytest.mark.integration]

START, END = "2013-01-01", "2013-01-05"
VIEWS = ("origin_weather", "origin_delays", "carrier_delays", "plane")
SPEC = ROOT / "dags" / "flights_delay.yaml"


@pytest.fixture(scope="module")
def celery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("celery-home")
    env = {**service_env(home, free_port(), free_port()), "PITSTOP_REDIS_PORT": str(free_port())}
    land(env, START, END)
    with pitstop_up(home, env, "--executor", "celery", "--workers", "2") as (live, printed, pids):
        assert "Celery   2 workers (worker-1, worker-2)" in printed
        yield live
    assert {"redis", "worker-1", "worker-2", "scheduler"} <= set(pids)


def _data_hashes(root: Path) -> dict[str, str]:
    """sha256 of each committed feature data file of [START, END) under a lake folder, by view
    and day (the features DAG's own runs may have written neighbouring days too)."""
    hashes = {}
    for view in VIEWS:
        for day in lake.days(dt.date.fromisoformat(START), dt.date.fromisoformat(END)):
            folder = root / "features" / view / f"date={day}"
            if lake.read_manifest(folder) is not None:
                hashes[f"{view}/{day}"] = hashlib.sha256(
                    lake.committed_file(folder).read_bytes()).hexdigest()
    return hashes


def test_a_chunked_backfill_runs_on_both_workers_with_the_same_bytes(
        celery: Live, tmp_path: Path) -> None:
    live = celery
    _, ingested = live.run_and_wait("flights_delay_ingest", {"start": START, "end": END})
    assert ingested == "success"
    # forced: the features run the ingest's asset event triggers may have computed the days
    # already, and the backfill then maps no chunk (it plans only days to compute)
    run_id, state = live.run_and_wait("flights_delay_backfill", {
        "start": START, "end": END, "reason": "celery", "force": True})
    assert state == "success"
    chunks = live.call("auditor", "GET",
                       f"/dags/flights_delay_backfill/dagRuns/{run_id}/taskInstances",
                       params={"task_id": "compute_chunk"}).json()["task_instances"]
    assert {t["rendered_map_index"] for t in chunks} == {f"{v} {START}..{END}" for v in VIEWS}
    workers = {t["hostname"].split("@")[0] for t in chunks}
    assert workers == {"worker-1", "worker-2"}, [t["hostname"] for t in chunks]
    # the api-server shows a task's log written on a worker
    logs = live.call("auditor", "GET", f"/dags/flights_delay_backfill/dagRuns/{run_id}"
                     "/taskInstances/compute_chunk/logs/1", params={"map_index": 0})
    assert logs.status_code == 200 and "Worker startup parse complete" in logs.text, logs.text

    # the same days computed without Airflow, from a copy of the raw data the workers ingested
    reference = tmp_path / "reference"
    shutil.copytree(live.lake() / "raw", reference / "lake" / "flights_delay" / "raw")
    env = service_env(reference, 0, 0)
    subprocess.run([str(PITSTOP), "backfill", str(SPEC), "--start", START, "--end", END,
                    "--reason", "reference"], env=env, cwd=ROOT, check=True, capture_output=True)
    on_workers = _data_hashes(live.lake())
    assert len(on_workers) == len(VIEWS) * 4
    assert on_workers == _data_hashes(reference / "lake" / "flights_delay")
