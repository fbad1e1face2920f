"""The differential test: candidate and champion on one evaluation set, row by row.

A single difference of two aggregate numbers says nothing about noise: on a month of rows an
AUC moves by a hundredth from one resample to the next. So the change in every metric gets a
paired bootstrap interval (both models scored on the same resampled rows, so the noise they
share cancels), and the gate judges the interval. The rows where the two models disagree
most are kept, because they are where a reviewer learns what changed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "log_loss": False, "brier": False}


def metric(name: str, y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> float:
    """One metric, optionally with integer sample weights (a bootstrap resample without
    copying rows)."""
    if name == "roc_auc":
        return float(roc_auc_score(y, p, sample_weight=w))
    if name == "pr_auc":
        return float(average_precision_score(y, p, sample_weight=w))
    if name == "log_loss":
        return float(log_loss(y, p, sample_weight=w, labels=[0, 1]))
    return float(brier_score_loss(y, p, sample_weight=w))


@dataclass(frozen=True)
class Delta:
    """The change candidate − champion in one metric, with its bootstrap interval."""

    metric: str
    candidate: float
    champion: float
    delta: float
    low: float
    """Lower bound of the `confidence` interval of the change."""
    high: float
    confidence: float

    @property
    def worst_case(self) -> float:
        """How much worse the candidate may be, at the interval's bound on the worse side
        (negative when even that bound is an improvement)."""
        return -self.low if HIGHER_IS_BETTER[self.metric] else self.high

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_deltas(y: np.ndarray, candidate: np.ndarray, champion: np.ndarray,
                     resamples: int, seed: int, confidence: float) -> dict[str, Delta]:
    """Paired percentile bootstrap of every metric's change; seeded, so it is reproducible.

    Each resample draws row counts (multinomial weights) once and scores both models on
    them; resamples with a single class are redrawn, since AUCs are undefined there.
    """
    if len(np.unique(y)) < 2:
        raise ValueError("bootstrap_deltas: the labels hold one class; no resample can "
                         "score an AUC")
    rng = np.random.default_rng(seed)
    rows = len(y)
    samples: dict[str, list[float]] = {name: [] for name in HIGHER_IS_BETTER}
    while len(samples["brier"]) < resamples:
        weights = np.bincount(rng.integers(0, rows, rows), minlength=rows)
        picked = y[weights > 0]
        if picked.min() == picked.max():
            continue
        for name, values in samples.items():
            values.append(metric(name, y, candidate, weights)
                          - metric(name, y, champion, weights))
    tail = (1 - confidence) / 2 * 100
    deltas = {}
    for name, values in samples.items():
        ours, theirs = metric(name, y, candidate), metric(name, y, champion)
        low, high = np.percentile(values, [tail, 100 - tail])
        deltas[name] = Delta(name, ours, theirs, ours - theirs, float(low), float(high),
                             confidence)
    return deltas


def agreement_rate(candidate: np.ndarray, champion: np.ndarray, threshold: float) -> float:
    """Share of rows on which both models make the same decision at the threshold."""
    return float(np.mean((candidate >= threshold) == (champion >= threshold)))


def disagreements(frame: pd.DataFrame, columns: list[str], candidate: np.ndarray,
                  champion: np.ndarray, count: int) -> pd.DataFrame:
    """The `count` rows where the two models' probabilities differ most, largest first."""
    gap = np.abs(candidate - champion)
    order = np.argsort(-gap, kind="stable")[:count]
    picked = frame.iloc[order][columns].reset_index(drop=True)
    return picked.assign(candidate=candidate[order], champion=champion[order], gap=gap[order])
