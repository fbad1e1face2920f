"""One real PostgreSQL + Airflow + MLflow (`pitstop up`) for the whole session, on free ports.

Started on first use by a live test (the REST tests and the browser test share it) with its
own PITSTOP_HOME, stopped with `pitstop down` at the end of the session, which must leave no
process behind. Ports are picked free at start, so another checkout running the same suite
at the same time cannot collide; `PITSTOP_TEST_AIRFLOW_PORT` / `_MLFLOW_PORT` pin them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.orchestration.local import group_alive
from tests.integration.live import DAG_IDS, Live, free_port, service_env

ROOT = Path(__file__).resolve().parents[2]
PITSTOP = Path(sys.executable).parent / "pitstop"
START, END = "2013-01-01", "2013-01-11"


@contextlib.contextmanager
def pitstop_up(home: Path, env: dict[str, str], *options: str
               ) -> Iterator[tuple[Live, str, dict[str, int]]]:
    """`pitstop up *options` in `home` with `env`, its DAGs parsed and unpaused: the users'
    view of it, what `up` printed and the PIDs it recorded. `pitstop down` at the end must
    leave none of them alive."""
    up = subprocess.run([str(PITSTOP), "up", *options], check=False, env=env, cwd=ROOT,
                        capture_output=True, text=True)
    pids = {p.stem: int(p.read_text()) for p in (home / "run").glob("*.pid")}
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        live = Live(home, int(env["PITSTOP_AIRFLOW_PORT"]), int(env["PITSTOP_MLFLOW_PORT"]))
        live.wait_dags(DAG_IDS)
        for dag in DAG_IDS:
            live.unpause(dag)
        yield live, up.stdout, pids
    finally:
        down = subprocess.run([str(PITSTOP), "down"], check=False, env=env, cwd=ROOT,
                              capture_output=True, text=True)
        assert down.returncode == 0, down.stderr
        assert not [name for name, pid in pids.items() if group_alive(pid)], "orphans left"


def land(env: dict[str, str], start: str, end: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "dags" / "flights_delay" / "land.py"),
                    "--start", start, "--end", end], env=env, cwd=ROOT, check=True,
                   capture_output=True)


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("live-home")
    airflow_port = int(os.environ.get("PITSTOP_TEST_AIRFLOW_PORT") or free_port())
    mlflow_port = int(os.environ.get("PITSTOP_TEST_MLFLOW_PORT") or free_port())
    env = service_env(home, airflow_port, mlflow_port)
    land(env, START, END)
    with pitstop_up(home, env) as (live, printed, pids):
        assert f"Airflow  {live.api}" in printed and "scientist  User" in printed
        yield live
    assert sorted(pids) == ["api-server", "dag-processor", "mlflow", "postgres",
                            "scheduler", "triggerer"]


@pytest.fixture(scope="session")
def ingested(live: Live) -> Live:
    """The live services after a scientist ingested [START, END) (`live.ingest_run_id`)."""
    run_id, state = live.run_and_wait("flights_delay_ingest", {"start": START, "end": END})
    assert state == "success", run_id
    live.ingest_run_id = run_id
    return live
