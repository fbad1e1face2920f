"""The differential test: candidate and champion on one evaluation set, row by row.

A single difference of two aggregate numbers says nothing about noise: on a month of rows an
AUC moves by a hundredth from one resample to the next. So the change in every metric of the
task gets a paired bootstrap interval (both models scored on the same resampled rows, so the
noise they share cancels), and the gate judges the interval. The rows where the two models
disagree most are kept, because they are where a reviewer learns what changed.

The metrics themselves, and which direction is better, are defined in `pipelines.metrics`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines import metrics

_DRAW_BYTES = 256 * 2**20
"""Memory budget of the row counts of the resamples scored in one call of
`metrics.score_resamples` (one byte a count while counts fit uint8)."""


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
    """Upper bound of the `confidence` interval of the change."""
    confidence: float
    higher_is_better: bool
    """The metric's direction (from `pipelines.metrics`), which decides the worse side."""

    @property
    def worst_case(self) -> float:
        """How much worse the candidate may be, at the interval's bound on the worse side
        (negative when even that bound is an improvement)."""
        return -self.low if self.higher_is_better else self.high

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_deltas(task: str, y: np.ndarray, candidate: np.ndarray, champion: np.ndarray,
                     resamples: int, seed: int, confidence: float, *, threshold: float = 0.5,
                     classes: np.ndarray | None = None) -> dict[str, Delta]:
    """Paired percentile bootstrap of every metric's change; seeded, so it is reproducible.

    Each resample draws row counts once (`integers(0, rows, rows)`, counted) and both models
    are scored on them. For binary and multiclass a resample that misses a class present in
    y is redrawn, since AUCs are undefined there; regression never redraws. A metric that is
    undefined on some resamples (NaN) gets its interval from the others. The point values
    are the same vectorised scoring on the rows as they are (every count 1), which equals
    `metrics.score` to rounding and shares its sort with the resamples.

    Raises ValueError when y holds fewer than two classes for a classification task (no
    resample could hold two).
    """
    metrics.metric_names(task)  # an unknown task fails here, before any work
    y = np.asarray(y)
    if task != "regression" and len(labels := np.unique(y)) < 2:
        raise ValueError(f"bootstrap_deltas: the labels hold {len(labels)} class; a {task} "
                         "bootstrap needs at least 2 (rule: every resample must hold every "
                         "class of y, or AUCs are undefined)")
    scored = _score_pairs(task, y, (candidate, champion), resamples, seed, threshold, classes)
    return {name: _delta(name, values, confidence, metrics.higher_is_better(task, name))
            for name, values in scored.items()}


def _score_pairs(task: str, y: np.ndarray, predictions: tuple[np.ndarray, np.ndarray],
                 resamples: int, seed: int, threshold: float, classes: np.ndarray | None
                 ) -> dict[str, np.ndarray]:
    """Every metric of both models on the rows as they are and on each resample, so that the
    two models always meet the same rows: `scored[name][model, j]`, model 0 the candidate and
    1 the champion; j = 0 the rows as they are, then the resamples in the order drawn. The
    resamples come in memory-sized blocks, so a large evaluation set never holds them all."""
    names = metrics.metric_names(task)
    scored = {name: np.empty((2, resamples + 1)) for name in names}
    done = 0
    for weights in _resample_weights(task, y, resamples, seed):
        for model, pred in enumerate(predictions):
            values = metrics.score_resamples(task, y, pred, weights, threshold=threshold,
                                             classes=classes)
            for name in names:
                scored[name][model, done:done + len(weights)] = values[name]
        done += len(weights)
    return scored


def _delta(name: str, scored: np.ndarray, confidence: float, higher_is_better: bool) -> Delta:
    """One metric's change with its percentile interval over the paired resample
    differences; column 0 (the rows as they are) gives the point values and stays out of the
    interval. Resamples on which the metric is undefined (NaN) are left out of it."""
    ours, theirs = (float(v) for v in scored[:, 0])
    tail = (1 - confidence) / 2 * 100
    with warnings.catch_warnings():  # a metric undefined on every resample: NaN bounds
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        low, high = np.nanpercentile(scored[0, 1:] - scored[1, 1:], [tail, 100 - tail])
    return Delta(name, ours, theirs, ours - theirs, float(low), float(high), confidence,
                 higher_is_better)


def _resample_weights(task: str, y: np.ndarray, resamples: int, seed: int
                      ) -> Iterator[np.ndarray]:
    """Blocks of row counts (a resample a row) drawn in order from one seeded generator; the
    first block opens with a row of ones, the rows as they are."""
    rows = len(y)
    codes = None if task == "regression" else np.unique(y, return_inverse=True)[1]
    classes = 0 if codes is None else int(codes.max()) + 1
    rng = np.random.default_rng(seed)
    per_block = max(1, _DRAW_BYTES // rows)
    drawn = -1
    while drawn < resamples:
        block = np.empty((min(per_block, resamples - drawn), rows), dtype=np.uint8)
        filled = 0
        if drawn < 0:
            block[0], filled, drawn = 1, 1, 0
        while filled < len(block):
            draws = rng.integers(0, rows, rows)
            if codes is not None and _misses_a_class(codes, classes, draws):
                continue
            counts = np.bincount(draws, minlength=rows)
            if counts.max() > np.iinfo(block.dtype).max:  # never in practice; stay exact
                block = block.astype(np.int64)
            block[filled] = counts
            filled += 1
            drawn += 1
        yield block


def _misses_a_class(codes: np.ndarray, classes: int, draws: np.ndarray) -> bool:
    """Whether the drawn rows miss one of the classes; the first thousand draws nearly
    always hold every class, and then the rest need no look."""
    return not any(np.bincount(codes[part], minlength=classes).all()
                   for part in (draws[:1024], draws))


def agreement_rate(task: str, candidate: np.ndarray, champion: np.ndarray, threshold: float,
                   classes: np.ndarray | None = None, tolerance: float | None = None) -> float:
    """Share of rows on which both models make the same decision.

    binary: the same side of the threshold (a probability equal to it is positive);
    multiclass: the same most probable class; regression: predictions at most `tolerance`
    apart, by default 0.1 × the standard deviation of the champion's predictions (so 0, exact
    equality, when the champion predicts a constant).
    """
    metrics.metric_names(task)
    if task == "regression":
        candidate, champion = np.asarray(candidate), np.asarray(champion)
        if tolerance is None:
            tolerance = 0.1 * float(np.std(champion))
        return float(np.mean(np.abs(candidate - champion) <= tolerance))
    if task == "multiclass":
        return float(np.mean(np.argmax(candidate, axis=1) == np.argmax(champion, axis=1)))
    return float(np.mean(metrics.decide(task, candidate, threshold, classes)
                         == metrics.decide(task, champion, threshold, classes)))


def disagreements(task: str, frame: pd.DataFrame, columns: list[str], candidate: np.ndarray,
                  champion: np.ndarray, count: int, classes: np.ndarray | None = None
                  ) -> pd.DataFrame:
    """The `count` rows where the two models differ most, largest gap first (ties in row
    order), picked by position: the requested columns, then `candidate`, `champion`, `gap`.

    binary and regression: both predictions and their absolute difference. multiclass: the
    class each model decides (a label of `classes`; without them, the column position),
    `candidate_p`/`champion_p` = the probability each gave its own decision, and the gap is
    the total variation distance between the two probability rows (half the L1 distance).
    """
    metrics.metric_names(task)
    candidate, champion = np.asarray(candidate), np.asarray(champion)
    if task == "multiclass":
        gap = np.abs(candidate - champion).sum(axis=1) / 2
    else:
        gap = np.abs(candidate - champion)
    order = np.argsort(-gap, kind="stable")[:count]
    picked = frame.iloc[order][columns].reset_index(drop=True)
    if task != "multiclass":
        return picked.assign(candidate=candidate[order], champion=champion[order],
                             gap=gap[order])
    labels = np.arange(candidate.shape[1]) if classes is None else np.asarray(classes)
    ours, theirs = np.argmax(candidate[order], axis=1), np.argmax(champion[order], axis=1)
    return picked.assign(candidate=labels[ours], champion=labels[theirs],
                         candidate_p=candidate[order, ours], champion_p=champion[order, theirs],
                         gap=gap[order])
