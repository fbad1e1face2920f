"""The train chain, one function per Airflow task: read, compute, record.

Each function here is what one task of `<name>_train` calls, with typed values in and out
(the orchestration layer turns them into XCom JSON and back). They wire the pure cores
(`training_set`, `train`, `evaluate`) to the I/O at the edges (the lake, `registry` for
MLflow, `report`), so the cores stay testable without a tracking store and every MLflow call
is in one place.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines import (
    champion,
    evaluate,
    lake,
    lineage,
    monitoring,
    problems,
    quality,
    registry,
    settings,
    train,
)
from pipelines.champion import Registered
from pipelines.evaluate import EvaluationSummary
from pipelines.lineage import Pair
from pipelines.provenance import ProducedBy
from pipelines.quality import QualitySummary
from pipelines.registry import TrainedRun, TrainingLog
from pipelines.spec import LoadedSpec, check_model
from pipelines.training_set import (
    Split,
    TrainingInput,
    TrainingSet,
    prepare,
    read_training_set,
    split_frame,
)

logger = logging.getLogger(__name__)

LINEAGE_PACKAGES = ("scikit-learn", "pandas", "numpy", "scipy", "skops")
"""Pinned in every logged model's requirements."""
INPUT_EXAMPLE_ROWS = 5


def build_training_set(store: lake.Lake, spec: LoadedSpec, window: tuple[dt.date, dt.date],
                       eval_start: dt.date | None, produced_by: ProducedBy,
                       force: bool = False) -> TrainingInput:
    """The first train task: the estimator checked against the task (DAG parsing skips this
    import-heavy check), then the split checked and the set built and published, or reused
    when its inputs are unchanged (unless `force`)."""
    check_model(spec)
    return prepare(store, spec, *window, eval_start=eval_start, produced_by=produced_by,
                   force=force)


def validate_training_set(store: lake.Lake, spec: LoadedSpec, built: TrainingInput,
                          force: bool = False) -> QualitySummary:
    return quality.validate_training_set(store, spec, built.training_set, force)


def plan_pair(spec: LoadedSpec, built: TrainingInput) -> Pair:
    """The pair this run would register, and the version that already holds it, if any."""
    pair = lineage.plan_pair(spec, built.training_set.dataset_id)
    existing = registry.find_version(spec.pipeline.model_name, pair.pair_id)
    return dataclasses.replace(
        pair, registered_version=None if existing is None else str(existing.version))


def _run_tags(spec: LoadedSpec, dataset_id: str, quality_report: QualitySummary, pair: Pair,
              context: ProducedBy, raw: list[dict[str, Any]]) -> dict[str, str]:
    """The lineage tags of the training run (its logged model and version get the same)."""
    return {
        "pipeline": spec.name, "pair_id": pair.pair_id, "dataset_id": dataset_id,
        "code_version": pair.code_version,
        "git_commit": lineage.git_commit(spec.path.parent) or "none",
        "feature_definitions_hash": lineage.feature_definitions_hash(spec),
        "raw_inputs_sha256": lake.sha256_json([(p["path"], p["sha256"]) for p in raw]),
        "raw_partitions": str(len(raw)), "task": spec.pipeline.model.task,
        "gx_result": "passed" if quality_report.success else "failed",
        "gx_suite": quality_report.suite,
        **{f"airflow_{k}": str(v) for k, v in context.to_json().items()
           if k in ("dag_id", "run_id", "try")},
        "triggered_by": context.triggered_by or "unknown",
        "reason": context.reason or "",
    }


def training_log(store: lake.Lake, spec: LoadedSpec, built: TrainingInput,
                 quality_report: QualitySummary, pair: Pair, context: ProducedBy,
                 scratch: Path) -> TrainingLog:
    """What the training run records: tags, params, lineage, and the files to attach (lake
    files on an object store are copied into `scratch` for MLflow to upload)."""
    training_set, split, model = built.training_set, built.split, spec.pipeline.model
    raw = lineage.raw_partitions_used(store, training_set)
    tags = _run_tags(spec, training_set.dataset_id, quality_report, pair, context, raw)
    folder = store.root / training_set.path
    docs = store.root / quality_report.docs_dir
    return TrainingLog(
        experiment_id=registry.experiment_id(spec.name),
        run_name=f"{spec.name}-{pair.pair_id[:12]}", tags=tags,
        params={"task": model.task, "estimator": model.estimator or f"build:{model.build}",
                "seed": model.seed, **{f"param.{k}": v for k, v in model.params.items()},
                **_flat("preprocessing", model.preprocessing.model_dump(mode="json")),
                "train_start": split.train_start, "eval_start": split.eval_start,
                "end": split.end, "features": ",".join(model.features)},
        dataset_uri=store.uri(lake.committed_file(folder)), dataset_name=f"{spec.name}-training-set",
        dataset_id=training_set.dataset_id, target=spec.pipeline.label.target,
        artifacts={"lineage/spec": spec.path,
                   "quality": store.localized(store.root / quality_report.result_path, scratch)},
        folders={"quality/data_docs": store.localized(docs, scratch)} if docs.is_dir() else {},
        json_artifacts={"lineage/training_set_manifest.json": lake.read_manifest(folder),
                        "lineage/raw_partitions.json": raw},
        lineage=lineage.lineage_record(store, spec, built, quality_report, pair, context),
        lineage_file=lineage.LINEAGE_ARTIFACT,
    )


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    """`{"a": {"b": 1}}` as `{"prefix.a.b": 1}`: nested settings as MLflow params."""
    if not isinstance(value, dict):
        return {prefix: value}
    return {k: v for key, item in value.items() for k, v in _flat(f"{prefix}.{key}", item).items()}


def train_model(store: lake.Lake, spec: LoadedSpec, built: TrainingInput,
                quality_report: QualitySummary, pair: Pair, context: ProducedBy
                ) -> TrainedRun:
    """Fit on the train rows, then log run, dataset, model and lineage to MLflow.

    A retried task finds the finished run of its pair and returns it instead of training
    twice. The fit happens before any run exists, so a fit that fails leaves no run behind.
    """
    experiment = registry.experiment_id(spec.name)
    if (done := registry.finished_run(experiment, pair.pair_id)) is not None:
        return done
    frame = read_training_set(store, built.training_set)
    rows, _ = split_frame(frame, spec, built.split)
    model = train.fit(spec, rows)
    columns, categorical = train.input_columns(model)
    example = train.model_input(rows.head(INPUT_EXAMPLE_ROWS), columns, categorical)
    requirements = [f"{n}=={v}" for n, v in lineage.package_versions(LINEAGE_PACKAGES).items()]
    with tempfile.TemporaryDirectory(prefix="pitstop-log-") as scratch:
        log = training_log(store, spec, built, quality_report, pair, context, Path(scratch))
        if unpinned := lineage.pin_inputs(store, log.lineage):
            logger.warning("republished since the training set was built, so not kept for "
                           "`pitstop verify` of this run: %s", ", ".join(unpinned))
        return registry.log_training_run(log, frame, model, example, requirements)


def rescore_known_problems(spec: LoadedSpec) -> list[tuple[str, str, float]]:
    """Every registered version scored on every known problem it has no current score for."""
    return problems.rescore_versions(spec)


def evaluate_model(store: lake.Lake, spec: LoadedSpec, built: TrainingInput,
                   run: TrainedRun) -> EvaluationSummary:
    """Judge the candidate against the champion on the evaluation rows; log it all.

    Any failure (guardrails included) marks the candidate's run FAILED, so MLflow never shows
    a finished run of a pair that was not evaluated; a later success marks it FINISHED.
    """
    try:
        frame = read_training_set(store, built.training_set)
        training, rows = split_frame(frame, spec, built.split)
        holder = registry.champion_version(spec.pipeline.model_name)
        champion_model = (None if holder is None else
                          registry.load_model(f"models:/{holder.name}/{holder.version}"))
        eval_id = lineage.frame_content_hash(rows, lineage.feature_definitions_hash(spec))
        result = evaluate.judge(spec, training, rows, registry.load_model(run.model_uri),
                                champion_model, None if holder is None else str(holder.version),
                                problems.load_problems(spec), eval_id)
        registry.log_metrics(run.run_id, evaluate.metric_values(result))
        registry.log_json(run.run_id, result.to_json(), "evaluation/evaluation.json")
        registry.set_tags(run.run_id, evaluate.verdict_tags(result))
        registry.log_json(run.run_id, monitoring_reference(spec, rows, result).to_json(),
                          registry.REFERENCE_ARTIFACT)
        from pipelines import report  # matplotlib: only a run that evaluates pays for it

        report.log_report(spec, run.run_id, result)
    except BaseException as exc:
        if isinstance(exc, evaluate.GuardrailsFailed):
            registry.set_tags(run.run_id, {"verdict": "guardrails_failed",
                                           "verdict_reasons": str(exc)})
        registry.end_run(run.run_id, "FAILED")
        raise
    registry.end_run(run.run_id, "FINISHED")
    return result.summary()


def monitoring_reference(spec: LoadedSpec, rows: Any, result: evaluate.Evaluation
                         ) -> monitoring.Reference:
    """What each scored day of this candidate is compared with: its evaluation rows'
    features and predictions, kept with the run and named by the version registered from
    it (`monitoring_reference` tag)."""
    return monitoring.build_reference(
        spec.pipeline.model.task, spec.pipeline.evaluation.threshold, rows,
        spec.pipeline.model.features, result.candidate.pred, spec.pipeline.monitoring.bins)


def register_model(spec: LoadedSpec, pair: Pair, run: TrainedRun,
                   evaluation: EvaluationSummary) -> Registered:
    return champion.register_pair(spec, pair, run, evaluation)


@dataclass(frozen=True)
class RunSummary:
    """What a train run produced or found already registered, read back from MLflow."""

    pipeline: str
    pair_id: str
    dataset_id: str
    training_set: TrainingSet
    split: Split
    data_docs: str
    tracking_uri: str
    model_name: str
    version: str | None = None
    run_id: str | None = None
    experiment_id: str | None = None
    report: str | None = None
    already_registered: bool = False
    verdict: str | None = None
    rejected_reason: str | None = None
    champion: bool = False
    aliases: list[str] = field(default_factory=list)
    """The version's aliases (`champion`, or `challenger` for a refused candidate)."""
    metrics: dict[str, float] = field(default_factory=dict)


def summarize(spec: LoadedSpec, built: TrainingInput, quality_report: QualitySummary,
              pair: Pair) -> RunSummary:
    name = spec.pipeline.model_name
    summary = RunSummary(spec.name, pair.pair_id, pair.dataset_id, built.training_set,
                         built.split, quality_report.docs_path, settings.mlflow_tracking_uri(),
                         name)
    if (version := registry.find_version(name, pair.pair_id)) is None:
        return summary
    run = registry.client().get_run(version.run_id)
    aliases = sorted(registry.client().get_model_version(name, version.version).aliases)
    return dataclasses.replace(
        summary, version=str(version.version), run_id=version.run_id,
        experiment_id=run.info.experiment_id,
        report=f"{run.info.artifact_uri}/evaluation/report.html",
        already_registered=pair.registered_version is not None,
        verdict=version.tags.get("verdict"), rejected_reason=version.tags.get("rejected_reason"),
        champion=registry.CHAMPION in aliases, aliases=aliases,
        metrics={k.removeprefix("eval_"): v for k, v in run.data.metrics.items()
                 if k.startswith("eval_") and k != "eval_rows"})
