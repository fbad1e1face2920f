"""Evaluation: metrics overall and per slice, champion comparison, and the spec's verdict.

The candidate and the current champion score the same evaluation rows, so a comparison is
never between two different test sets. The verdict is declarative: floors, ceilings and the
allowed regression against the champion, all from the spec.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from pipelines.spec import Criteria, LoadedSpec
from pipelines.train import Split

HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "log_loss": False, "brier": False}


def metrics(y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier; AUCs are NaN when only one class is present."""
    both = len(np.unique(y_true)) == 2
    return {
        "roc_auc": float(roc_auc_score(y_true, y_prob)) if both else math.nan,
        "pr_auc": float(average_precision_score(y_true, y_prob)) if both else math.nan,
        "log_loss": float(log_loss(y_true, y_prob, labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, y_prob)),
    }


def slice_metrics(frame: pd.DataFrame, target: str, y_prob: np.ndarray,
                  columns: list[str]) -> list[dict[str, Any]]:
    """Every metric per value of every slice column, with row and positive counts."""
    rows = []
    for column in columns:
        for value, index in frame.groupby(column, dropna=False).indices.items():
            y = frame[target].to_numpy()[index]
            rows.append({"slice": column, "value": str(value), "rows": len(index),
                         "positives": int(y.sum()), **metrics(y, y_prob[index])})
    return rows


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(candidate: dict[str, float], champion: dict[str, float] | None,
           criteria: Criteria) -> Verdict:
    """Apply the gate; every failed rule becomes a reason naming the metric and the numbers."""
    reasons = []
    for name, floor in criteria.min.items():
        if not candidate[name] >= floor:
            reasons.append(f"{name} {candidate[name]:.4f} is below the floor {floor}")
    for name, ceiling in criteria.max.items():
        if not candidate[name] <= ceiling:
            reasons.append(f"{name} {candidate[name]:.4f} is above the ceiling {ceiling}")
    if champion is not None:
        for name, allowed in criteria.max_regression.items():
            change = candidate[name] - champion[name]
            worse_by = -change if HIGHER_IS_BETTER[name] else change
            if worse_by > allowed:
                reasons.append(f"{name} {candidate[name]:.4f} is worse than the champion's "
                               f"{champion[name]:.4f} by {worse_by:.4f} (allowed {allowed})")
    return Verdict(passed=not reasons, reasons=reasons)


def evaluate_candidate(
    spec: LoadedSpec,
    training_set: dict[str, Any],
    split: Split,
    run: dict[str, str],
) -> dict[str, Any]:
    """Score candidate and champion on the same evaluation rows; log metrics and verdict."""
    from pipelines import registry, train

    frame = train.read_training_set(training_set)
    _, evaluation = train.split_frame(frame, spec, split)
    target = spec.pipeline.label.target
    y = evaluation[target].to_numpy()
    y_prob = train.predict(registry.load_model(run["model_uri"]), evaluation)
    candidate = metrics(y, y_prob)
    slices = slice_metrics(evaluation, target, y_prob, spec.pipeline.evaluation.slices)
    champion = registry.champion_version(spec.pipeline.model_name)
    champion_metrics = None
    if champion is not None:
        champion_model = registry.load_model(f"models:/{champion.name}/{champion.version}")
        champion_metrics = metrics(y, train.predict(champion_model, evaluation))
    verdict = decide(candidate, champion_metrics, spec.pipeline.evaluation.criteria)
    registry.log_metrics(run["run_id"], {
        **{f"eval_{k}": v for k, v in candidate.items()},
        **{f"champion_eval_{k}": v for k, v in (champion_metrics or {}).items()},
        **{f"slice.{s['slice']}.{s['value']}.{k}": s[k]
           for s in slices for k in HIGHER_IS_BETTER},
        "eval_rows": float(len(evaluation)),
    })
    result = {
        "metrics": candidate, "champion_metrics": champion_metrics,
        "champion_version": champion.version if champion is not None else None,
        "slices": slices, "verdict": verdict.to_dict(), "eval_rows": len(evaluation),
    }
    registry.log_json(run["run_id"], result, "evaluation/evaluation.json")
    client = registry.client()
    client.set_tag(run["run_id"], "verdict", "passed" if verdict.passed else "rejected")
    client.set_tag(run["run_id"], "verdict_reasons", "; ".join(verdict.reasons))
    return {k: v for k, v in result.items() if k != "slices"}
