"""The DAG folder imports cleanly and yields the five DAGs of the example, wired as designed.

Timetables are checked as the scheduler sees them: after a round trip through Airflow's DAG
serialization, which is what the dag-processor stores and the scheduler and API read.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import Asset
from airflow.sdk.exceptions import ParamValidationError
from airflow.serialization.serialized_objects import DagSerialization
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.interval import CronDataIntervalTimetable

from pipelines.errors import DataError, SpecError, ValidationFailed

DAGS = Path(__file__).resolve().parents[2] / "dags"
EXAMPLES = ("flights_delay", "aircraft_utilisation", "airport_visibility")
PIPELINES = tuple(sorted(path.stem for path in DAGS.glob("*.yaml")))
"""Every spec in the folder: a pipeline added with `pitstop new` is checked too, and does not
break these tests (a stranger's did when this was the examples' names)."""


def test_the_examples_are_in_the_folder() -> None:
    assert set(EXAMPLES) <= set(PIPELINES)


@pytest.fixture(scope="module")
def bag() -> DagBag:
    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(bag: DagBag) -> None:
    assert bag.import_errors == {}


STAGES = ("ingest", "features", "train", "backfill", "score")


def test_five_dags_per_pipeline(bag: DagBag) -> None:
    assert set(bag.dag_ids) == {f"{name}_{stage}" for name in PIPELINES for stage in STAGES}


@pytest.mark.parametrize(("requested", "expected"), [
    ("flights_delay_train", {"flights_delay_train"}),
    ("aircraft_utilisation_backfill", {"aircraft_utilisation_backfill"}),
    ("some_other_pipeline_ingest", set()),
])
def test_a_parse_for_one_dag_builds_only_that_dag(requested: str, expected: set[str]) -> None:
    """A worker (and `pitstop run`'s dag.test) parses the folder under Airflow's parsing
    context: each DAG file then builds only the DAG asked for, or none, not all five."""
    from pipelines.orchestration.context import parsing_context

    with parsing_context(requested):
        narrowed = DagBag(dag_folder=str(DAGS))
    assert narrowed.import_errors == {}
    assert set(narrowed.dag_ids) == expected


def test_hooks_folder_is_not_parsed() -> None:
    """Only `.airflowignore` keeps the hook modules out of the dag-processor.

    The default discovery (safe mode) skips files that do not mention both "airflow" and
    "dag", which today hides the hooks by the luck of their wording; with safe mode off,
    as production may run it, every `.py` under the folder is imported unless ignored.
    """
    unsafe = DagBag(dag_folder=str(DAGS), safe_mode=False)
    assert unsafe.import_errors == {}
    assert sorted(stat.file for stat in unsafe.dagbag_stats) == sorted(f"{name}.py"
                                                                       for name in PIPELINES)


@pytest.mark.parametrize("dag_id", ["flights_delay_ingest", "flights_delay_features",
                                    "flights_delay_train", "flights_delay_score"])
def test_real_data_intervals(bag: DagBag, dag_id: str) -> None:
    """`@daily` has an empty interval in Airflow 3; our DAGs must cover whole days."""
    timetable = scheduled(bag, dag_id).timetable
    if isinstance(timetable, AssetOrTimeSchedule):
        timetable = timetable.timetable
    assert isinstance(timetable, CronDataIntervalTimetable)
    interval = timetable.infer_manual_data_interval(run_after=_at("2013-03-05T12:00:00"))
    assert interval.start < interval.end  # not the empty interval of a trigger timetable


def scheduled(bag: DagBag, dag_id: str):  # noqa: ANN201 - a SerializedDAG
    """The DAG as the scheduler reads it back from the serialized-DAG table."""
    return DagSerialization.from_dict(DagSerialization.to_dict(bag.dags[dag_id]))


def _at(iso: str):  # noqa: ANN202
    import pendulum

    return pendulum.parse(iso, tz="UTC")


RAW = {f"flights_delay.raw.{s}" for s in ("flights", "weather", "planes")}


def test_ingest_maps_its_planned_chunks_then_announces(bag: DagBag) -> None:
    dag = bag.dags["flights_delay_ingest"]
    assert {t.task_id for t in dag.tasks} == {"plan_chunks", "ingest_chunk", "announce_raw_data"}
    assert dag.get_task("ingest_chunk").upstream_task_ids == {"plan_chunks"}
    announce = dag.get_task("announce_raw_data")
    assert announce.upstream_task_ids == {"ingest_chunk"}
    assert announce.trigger_rule == "none_failed"  # also when no chunk needed a task
    assert {a.name for a in announce.outlets if isinstance(a, Asset)} == RAW
    assert not dag.get_task("ingest_chunk").outlets  # events only once every source landed


def test_raw_asset_uris_name_the_pipeline_not_the_home(bag: DagBag) -> None:
    """A moved PITSTOP_HOME keeps its Assets; a same-named source elsewhere gets its own."""
    announce = bag.dags["flights_delay_ingest"].get_task("announce_raw_data")
    uris = {a.uri for a in announce.outlets if isinstance(a, Asset)}
    assert uris == {f"pitstop://flights_delay/raw/{s}" for s in ("flights", "weather", "planes")}


def test_same_source_names_get_their_own_assets(bag: DagBag) -> None:
    """airport_visibility reuses flights_delay's source names; each pipeline owns its Assets."""
    announce = bag.dags["airport_visibility_ingest"].get_task("announce_raw_data")
    uris = {a.uri for a in announce.outlets if isinstance(a, Asset)}
    assert uris == {f"pitstop://airport_visibility/raw/{s}" for s in ("flights", "weather")}


def test_features_run_daily_or_when_all_raw_assets_land(bag: DagBag) -> None:
    """An asset-or-time schedule that keeps a real daily interval for Airflow's Backfill."""
    timetable = scheduled(bag, "flights_delay_features").timetable
    assert isinstance(timetable, AssetOrTimeSchedule)
    assert timetable.periodic and timetable.can_be_scheduled  # the backfill API requires both
    condition = timetable.asset_condition
    assert type(condition).__name__ == "SerializedAssetAll"
    assert {a.name for a in condition.objects} == RAW


def test_features_maps_its_planned_chunks_then_announces(bag: DagBag) -> None:
    dag = bag.dags["flights_delay_features"]
    assert {t.task_id for t in dag.tasks} == {"plan_chunks", "compute_chunk", "announce_features"}
    announce = dag.get_task("announce_features")
    assert announce.upstream_task_ids == {"compute_chunk"}  # one event once every view is in
    assert announce.trigger_rule == "none_failed"
    assert [a.uri for a in announce.outlets if isinstance(a, Asset)] == [
        "pitstop://flights_delay/features"]


def test_score_runs_daily_or_when_features_land_and_pins_once(bag: DagBag) -> None:
    """Features follow ingest and scoring follows features, each through an Asset; the
    version is pinned by one task before the mapped days, so all days use the same one."""
    timetable = scheduled(bag, "flights_delay_score").timetable
    assert isinstance(timetable, AssetOrTimeSchedule) and timetable.periodic
    assert {a.name for a in timetable.asset_condition.objects} == {"flights_delay.features"}
    dag = bag.dags["flights_delay_score"]
    assert {t.task_id for t in dag.tasks} == {"pin_model", "plan_days", "score_day"}
    assert dag.get_task("score_day").upstream_task_ids == {"pin_model", "plan_days"}
    assert {"start", "end"} <= set(dag.params.keys())


def test_train_chain_order(bag: DagBag) -> None:
    dag = bag.dags["flights_delay_train"]
    upstream = {t.task_id: t.upstream_task_ids for t in dag.tasks}
    assert upstream["validate_training_set"] == {"build_training_set"}
    assert "validate_training_set" in upstream["plan_pair"]
    assert {"is_new_pair", "validate_training_set"} <= upstream["train_model"]
    assert "train_model" in upstream["evaluate_model"]
    # the registered versions are re-scored on the known problems in a task of its own,
    # after training (so a skipped pair re-scores nothing) and before the candidate is judged
    assert upstream["rescore_known_problems"] == {"is_new_pair", "train_model"}
    assert "rescore_known_problems" in upstream["evaluate_model"]
    assert "evaluate_model" in upstream["register_model"]
    assert dag.get_task("summarize").trigger_rule == "none_failed"


def test_a_known_pair_skips_every_training_task_at_once(bag: DagBag) -> None:
    """The short circuit skips its direct downstream only: every task from training to
    registration, in one go, and never `summarize`, which reads back what is registered."""
    gate = bag.dags["flights_delay_train"].get_task("is_new_pair")
    assert gate.ignore_downstream_trigger_rules is False
    assert gate.downstream_task_ids == {
        "train_model", "rescore_known_problems", "evaluate_model", "register_model"}


@pytest.mark.parametrize(("dag_id", "plan", "mapped"), [
    ("flights_delay_ingest", "plan_chunks", "ingest_chunk"),
    ("flights_delay_features", "plan_chunks", "compute_chunk"),
    ("flights_delay_backfill", "plan_backfill", "compute_chunk")])
def test_an_empty_plan_skips_only_its_mapped_task(bag: DagBag, dag_id: str, plan: str,
                                                  mapped: str) -> None:
    """With no chunk to compute the plan skips the mapped task itself; the announcing task
    after it keeps its own trigger rule and still runs."""
    task = bag.dags[dag_id].get_task(plan)
    assert task.ignore_downstream_trigger_rules is False
    assert task.downstream_task_ids == {mapped}


def test_train_params_are_validated(bag: DagBag) -> None:
    params = bag.dags["flights_delay_train"].params
    assert {"start", "end", "eval_start", "reason"} <= set(params.keys())
    with pytest.raises(ParamValidationError, match="date"):
        params.get_param("start").resolve("not-a-date")


def test_backfill_form_offers_the_spec_views(bag: DagBag) -> None:
    dag = bag.dags["flights_delay_backfill"]
    assert dag.timetable.can_be_scheduled is False  # only triggered, from the form
    assert dag.get_task("compute_chunk").upstream_task_ids == {"plan_backfill"}
    views = dag.params.get_param("views")
    assert views.schema["items"]["enum"] == [
        "origin_weather", "origin_delays", "carrier_delays", "plane"]
    assert views.schema["examples"] == views.schema["items"]["enum"]  # the UI's multi-select


@pytest.mark.parametrize("dag_id", ["flights_delay_backfill", "flights_delay_train"])
def test_reason_is_optional_in_the_form(bag: DagBag, dag_id: str) -> None:
    """The UI form blocks submit on an empty required string; a null default does not."""
    reason = bag.dags[dag_id].params.get_param("reason")
    assert "null" in reason.schema["type"] and reason.resolve(None) is None
    assert reason.resolve("why") == "why"
    with pytest.raises(ParamValidationError, match="too long"):
        reason.resolve("x" * 501)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("start", "2013-02-30", "date"),
    ("end", "yesterday", "date"),
    ("views", ["origin_weather", "nope"], "is not one of"),
    ("views", [], "should be non-empty|is too short"),
    ("views", ["plane", "plane"], "non-unique"),
])
def test_backfill_form_rejects_bad_input(bag: DagBag, name: str, value: object,
                                         message: str) -> None:
    with pytest.raises(ParamValidationError, match=message):
        bag.dags["flights_delay_backfill"].params.get_param(name).resolve(value)


def test_dag_settings_come_from_the_spec_or_the_caller(spec_path: Path) -> None:
    """retries, max_active_runs, catchup, owner and the task timeout are settings, not code."""
    import datetime as dt

    from pipelines.orchestration.factory import build_dags

    default = build_dags(spec_path)["flights_delay_train"]
    assert default.max_active_runs == 4 and default.catchup is False
    task = default.get_task("train_model")
    assert (task.retries, task.owner) == (2, "pitstop")
    assert task.execution_timeout == dt.timedelta(hours=2)
    custom = build_dags(spec_path, retries=0, max_active_runs=1, catchup=True, owner="data-eng",
                        execution_timeout="30m")
    dag = custom["flights_delay_train"]
    assert dag.max_active_runs == 1 and dag.catchup is True
    task = dag.get_task("train_model")
    assert (task.retries, task.owner) == (0, "data-eng")
    assert task.execution_timeout == dt.timedelta(minutes=30)
    assert custom["flights_delay_backfill"].get_task("plan_backfill").retries == 0


@pytest.mark.parametrize(("error", "retried"), [
    (DataError("a.csv: line 6 has 2 fields, the header has 3; the file is truncated"), False),
    (DataError("features/last: 2 of 3 day partitions were computed with another definition"),
     False),
    (ValidationFailed("GX suite 'labels' failed"), False),
    (SpecError("sensors.yaml: sources.readings.delimiter"), False),
    (OSError("disk full"), True),
])
def test_bad_data_fails_once_infrastructure_may_retry(error: Exception, retried: bool) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from pipelines.orchestration.factory import fail_on_bad_data

    @fail_on_bad_data
    def task() -> None:
        raise error

    with pytest.raises(Exception) as caught:
        task()
    assert isinstance(caught.value, AirflowFailException) is not retried
    assert str(error) in str(caught.value)


def _pipeline(folder: Path, name: str, edit=None) -> Path:  # noqa: ANN001 - an Edit or None
    """A copy of the second example named `name` with its three-line DAG file and ignore line."""
    from pipelines.scaffold import dag_file
    from tests.example_copy import copy_example

    spec = copy_example(folder, name, edit)
    (folder / f"{name}.py").write_text(dag_file(name))
    with open(folder / ".airflowignore", "a") as ignore:
        ignore.write(f"{name}/\n")
    return spec


def test_a_broken_spec_fails_only_its_own_dag_file(tmp_path: Path) -> None:
    """The factory's cheap checks make a bad spec an import error of its DAG file alone."""
    def edit(data: dict) -> None:
        data["feature_views"]["airframe"]["function"] = "features:airfame"
        data["sources"]["legs"]["timezone"] = "America/NewYork"

    _pipeline(tmp_path, "good_fleet")
    bad = _pipeline(tmp_path, "bad_fleet", edit)
    bag = DagBag(dag_folder=str(tmp_path))
    assert set(bag.dag_ids) == {f"good_fleet_{stage}" for stage in STAGES}
    assert list(bag.import_errors) == [str(tmp_path / "bad_fleet.py")]
    error = bag.import_errors[str(tmp_path / "bad_fleet.py")]
    assert f"{bad}: error: feature_views.airframe.function:" in error
    assert f"{bad}: error: sources.legs.timezone:" in error


def test_a_missing_dag_file_says_what_to_create(tmp_path: Path) -> None:
    from pipelines.orchestration.runner import missing_dag
    from pipelines.spec import load_spec

    spec = load_spec(DAGS / "flights_delay.yaml", check=False)
    assert "flights_delay.py exists" in missing_dag(spec, "flights_delay_ingest")
    elsewhere = load_spec(_pipeline(tmp_path, "new_fleet"), check=False)
    message = missing_dag(elsewhere, "new_fleet_ingest")
    assert f"DAG file {DAGS / 'new_fleet.py'} does not exist" in message
    assert "globals().update(build_dags(Path(__file__).with_suffix(\".yaml\")))" in message
    assert "move new_fleet.yaml and its hooks folder new_fleet/ there" in message
    assert f"`new_fleet/` to {DAGS / '.airflowignore'}" in message


@pytest.mark.integration
def test_pitstop_run_without_a_dag_file_says_what_to_create(
        airflow_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not Airflow's "dag is not serialized": `dag.test()` runs only DAGs of its folder."""
    from pipelines import cli
    from tests.example_copy import copy_example

    spec = copy_example(tmp_path, "undeclared_fleet")
    assert cli.main(["run", str(spec), "--start", "2013-01-01", "--end", "2013-02-01"]) == 1
    err = capsys.readouterr().err
    assert "pitstop: undeclared_fleet_ingest: Airflow found no such DAG" in err
    assert f"{DAGS / 'undeclared_fleet.py'} does not exist. Create it" in err
    assert "Traceback" not in err and "not serialized" not in err
