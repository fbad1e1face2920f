"""SIGTERM stops a real `pitstop run` promptly and cleanly, and the re-run completes.

A scaffolded pipeline in a project folder of its own runs as a subprocess, as a data engineer
runs it. Once its ingest stage has begun publishing, the process gets SIGTERM, as a
container runtime or `kill` sends it. Airflow's task runner installs its own SIGTERM handler
that carries on, so without pitstop's handling (`orchestration/stopping.py`) the run went on
to the train stage; now it must exit 143 within the wait below, say what stopped it and what
was published, leave no dag run `running` and nothing `pitstop doctor` reports, and a re-run
of the same command must register the model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.invariants import assert_lake_sound
from tests.integration.examples import PITSTOP, in_project
from tests.integration.live import service_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(900)]

NAME = "stopped"
STOP_WAIT = 300
"""Seconds the stopped run may take to exit: the signal lands when the current C call returns
(28 s was measured on a loaded machine); a run that ignored it would take this long and fail."""


def _wait_for(condition, what: str, timeout: float = 300) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """The project, and the stopped run's exit code and stderr."""
    project = tmp_path_factory.mktemp("sigterm")
    (project / "dags").mkdir()
    in_project(project, PITSTOP, "new", NAME, "--task", "regression")
    in_project(project, str(Path(PITSTOP).with_name("python")), f"dags/{NAME}/land.py")
    env = {**service_env(project / "home", 0, 0), "PYTHONUNBUFFERED": "1"}
    raw = project / "home" / "lake" / NAME / "raw"
    with subprocess.Popen([PITSTOP, "run", f"dags/{NAME}.yaml"], cwd=project, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        _wait_for(lambda: raw.exists() or proc.poll() is not None, "ingest publishing")
        assert proc.poll() is None, f"the run ended before the signal: {proc.communicate()}"
        os.kill(proc.pid, signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"SIGTERM did not stop `pitstop run` within {STOP_WAIT}s")
    return project, proc.returncode, stderr


def test_sigterm_exits_143_saying_what_stopped_it(stopped: tuple[Path, int, str]) -> None:
    _, code, stderr = stopped
    assert code == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and f"{NAME}_" in stderr


def test_nothing_half_written_or_left_running(stopped: tuple[Path, int, str]) -> None:
    project, _, _ = stopped
    assert_lake_sound(project / "home" / "lake")
    assert json.loads(in_project(project, PITSTOP, "doctor", "--json", "--older-than", "0")) == []


def test_the_same_command_then_registers_the_model(stopped: tuple[Path, int, str]) -> None:
    project, _, _ = stopped
    summary = json.loads(in_project(project, PITSTOP, "run", f"dags/{NAME}.yaml", "--json"))
    assert summary["version"] == "1" and summary["champion"] is True
