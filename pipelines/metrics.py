"""The metrics of each task: one definition, used by evaluation and by the bootstrap.

Two paths score the same definitions. `score` calls scikit-learn (optionally with integer
sample weights) and is the reference. `score_resamples` scores many bootstrap resamples at
once, expressed as a matrix of row counts: the order of the predictions is the same in every
resample, so it is sorted once and each resample's ROC and precision-recall curves (and the
weighted median of the errors) are cumulative sums of the weight matrix in that order; every
other metric is a weighted sum, so a matrix product. It equals `score` resample by resample
(to rounding), and the tests hold it to that.

Where a metric is undefined it is NaN, never an error: AUCs when y holds one class, r2 when y
is constant, precision when nothing is decided positive, and so on. Rows with weight 0 do not
count as present.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class MetricDef:
    """One metric of one task."""

    name: str
    higher_is_better: bool
    """Which direction is an improvement; the gate reads a change's worse side from it."""
    description: str
    """One line, for the generated spec reference."""


def _defs(*rows: tuple[str, bool, str]) -> dict[str, MetricDef]:
    return {name: MetricDef(name, higher, text) for name, higher, text in rows}


METRICS: dict[str, dict[str, MetricDef]] = {
    "binary": _defs(
        ("roc_auc", True, "Area under the ROC curve, tied scores counted half; NaN when y "
                          "holds one class."),
        ("pr_auc", True, "Average precision (step-wise area under the precision-recall "
                         "curve); NaN when y holds one class."),
        ("log_loss", False, "Mean negative log-likelihood of the label, probabilities "
                            "clipped to [eps, 1 - eps]."),
        ("brier", False, "Mean squared difference between P(class 1) and the 0/1 label."),
        ("f1", True, "F1 of class 1 deciding p >= threshold; NaN with no positive rows and "
                     "none decided positive."),
        ("precision", True, "Share of rows decided positive (p >= threshold) that are "
                            "positive; NaN when none is decided positive."),
        ("recall", True, "Share of positive rows decided positive (p >= threshold); NaN "
                         "without positive rows."),
    ),
    "multiclass": _defs(
        ("log_loss", False, "Mean negative log of the probability of the true class, "
                            "clipped to [eps, 1 - eps]."),
        ("accuracy", True, "Share of rows whose most probable class is the true one."),
        ("balanced_accuracy", True, "Mean over the classes present in y of the share of "
                                    "their rows decided correctly."),
        ("macro_f1", True, "Unweighted mean of the per-class F1 (classes neither present "
                           "nor decided are left out)."),
        ("roc_auc_ovr", True, "Mean over classes of the one-vs-rest ROC AUC of their "
                              "probability; NaN unless every class is present in y."),
    ),
    "regression": _defs(
        ("rmse", False, "Root mean squared error."),
        ("mae", False, "Mean absolute error."),
        ("r2", True, "Coefficient of determination, 1 - squared error / total sum of "
                     "squares; NaN when y is constant."),
        ("median_ae", False, "Median absolute error (weighted: the averaged inverted CDF, "
                             "as scikit-learn)."),
    ),
}

_BLOCK_BYTES = 256 * 2**20
"""Memory budget of one block of resamples in `score_resamples`: at most about
`_LIVE_ARRAYS` arrays of (block, rows) 8-byte numbers are alive at once (the weights as
float64 for the weighted sums, cumulative sums in sorted order, the curves)."""
_LIVE_ARRAYS = 5


def _task_metrics(task: str) -> dict[str, MetricDef]:
    if task not in METRICS:
        raise ValueError(f"unknown task {task!r}; model.task is one of {', '.join(TASKS)}")
    return METRICS[task]


def metric_names(task: str) -> list[str]:
    """The task's metrics, in the order of `METRICS`."""
    return list(_task_metrics(task))


def higher_is_better(task: str, name: str) -> bool:
    metrics = _task_metrics(task)
    if name not in metrics:
        raise ValueError(f"unknown metric {name!r} for task {task!r}; its metrics are "
                         f"{', '.join(metrics)}")
    return metrics[name].higher_is_better


def decide(task: str, pred: np.ndarray, threshold: float, classes: np.ndarray | None
           ) -> np.ndarray:
    """The decision behind a prediction: binary 1 where P(class 1) >= threshold, multiclass
    the most probable class (labels from `classes`, first one on ties), regression the
    prediction itself."""
    _task_metrics(task)
    if task == "binary":
        return (np.asarray(pred) >= threshold).astype(np.int64)
    if task == "multiclass":
        if classes is None:
            raise ValueError("decide: a multiclass decision needs `classes` (the labels of "
                             "the probability columns, as the classifier's classes_)")
        return np.asarray(classes)[np.argmax(pred, axis=1)]
    return np.asarray(pred, dtype=np.float64)


@dataclass(frozen=True)
class _Inputs:
    """Validated inputs; `codes` are class positions (binary: the 0/1 label itself)."""

    y: np.ndarray
    pred: np.ndarray
    codes: np.ndarray | None
    classes: np.ndarray | None


def _inputs(task: str, y: np.ndarray, pred: np.ndarray, classes: np.ndarray | None
            ) -> _Inputs:
    """The arrays checked once for the task, so the vectorised scorers need no checks of
    their own and a wrong input fails with what to pass, not deep inside numpy."""
    _task_metrics(task)
    y, pred = np.asarray(y), np.asarray(pred, dtype=np.float64)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"{task} metrics: y must be a non-empty 1-D array, got shape {y.shape}")
    if not np.all(np.isfinite(pred)):
        raise ValueError(f"{task} metrics: predictions hold NaN or infinite values")
    if task == "multiclass":
        return _multiclass_inputs(y, pred, classes)
    if pred.shape != (len(y),):
        raise ValueError(f"{task} metrics: predictions must have shape ({len(y)},), got "
                         f"{pred.shape}")
    if task == "binary":
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("binary metrics: y must hold only 0 and 1, got "
                             f"{np.unique(y)[:5]!r}")
        if pred.min() < 0 or pred.max() > 1:
            raise ValueError("binary metrics: predictions must be probabilities in [0, 1]")
        codes = y.astype(np.int64)
        return _Inputs(codes, pred, codes, None)
    y = y.astype(np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError("regression metrics: y holds NaN or infinite values")
    return _Inputs(y, pred, None, None)


def _multiclass_inputs(y: np.ndarray, pred: np.ndarray, classes: np.ndarray | None
                       ) -> _Inputs:
    """Multiclass needs the classifier's sorted `classes` to know which probability column
    is which label; y becomes their column positions (`codes`), and every probability row
    must sum to 1, or the AUC and log loss would score a different model."""
    if classes is None:
        raise ValueError("multiclass metrics need `classes` (sorted labels of the "
                         "probability columns, as the classifier's classes_)")
    classes = np.asarray(classes)
    if classes.ndim != 1 or len(classes) < 2 or not np.all(classes[1:] > classes[:-1]):
        raise ValueError("multiclass metrics: `classes` must be at least 2 sorted, "
                         f"distinct labels, got {classes!r}")
    if pred.shape != (len(y), len(classes)):
        raise ValueError(f"multiclass metrics: predictions must have shape (rows, "
                         f"classes) = {(len(y), len(classes))}, got {pred.shape}")
    codes = np.minimum(np.searchsorted(classes, y), len(classes) - 1)
    if not np.all(classes[codes] == y):
        raise ValueError("multiclass metrics: y holds labels that are not in `classes`: "
                         f"{np.setdiff1d(y, classes)[:5]!r}")
    if not np.allclose(1, pred.sum(axis=1)):
        raise ValueError("multiclass metrics: probability rows must sum to 1 over the "
                         "classes")
    return _Inputs(y, pred, codes, classes)


def _nonnegative(weights: np.ndarray) -> None:
    if weights.dtype.kind not in "ub" and not np.all(weights >= 0):
        raise ValueError("weights must be non-negative row counts (NaN is not one)")


def _counts(block: np.ndarray) -> np.ndarray:
    """A block of resample weights as integer row counts."""
    _nonnegative(block)
    if block.dtype.kind in "uib":
        return block
    if not np.all(block == np.floor(block)):
        raise ValueError("score_resamples: weights must be integer row counts")
    return block.astype(np.int64)


# --- the plain path: scikit-learn ------------------------------------------------------------


def score(task: str, y: np.ndarray, pred: np.ndarray, *, threshold: float = 0.5,
          classes: np.ndarray | None = None, weights: np.ndarray | None = None
          ) -> dict[str, float]:
    """Every metric of the task, from scikit-learn, as Python floats.

    binary: y in {0, 1}, pred = P(class 1); multiclass: y labels from `classes` (sorted, as
    a classifier's classes_), pred (rows, classes) probabilities in that column order;
    regression: float y and pred. `weights` are optional non-negative integer row counts (a
    bootstrap resample). Undefined metrics are NaN (see METRICS); all are NaN when every
    weight is 0.
    """
    data = _inputs(task, y, pred, classes)
    if weights is not None:
        weights = np.asarray(weights)
        if weights.shape != data.y.shape:
            raise ValueError(f"weights must have shape {data.y.shape}, got {weights.shape}")
        _nonnegative(weights)
        if not np.any(weights > 0):
            return dict.fromkeys(metric_names(task), np.nan)
    from sklearn.exceptions import UndefinedMetricWarning  # not at import: specs load this module

    present = data.y if weights is None else data.y[weights > 0]
    with warnings.catch_warnings():
        # Undefined cases are NaN on purpose; so is a decided class that y does not hold.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        if task == "binary":
            values = _binary_sklearn(data, threshold, weights, np.unique(present).size == 2)
        elif task == "multiclass":
            every_class = np.unique(present).size == len(data.classes)
            values = _multiclass_sklearn(data, weights, every_class)
        else:
            values = _regression_sklearn(data, weights, present.min() == present.max())
    return {name: float(value) for name, value in values.items()}


def _binary_sklearn(data: _Inputs, threshold: float, w: np.ndarray | None, both: bool
                    ) -> dict[str, float]:
    from sklearn import metrics as skm

    y, p = data.y, data.pred
    decided = decide("binary", p, threshold, None)
    return {
        "roc_auc": skm.roc_auc_score(y, p, sample_weight=w) if both else np.nan,
        "pr_auc": skm.average_precision_score(y, p, sample_weight=w) if both else np.nan,
        "log_loss": skm.log_loss(y, p, sample_weight=w, labels=[0, 1]),
        "brier": skm.brier_score_loss(y, p, sample_weight=w, pos_label=1),
        "f1": skm.f1_score(y, decided, sample_weight=w, zero_division=np.nan),
        "precision": skm.precision_score(y, decided, sample_weight=w, zero_division=np.nan),
        "recall": skm.recall_score(y, decided, sample_weight=w, zero_division=np.nan),
    }


def _multiclass_sklearn(data: _Inputs, w: np.ndarray | None, every_class: bool
                        ) -> dict[str, float]:
    from sklearn import metrics as skm

    y, p, classes = data.y, data.pred, data.classes
    decided = decide("multiclass", p, 0.5, classes)
    if not every_class:
        auc = np.nan
    elif len(classes) == 2:  # sklearn reads two columns as a binary problem; same mean here
        auc = np.mean([skm.roc_auc_score(y == c, p[:, k], sample_weight=w)
                       for k, c in enumerate(classes)])
    else:
        auc = skm.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=classes,
                                sample_weight=w)
    return {
        "log_loss": skm.log_loss(y, p, sample_weight=w, labels=classes),
        "accuracy": skm.accuracy_score(y, decided, sample_weight=w),
        "balanced_accuracy": skm.balanced_accuracy_score(y, decided, sample_weight=w),
        "macro_f1": skm.f1_score(y, decided, labels=classes, average="macro",
                                 sample_weight=w, zero_division=np.nan),
        "roc_auc_ovr": auc,
    }


def _regression_sklearn(data: _Inputs, w: np.ndarray | None, constant: bool
                        ) -> dict[str, float]:
    from sklearn import metrics as skm

    y, p = data.y, data.pred
    return {
        "rmse": skm.root_mean_squared_error(y, p, sample_weight=w),
        "mae": skm.mean_absolute_error(y, p, sample_weight=w),
        # sklearn returns 0.0 or 1.0 for constant y (or, weighted, a huge number when the
        # weighted mean is off by a rounding error); undefined is NaN here
        "r2": np.nan if constant else skm.r2_score(y, p, sample_weight=w),
        "median_ae": skm.median_absolute_error(y, p, sample_weight=w),
    }


# --- the vectorised path: many resamples at once ---------------------------------------------


def score_resamples(task: str, y: np.ndarray, pred: np.ndarray, weights: np.ndarray, *,
                    threshold: float = 0.5, classes: np.ndarray | None = None
                    ) -> dict[str, np.ndarray]:
    """Every metric on every resample: `weights` is (resamples, rows) integer row counts, one
    resample a row; returns per metric an array of `resamples` values, equal to
    `score(task, y, pred, weights=weights[r], ...)` for every r.

    Vectorised across resamples, in blocks of resamples that keep the working memory near
    `_BLOCK_BYTES`; the counts themselves may come in any integer dtype (uint8 keeps a
    matrix of many resamples small; `bootstrap_deltas` passes that).
    """
    data = _inputs(task, y, pred, classes)
    weights = np.asarray(weights)
    if weights.ndim != 2 or weights.shape[1] != len(data.y):
        raise ValueError(f"weights must have shape (resamples, {len(data.y)}), got "
                         f"{weights.shape}")
    scorer = {"binary": _binary_scorer, "multiclass": _multiclass_scorer,
              "regression": _regression_scorer}[task](data, threshold)
    values = {name: np.empty(len(weights)) for name in metric_names(task)}
    with np.errstate(divide="ignore", invalid="ignore"):
        for rows in _blocks(len(weights), len(data.y)):
            for name, got in scorer(_counts(weights[rows])).items():
                values[name][rows] = got
    return values


def _blocks(resamples: int, rows: int) -> Iterator[slice]:
    size = max(1, _BLOCK_BYTES // (_LIVE_ARRAYS * 8 * rows))
    for start in range(0, resamples, size):
        yield slice(start, min(start + size, resamples))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (the metric is undefined)."""
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1),
                    np.nan)


def _clipped_log(p: np.ndarray) -> np.ndarray:
    """log of probabilities clipped to [eps, 1 - eps], as scikit-learn's log_loss."""
    eps = np.finfo(np.float64).eps
    return np.log(np.clip(p, eps, 1 - eps))


def _sums(block: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Weighted sums of per-row columns (rows, k) for each resample: (block, k)."""
    return block.astype(np.float64) @ columns


class _Ranking:
    """Rows sorted once by descending score, tied scores grouped (as sklearn's thresholds).

    For any resample, the cumulative weight in this order at the end of each group, and the
    cumulative weight of the positive rows alone, give every point of its ROC and
    precision-recall curves. Only groups that hold a positive row add to either area, so
    beyond the one cumulative sum over all rows the work is over positive rows and groups.
    """

    def __init__(self, score: np.ndarray, positive: np.ndarray) -> None:
        self.order = np.argsort(-score)  # tied rows in any order: only group ends are read
        ordered = score[self.order]
        opens = np.r_[True, ordered[1:] != ordered[:-1]]  # a row that starts a group of ties
        starts, group = np.flatnonzero(opens), np.cumsum(opens) - 1
        at = np.flatnonzero(positive[self.order])  # sorted positions of the positive rows
        self.positives = self.order[at]
        groups = group[at]
        self.last = np.flatnonzero(np.r_[groups[1:] != groups[:-1], len(groups) > 0])
        """Per group holding positives: position (among positives) of its last positive."""
        held = groups[self.last]
        self.end = np.r_[starts[1:] - 1, len(score) - 1][held]
        before = starts[held] - 1
        self.before = np.maximum(before, 0)
        self.first = bool(len(before)) and before[0] < 0  # a group that opens the order

    def aucs(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ROC AUC, average precision) of each resample; NaN when it holds one class."""
        if len(self.positives) == 0:
            return np.full(len(block), np.nan), np.full(len(block), np.nan)
        # integer counts: exact sums, and integer adds are the fast ones
        total = np.cumsum(np.take(block, self.order, axis=1), axis=1, dtype=np.int64)
        tps = np.cumsum(np.take(block, self.positives, axis=1), axis=1, dtype=np.int64)
        tps_end = tps[:, self.last]  # true positives at each threshold that adds some
        gained = np.diff(tps_end, axis=1, prepend=0)  # positive weight of each such group
        ps_end = total[:, self.end]
        prior = total[:, self.before]
        if self.first:
            prior[:, 0] = 0
        positives = tps[:, -1].astype(np.float64)
        both = positives * (total[:, -1] - positives)  # AUCs are undefined (NaN) with one class
        # ROC AUC x P x N counts the (positive, negative) pairs in the right order, ties half:
        # P N - sum over groups of P_g x (negatives up to g) + sum of P_g x (negatives in g) / 2
        above = np.einsum("ij,ij->i", gained, ps_end - tps_end)
        tied = np.einsum("ij,ij->i", gained, ps_end - prior - gained)
        roc = _ratio(both - above + tied / 2, both)
        # average precision: recall steps times the precision at each threshold
        precision = np.divide(tps_end, ps_end, out=np.zeros(ps_end.shape), where=ps_end > 0)
        ap = np.where(both > 0, _ratio(np.einsum("ij,ij->i", gained, precision), positives),
                      np.nan)
        return roc, ap


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over axis 1 of the defined values; NaN where none is."""
    defined = ~np.isnan(values)
    return _ratio(np.where(defined, values, 0).sum(axis=1), defined.sum(axis=1))


_Scorer = Callable[[np.ndarray], dict[str, np.ndarray]]
"""Scores one block of resamples (row counts) on data prepared once; the factories below
share one signature (only binary reads the threshold)."""


def _binary_scorer(data: _Inputs, threshold: float) -> _Scorer:
    y, p = data.y.astype(np.float64), data.pred
    decided = (p >= threshold).astype(np.float64)
    row_loss = -np.where(y == 1, _clipped_log(p), _clipped_log(1 - p))
    columns = np.column_stack([np.ones_like(y), row_loss, (y - p) ** 2, y, y * decided,
                               decided])
    ranking = _Ranking(p, y)

    def scores(block: np.ndarray) -> dict[str, np.ndarray]:
        total, loss, brier, positives, true_pos, decided_pos = _sums(block, columns).T
        roc, ap = ranking.aucs(block)
        return {"roc_auc": roc, "pr_auc": ap, "log_loss": _ratio(loss, total),
                "brier": _ratio(brier, total),
                "f1": _ratio(2 * true_pos, decided_pos + positives),
                "precision": _ratio(true_pos, decided_pos),
                "recall": _ratio(true_pos, positives)}

    return scores


def _multiclass_scorer(data: _Inputs, threshold: float) -> _Scorer:
    p, codes, k = data.pred, data.codes, len(data.classes)
    decided = np.argmax(p, axis=1)
    truth = np.equal.outer(codes, np.arange(k)).astype(np.float64)
    chosen = np.equal.outer(decided, np.arange(k)).astype(np.float64)
    correct = (decided == codes).astype(np.float64)
    row_loss = -_clipped_log(p[np.arange(len(codes)), codes])
    columns = np.column_stack([np.ones(len(codes)), row_loss, correct, truth, chosen,
                               truth * correct[:, None]])
    rankings = [_Ranking(p[:, c], truth[:, c]) for c in range(k)]

    def scores(block: np.ndarray) -> dict[str, np.ndarray]:
        sums = _sums(block, columns)
        total, loss, hits = sums[:, 0], sums[:, 1], sums[:, 2]
        present, picked, true_pos = np.split(sums[:, 3:], 3, axis=1)
        return {"log_loss": _ratio(loss, total), "accuracy": _ratio(hits, total),
                "balanced_accuracy": _nanmean(_ratio(true_pos, present)),
                "macro_f1": _nanmean(_ratio(2 * true_pos, present + picked)),
                "roc_auc_ovr": np.mean([r.aucs(block)[0] for r in rankings], axis=0)}

    return scores


def _regression_scorer(data: _Inputs, threshold: float) -> _Scorer:
    y, p = data.y, data.pred
    errors = np.abs(p - y)
    centred = y - y.mean()  # keeps the total sum of squares free of cancellation
    columns = np.column_stack([np.ones_like(y), errors ** 2, errors, centred, centred ** 2])
    order = np.argsort(errors)  # tied errors in any order: the median reads values only
    ordered = errors[order]

    def scores(block: np.ndarray) -> dict[str, np.ndarray]:
        total, squared, absolute, first, second = _sums(block, columns).T
        spread = second - first * _ratio(first, total)
        seen = block > 0
        constant = ~np.any(seen & (y != y[np.argmax(seen, axis=1)][:, None]), axis=1)
        return {"rmse": np.sqrt(_ratio(squared, total)), "mae": _ratio(absolute, total),
                "r2": np.where(constant, np.nan, 1 - squared / np.where(constant, 1, spread)),
                "median_ae": _weighted_medians(ordered, np.take(block, order, axis=1))}

    return scores


def _weighted_medians(ordered: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Weighted median of sorted values for each row of counts, as sklearn's
    `_weighted_percentile(average=True)` (the averaged inverted CDF): the first value whose
    cumulative weight reaches half the total; when it reaches it exactly, the mean of that
    value and the next one with positive weight."""
    cdf = np.cumsum(counts, axis=1, dtype=np.int64)
    half = cdf[:, -1] / 2
    last = len(ordered) - 1
    at = np.minimum((cdf < half[:, None]).sum(axis=1), last)
    reached = cdf[np.arange(len(cdf)), at]
    after = (cdf <= reached[:, None]).sum(axis=1)
    after = np.where(after > last, at, after)
    exact = reached - half <= np.finfo(np.float64).eps
    medians = np.where(exact, (ordered[at] + ordered[after]) / 2, ordered[at])
    return np.where(half > 0, medians, np.nan)
