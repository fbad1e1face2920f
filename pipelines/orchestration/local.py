"""A local Airflow 3 and MLflow UI, started as separate processes and stopped by PID.

`airflow standalone` loads the example DAGs, binds every interface and leaves children behind
on SIGTERM; this starts exactly the processes a small deployment runs (api-server, scheduler,
dag-processor, triggerer; LocalExecutor on SQLite, bound to 127.0.0.1) plus `mlflow server`
on the same store as the pipelines. Each process leads its own session, so `down` signals
the whole process group it started and nothing else. Users and roles come from Airflow's
SimpleAuthManager; passwords live in a file under `$PITSTOP_HOME`, generated on first start.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipelines import settings

USERS = {"admin": "admin", "engineer": "op", "scientist": "user", "auditor": "viewer"}
AIRFLOW_PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")
EXTRA_ARGS = {"scheduler": ("--skip-serve-logs",), "triggerer": ("--skip-serve-logs",)}
"""Airflow's log server binds every interface, with no setting to change it. Every process
here shares one log folder, which the api-server reads directly, so it is not started."""
STOP_GRACE_SECONDS = 20.0
# Task processes at a time. On 2 cores each task spends much of its life importing Airflow,
# pandas and the spec, so 4 keeps both cores busy; bench/BACKFILL.md has the measurements.
PARALLELISM = 4


@dataclass(frozen=True)
class Ports:
    """Where the UIs listen (127.0.0.1 only)."""

    airflow: int = int(os.environ.get("PITSTOP_AIRFLOW_PORT", "8080"))
    mlflow: int = int(os.environ.get("PITSTOP_MLFLOW_PORT", "5000"))


def run_dir() -> Path:
    return settings.home() / "run"


def passwords_file() -> Path:
    return settings.home() / "secrets" / "passwords.json"


def _secret(name: str) -> str:
    """A random secret kept under `$PITSTOP_HOME/secrets` (never in the repo)."""
    path = settings.home() / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


def airflow_env(project: Path, ports: Ports) -> dict[str, str]:
    """The environment every Airflow process (and every task it runs) gets."""
    base = f"http://127.0.0.1:{ports.airflow}"
    return {
        **os.environ,
        "PITSTOP_HOME": str(settings.home()),
        "AIRFLOW_HOME": str(settings.airflow_home()),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri(),
        "PITSTOP_MLFLOW_UI": f"http://127.0.0.1:{ports.mlflow}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(project / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(project / "plugins"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
            f"{user}:{role}" for user, role in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file()),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(ports.airflow),
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": _secret("jwt_secret"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "10",
    }


def _pid_file(name: str) -> Path:
    return run_dir() / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running() -> dict[str, int]:
    """Processes `up` started that are still alive, by name."""
    found = {}
    for path in sorted(run_dir().glob("*.pid")) if run_dir().exists() else []:
        pid = int(path.read_text())
        if _alive(pid):
            found[path.stem] = pid
        else:
            path.unlink()
    return found


def _start(name: str, argv: list[str], env: dict[str, str]) -> int:
    log_dir = settings.home() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.log", "ab") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    run_dir().mkdir(parents=True, exist_ok=True)
    _pid_file(name).write_text(str(process.pid))
    return process.pid


def _wait_healthy(url: str, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if name not in running():
            raise RuntimeError(f"{name} exited during start-up; see "
                               f"{settings.home() / 'logs' / f'{name}.log'}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    raise RuntimeError(f"{name} not healthy at {url} after {timeout:.0f}s")


def up(project: Path, ports: Ports = Ports(), echo: Callable[[str], None] = print,
       timeout: float = 120.0) -> dict[str, str]:
    """Start Airflow (4 processes) and the MLflow UI; return their URLs. Idempotent."""
    from pipelines.orchestration.runner import configure_airflow

    if alive := running():
        echo(f"already running: {', '.join(sorted(alive))} (pitstop down stops them)")
    env = airflow_env(project, ports)
    os.environ.update({k: env[k] for k in ("AIRFLOW_HOME", "PITSTOP_HOME")})
    configure_airflow()
    bin_dir = Path(sys.executable).parent
    for process in AIRFLOW_PROCESSES:
        if process not in running():
            _start(process, [str(bin_dir / "airflow"), process, *EXTRA_ARGS.get(process, ())],
                   env)
    if "mlflow" not in running():
        settings.mlflow_artifact_root().mkdir(parents=True, exist_ok=True)
        _start("mlflow", [
            str(bin_dir / "mlflow"), "server", "--host", "127.0.0.1", "--port",
            str(ports.mlflow), "--workers", "1",
            "--backend-store-uri", settings.mlflow_tracking_uri(),
            "--artifacts-destination", str(settings.mlflow_artifact_root()),
        ], {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    urls = {"airflow": env["AIRFLOW__API__BASE_URL"], "mlflow": env["PITSTOP_MLFLOW_UI"]}
    _wait_healthy(f"{urls['airflow']}/api/v2/monitor/health", "api-server", timeout)
    _wait_healthy(f"{urls['mlflow']}/health", "mlflow", timeout)
    return urls


def passwords() -> dict[str, str]:
    """Generated passwords by user (Airflow writes the file on first start)."""
    path = passwords_file()
    return json.loads(path.read_text()) if path.exists() else {}


def down(echo: Callable[[str], None] = print) -> list[str]:
    """Stop every process group `up` started (SIGTERM, then SIGKILL after a grace period)."""
    alive = running()
    for pid in alive.values():
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while time.monotonic() < deadline and any(group_alive(p) for p in alive.values()):
        time.sleep(0.5)
    for name, pid in alive.items():
        if group_alive(pid):
            echo(f"{name} ignored SIGTERM for {STOP_GRACE_SECONDS:.0f}s; killing it")
            os.killpg(pid, signal.SIGKILL)
        _pid_file(name).unlink(missing_ok=True)
    return sorted(alive)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
