"""Test isolation: every session gets its own PITSTOP_HOME (lake, MLflow, Airflow home).

Airflow reads its configuration when first imported, so the environment is set here, at
import time, before any test module imports Airflow. The folder is removed at exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.postgres import postgres_url  # noqa: F401  (fixtures for every test folder)
from tests.s3server import s3_lake_url, s3_server  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "dags" / "flights_delay.yaml"

_home = Path(tempfile.mkdtemp(prefix="pitstop-test-"))
atexit.register(shutil.rmtree, _home, ignore_errors=True)
os.environ.update({
    "PITSTOP_HOME": str(_home),
    "AIRFLOW_HOME": str(_home / "airflow"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "MLFLOW_TRACKING_URI": f"sqlite:///{_home / 'mlflow.db'}",
    "GIT_PYTHON_REFRESH": "quiet",
})
os.environ.pop("PITSTOP_LANDING", None)
os.environ.pop("PITSTOP_LAKE", None)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks into node IDs
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep each test module on one xdist worker (`make test` runs `--dist loadgroup`).

    Module- and session-scoped fixtures (a trained chain, a live stack) are then built once per
    module rather than once per worker that happens to get one of its tests. A module that
    shares a session fixture with another names a group of its own (the live stack's "live").
    """
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def pytest_collection_finish(session: pytest.Session) -> None:
    """On an xdist worker under loadgroup, every test must carry its group (`name@group`):
    pytest 9.2 silently dropped them, which split the live stack's tests over two workers
    and two stacks. Stop at once rather than fail far from the cause."""
    if getattr(session.config.option, "loadgroup", False) and (
            lost := [item.nodeid for item in session.items if "@" not in item.nodeid]):
        pytest.exit(f"--dist loadgroup lost the xdist_group of {len(lost)} tests (e.g. "
                    f"{lost[0]}): is pytest too new for pytest-xdist? see pyproject.toml",
                    returncode=3)


@pytest.fixture(scope="session")
def pitstop_home() -> Path:
    return _home


@pytest.fixture(scope="session")
def airflow_db(pitstop_home: Path) -> Path:
    """A migrated Airflow metadata DB (SQLite) for dag.test()."""
    home = pitstop_home / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "airflow.db").exists():
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
                       capture_output=True)
    return home


@pytest.fixture(scope="session")
def spec_path() -> Path:
    return SPEC
