"""The train chain's task bodies (`pipelines/steps.py`), each on its own, on a real lake and a
real MLflow store.

What is shown: `build_training_set` checks the estimator against the task before it builds
anything, and publishes the set with who produced it; `validate_training_set` passes a set
that meets its suite and refuses one that does not; `plan_pair` finds the version that holds
its pair; `training_log` gathers the run's tags, flattened params and lineage files from the
lake; `train_model` logs one run whose model predicts, returns that run again on a retry and
leaves no run when the fit fails; `rescore_known_problems` scores a registered version on a
problem it was not scored on, once; `evaluate_model` logs metrics, evaluation and verdict and
finishes the run, and marks it FAILED (with the guardrails' verdict when they refuse) on any
error; `register_model` registers the pair once; `summarize` reads the registered version
back, or says there is none.

Each test has a tracking store of its own: the tiny data is seeded, so every test's pair_id
is the same, and `train_model` looks finished runs up by pair_id.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from mlflow.exceptions import MlflowException

from pipelines import evaluate, features, lake, lineage, registry, steps, train
from pipelines.errors import DataError, SpecError, ValidationFailed
from pipelines.lake import from_env as env_lake
from pipelines.lineage import Pair
from pipelines.provenance import ProducedBy
from pipelines.quality import QualitySummary
from pipelines.registry import TrainedRun
from pipelines.spec import Evaluation, Guardrails, LoadedSpec, load_spec
from pipelines.training_set import Split, TrainingInput

from .conftest import D1, D2, D3, D4, amend, training_suite

CONTEXT = ProducedBy(dag_id="sensors_train", run_id="manual__2024-01-04", task_id="train_model",
                     try_number=1, triggered_by="alice", reason="unit test of the steps")


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite tracking store, made once: creating one runs every MLflow
    migration, seconds a test."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(empty_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """This test's own tracking store (a copy of the empty one), with artifacts under its own
    PITSTOP_HOME."""
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    monkeypatch.setenv("PITSTOP_HOME", str(tmp_path / "home"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def computed(ingested: LoadedSpec, store: str) -> LoadedSpec:
    """The tiny pipeline with its view computed, a training suite its readings meet, and
    missing features (beyond the view's TTL) imputed, as LogisticRegression needs."""
    features.compute_view(env_lake(), ingested, "last", D1, D4)
    training_suite(ingested, 1.0)
    return amend(ingested, model={"preprocessing": {"impute": {"numeric": "median"}}})


@dataclass(frozen=True)
class Chain:
    """The train chain up to training, as the DAG's first three tasks leave it."""

    spec: LoadedSpec
    built: TrainingInput
    report: QualitySummary
    pair: Pair


@pytest.fixture
def chain(computed: LoadedSpec) -> Chain:
    built = steps.build_training_set(env_lake(), computed, (D1, D4), None, CONTEXT)
    report = steps.validate_training_set(env_lake(), computed, built)
    return Chain(computed, built, report, steps.plan_pair(computed, built))


@pytest.fixture
def trained(chain: Chain) -> TrainedRun:
    return steps.train_model(env_lake(), chain.spec, chain.built, chain.report, chain.pair, CONTEXT)


def _run(run_id: str) -> Any:
    return registry.client().get_run(run_id)


def _runs(spec: LoadedSpec) -> list[Any]:
    return registry.client().search_runs([registry.experiment_id(spec.name)])


# --- build, validate, plan ------------------------------------------------------------------


def test_build_training_set_publishes_the_set_with_who_produced_it(computed: LoadedSpec
                                                                   ) -> None:
    built = steps.build_training_set(env_lake(), computed, (D1, D4), None, CONTEXT)
    assert built.split == Split(D1, D3, D4)  # the spec's one evaluation day
    assert built.training_set.rows == 216
    manifest = lake.read_manifest(env_lake().root / built.training_set.path)
    assert manifest["produced_by"] == CONTEXT.to_json()
    assert steps.build_training_set(env_lake(), computed, (D1, D4), D2, {}).split == Split(D1, D2, D4)


def test_build_training_set_refuses_an_estimator_of_the_wrong_task_before_building(
        computed: LoadedSpec) -> None:
    spec = amend(computed, model={"task": "regression"})  # LogisticRegression is a classifier
    with pytest.raises(SpecError, match=r"LogisticRegression is a classifier, but model.task "
                                        r"is 'regression'"):
        steps.build_training_set(env_lake(), spec, (D1, D4), None, CONTEXT)
    assert not lake.pipeline_dir(env_lake(), "sensors", "datasets").exists()


def test_build_training_set_refuses_a_split_outside_the_window(computed: LoadedSpec) -> None:
    with pytest.raises(DataError, match="split: evaluation start 2024-01-04 must fall inside"):
        steps.build_training_set(env_lake(), computed, (D1, D4), D4, CONTEXT)


def test_validate_training_set_passes_a_set_that_meets_its_suite(chain: Chain) -> None:
    assert (chain.report.suite, chain.report.success, chain.report.evaluated) == (
        "sensors_training_set", True, 1)
    assert (env_lake().root / chain.report.result_path).is_file()


def test_validate_training_set_refuses_a_set_that_fails_its_suite(chain: Chain) -> None:
    training_suite(chain.spec, 0.5)  # the readings are uniform on [0, 1)
    with pytest.raises(ValidationFailed, match="on column 'last__value'"):
        steps.validate_training_set(env_lake(), chain.spec, chain.built)


def test_validate_training_set_needs_a_suite(chain: Chain) -> None:
    with pytest.raises(SpecError, match="training_suite: required"):
        steps.validate_training_set(env_lake(), amend(chain.spec, training_suite=None), chain.built)


def test_plan_pair_names_the_dataset_and_finds_the_version_that_holds_it(
        chain: Chain, trained: TrainedRun) -> None:
    assert chain.pair == lineage.plan_pair(chain.spec, chain.built.training_set.dataset_id)
    assert chain.pair.registered_version is None
    client = registry.client()
    client.create_registered_model("sensors")
    client.create_model_version("sensors", source=trained.model_uri, run_id=trained.run_id,
                                tags={"pair_id": chain.pair.pair_id}, model_id=trained.model_id)
    assert steps.plan_pair(chain.spec, chain.built).registered_version == "1"


# --- training -------------------------------------------------------------------------------


def test_training_log_gathers_tags_params_and_lineage_from_the_lake(chain: Chain,
                                                                   tmp_path: Path) -> None:
    log = steps.training_log(env_lake(), chain.spec, chain.built, chain.report, chain.pair,
                             CONTEXT, tmp_path)
    training_set = chain.built.training_set
    raw = lineage.raw_partitions_used(env_lake(), training_set)
    assert len(raw) == 3  # the three ingested days
    assert {k: log.tags[k] for k in ("pair_id", "dataset_id", "gx_result", "raw_partitions",
                                     "airflow_dag_id", "airflow_try", "triggered_by", "reason",
                                     "raw_inputs_sha256")} == {
        "pair_id": chain.pair.pair_id, "dataset_id": training_set.dataset_id,
        "gx_result": "passed", "raw_partitions": "3", "airflow_dag_id": "sensors_train",
        "airflow_try": "1", "triggered_by": "alice", "reason": "unit test of the steps",
        "raw_inputs_sha256": lake.sha256_json([(p["path"], p["sha256"]) for p in raw])}
    assert "airflow_task_id" not in log.tags
    assert log.run_name == f"sensors-{chain.pair.pair_id[:12]}"
    assert {k: v for k, v in log.params.items() if k.startswith("preprocessing.")} == {
        "preprocessing.impute.numeric": "median", "preprocessing.impute.categorical": "none",
        "preprocessing.encode": "ordinal", "preprocessing.scale": "none"}
    assert {k: log.params[k] for k in ("estimator", "seed", "train_start", "eval_start", "end",
                                       "features")} == {
        "estimator": "sklearn.linear_model.LogisticRegression", "seed": 7, "train_start": D1,
        "eval_start": D3, "end": D4, "features": "last__value"}
    folder = env_lake().root / training_set.path
    assert log.dataset_uri == lake.committed_file(folder).as_uri()
    assert log.json_artifacts == {"lineage/training_set_manifest.json": lake.read_manifest(folder),
                                  "lineage/raw_partitions.json": raw}
    assert log.artifacts["lineage/spec"] == chain.spec.path
    assert log.artifacts["quality"].is_file()
    assert set(log.folders) == {"quality/data_docs"}
    assert log.lineage == lineage.lineage_record(env_lake(), chain.spec, chain.built, chain.report,
                                                 chain.pair, CONTEXT)


def test_flat_names_nested_settings_by_their_path() -> None:
    assert steps._flat("p", {"a": {"b": 1, "c": {"d": "x"}}, "e": None}) == {
        "p.a.b": 1, "p.a.c.d": "x", "p.e": None}
    assert steps._flat("p", 3) == {"p": 3}


def test_train_model_logs_one_run_whose_model_predicts(chain: Chain, trained: TrainedRun
                                                       ) -> None:
    run = _run(trained.run_id)
    assert run.info.experiment_id == trained.experiment_id == registry.experiment_id("sensors")
    assert run.data.tags["pair_id"] == chain.pair.pair_id
    assert run.data.tags["model_uri"] == trained.model_uri
    assert run.data.params["seed"] == "7"
    frame = pd.read_parquet(lake.verified_training_file(
        env_lake().root / chain.built.training_set.path, D1, D4))
    predictions = train.predict(registry.load_model(trained.model_uri), frame)
    assert predictions.shape == (216,) and 0 < predictions.min() < predictions.max() < 1


def test_a_retried_train_model_returns_the_finished_run(chain: Chain, trained: TrainedRun
                                                        ) -> None:
    assert _run(trained.run_id).info.status == "FINISHED"  # as a first try that died later
    again = steps.train_model(env_lake(), chain.spec, chain.built, chain.report, chain.pair, CONTEXT)
    assert again == trained
    assert [r.info.run_id for r in _runs(chain.spec)] == [trained.run_id]


def test_a_fit_that_fails_leaves_no_run(chain: Chain) -> None:
    spec = amend(chain.spec, model={"params": {"C": -1.0}})  # C must be positive
    with pytest.raises(DataError, match="cannot be fitted on 147 rows: The 'C' parameter"):
        steps.train_model(env_lake(), spec, chain.built, chain.report, chain.pair, CONTEXT)
    assert _runs(chain.spec) == []


# --- re-scoring, evaluation, registration, summary ------------------------------------------


def test_rescore_known_problems_scores_a_registered_version_once(
        chain: Chain, trained: TrainedRun) -> None:
    registered = steps.register_model(chain.spec, chain.pair, trained,
                                      steps.evaluate_model(env_lake(), chain.spec, chain.built, trained))
    assert steps.rescore_known_problems(chain.spec) == []  # no problems declared
    spec_file = chain.spec.path
    spec_file.write_text(spec_file.read_text() + "evaluation: {problems: problems.yaml}\n")
    (spec_file.parent / "problems").mkdir()
    pd.DataFrame({"reading_id": [f"c{i}" for i in range(10)], "last__value": [0.99] * 10,
                  "high": [1] * 10}).to_csv(spec_file.parent / "problems" / "hot.csv",
                                            index=False)
    (spec_file.parent / "problems.yaml").write_text(yaml.safe_dump({"problems": {"hot": {
        "description": "hot readings", "expected": 1, "cases": "problems/hot.csv"}}}))
    spec = load_spec(spec_file)
    scored = steps.rescore_known_problems(spec)
    assert [(version, name) for version, name, _ in scored] == [(registered.version, "hot")]
    assert 0 <= scored[0][2] <= 1
    assert steps.rescore_known_problems(spec) == []


def test_evaluate_model_logs_the_verdict_and_finishes_the_run(chain: Chain,
                                                             trained: TrainedRun) -> None:
    summary = steps.evaluate_model(env_lake(), chain.spec, chain.built, trained)
    assert summary.eval_rows == 69  # the evaluation day's rows: 216 - the 147 trained on
    assert summary.champion_version is None
    run = _run(trained.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["eval_roc_auc"] == pytest.approx(summary.metrics["roc_auc"])
    assert run.data.metrics["eval_rows"] == 69
    assert run.data.tags["verdict"] == ("passed" if summary.verdict.passed else "rejected")
    assert run.data.tags["eval_dataset_id"] == summary.eval_dataset_id
    stored = json.loads(Path(registry.client().download_artifacts(
        trained.run_id, "evaluation/evaluation.json", str(chain.spec.path.parent))).read_text())
    assert stored["eval_rows"] == 69 and stored["verdict"]["passed"] == summary.verdict.passed
    artifacts = {f.path for f in registry.client().list_artifacts(trained.run_id, "evaluation")}
    assert "evaluation/report.html" in artifacts


def test_guardrails_that_refuse_mark_the_run_failed_with_their_verdict(
        chain: Chain, trained: TrainedRun) -> None:
    spec = amend(chain.spec, evaluation=Evaluation(guardrails=Guardrails(min_std=1.0)))
    with pytest.raises(evaluate.GuardrailsFailed, match="predictions are constant"):
        steps.evaluate_model(env_lake(), spec, chain.built, trained)
    run = _run(trained.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["verdict"] == "guardrails_failed"
    assert "predictions are constant" in run.data.tags["verdict_reasons"]


def test_any_failure_of_evaluate_model_marks_the_run_failed(chain: Chain,
                                                            trained: TrainedRun) -> None:
    broken = TrainedRun(trained.run_id, trained.experiment_id, "models:/no-such-model/1",
                        trained.model_id)
    with pytest.raises(MlflowException, match="no-such-model"):
        steps.evaluate_model(env_lake(), chain.spec, chain.built, broken)
    run = _run(trained.run_id)
    assert run.info.status == "FAILED"
    assert "verdict" not in run.data.tags


def test_summarize_without_a_version_names_the_set_and_nothing_registered(chain: Chain,
                                                                          store: str) -> None:
    summary = steps.summarize(chain.spec, chain.built, chain.report, chain.pair)
    assert summary == steps.RunSummary(
        "sensors", chain.pair.pair_id, chain.built.training_set.dataset_id,
        chain.built.training_set, chain.built.split, chain.report.docs_path,
        store, "sensors")


def test_register_then_summarize_reads_the_version_back(chain: Chain, trained: TrainedRun
                                                        ) -> None:
    evaluation = steps.evaluate_model(env_lake(), chain.spec, chain.built, trained)
    registered = steps.register_model(chain.spec, chain.pair, trained, evaluation)
    assert (registered.model_name, registered.version, registered.new) == ("sensors", "1", True)
    assert registered.champion == evaluation.verdict.passed
    again = steps.register_model(chain.spec, chain.pair, trained, evaluation)
    assert (again.version, again.new) == ("1", False)
    summary = steps.summarize(chain.spec, chain.built, chain.report, chain.pair)
    assert (summary.version, summary.run_id, summary.experiment_id) == (
        "1", trained.run_id, trained.experiment_id)
    assert summary.report.endswith(f"{trained.run_id}/artifacts/evaluation/report.html")
    assert summary.champion == evaluation.verdict.passed
    # the alias the summary prints: a refused candidate holds `challenger`
    assert summary.aliases == (["champion"] if evaluation.verdict.passed else ["challenger"])
    assert summary.already_registered is False
    assert summary.verdict == ("passed" if evaluation.verdict.passed else "rejected")
    logged = {k: v for k, v in evaluation.metrics.items() if not math.isnan(v)}  # as MLflow
    assert summary.metrics == pytest.approx(logged) and "rows" not in summary.metrics
    known = Pair(chain.pair.pair_id, chain.pair.dataset_id, chain.pair.code_version, "1")
    assert steps.summarize(chain.spec, chain.built, chain.report, known).already_registered
