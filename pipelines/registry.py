"""MLflow: the run, the logged model, the registered version, aliases and lineage tags.

We log explicitly (no autolog) so every run, logged model and model version carries the
same lineage tags, and so a re-run can find the pair it already registered by `pair_id`.
A version is either created with all its tags and description or deleted again: a crash
never leaves a version without lineage.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines import lake, settings

if TYPE_CHECKING:
    from pipelines.spec import LoadedSpec

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
"""Alias of the latest candidate the gate refused: easy to find, compare and promote by hand."""
HISTORY_TAG = "champion_history."
"""Registered-model tags `champion_history.0001`, ...: one JSON record per move of `champion`."""
# Tags every run, logged model and model version of a pipeline carries.
LINEAGE_TAGS = ("pair_id", "dataset_id", "pipeline", "code_version", "git_commit",
                "feature_definitions_hash", "raw_inputs_sha256", "raw_partitions", "gx_result",
                "gx_suite", "lineage", "lineage_sha256",
                "airflow_dag_id", "airflow_run_id", "airflow_try", "triggered_by", "reason")


def client() -> Any:
    """An MlflowClient on the configured store (SQLite under PITSTOP_HOME by default)."""
    import os

    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri())
    return mlflow.MlflowClient()


def experiment_id(name: str) -> str:
    """The pipeline's experiment, created with its artifacts under PITSTOP_HOME."""
    mlflow_client = client()
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = settings.mlflow_artifact_root() / name
    location.mkdir(parents=True, exist_ok=True)
    try:
        return str(mlflow_client.create_experiment(name, artifact_location=location.as_uri()))
    except Exception:  # a parallel task created it first
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def find_version(model_name: str, pair_id: str) -> Any | None:
    """The registered version of this pair, if any (what makes re-runs register nothing)."""
    from mlflow.exceptions import MlflowException

    try:
        found = client().search_model_versions(
            f"name = '{model_name}' and tags.pair_id = '{pair_id}'")
    except MlflowException:
        return None
    return max(found, key=lambda v: int(v.version)) if found else None


def find_finished_run(experiment: str, pair_id: str) -> Any | None:
    """A finished run of this pair with a logged model: a retried train task reuses it."""
    runs = client().search_runs(
        [experiment],
        filter_string=f"tags.pair_id = '{pair_id}' and attributes.status = 'FINISHED' "
        "and tags.model_uri != ''",
        max_results=1,
    )
    return runs[0] if runs else None


def champion_version(model_name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None


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


def register(
    model_name: str,
    run_id: str,
    model_uri: str,
    model_id: str,
    tags: dict[str, str],
    description: str,
    promote: bool,
    by: str = "pitstop",
    reason: str = "",
) -> str:
    """Create the version with all tags; move `champion` to it only when `promote` (recorded
    in the champion history, `by` whom and why), else point `challenger` at it.

    If anything fails after the version exists, the version is deleted, so no version is
    ever left without its lineage tags.
    """
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    try:
        mlflow_client.create_registered_model(model_name)
    except MlflowException:
        pass  # exists already
    version = mlflow_client.create_model_version(
        model_name, source=model_uri, run_id=run_id, tags=tags, description=description,
        model_id=model_id,
    )
    try:
        mlflow_client.set_logged_model_tags(model_id, {"registered_version": version.version})
        if promote:
            move_champion(model_name, str(version.version), "gate", by, reason)
        else:
            mlflow_client.set_registered_model_alias(model_name, CHALLENGER, version.version)
    except BaseException:
        mlflow_client.delete_model_version(model_name, version.version)
        raise
    return str(version.version)


def champion_history(model_name: str) -> list[dict[str, Any]]:
    """Every move of `champion`, oldest first: action, version, previous, by, at, reason."""
    tags = client().get_registered_model(model_name).tags
    return [json.loads(tags[k]) for k in sorted(tags) if k.startswith(HISTORY_TAG)]


def move_champion(model_name: str, version: str, action: str, by: str, reason: str
                  ) -> dict[str, Any]:
    """Point `champion` at `version` and append the move to the history.

    The alias moves first; if the history cannot be written the alias is put back, so the
    champion never changes without a record of who moved it, when and why.
    """
    import datetime as dt

    mlflow_client = client()
    target = mlflow_client.get_model_version(model_name, version)
    previous = champion_version(model_name)
    history = champion_history(model_name)
    record = {"action": action, "version": str(version),
              "previous": str(previous.version) if previous is not None else None,
              "by": by, "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "reason": reason, "verdict": target.tags.get("verdict")}
    mlflow_client.set_registered_model_alias(model_name, CHAMPION, version)
    try:
        mlflow_client.set_registered_model_tag(
            model_name, f"{HISTORY_TAG}{len(history) + 1:04d}", json.dumps(record))
    except BaseException:
        if previous is not None:
            mlflow_client.set_registered_model_alias(model_name, CHAMPION, previous.version)
        else:
            mlflow_client.delete_registered_model_alias(model_name, CHAMPION)
        raise
    return record


def promote(model_name: str, version: str, by: str, reason: str) -> dict[str, Any]:
    """Make a version champion by hand (e.g. a challenger a person has reviewed)."""
    from mlflow.exceptions import MlflowException

    from pipelines.errors import LineageError

    if not reason.strip():
        raise LineageError("promote: say why (--reason); the reason is kept in the history")
    try:
        client().get_model_version(model_name, version)
    except MlflowException as exc:
        raise LineageError(f"promote: {model_name} has no version {version}") from exc
    current = champion_version(model_name)
    if current is not None and str(current.version) == str(version):
        raise LineageError(f"promote: {model_name} version {version} is already champion")
    return move_champion(model_name, str(version), "promote", by, reason)


def rollback(model_name: str, by: str, reason: str) -> dict[str, Any]:
    """Give `champion` back to the version that held it before the last move."""
    from mlflow.exceptions import MlflowException

    from pipelines.errors import LineageError

    if not reason.strip():
        raise LineageError("rollback: say why (--reason); the reason is kept in the history")
    try:
        history = champion_history(model_name)
    except MlflowException as exc:
        raise LineageError(f"rollback: no registered model {model_name!r}") from exc
    if not history or history[-1]["previous"] is None:
        raise LineageError(f"rollback: {model_name} has no previous champion to go back to")
    return move_champion(model_name, history[-1]["previous"], "rollback", by, reason)


def log_directory(run_id: str, folder: Path, artifact_path: str) -> None:
    client().log_artifacts(run_id, str(folder), artifact_path)


def plan_pair(spec: LoadedSpec, dataset_id: str) -> dict[str, Any]:
    """The pair this run would register, and the version that already holds it, if any."""
    from pipelines import lineage

    code = lineage.code_version(spec)
    pair_id = lineage.pair_id(dataset_id, lineage.training_config(spec), code)
    existing = find_version(spec.pipeline.model_name, pair_id)
    return {"pair_id": pair_id, "dataset_id": dataset_id, "code_version": code,
            "registered_version": str(existing.version) if existing is not None else None}


def register_pair(
    spec: LoadedSpec, pair: dict[str, Any], run: dict[str, str], evaluation: dict[str, Any]
) -> dict[str, Any]:
    """Register the pair's model (once) with the run's lineage tags and the verdict."""
    name = spec.pipeline.model_name
    if (existing := find_version(name, pair["pair_id"])) is not None:
        return {"model_name": name, "version": str(existing.version), "new": False,
                "champion": CHAMPION in (existing.aliases or [])}
    verdict = evaluation["verdict"]
    run_tags = client().get_run(run["run_id"]).data.tags
    tags = {k: run_tags[k] for k in LINEAGE_TAGS if k in run_tags}
    tags["verdict"] = "passed" if verdict["passed"] else "rejected"
    if not verdict["passed"]:
        tags["rejected_reason"] = clip("; ".join(verdict["reasons"]))
    metric_text = ", ".join(f"{k} {v:.4f}" for k, v in evaluation["metrics"].items())
    description = (
        f"pair_id {pair['pair_id']}\ndataset_id {pair['dataset_id']}\n"
        f"verdict: {tags['verdict']}"
        + (f" ({tags['rejected_reason']})" if not verdict["passed"] else "")
        + f"\nevaluation on {evaluation['eval_rows']} rows: {metric_text}\n"
        + _champion_line(evaluation)
        + f"report: runs:/{run['run_id']}/evaluation/report.html\n"
        f"lineage: runs:/{run['run_id']}/lineage/lineage.json "
        f"(trace with `pitstop trace {name}/<version>`)\n"
        f"data docs: runs:/{run['run_id']}/quality/data_docs/index.html"
    )
    version = register(name, run["run_id"], run["model_uri"], run["model_id"], tags,
                       description, promote=verdict["passed"],
                       by=run_tags.get("triggered_by", "pitstop"),
                       reason=run_tags.get("reason") or "passed the evaluation gate")
    return {"model_name": name, "version": version, "new": True,
            "champion": bool(verdict["passed"]), "run_id": run["run_id"]}


def _champion_line(evaluation: dict[str, Any]) -> str:
    """The comparison with the champion and the known problems, in one line each."""
    lines = []
    if evaluation.get("champion_version"):
        lines.append(f"compared with champion version {evaluation['champion_version']} on the "
                     f"same rows (eval_dataset_id {evaluation['eval_dataset_id'][:16]}…)")
    if evaluation.get("problems"):
        lines.append("known problems: " + ", ".join(
            f"{k} {v['solved']}/{v['cases']}" for k, v in evaluation["problems"].items()))
    return "".join(f"{line}\n" for line in lines)


def describe_pair(spec: LoadedSpec, pair: dict[str, Any], built: dict[str, Any],
                  report: dict[str, Any]) -> dict[str, Any]:
    """A run's summary for people: IDs, version, verdict, metrics and where to look."""
    name = spec.pipeline.model_name
    version = find_version(name, pair["pair_id"])
    summary: dict[str, Any] = {
        "pipeline": spec.name, "pair_id": pair["pair_id"],
        "dataset_id": built["training_set"]["dataset_id"],
        "training_set": built["training_set"], "split": built["split"],
        "data_docs": report.get("docs_path"), "tracking_uri": settings.mlflow_tracking_uri(),
        "model_name": name, "version": None,
    }
    if version is None:
        return summary
    run = client().get_run(version.run_id)
    champion = champion_version(name)
    summary.update({
        "version": str(version.version), "run_id": version.run_id,
        "experiment_id": run.info.experiment_id,
        "report": f"{run.info.artifact_uri}/evaluation/report.html",
        "already_registered": pair["registered_version"] is not None,
        "verdict": version.tags.get("verdict"), "rejected_reason": version.tags.get(
            "rejected_reason"),
        "champion": champion is not None and str(champion.version) == str(version.version),
        "metrics": {k.removeprefix("eval_"): v for k, v in run.data.metrics.items()
                    if k.startswith("eval_") and k != "eval_rows"},
    })
    return summary
