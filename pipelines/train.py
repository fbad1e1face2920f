"""Deterministic training: a time-based split and a seeded scikit-learn pipeline.

The estimator comes from the spec by import path; its seed is the spec's, categorical
columns are ordinal-encoded (unknown and missing categories become NaN, which histogram
gradient boosting treats as missing). The same training set and spec give the same model.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from pipelines import lake, lineage, registry
from pipelines.errors import DataError
from pipelines.spec import LoadedSpec, ModelSpec


@dataclass(frozen=True)
class Split:
    """Rows by cutoff date: train on `[train_start, eval_start)`, evaluate on the rest."""

    train_start: dt.date
    eval_start: dt.date
    end: dt.date


def split_window(spec: LoadedSpec, start: dt.date, end: dt.date,
                 eval_start: dt.date | None = None) -> Split:
    """The last `eval_days` of the window evaluate, unless `eval_start` says otherwise."""
    cut = eval_start or end - dt.timedelta(days=spec.pipeline.split.eval_days)
    if not start < cut < end:
        raise DataError(f"split: evaluation start {cut} must fall inside the window "
                        f"{start}..{end} (rule: both train and evaluation sets are non-empty)")
    return Split(start, cut, end)


def split_frame(frame: pd.DataFrame, spec: LoadedSpec, split: Split
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    cutoff = frame[spec.pipeline.label.prediction_time]
    boundary = pd.Timestamp(split.eval_start, tz="UTC")
    train, evaluation = frame[cutoff < boundary], frame[cutoff >= boundary]
    for name, part in (("train", train), ("evaluation", evaluation)):
        if part.empty or part[spec.pipeline.label.target].nunique() < 2:
            raise DataError(f"split: the {name} set of {split} has no rows of both classes")
    return train, evaluation


def make_model(model: ModelSpec) -> Pipeline:
    """An unfitted pipeline: encoder for categoricals, then the spec's estimator."""
    module_name, _, class_name = model.estimator.rpartition(".")
    estimator_cls = getattr(importlib.import_module(module_name), class_name)
    params = dict(model.params)
    accepted = inspect.signature(estimator_cls).parameters
    if "random_state" in accepted:
        params["random_state"] = model.seed
    numeric = [c for c in model.features if c not in model.categorical]
    if model.categorical and "categorical_features" in accepted:
        params["categorical_features"] = list(range(len(model.categorical)))
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                             encoded_missing_value=np.nan)
    columns = ColumnTransformer(
        [("categorical", encoder, model.categorical), ("numeric", "passthrough", numeric)],
        verbose_feature_names_out=False,
    )
    return Pipeline([("columns", columns), ("estimator", estimator_cls(**params))])


def fit(spec: LoadedSpec, train: pd.DataFrame) -> Pipeline:
    model = spec.pipeline.model
    if missing := [c for c in model.features if c not in train.columns]:
        raise DataError(f"training set lacks model features {missing} (rule: spec model.features)")
    pipeline = make_model(model)
    features = _as_categories(train[model.features], model.categorical)
    return pipeline.fit(features, train[spec.pipeline.label.target].to_numpy())


def _as_categories(frame: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """Categorical columns as Python objects, the same way when fitting and predicting."""
    return frame.astype({c: "object" for c in categorical})


def predict(model: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """Probability of the positive class, from the columns the model was fitted on.

    Using the model's own `feature_names_in_` lets a champion with another feature list
    score the same evaluation rows as the candidate.
    """
    columns = list(model.feature_names_in_)
    categorical = next((list(cols) for name, _, cols in model.named_steps["columns"].transformers_
                        if name == "categorical"), [])
    return model.predict_proba(_as_categories(frame[columns], categorical))[:, 1]


def read_training_set(training_set: dict[str, Any]) -> pd.DataFrame:
    return pd.read_parquet(lake.lake_root() / training_set["path"] / lake.DATA_FILE)


def model_types(model: Pipeline) -> list[str]:
    """Types skops must trust to load this model: exactly those it is made of.

    MLflow stores sklearn models with skops (no arbitrary pickle code on load); types outside
    skops' default allow-list must be named. We name the ones of the model we just fitted.
    """
    import skops.io

    return skops.io.get_untrusted_types(data=skops.io.dumps(model))


def train_and_log(
    spec: LoadedSpec,
    training_set: dict[str, Any],
    split: Split,
    quality_report: dict[str, Any],
    pair: dict[str, Any],
    context: dict[str, Any],
) -> dict[str, str]:
    """Fit on the train rows and log run, dataset input, model and lineage to MLflow.

    A retried task finds the finished run of its pair and returns it instead of training twice.
    """
    import mlflow
    import mlflow.data
    import mlflow.sklearn

    experiment = registry.experiment_id(spec.name)
    if (done := registry.find_finished_run(experiment, pair["pair_id"])) is not None:
        return {"run_id": done.info.run_id, "experiment_id": experiment,
                "model_uri": done.data.tags["model_uri"],
                "model_id": done.data.tags["model_id"]}
    frame = read_training_set(training_set)
    train, _ = split_frame(frame, spec, split)
    raw = lineage.raw_partitions_used(training_set)
    tags = {
        "pipeline": spec.name,
        "pair_id": pair["pair_id"],
        "dataset_id": training_set["dataset_id"],
        "code_version": pair["code_version"],
        "git_commit": lineage.git_commit(spec.path.parent) or "none",
        "feature_definitions_hash": lineage.feature_definitions_hash(spec),
        "raw_inputs_sha256": lake.sha256_json([(p["path"], p["sha256"]) for p in raw]),
        "raw_partitions": str(len(raw)),
        "gx_result": "passed" if quality_report["success"] else "failed",
        "gx_suite": quality_report["suite"],
        **{f"airflow_{k}": str(v) for k, v in context.items() if k in ("dag_id", "run_id", "try")},
        "triggered_by": str(context.get("triggered_by") or "unknown"),
        "reason": str(context.get("reason") or ""),
    }
    folder = lake.lake_root() / training_set["path"]
    model_spec = spec.pipeline.model
    requirements = [f"{n}=={v}" for n, v in lineage.package_versions(
        ("scikit-learn", "pandas", "numpy", "scipy", "skops")).items()]
    with mlflow.start_run(experiment_id=experiment, run_name=f"{spec.name}-{pair['pair_id'][:12]}",
                          tags=tags) as run:
        mlflow.log_params({"estimator": model_spec.estimator, "seed": model_spec.seed,
                           **{f"param.{k}": v for k, v in model_spec.params.items()},
                           "train_start": split.train_start, "eval_start": split.eval_start,
                           "end": split.end, "features": ",".join(model_spec.features)})
        dataset = mlflow.data.from_pandas(
            frame, source=(folder / lake.DATA_FILE).as_uri(), name=f"{spec.name}-training-set",
            targets=spec.pipeline.label.target, digest=training_set["dataset_id"][:32])
        mlflow.log_input(dataset, context="training", tags={"dataset_id": training_set["dataset_id"]})
        model = fit(spec, train)
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=requirements,
                                        skops_trusted_types=model_types(model), tags=tags)
        run_id = run.info.run_id
        registry.log_json(run_id, lake.read_manifest(folder), "lineage/training_set_manifest.json")
        registry.log_json(run_id, raw, "lineage/raw_partitions.json")
        mlflow.log_artifact(str(spec.path), "lineage/spec")
        mlflow.log_artifact(str(lake.lake_root() / quality_report["result_path"]), "quality")
        if quality_report.get("docs_dir"):
            mlflow.log_artifacts(str(lake.lake_root() / quality_report["docs_dir"]),
                                 "quality/data_docs")
        record = lineage.lineage_record(
            spec, training_set, quality_report, pair,
            {k: v.isoformat() for k, v in vars(split).items()}, context)
        record["model"] = {"model_id": info.model_id, "uri": info.model_uri, "run_id": run_id,
                           "files": registry.artifact_hashes(info.model_uri)}
        registry.log_json(run_id, record, lineage.LINEAGE_ARTIFACT)
        mlflow.set_tags({"model_uri": info.model_uri, "model_id": info.model_id,
                         "lineage": f"runs:/{run_id}/{lineage.LINEAGE_ARTIFACT}",
                         "lineage_sha256": lake.sha256_json(record)})
    return {"run_id": run_id, "experiment_id": experiment, "model_uri": info.model_uri,
            "model_id": info.model_id}
