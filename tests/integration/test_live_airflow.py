"""The pipeline on a real Airflow (api-server, scheduler, dag-processor, triggerer) and MLflow.

`pitstop up` starts the services with their own PITSTOP_HOME and ports; the tests act as the
users do, through the REST API the UI calls: a scientist ingests, backfills features with
Airflow's own backfill and with the backfill DAG's form, and retrains; an auditor is refused.
`pitstop down` must leave no process behind.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
PITSTOP = Path(sys.executable).parent / "pitstop"
AIRFLOW_PORT, MLFLOW_PORT = 18080, 15000
API = f"http://127.0.0.1:{AIRFLOW_PORT}"
START, END = "2013-01-01", "2013-01-11"


class Live:
    """The running services and a token per user."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.passwords = json.loads((home / "secrets" / "passwords.json").read_text())
        self.tokens: dict[str, str] = {}

    def call(self, user: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        if user not in self.tokens:
            response = requests.post(f"{API}/auth/token", timeout=30, json={
                "username": user, "password": self.passwords[user]})
            response.raise_for_status()
            self.tokens[user] = response.json()["access_token"]
        return requests.request(method, f"{API}/api/v2{path}", timeout=60,
                                headers={"Authorization": f"Bearer {self.tokens[user]}"},
                                **kwargs)

    def trigger(self, user: str, dag_id: str, conf: dict[str, Any]) -> requests.Response:
        return self.call(user, "POST", f"/dags/{dag_id}/dagRuns",
                         json={"logical_date": None, "conf": conf})

    def unpause(self, dag_id: str) -> None:
        self.call("scientist", "PATCH", f"/dags/{dag_id}",
                  json={"is_paused": False}).raise_for_status()

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.call("auditor", "GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise TimeoutError(f"{dag_id} {run_id} still running after {timeout}s")

    def run_and_wait(self, dag_id: str, conf: dict[str, Any]) -> tuple[str, str]:
        response = self.trigger("scientist", dag_id, conf)
        assert response.status_code == 200, response.text
        run_id = response.json()["dag_run_id"]
        return run_id, self.wait_run(dag_id, run_id)

    def lake(self) -> Path:
        return self.home / "lake"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "MLFLOW_TRACKING", "PITSTOP"))}
    return {**env, "PITSTOP_HOME": str(home), "PITSTOP_AIRFLOW_PORT": str(AIRFLOW_PORT),
            "PITSTOP_MLFLOW_PORT": str(MLFLOW_PORT)}


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("live-home")
    env = _env(home)
    subprocess.run([sys.executable, str(ROOT / "dags" / "flights_delay" / "land.py"),
                    "--start", START, "--end", END], env=env, cwd=ROOT, check=True,
                   capture_output=True)
    up = subprocess.run([str(PITSTOP), "up"], check=False, env=env, cwd=ROOT, capture_output=True, text=True)
    pids = {p.stem: int(p.read_text()) for p in (home / "run").glob("*.pid")}
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"Airflow  {API}" in up.stdout and "scientist  user" in up.stdout
        live = Live(home)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # the dag-processor parses on its own schedule
            dags = live.call("auditor", "GET", "/dags").json().get("dags", [])
            if len(dags) == 4:
                break
            time.sleep(2)
        for dag in ("flights_delay_ingest", "flights_delay_features", "flights_delay_backfill",
                    "flights_delay_train"):
            live.unpause(dag)
        yield live
    finally:
        down = subprocess.run([str(PITSTOP), "down"], check=False, env=env, cwd=ROOT, capture_output=True,
                              text=True)
        assert down.returncode == 0, down.stderr
        assert sorted(pids) == ["api-server", "dag-processor", "mlflow", "scheduler",
                                "triggerer"]
        assert not [name for name, pid in pids.items() if _group_alive(pid)], "orphans left"


@pytest.fixture(scope="module")
def ingested(live: Live) -> Live:
    run_id, state = live.run_and_wait("flights_delay_ingest", {"start": START, "end": END})
    assert state == "success", run_id
    return live


def test_auditor_is_read_only(live: Live) -> None:
    assert live.trigger("auditor", "flights_delay_backfill", {}).status_code == 403
    assert live.call("auditor", "POST", "/backfills", json={
        "dag_id": "flights_delay_features", "from_date": "2013-01-02T00:00:00Z",
        "to_date": "2013-01-03T00:00:00Z"}).status_code == 403
    assert live.call("auditor", "PATCH", "/dags/flights_delay_train",
                     json={"is_paused": True}).status_code == 403
    assert live.call("auditor", "GET", "/dags/flights_delay_train").status_code == 200


@pytest.mark.parametrize(("conf", "message"), [
    ({"views": ["origin_weather", "nope"]}, "is not one of"),
    ({"start": "2013-02-30"}, "is not a 'date'"),
    ({"views": []}, "views"),
])
def test_backfill_form_rejects_invalid_input(live: Live, conf: dict[str, Any],
                                             message: str) -> None:
    response = live.trigger("scientist", "flights_delay_backfill", conf)
    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_airflow_backfill_recomputes_a_week(ingested: Live) -> None:
    live = ingested
    response = live.call("scientist", "POST", "/backfills", json={
        "dag_id": "flights_delay_features", "from_date": "2013-01-03T00:00:00Z",
        "to_date": "2013-01-09T00:00:00Z", "reprocess_behavior": "completed",
        "max_active_runs": 4, "run_backwards": False, "dag_run_conf": {}})
    assert response.status_code == 200, response.text
    backfill_id = response.json()["id"]
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        if live.call("auditor", "GET", f"/backfills/{backfill_id}").json()["completed_at"]:
            break
        time.sleep(3)
    runs = live.call("auditor", "GET", "/dags/flights_delay_features/dagRuns",
                     params={"run_type": "backfill", "limit": 50}).json()["dag_runs"]
    assert len(runs) >= 6 and {r["state"] for r in runs} == {"success"}
    days = {p.name for p in (live.lake() / "features" / "origin_weather").glob("date=*")}
    week = {f"date={d}" for d in (dt.date(2013, 1, 3) + dt.timedelta(days=i) for i in range(6))}
    assert week <= days


def test_backfill_dag_then_retrain_from_the_form(ingested: Live) -> None:
    live = ingested
    run_id, state = live.run_and_wait("flights_delay_backfill", {
        "start": START, "end": END, "reason": "fresh features"})
    assert state == "success"
    chunks = live.call("auditor", "GET",
                       f"/dags/flights_delay_backfill/dagRuns/{run_id}/taskInstances",
                       params={"task_id": "compute_chunk"}).json()["task_instances"]
    assert {t["rendered_map_index"] for t in chunks} == {
        f"{view} {START}" for view in ("origin_weather", "origin_delays", "carrier_delays",
                                       "plane")}
    manifest = json.loads((live.lake() / "features" / "plane" / "date=2013-01-05"
                           / "_manifest.json").read_text())
    assert manifest["produced_by"]["reason"] == "fresh features"
    assert manifest["produced_by"]["triggered_by"] == "scientist"

    bad_id, bad_state = live.run_and_wait("flights_delay_backfill", {
        "start": "2013-01-08", "end": "2013-01-02"})
    assert bad_state == "failed", bad_id

    train_id, train_state = live.run_and_wait("flights_delay_train", {
        "start": START, "end": END, "eval_start": "2013-01-09", "reason": "scientist retrain"})
    assert train_state == "success"
    links = live.call("scientist", "GET", f"/dags/flights_delay_train/dagRuns/{train_id}"
                      "/taskInstances/train_model/links").json()["extra_links"]
    assert links["MLflow run"].startswith(f"http://127.0.0.1:{MLFLOW_PORT}/#/experiments/")
    run_uuid = links["MLflow run"].rsplit("/", 1)[1]
    mlflow_run = requests.get(f"http://127.0.0.1:{MLFLOW_PORT}/api/2.0/mlflow/runs/get",
                              params={"run_id": run_uuid}, timeout=30).json()["run"]
    tags = {t["key"]: t["value"] for t in mlflow_run["data"]["tags"]}
    assert tags["triggered_by"] == "scientist" and tags["reason"] == "scientist retrain"
    registered = live.call("scientist", "GET", f"/dags/flights_delay_train/dagRuns/{train_id}"
                           "/taskInstances/register_model/links").json()["extra_links"]
    assert registered["MLflow model version"].endswith("/#/models/flights_delay/versions/1")
