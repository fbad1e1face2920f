"""`pitstop new` end to end: scaffolded pipelines land, validate, run and verify as written.

In a fresh project folder with a home of its own, a regression and a multiclass pipeline are
scaffolded into `dags/`, and each runs the commands `pitstop new` prints, in that folder and
unchanged: its land.py, `pitstop validate`, `pitstop run` over the default window, then
`pitstop verify`. Land and run are subprocesses, so Airflow's DAG folder is `./dags` as for a
data engineer (the session's Airflow knows only the examples' folder); validate and verify
run in this process, pointed at the project's home. The two pipelines share its lake, MLflow
store and Airflow DB.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pipelines import cli
from tests.integration.examples import PITSTOP
from tests.integration.examples import in_project as run

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PIPELINES = {"scaffolded_regression": "regression", "scaffolded_multiclass": "multiclass"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scaffold")
    (folder / "dags").mkdir()
    for name, task in PIPELINES.items():
        assert "pitstop validate dags/" in run(folder, PITSTOP, "new", name, "--task", task)
    return folder


@pytest.fixture(scope="module", params=list(PIPELINES))
def first_run(request: pytest.FixtureRequest, project: Path) -> dict:
    """The printed next steps, as printed: land.py, validate, run (its JSON summary)."""
    name = request.param
    landed = run(project, sys.executable, f"dags/{name}/land.py")
    assert landed.startswith("landed 28 new files for 2024-01-01..2024-01-29")
    assert cli.main(["validate", str(project / "dags" / f"{name}.yaml")]) == 0
    return json.loads(run(project, PITSTOP, "run", f"dags/{name}.yaml", "--json"))


def test_registers_a_passing_champion_with_its_pair_id(first_run: dict, project: Path) -> None:
    from mlflow import MlflowClient

    name = first_run["model_name"]
    assert first_run["version"] == "1" and first_run["already_registered"] is False
    assert first_run["verdict"] == "passed", first_run["rejected_reason"]
    assert first_run["champion"] is True
    assert first_run["training_set"]["rows"] == 24 * 28  # entities x days of the default window
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'home' / 'mlflow.db'}")
    version = client.get_model_version(name, "1")
    assert version.tags["pair_id"] == first_run["pair_id"]
    assert version.tags["airflow_dag_id"] == f"{name}_train"
    found = client.search_model_versions(f"tags.pair_id = '{first_run['pair_id']}'")
    assert [(v.name, str(v.version)) for v in found] == [(name, "1")]


def test_verify_says_intact(first_run: dict, project: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PITSTOP_HOME", str(project / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'home' / 'mlflow.db'}")
    name = first_run["model_name"]
    assert cli.main(["verify", f"{name}@champion"]) == 0
    assert f"{name} version 1: intact" in capsys.readouterr().out


def test_dag_files_parse_and_the_hooks_stay_out(project: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(project / "dags"), safe_mode=False)
    assert bag.import_errors == {}
    assert sorted(stat.file for stat in bag.dagbag_stats) == sorted(f"{n}.py" for n in PIPELINES)
    assert set(bag.dag_ids) == {f"{name}_{stage}" for name in PIPELINES
                                for stage in ("ingest", "features", "train", "backfill")}
