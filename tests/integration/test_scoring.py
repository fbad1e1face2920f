"""`pitstop score` end to end: a scaffolded pipeline is trained, then a week is scored.

In a project folder of its own (as `test_scaffold.py` does), a binary pipeline is
scaffolded, its 28 days trained with `pitstop run`, and five more weeks' days landed. From
BAD on the upstream files report `value` in another unit (times 1000), and its raw suite's
range was widened first, so ingest lets it through: the silent failure monitoring is for.
`pitstop score` then scores the week after training through the score DAG's `dag.test()`,
running ingest and features first for the days that lack them. The view summarises the
readings before each UTC midnight, so the first day whose features carry the new unit is
the day after BAD: it must fail by name, and every day before it pass.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.integration.examples import PITSTOP, in_project
from tests.integration.live import service_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

NAME = "scored_sensors"
START, END = dt.date(2024, 1, 29), dt.date(2024, 2, 5)
"""The scored week: the days after the default training window 2024-01-01..01-29."""
BAD = dt.date(2024, 2, 2)
"""First landed day in the other unit."""
FIRST_BREACH = BAD + dt.timedelta(days=1)
LIMITS = {"bins": 4, "max_feature_psi": 1.0, "max_prediction_psi": 1.0, "max_mean_shift": 0.3,
          "features": {"day_of_week": {"limit_psi": False}}}
"""Loose enough for 24 rows a day (PSI of a small sample is noisy), far below what a unit
change gives (PSI about 7). A day has one weekday, so its PSI against a week is always
large: logged, never limited."""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("score")
    (folder / "dags").mkdir()
    in_project(folder, PITSTOP, "new", NAME, "--task", "binary")
    spec_file = folder / "dags" / f"{NAME}.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["monitoring"] = LIMITS
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    suite_file = next((folder / "expectations").glob(f"{spec['sources']['readings']['suite']}.json"))
    suite = json.loads(suite_file.read_text())
    for expectation in suite["expectations"]:
        if expectation["kwargs"].get("column") == "value" and "max_value" in expectation["kwargs"]:
            expectation["kwargs"]["max_value"] = 1e6  # a suite that misses the unit change
    suite_file.write_text(json.dumps(suite))
    in_project(folder, sys.executable, f"dags/{NAME}/land.py", "--end", "2024-02-06")
    for day in pd.date_range(BAD, dt.date(2024, 2, 6), inclusive="left").date:
        landed = folder / "home" / "landing" / NAME / "readings" / f"{day.isoformat()}.csv"
        frame = pd.read_csv(landed)
        frame.assign(value=frame["value"] * 1000).to_csv(landed, index=False)
    trained = json.loads(in_project(folder, PITSTOP, "run", f"dags/{NAME}.yaml", "--json"))
    assert trained["champion"] is True, trained
    return folder


@pytest.fixture(scope="module")
def scored(project: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """`pitstop score` of the week, as printed and as JSON (a second, re-scoring run)."""
    command = [PITSTOP, "score", f"dags/{NAME}.yaml", "--start", START.isoformat(),
               "--end", END.isoformat()]
    env = service_env(project / "home", 0, 0)
    printed = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True,
                             check=False)
    again = subprocess.run([*command, "--json"], cwd=project, env=env, capture_output=True,
                           text=True, check=False)
    assert again.returncode == 1, again.stderr
    return printed, json.loads(again.stdout)


def test_the_first_day_in_the_new_unit_fails_by_name_and_the_days_before_pass(
        scored: tuple) -> None:
    printed, as_json = scored
    assert printed.returncode == 1
    days = {d["day"]: d for d in as_json["days"]}
    assert [days[day.isoformat()]["usable"] for day in pd.date_range(START, FIRST_BREACH,
                                                                      inclusive="left").date] == [True] * 5
    first = days[FIRST_BREACH.isoformat()]
    assert first["scored"] and not first["usable"]
    assert any(re.search(r"psi of recent__mean_1d is [\d.]+, beyond the limit 1", b)
               for b in first["breaches"]), first["breaches"]
    assert f"{FIRST_BREACH}  BREACHED version 1" in printed.stdout
    assert f"{BAD}  passed   version 1, 24 rows" in printed.stdout
    assert "score_day" in printed.stderr and "recent__mean_1d" in printed.stderr
    assert "ingest" in printed.stdout  # the days without features got them first


def test_the_lake_and_mlflow_keep_every_day(scored: tuple, project: Path) -> None:
    from mlflow import MlflowClient

    home = project / "home"
    folder = home / "lake" / NAME / "scores" / NAME
    assert sorted(p.name for p in folder.glob("date=*")) == [
        f"date={d}" for d in pd.date_range(START, END, inclusive="left").date]
    manifest = json.loads((folder / f"date={FIRST_BREACH}" / "_manifest.json").read_text())
    assert manifest["usable"] is False and manifest["model_version"] == "1"
    assert manifest["inputs"]["features"]["recent"][0]["sha256"]
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    version = client.get_model_version(NAME, "1")
    assert "recent__mean_1d" in version.tags[f"monitoring_breach.{FIRST_BREACH}"]
    assert f"monitoring_breach.{BAD}" not in version.tags
    runs = client.search_runs([client.get_experiment_by_name(NAME).experiment_id],
                              "tags.monitoring = 'true'")
    assert sorted(r.data.tags["monitoring_day"] for r in runs) == [
        d.isoformat() for d in pd.date_range(START, END, inclusive="left").date]
    assert all("feature.recent__mean_1d.psi" in r.data.metrics for r in runs)
