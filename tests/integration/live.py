"""Talking to a running pitstop (`pitstop up`) as its users do: the REST API the UI calls."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import requests

DAG_IDS = ("flights_delay_ingest", "flights_delay_features", "flights_delay_backfill",
           "flights_delay_train")


def free_port() -> int:
    """A port nothing listens on now, so parallel runs in other checkouts cannot collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(home: Path, airflow_port: int, mlflow_port: int) -> dict[str, str]:
    """This process's environment less any Airflow/MLflow/pitstop settings, plus our own."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "MLFLOW_TRACKING", "PITSTOP"))}
    return {**env, "PITSTOP_HOME": str(home), "PITSTOP_AIRFLOW_PORT": str(airflow_port),
            "PITSTOP_MLFLOW_PORT": str(mlflow_port)}


class Live:
    """The running services and a token per user."""

    def __init__(self, home: Path, airflow_port: int, mlflow_port: int) -> None:
        self.home = home
        self.api = f"http://127.0.0.1:{airflow_port}"
        self.mlflow = f"http://127.0.0.1:{mlflow_port}"
        self.passwords = json.loads((home / "secrets" / "passwords.json").read_text())
        self.tokens: dict[str, str] = {}
        self.ingest_run_id: str | None = None

    def call(self, user: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        if user not in self.tokens:
            response = requests.post(f"{self.api}/auth/token", timeout=30, json={
                "username": user, "password": self.passwords[user]})
            response.raise_for_status()
            self.tokens[user] = response.json()["access_token"]
        return requests.request(method, f"{self.api}/api/v2{path}", timeout=60,
                                headers={"Authorization": f"Bearer {self.tokens[user]}"},
                                **kwargs)

    def mlflow_call(self, user: str | None, method: str, path: str,
                    **kwargs: Any) -> requests.Response:
        """MLflow's REST API (`/api/2.0/mlflow/<path>`) as `user` (basic auth; None: anonymous)."""
        auth = None if user is None else (user, self.passwords[user])
        return requests.request(method, f"{self.mlflow}/api/2.0/mlflow/{path}", timeout=60,
                                auth=auth, **kwargs)

    def trigger(self, user: str, dag_id: str, conf: dict[str, Any]) -> requests.Response:
        return self.call(user, "POST", f"/dags/{dag_id}/dagRuns",
                         json={"logical_date": None, "conf": conf})

    def unpause(self, dag_id: str) -> None:
        self.call("scientist", "PATCH", f"/dags/{dag_id}",
                  json={"is_paused": False}).raise_for_status()

    def wait_dags(self, dag_ids: tuple[str, ...], timeout: float = 90) -> None:
        """The dag-processor parses on its own schedule: wait until it has these DAGs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dags = self.call("auditor", "GET", "/dags", params={"limit": 1000}).json()
            if set(dag_ids) <= {d["dag_id"] for d in dags.get("dags", [])}:
                return
            time.sleep(2)
        raise TimeoutError(f"DAGs {sorted(dag_ids)} not all parsed after {timeout}s")

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.call("auditor", "GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise TimeoutError(f"{dag_id} {run_id} still running after {timeout}s")

    def run_and_wait(self, dag_id: str, conf: dict[str, Any],
                     timeout: float = 300) -> tuple[str, str]:
        response = self.trigger("scientist", dag_id, conf)
        assert response.status_code == 200, response.text
        run_id = response.json()["dag_run_id"]
        return run_id, self.wait_run(dag_id, run_id, timeout)

    def create_backfill(self, user: str, body: dict[str, Any]) -> requests.Response:
        """`POST /backfills` exactly as the UI's Backfill dialog sends it: once, on the DAG as
        it is (unpaused). On SQLite this could answer 503 and kill the scheduler; the services
        run on PostgreSQL, where it must not."""
        return self.call(user, "POST", "/backfills", json=body)

    def wait_backfill(self, backfill_id: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.call("auditor", "GET", f"/backfills/{backfill_id}").json()["completed_at"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfill {backfill_id} not completed after {timeout}s")
            time.sleep(3)

    def all_runs(self, dag_id: str, **params: Any) -> list[dict[str, Any]]:
        """Every run of `dag_id` matching `params`, page by page."""
        found: list[dict[str, Any]] = []
        while page := self.runs(dag_id, offset=len(found), order_by="logical_date", **params):
            found += page
        return found

    def pid(self, name: str) -> int:
        """The PID `pitstop up` recorded for one of its processes."""
        return int((self.home / "run" / f"{name}.pid").read_text())

    def runs(self, dag_id: str, **params: Any) -> list[dict[str, Any]]:
        return self.call("auditor", "GET", f"/dags/{dag_id}/dagRuns",
                         params={"limit": 100, **params}).json()["dag_runs"]

    def lake(self) -> Path:
        """The example pipeline's own folder of the lake."""
        return self.home / "lake" / "flights_delay"
