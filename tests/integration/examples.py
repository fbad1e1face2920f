"""Landing an example pipeline's real data, as its `land.py` does for `make run`."""

from __future__ import annotations

import datetime as dt
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipelines import registry
from pipelines.spec import load_spec
from tests.integration.live import service_env

PITSTOP = str(Path(sys.executable).with_name("pitstop"))


def in_project(project: Path, *command: str) -> str:
    """One command in a project folder of a test's own, with its home `project/home` and none
    of the session's settings (so Airflow's DAG folder is the project's `./dags`, as for a
    data engineer); its stdout, once it has succeeded."""
    env = service_env(project / "home", 0, 0)  # its ports stay unused: nothing here serves
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done.stdout


def land(spec_path: Path, start: dt.date, end: dt.date) -> None:
    """Run `dags/<name>/land.py`'s `land()` into the spec's landing folder for `[start, end)`."""
    spec = load_spec(spec_path, check=False)
    loader = importlib.util.spec_from_file_location(f"land_{spec.name}",
                                                    spec.hooks_dir / "land.py")
    assert loader and loader.loader
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    module.land(spec.landing_dir(), start, end)


def registered_champion(first_run: dict, name: str) -> Any:
    """The first run's version 1, a passing champion tagged with the run's pair and dataset
    IDs and its train DAG: what every example's first run must register."""
    assert first_run["version"] == "1" and first_run["already_registered"] is False
    assert first_run["verdict"] == "passed", first_run["rejected_reason"]
    assert first_run["champion"] is True and first_run["aliases"] == ["champion"]
    version = registry.client().get_model_version(name, "1")
    assert version.tags["pair_id"] == first_run["pair_id"]
    assert version.tags["dataset_id"] == first_run["dataset_id"]
    assert version.tags["airflow_dag_id"] == f"{name}_train"
    return version
