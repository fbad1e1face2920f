"""MLflow, and nothing else: runs, logged models, versions, tags, metrics and artifacts.

Every call into the tracking store goes through here, so the rest of the library computes
and this module records. We log explicitly (no autolog) so every run, logged model and model
version carries the same lineage tags, and so a re-run can find the pair it already
registered by `pair_id`. The champion's lifecycle (register, promote, roll back) builds on
this in `champion.py`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from pipelines import lake, settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
"""Alias of the latest candidate the gate refused: easy to find, compare and promote by hand."""
REFERENCE_ARTIFACT = "monitoring/reference.json"
"""The run artifact holding a version's monitoring reference (`pipelines/monitoring.py`)."""
REFERENCE_TAG = "monitoring_reference"
"""Version tag naming that artifact, set at registration."""
HISTORY_TAG = "champion_history."
"""Registered-model tags `champion_history.0001`, ...: one JSON record per move of `champion`."""
# Tags every run, logged model and model version of a pipeline carries.
LINEAGE_TAGS = ("pair_id", "dataset_id", "pipeline", "code_version", "git_commit",
                "feature_definitions_hash", "raw_inputs_sha256", "raw_partitions", "gx_result",
                "gx_suite", "lineage", "lineage_sha256",
                "airflow_dag_id", "airflow_run_id", "airflow_try", "triggered_by", "reason")


NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
"""MLflow's error codes for a model, version or alias that does not exist (a missing alias is
INVALID_PARAMETER_VALUE). Any other failure, an unreachable server above all, is not "none"."""


def client() -> Any:
    """An MlflowClient on the configured store (SQLite under PITSTOP_HOME by default), with
    pitstop's bounded HTTP waits unless the environment sets MLflow's own variables."""
    import os

    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name, value in settings.MLFLOW_HTTP_BOUNDS.items():
        os.environ.setdefault(name, value)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri())
    return mlflow.MlflowClient()


def absent(exc: Exception) -> bool:
    """Whether MLflow answered that the thing does not exist. Only then may a caller take "no
    champion" or "no such version": a store that did not answer must fail the task, never
    pass for an empty registry (which would promote a candidate without comparing it)."""
    return getattr(exc, "error_code", None) in NOT_FOUND


def experiment_id(name: str) -> str:
    """The pipeline's experiment. On a tracking server its artifacts go where the server
    puts them (through its proxy, `mlflow-artifacts:/`: tasks need no store credentials);
    on a local store, under PITSTOP_HOME."""
    mlflow_client = client()
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = None
    if not settings.tracks_on_a_server():
        folder = settings.mlflow_artifact_root() / name
        folder.mkdir(parents=True, exist_ok=True)
        location = folder.as_uri()
    try:
        return str(mlflow_client.create_experiment(name, artifact_location=location))
    except MlflowException as exc:  # a parallel task created it first
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is None or exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return str(experiment.experiment_id)


def find_version(model_name: str, pair_id: str) -> Any | None:
    """The registered version of this pair, if any (what makes re-runs register nothing).

    A store that cannot be reached raises: it is never taken to mean "not registered".
    """
    found = client().search_model_versions(
        f"name = '{model_name}' and tags.pair_id = '{pair_id}'")
    return max(found, key=lambda v: int(v.version)) if found else None


def champion_version(model_name: str) -> Any | None:
    """The version holding `champion`; None only when MLflow says there is none."""
    return alias_version(model_name, CHAMPION)


def model_exists(model_name: str) -> bool:
    """Whether the registered model exists, asked by a search: MLflow's basic-auth server
    answers a direct read of a model that does not exist with 403, like a refused one, so
    only a search tells "none yet" (a first training) from "not allowed"."""
    return bool(client().search_registered_models(filter_string=f"name = '{model_name}'"))


def alias_version(model_name: str, alias: str) -> Any | None:
    """The version holding `alias`; None only when MLflow says there is none (no such
    model, or no version with the alias)."""
    if not model_exists(model_name):
        return None
    try:
        return client().get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if absent(exc):
            return None
        raise


def set_version_tags(model_name: str, version: str, tags: dict[str, str]) -> None:
    mlflow_client = client()
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(model_name, version, key, clip(value))


def delete_version_tag(model_name: str, version: str, key: str) -> None:
    """Remove a version tag; one that is not there is already removed."""
    try:
        client().delete_model_version_tag(model_name, version, key)
    except MlflowException as exc:
        if not absent(exc):
            raise


def load_json(artifact_uri: str) -> Any:
    """A JSON artifact (`runs:/<run_id>/<path>`) read back."""
    import mlflow.artifacts

    client()
    return json.loads(mlflow.artifacts.load_text(artifact_uri))


def clip(text: str, limit: int = 4000) -> str:
    """A tag value within MLflow's length limits; the full text is in evaluation.json."""
    return text if len(text) <= limit else text[:limit - 40] + " … (more in evaluation.json)"


def versions(model_name: str) -> list[Any]:
    """Every version of a registered model, oldest first (none when it does not exist)."""
    found = client().search_model_versions(f"name = '{model_name}'")
    return sorted(found, key=lambda v: int(v.version))


def load_model(model_uri: str) -> Any:
    import mlflow.sklearn

    client()
    return mlflow.sklearn.load_model(model_uri)


def log_json(run_id: str, payload: Any, artifact_file: str) -> None:
    client().log_text(run_id, json.dumps(payload, indent=2, sort_keys=True, default=str),
                      artifact_file)


def artifact_hashes(uri: str) -> dict[str, str]:
    """sha256 of every file under an artifact URI (e.g. a logged model), by relative path."""
    import tempfile

    import mlflow.artifacts

    client()
    with tempfile.TemporaryDirectory(prefix="pitstop-artifacts-") as tmp:
        root = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        return {p.relative_to(root).as_posix(): lake.sha256_file(p)
                for p in sorted(root.rglob("*")) if p.is_file()}


def log_metrics(run_id: str, values: dict[str, float]) -> None:
    """Log at the current time, so a re-scored metric's latest value is the new one."""
    import math
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    clean = {k: v for k, v in values.items() if not math.isnan(v)}
    client().log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in clean.items()])


def log_directory(run_id: str, folder: Path, artifact_path: str) -> None:
    client().log_artifacts(run_id, str(folder), artifact_path)


def set_tags(run_id: str, tags: dict[str, str]) -> None:
    mlflow_client = client()
    for key, value in tags.items():
        mlflow_client.set_tag(run_id, key, clip(value))


def end_run(run_id: str, status: str) -> None:
    """Mark a run FINISHED or FAILED: a failed evaluation never leaves a finished run."""
    client().set_terminated(run_id, status)


def monitoring_run(experiment: str, run_name: str, tags: dict[str, str]) -> str:
    """The monitoring run of one version and day (found by its tags, else created): a
    re-scored day logs into the same run, whose latest values are then the new ones."""
    found = client().search_runs(
        [experiment], filter_string=f"tags.monitoring = 'true' and tags.model_name = "
        f"'{tags['model_name']}' and tags.model_version = '{tags['model_version']}' and "
        f"tags.monitoring_day = '{tags['monitoring_day']}'", max_results=1)
    if found:
        run_id = found[0].info.run_id
        client().update_run(run_id, status="RUNNING")
        set_tags(run_id, tags)
        return str(run_id)
    return str(client().create_run(experiment, tags=tags, run_name=run_name).info.run_id)


@dataclass(frozen=True)
class TrainedRun:
    """The MLflow run of one fitted candidate and its logged model."""

    run_id: str
    experiment_id: str
    model_uri: str
    model_id: str


def finished_run(experiment: str, pair_id: str) -> TrainedRun | None:
    """A finished run of this pair with a logged model, if a previous try logged it: a
    retried train task reuses it instead of training twice."""
    runs = client().search_runs(
        [experiment],
        filter_string=f"tags.pair_id = '{pair_id}' and attributes.status = 'FINISHED' "
        "and tags.model_uri != ''",
        max_results=1,
    )
    if not runs:
        return None
    done = runs[0]
    return TrainedRun(done.info.run_id, experiment, done.data.tags["model_uri"],
                      done.data.tags["model_id"])


def model_types(model: Any) -> list[str]:
    """Types skops must trust to load this model: exactly those it is made of.

    MLflow stores sklearn models with skops (no arbitrary pickle code on load); types outside
    skops' default allow-list must be named. We name the ones of the model we just fitted.
    """
    import skops.io

    return skops.io.get_untrusted_types(data=skops.io.dumps(model))


@dataclass(frozen=True)
class TrainingLog:
    """Everything `log_training_run` records, gathered by the caller (no MLflow needed)."""

    experiment_id: str
    run_name: str
    tags: dict[str, str]
    params: dict[str, Any]
    dataset_uri: str
    dataset_name: str
    dataset_id: str
    target: str
    artifacts: dict[str, Path]
    """Local files to log, by artifact folder."""
    folders: dict[str, Path]
    """Local folders to log whole, by artifact folder."""
    json_artifacts: dict[str, Any]
    """JSON payloads, by artifact file."""
    lineage: dict[str, Any]
    """The lineage record; the model's id, URI and file hashes are added once it is logged."""
    lineage_file: str


def log_training_run(log: TrainingLog, frame: Any, model: Any, example: Any,
                     requirements: list[str]) -> TrainedRun:
    """One MLflow run: params, the dataset input, the model with its signature and an
    input example, lineage artifacts and tags. An error inside marks the run FAILED."""
    import mlflow
    import mlflow.data
    import mlflow.sklearn
    from mlflow.models import infer_signature

    client()
    with mlflow.start_run(experiment_id=log.experiment_id, run_name=log.run_name,
                          tags=log.tags) as run:
        mlflow.log_params(log.params)
        dataset = mlflow.data.from_pandas(frame, source=log.dataset_uri, name=log.dataset_name,
                                          targets=log.target, digest=log.dataset_id[:32])
        mlflow.log_input(dataset, context="training", tags={"dataset_id": log.dataset_id})
        signature = infer_signature(example, model.predict(example))
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=requirements,
                                        skops_trusted_types=model_types(model), tags=log.tags,
                                        signature=signature, input_example=example)
        run_id = run.info.run_id
        for artifact_file, payload in log.json_artifacts.items():
            log_json(run_id, payload, artifact_file)
        for folder, path in log.artifacts.items():
            mlflow.log_artifact(str(path), folder)
        for folder, path in log.folders.items():
            mlflow.log_artifacts(str(path), folder)
        record = {**log.lineage, "model": {"model_id": info.model_id, "uri": info.model_uri,
                                           "run_id": run_id,
                                           "files": artifact_hashes(info.model_uri)}}
        log_json(run_id, record, log.lineage_file)
        mlflow.set_tags({"model_uri": info.model_uri, "model_id": info.model_id,
                         "lineage": f"runs:/{run_id}/{log.lineage_file}",
                         "lineage_sha256": lake.sha256_json(record)})
    return TrainedRun(run_id, log.experiment_id, info.model_uri, info.model_id)


