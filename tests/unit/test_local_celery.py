"""`pitstop up --executor celery`: the environment each process gets, and Redis as the broker.

The environments are pure functions of the settings; the broker is Debian's real
`redis-server`, started and stopped as `up` and `down` do, on a free port.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from pipelines import cli
from pipelines.orchestration import local

SERVER = "postgresql://pitstop:pw@127.0.0.1:5432/postgres"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PITSTOP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    monkeypatch.delenv("PITSTOP_REDIS_URL", raising=False)
    return tmp_path / "home"


def test_without_a_broker_the_scheduler_runs_tasks(home: Path) -> None:
    env = local.airflow_env(Path("/project"), local.Ports(8080, 5000, 6380), SERVER)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert not [key for key in env if key.startswith("AIRFLOW__CELERY__")]


def test_with_a_broker_tasks_go_to_celery_with_results_in_the_metadata_db(home: Path) -> None:
    env = local.airflow_env(Path("/project"), local.Ports(8080, 5000, 6380), SERVER,
                            "redis://:secret@127.0.0.1:6380/0")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:secret@127.0.0.1:6380/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == (
        "db+postgresql+psycopg2://pitstop:pw@127.0.0.1:5432/airflow")


def test_a_worker_has_its_own_home_and_none_of_the_schedulers_secrets(home: Path) -> None:
    env = local.airflow_env(Path("/project"), local.Ports(8080, 5000, 6380), SERVER,
                            "redis://:secret@127.0.0.1:6380/0")
    worker = local.worker_env(env, 2)
    assert worker["AIRFLOW_HOME"] == str(home.resolve() / "workers" / "worker-2")
    assert worker["AIRFLOW_HOME"] != env["AIRFLOW_HOME"]
    assert not set(local.SCHEDULER_ONLY) & set(worker)
    assert {"AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"} <= set(env)
    # what it does need: the broker, the Execution API, the lake's home, MLflow as the service
    for key in ("AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "PITSTOP_HOME",
                "MLFLOW_TRACKING_PASSWORD", "AIRFLOW__CORE__DAGS_FOLDER"):
        assert worker[key] == env[key], key
    assert worker["AIRFLOW__LOGGING__BASE_LOG_FOLDER"] == str(Path(env["AIRFLOW_HOME"]) / "logs")
    assert worker["PITSTOP_WORKER"] == "worker-2"


def test_a_workers_hostname_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PITSTOP_WORKER", "worker-3")
    assert local.worker_hostname() == f"worker-3@{socket.getfqdn()}"
    module, _, function = local.worker_env({}, 3)["AIRFLOW__CORE__HOSTNAME_CALLABLE"].rpartition(".")
    assert getattr(__import__(module, fromlist=[function]), function) is local.worker_hostname


@pytest.mark.parametrize(("workers", "concurrency"), [(1, 4), (2, 2), (3, 2), (8, 1)])
def test_workers_share_the_parallelism(workers: int, concurrency: int) -> None:
    argv = local.worker_argv(1, workers)
    assert argv[argv.index("--concurrency") + 1] == str(concurrency)
    assert argv[argv.index("--celery-hostname") + 1] == "worker-1@%h"
    assert "--skip-serve-logs" in argv  # Airflow's log server would bind every interface


def test_the_cli_takes_workers_only_with_celery(capsys: pytest.CaptureFixture) -> None:
    for argv in (["up", "--workers", "2"], ["up", "--executor", "celery", "--workers", "0"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2
        assert "--workers N needs --executor celery" in capsys.readouterr().err


def test_the_broker_starts_on_loopback_with_a_password_and_down_stops_it(home: Path) -> None:
    port = _free_port()
    url = local.start_broker(port, timeout=30)
    pid = local.running()[local.BROKER]
    try:
        assert url == f"redis://:{(home / 'secrets' / 'redis_password').read_text()}@127.0.0.1:{port}/0"
        assert redis.Redis.from_url(url).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port).ping()
        config = home / "redis" / "redis.conf"
        assert oct(config.stat().st_mode & 0o777) == "0o600"
        client = redis.Redis.from_url(url)
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert client.config_get("dir")["dir"] == str(home.resolve() / "redis")
        assert local.start_broker(port, timeout=30) == url  # idempotent: the same server
        assert local.running()[local.BROKER] == pid
    finally:
        assert local.down(echo=lambda _: None) == [local.BROKER]
    assert not local.group_alive(pid)
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_timeout=2).ping()


def test_an_existing_redis_is_used_and_a_wrong_password_named(home: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    port = _free_port()
    url = local.start_broker(port, timeout=30)
    try:
        other = home.parent / "other"
        monkeypatch.setenv("PITSTOP_HOME", str(other))
        monkeypatch.setenv("PITSTOP_REDIS_URL", url)
        assert local.start_broker(_free_port(), timeout=30) == url
        assert local.running() == {} and not (other / "redis").exists()
        monkeypatch.setenv("PITSTOP_REDIS_URL", f"redis://:wrong@127.0.0.1:{port}/0")
        with pytest.raises(RuntimeError, match=f"Redis at 127.0.0.1:{port} refused the password"
                           ) as refused:
            local.start_broker(_free_port(), timeout=30)
        assert "wrong" not in str(refused.value)
        monkeypatch.setenv("PITSTOP_REDIS_URL", f"redis://127.0.0.1:{_free_port()}/0")
        with pytest.raises(RuntimeError, match="not answering after 1s"):
            local.start_broker(_free_port(), timeout=1)
    finally:
        monkeypatch.setenv("PITSTOP_HOME", str(home))
        local.down(echo=lambda _: None)


def test_a_taken_port_is_named(home: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"redis exited during start-up .127.0.0.1:{port} taken"):
            local.start_broker(port, timeout=30)
