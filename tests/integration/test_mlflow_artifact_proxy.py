"""MLflow's artifacts in a bucket, through the tracking server's proxy (issue 14, item 4).

A real `mlflow server` with `--serve-artifacts --artifacts-destination s3://…` on the
session's SeaweedFS, as `pitstop up` starts it with `PITSTOP_MLFLOW_ARTIFACTS` set. The
pipeline runs in a process with no AWS variables at all: its experiment takes the server's
`mlflow-artifacts:/` location, so every model, report and GX result goes through the server
into the bucket, and `verify` reads them back the same way.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pipelines import audit, lake, registry
from pipelines.orchestration.local import Ports, mlflow_argv
from tests.integration import examples
from tests.integration.live import free_port
from tests.s3server import KEY, SECRET, S3Server

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

START, END, EVAL_START = dt.date(2013, 1, 1), dt.date(2013, 1, 15), dt.date(2013, 1, 11)
AWS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
       "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "MLFLOW_S3_ENDPOINT_URL")


def server_argv(port: int, store: Path) -> list[str]:
    """`pitstop up`'s own MLflow command line, on a SQLite store and without basic-auth (the
    live tests cover authentication; here the artifact path is the subject)."""
    argv = mlflow_argv(Ports(airflow=0, mlflow=port), server="postgresql://pitstop@localhost/postgres")
    argv[argv.index("--backend-store-uri") + 1] = f"sqlite:///{store}"
    del argv[argv.index("--app-name"):argv.index("--app-name") + 2]
    return argv


@pytest.fixture(scope="module")
def proxied(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[str, str]]:
    """A tracking server proxying to a new bucket; this process without AWS credentials.
    Yields the server's URL and the artifacts' `s3://` destination."""
    folder = tmp_path_factory.mktemp("mlflow-proxy")
    destination = f"s3://{s3_server.new_bucket()}/mlartifacts"
    port = free_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PITSTOP_MLFLOW_ARTIFACTS", destination)
        argv = server_argv(port, folder / "mlflow.db")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
           **{k: v for k, v in s3_server.env(destination).items() if k.startswith("AWS_")}}
    with open(folder / "server.log", "wb") as log:
        server = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server, folder / "server.log")
        with pytest.MonkeyPatch.context() as patch:
            for name in AWS:
                patch.delenv(name, raising=False)
            patch.setenv("MLFLOW_TRACKING_URI", url)
            patch.setenv("PITSTOP_LAKE", str(folder / "lake"))
            yield url, destination
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def _wait_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    for _ in range(240):
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited {server.returncode}: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow server did not answer on {url} in 120 s; see {log}")


@pytest.fixture(scope="module")
def proxied_run(proxied: tuple[str, str], airflow_db: Path, spec_path: Path) -> dict:
    from pipelines.orchestration.runner import run_pipeline

    examples.land(spec_path, START, END)
    return run_pipeline(spec_path, START, END, "artifacts through the proxy",
                        echo=lambda _: None, eval_start=EVAL_START)


def _objects(s3_server: S3Server, prefix: str) -> list[str]:
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_server.endpoint, key=KEY, secret=SECRET,
                           skip_instance_cache=True)
    return fs.find(prefix.removeprefix("s3://"))


def test_artifacts_go_through_the_server_into_the_bucket(proxied: tuple[str, str],
                                                         proxied_run: dict,
                                                         s3_server: S3Server) -> None:
    assert not any(name in os.environ for name in AWS)  # the pipeline had no credentials
    assert proxied_run["version"] == "1"
    run = registry.client().get_run(proxied_run["run_id"])
    experiment = registry.client().get_experiment(run.info.experiment_id)
    assert experiment.artifact_location.startswith("mlflow-artifacts:/")
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    _, destination = proxied
    stored = _objects(s3_server, f"{destination}/{run.info.experiment_id}")
    assert any(path.endswith("/evaluation/report.html") for path in stored), stored[:20]
    assert any("/quality/" in path for path in stored)
    version = registry.client().get_model_version("flights_delay", "1")
    model = _objects(s3_server, f"{destination}/{run.info.experiment_id}/models")
    assert model and version.tags["pair_id"] == proxied_run["pair_id"]


def test_verify_reads_the_proxied_artifacts_back(proxied_run: dict) -> None:
    (clean,) = audit.verify(lake.from_env(), "flights_delay/1")
    assert clean.intact and clean.checked > 20, clean


def test_a_local_store_keeps_its_artifacts_under_pitstop_home(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a server (`make run`), experiments still say where their folder is."""
    monkeypatch.setenv("PITSTOP_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = registry.client().get_experiment(registry.experiment_id("local-artifacts"))
    assert experiment.artifact_location == (tmp_path / "mlartifacts" / "local-artifacts").as_uri()


def test_up_proxies_artifacts_to_the_configured_destination(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PITSTOP_MLFLOW_ARTIFACTS", "s3://bucket/prefix")
    argv = mlflow_argv(Ports(airflow=1, mlflow=2), server="postgresql://pitstop@localhost/postgres")
    assert argv[argv.index("--artifacts-destination") + 1] == "s3://bucket/prefix"
    assert "--serve-artifacts" in argv
    monkeypatch.delenv("PITSTOP_MLFLOW_ARTIFACTS")
    monkeypatch.setenv("PITSTOP_HOME", str(tmp_path))
    argv = mlflow_argv(Ports(airflow=1, mlflow=2), server="postgresql://pitstop@localhost/postgres")
    assert argv[argv.index("--artifacts-destination") + 1] == str(tmp_path / "mlartifacts")
    assert (tmp_path / "mlartifacts").is_dir()
