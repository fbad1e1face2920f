"""Metric definitions per task (provisional; replaced by the vectorised module)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class MetricDef:
    name: str
    higher_is_better: bool
    description: str


def _defs(*items: tuple[str, bool, str]) -> dict[str, MetricDef]:
    return {name: MetricDef(name, better, text) for name, better, text in items}


METRICS: dict[str, dict[str, MetricDef]] = {
    "binary": _defs(("roc_auc", True, "area under the ROC curve"),
                    ("pr_auc", True, "average precision"),
                    ("log_loss", False, "log loss"), ("brier", False, "Brier score"),
                    ("f1", True, "F1 at the threshold"),
                    ("precision", True, "precision at the threshold"),
                    ("recall", True, "recall at the threshold")),
    "multiclass": _defs(("log_loss", False, "log loss"), ("accuracy", True, "accuracy"),
                        ("balanced_accuracy", True, "balanced accuracy"),
                        ("macro_f1", True, "macro F1"),
                        ("roc_auc_ovr", True, "macro one-vs-rest ROC AUC")),
    "regression": _defs(("rmse", False, "root mean squared error"),
                        ("mae", False, "mean absolute error"), ("r2", True, "R²"),
                        ("median_ae", False, "median absolute error")),
}


def metric_names(task: str) -> list[str]:
    return list(METRICS[task])


def higher_is_better(task: str, name: str) -> bool:
    return METRICS[task][name].higher_is_better


def decide(task: str, pred: np.ndarray, threshold: float, classes: np.ndarray | None
           ) -> np.ndarray:
    if task == "binary":
        return (pred >= threshold).astype(int)
    if task == "multiclass":
        assert classes is not None
        return classes[np.argmax(pred, axis=1)]
    return pred


def score(task: str, y: np.ndarray, pred: np.ndarray, *, threshold: float = 0.5,
          classes: np.ndarray | None = None, weights: np.ndarray | None = None
          ) -> dict[str, float]:
    from sklearn import metrics as skm

    w = weights
    out: dict[str, float] = {}
    if task == "binary":
        both = len(np.unique(y)) == 2
        d = decide(task, pred, threshold, None)
        out["roc_auc"] = float(skm.roc_auc_score(y, pred, sample_weight=w)) if both else math.nan
        out["pr_auc"] = (float(skm.average_precision_score(y, pred, sample_weight=w))
                         if both else math.nan)
        out["log_loss"] = float(skm.log_loss(y, pred, sample_weight=w, labels=[0, 1]))
        out["brier"] = float(skm.brier_score_loss(y, pred, sample_weight=w))
        out["f1"] = float(skm.f1_score(y, d, sample_weight=w, zero_division=0))
        out["precision"] = float(skm.precision_score(y, d, sample_weight=w, zero_division=0))
        out["recall"] = float(skm.recall_score(y, d, sample_weight=w, zero_division=0))
    elif task == "multiclass":
        assert classes is not None
        d = decide(task, pred, threshold, classes)
        out["log_loss"] = float(skm.log_loss(y, pred, sample_weight=w, labels=classes))
        out["accuracy"] = float(skm.accuracy_score(y, d, sample_weight=w))
        out["balanced_accuracy"] = float(skm.balanced_accuracy_score(y, d, sample_weight=w))
        out["macro_f1"] = float(skm.f1_score(y, d, average="macro", sample_weight=w,
                                             labels=classes, zero_division=0))
        try:
            out["roc_auc_ovr"] = float(skm.roc_auc_score(y, pred, multi_class="ovr",
                                                         labels=classes, sample_weight=w))
        except ValueError:
            out["roc_auc_ovr"] = math.nan
    else:
        out["rmse"] = float(np.sqrt(skm.mean_squared_error(y, pred, sample_weight=w)))
        out["mae"] = float(skm.mean_absolute_error(y, pred, sample_weight=w))
        out["r2"] = float(skm.r2_score(y, pred, sample_weight=w)) if len(y) > 1 else math.nan
        out["median_ae"] = float(skm.median_absolute_error(y, pred, sample_weight=w))
    return out
