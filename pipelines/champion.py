"""The champion's lifecycle: register a pair once, move `champion` only with a record.

A version is either created with all its lineage tags and description or deleted again, so
a crash never leaves a version without lineage. `champion` moves when a candidate passes the
gate, or by hand (`promote`, `rollback`); every move is appended to the registered model's
history (who, when, why, from which version), and the alias is put back if that record
cannot be written.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow.exceptions import MlflowException

from pipelines.errors import LineageError
from pipelines.registry import (
    CHALLENGER,
    CHAMPION,
    HISTORY_TAG,
    LINEAGE_TAGS,
    TrainedRun,
    absent,
    champion_version,
    client,
    clip,
    find_version,
)

if TYPE_CHECKING:
    from pipelines.evaluate import EvaluationSummary
    from pipelines.lineage import Pair
    from pipelines.spec import LoadedSpec


@dataclass(frozen=True)
class Registered:
    """The version that holds a pair after the register step."""

    model_name: str
    version: str
    new: bool
    """False when the pair was registered before: nothing was created."""
    champion: bool
    run_id: str | None = None


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
    mlflow_client = client()
    try:
        mlflow_client.create_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
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
    if not reason.strip():
        raise LineageError("promote: say why (--reason); the reason is kept in the history")
    try:
        client().get_model_version(model_name, version)
    except MlflowException as exc:
        if not absent(exc):
            raise
        raise LineageError(f"promote: {model_name} has no version {version}") from exc
    current = champion_version(model_name)
    if current is not None and str(current.version) == str(version):
        raise LineageError(f"promote: {model_name} version {version} is already champion")
    return move_champion(model_name, str(version), "promote", by, reason)


def rollback(model_name: str, by: str, reason: str) -> dict[str, Any]:
    """Give `champion` back to the version that held it before the last move."""
    if not reason.strip():
        raise LineageError("rollback: say why (--reason); the reason is kept in the history")
    try:
        history = champion_history(model_name)
    except MlflowException as exc:
        if not absent(exc):
            raise
        raise LineageError(f"rollback: no registered model {model_name!r}") from exc
    if not history or history[-1]["previous"] is None:
        raise LineageError(f"rollback: {model_name} has no previous champion to go back to")
    return move_champion(model_name, history[-1]["previous"], "rollback", by, reason)


def register_pair(spec: LoadedSpec, pair: Pair, run: TrainedRun,
                  evaluation: EvaluationSummary) -> Registered:
    """Register the pair's model (once) with the run's lineage tags and the verdict."""
    name = spec.pipeline.model_name
    if (existing := find_version(name, pair.pair_id)) is not None:
        holder = champion_version(name)  # searched versions carry no aliases
        return Registered(name, str(existing.version), new=False,
                          champion=holder is not None and str(holder.version) == str(existing.version))
    verdict = evaluation.verdict
    run_tags = client().get_run(run.run_id).data.tags
    tags = {k: run_tags[k] for k in LINEAGE_TAGS if k in run_tags}
    tags["verdict"] = "passed" if verdict.passed else "rejected"
    if not verdict.passed:
        tags["rejected_reason"] = clip("; ".join(verdict.reasons))
    version = register(name, run.run_id, run.model_uri, run.model_id, tags,
                       describe_version(name, pair, run, evaluation, tags),
                       promote=verdict.passed, by=run_tags.get("triggered_by", "pitstop"),
                       reason=run_tags.get("reason") or "passed the evaluation gate")
    return Registered(name, version, new=True, champion=verdict.passed, run_id=run.run_id)


def describe_version(name: str, pair: Pair, run: TrainedRun, evaluation: EvaluationSummary,
                     tags: dict[str, str]) -> str:
    """The version's description in the MLflow UI: IDs, verdict, metrics, where to look."""
    metric_text = ", ".join(f"{k} {v:.4f}" for k, v in evaluation.metrics.items())
    lines = [f"pair_id {pair.pair_id}", f"dataset_id {pair.dataset_id}",
             f"verdict: {tags['verdict']}"
             + (f" ({tags['rejected_reason']})" if "rejected_reason" in tags else ""),
             f"evaluation on {evaluation.eval_rows} rows: {metric_text}",
             *(f"note: {note}" for note in evaluation.verdict.notes)]
    if evaluation.champion_version:
        lines.append(f"compared with champion version {evaluation.champion_version} on the "
                     f"same rows (eval_dataset_id {evaluation.eval_dataset_id[:16]}…)")
    if evaluation.problems:
        lines.append("known problems: " + ", ".join(
            f"{k} {v.solved}/{v.cases}" for k, v in evaluation.problems.items()))
    lines += [f"report: runs:/{run.run_id}/evaluation/report.html",
              f"lineage: runs:/{run.run_id}/lineage/lineage.json "
              f"(trace with `pitstop trace {name}/<version>`)",
              f"data docs: runs:/{run.run_id}/quality/data_docs/index.html"]
    return "\n".join(lines)
