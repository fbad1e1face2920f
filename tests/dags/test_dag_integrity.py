"""The DAG folder imports cleanly and yields the three DAGs of the example, wired as designed."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.timetables.interval import CronDataIntervalTimetable

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def bag() -> DagBag:
    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(bag: DagBag) -> None:
    assert bag.import_errors == {}


def test_four_dags_per_pipeline(bag: DagBag) -> None:
    assert set(bag.dag_ids) == {"flights_delay_ingest", "flights_delay_features",
                                "flights_delay_train", "flights_delay_backfill"}


def test_hooks_folder_is_not_parsed(bag: DagBag) -> None:
    assert all("flights_delay/" not in dag.fileloc for dag in bag.dags.values())


@pytest.mark.parametrize("dag_id", ["flights_delay_ingest", "flights_delay_features",
                                    "flights_delay_train"])
def test_real_data_intervals(bag: DagBag, dag_id: str) -> None:
    """`@daily` has an empty interval in Airflow 3; our DAGs must cover whole days."""
    assert isinstance(bag.dags[dag_id].timetable, CronDataIntervalTimetable)


def test_ingest_maps_one_task_per_source(bag: DagBag) -> None:
    dag = bag.dags["flights_delay_ingest"]
    assert {t.task_id for t in dag.tasks} == {
        "plan_chunks", "ingest_flights", "ingest_weather", "ingest_planes"}
    assert dag.get_task("ingest_flights").upstream_task_ids == {"plan_chunks"}
    assert dag.get_task("ingest_flights").outlets


def test_features_maps_one_task_per_view(bag: DagBag) -> None:
    dag = bag.dags["flights_delay_features"]
    assert {t.task_id for t in dag.tasks} == {
        "plan_chunks", "compute_origin_weather", "compute_origin_delays",
        "compute_carrier_delays", "compute_plane"}


def test_train_chain_order(bag: DagBag) -> None:
    dag = bag.dags["flights_delay_train"]
    upstream = {t.task_id: t.upstream_task_ids for t in dag.tasks}
    assert upstream["validate_training_set"] == {"build_training_set"}
    assert "validate_training_set" in upstream["plan_pair"]
    assert {"is_new_pair", "validate_training_set"} <= upstream["train_model"]
    assert "train_model" in upstream["evaluate_model"]
    assert "evaluate_model" in upstream["register_model"]
    assert dag.get_task("summarize").trigger_rule == "none_failed"


def test_train_params_are_validated(bag: DagBag) -> None:
    params = bag.dags["flights_delay_train"].params
    assert {"start", "end", "eval_start", "reason"} <= set(params.keys())
    with pytest.raises(Exception, match="date"):
        params.get_param("start").resolve("not-a-date")


def test_backfill_form_offers_the_spec_views(bag: DagBag) -> None:
    dag = bag.dags["flights_delay_backfill"]
    assert dag.timetable.can_be_scheduled is False  # only triggered, from the form
    assert dag.get_task("compute_chunk").upstream_task_ids == {"plan_backfill"}
    views = dag.params.get_param("views")
    assert views.schema["items"]["enum"] == [
        "origin_weather", "origin_delays", "carrier_delays", "plane"]


@pytest.mark.parametrize(("name", "value", "message"), [
    ("start", "2013-02-30", "date"),
    ("end", "yesterday", "date"),
    ("views", ["origin_weather", "nope"], "is not one of"),
    ("views", [], "should be non-empty|is too short"),
    ("views", ["plane", "plane"], "non-unique"),
])
def test_backfill_form_rejects_bad_input(bag: DagBag, name: str, value: object,
                                         message: str) -> None:
    with pytest.raises(Exception, match=message):
        bag.dags["flights_delay_backfill"].params.get_param(name).resolve(value)
