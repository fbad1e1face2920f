"""The differential test against the champion, proven on synthetic predictions.

What is shown, for every task (binary, multiclass, regression): identical models give zero
change with a [0, 0] interval and full agreement; a clearly better candidate gets an interval
that excludes 0 and a negative worst case; point changes are exactly scikit-learn's metric
differences; the bootstrap is a paired percentile bootstrap (checked against a brute-force
reference that repeats rows, and the vectorised scoring against a per-resample loop of
`metrics.score` with the same seed), reproducible by seed, with nested intervals for nested
confidences; `worst_case` reads the bound on the worse side of each metric; agreement is the
task's decision; `disagreements` returns the largest gaps first with the requested columns;
tiny inputs whose resamples often hold one class still give finite intervals; one-class
labels are refused for classification, while regression never redraws.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    mean_absolute_error,
    median_absolute_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

from pipelines import differential, metrics
from pipelines.differential import Delta

SKLEARN = {  # binary, at the default threshold 0.5
    "roc_auc": roc_auc_score,
    "pr_auc": average_precision_score,
    "log_loss": lambda y, p: log_loss(y, p, labels=[0, 1]),
    "brier": brier_score_loss,
    "f1": lambda y, p: f1_score(y, p >= 0.5),
    "precision": lambda y, p: precision_score(y, p >= 0.5),
    "recall": lambda y, p: recall_score(y, p >= 0.5),
}
CLASSES = np.array(["bus", "car", "foot", "train"])
SKLEARN_MULTICLASS = {
    "log_loss": lambda y, p: log_loss(y, p, labels=CLASSES),
    "accuracy": lambda y, p: accuracy_score(y, CLASSES[p.argmax(axis=1)]),
    "balanced_accuracy": lambda y, p: balanced_accuracy_score(y, CLASSES[p.argmax(axis=1)]),
    "macro_f1": lambda y, p: f1_score(y, CLASSES[p.argmax(axis=1)], average="macro"),
    "roc_auc_ovr": lambda y, p: roc_auc_score(y, p, multi_class="ovr", labels=CLASSES),
}
SKLEARN_REGRESSION = {
    "rmse": root_mean_squared_error,
    "mae": mean_absolute_error,
    "r2": r2_score,
    "median_ae": median_absolute_error,
}


def _pair(rows: int = 300, seed: int = 11, skill: tuple[float, float] = (0.3, 0.3)
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two models' probabilities; `skill` is how much each model sees the label."""
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.35).astype("int64")
    candidate, champion = (
        np.clip(s * y + (1 - s) * rng.random(rows), 0.01, 0.99) for s in skill)
    return y, candidate, champion


def _multiclass_pair(rows: int = 300, seed: int = 11, skill: tuple[float, float] = (2.0, 2.0)
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels from CLASSES and two models' probability rows; `skill` is how far each model's
    logit of the true class stands out."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, len(CLASSES), rows)

    def model(strength: float) -> np.ndarray:
        logits = rng.normal(0, 1, (rows, len(CLASSES))) + strength * np.eye(len(CLASSES))[codes]
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    return CLASSES[codes], model(skill[0]), model(skill[1])


def _regression_pair(rows: int = 300, seed: int = 11, noise: tuple[float, float] = (1.0, 1.0)
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets and two models' predictions with the given noise."""
    rng = np.random.default_rng(seed)
    y = rng.normal(20, 5, rows)
    return y, y + rng.normal(0, noise[0], rows), y + rng.normal(0, noise[1], rows)


PAIRS = {
    "binary": (_pair, {"skill": (0.7, 0.1)}, {}),
    "multiclass": (_multiclass_pair, {"skill": (3.0, 0.3)}, {"classes": CLASSES}),
    "regression": (_regression_pair, {"noise": (0.5, 3.0)}, {}),
}


@pytest.mark.parametrize("task", metrics.TASKS)
def test_identical_predictions_change_nothing(task: str) -> None:
    make, _, extra = PAIRS[task]
    y, p, _ = make()
    deltas = differential.bootstrap_deltas(task, y, p, p.copy(), resamples=50, seed=1,
                                           confidence=0.95, **extra)
    assert list(deltas) == metrics.metric_names(task)
    for name, d in deltas.items():
        assert (d.delta, d.low, d.high) == (0.0, 0.0, 0.0)
        assert d.candidate == d.champion
        assert d.higher_is_better == metrics.higher_is_better(task, name)
    assert differential.agreement_rate(task, p, p.copy(), 0.5, **extra) == 1.0


@pytest.mark.parametrize("task", metrics.TASKS)
def test_a_clearly_better_candidate_has_an_interval_excluding_zero(task: str) -> None:
    """Better on every metric: scores up, losses down, and even the worse bound is a gain."""
    make, skill, extra = PAIRS[task]
    y, candidate, champion = make(**skill)
    deltas = differential.bootstrap_deltas(task, y, candidate, champion, resamples=40, seed=3,
                                           confidence=0.95, **extra)
    for d in deltas.values():
        if d.higher_is_better:
            assert d.delta > 0 and d.low > 0, d
        else:
            assert d.delta < 0 and d.high < 0, d
    assert all(d.worst_case < 0 for d in deltas.values())
    # and the other way round: the champion is the better one, so every worst case is a loss
    swapped = differential.bootstrap_deltas(task, y, champion, candidate, resamples=40, seed=3,
                                            confidence=0.95, **extra)
    assert all(d.worst_case > 0 for d in swapped.values())


@pytest.mark.parametrize(("task", "reference"), [
    ("binary", SKLEARN), ("multiclass", SKLEARN_MULTICLASS), ("regression", SKLEARN_REGRESSION)])
def test_point_change_is_the_sklearn_metric_difference(task: str, reference: dict) -> None:
    make, _, extra = PAIRS[task]
    y, candidate, champion = make(seed=4)
    deltas = differential.bootstrap_deltas(task, y, candidate, champion, resamples=20, seed=0,
                                           confidence=0.9, **extra)
    assert list(deltas) == list(reference)
    for name, metric in reference.items():
        ours, theirs = metric(y, candidate), metric(y, champion)
        assert deltas[name].candidate == pytest.approx(ours, abs=1e-12)
        assert deltas[name].champion == pytest.approx(theirs, abs=1e-12)
        assert deltas[name].delta == pytest.approx(ours - theirs, abs=1e-12)
        assert deltas[name].confidence == 0.9


def test_bootstrap_matches_a_brute_force_paired_reference() -> None:
    """Each resample scores both models on the same rows, repeated as drawn; the interval is
    the percentile interval of those paired changes. (Pins the draw scheme: one
    `integers(0, rows, rows)` per resample, single-class draws skipped.)"""
    y, candidate, champion = _pair(rows=60, seed=8)
    resamples, seed, confidence = 40, 5, 0.8
    rng = np.random.default_rng(seed)
    changes: dict[str, list[float]] = {name: [] for name in SKLEARN}
    while len(changes["brier"]) < resamples:
        rows = rng.integers(0, len(y), len(y))
        if len(np.unique(y[rows])) < 2:
            continue
        for name, metric in SKLEARN.items():
            changes[name].append(metric(y[rows], candidate[rows]) - metric(y[rows], champion[rows]))
    got = differential.bootstrap_deltas("binary", y, candidate, champion, resamples, seed,
                                        confidence)
    for name, values in changes.items():
        low, high = np.percentile(values, [10, 90])
        assert (got[name].low, got[name].high) == pytest.approx((low, high), abs=1e-9), name


def _loop_deltas(task: str, y: np.ndarray, candidate: np.ndarray, champion: np.ndarray,
                 resamples: int, seed: int, confidence: float, **extra) -> dict:
    """The straightforward bootstrap: one resample at a time, both models scored with
    `metrics.score` (scikit-learn with sample weights); redraws as documented."""
    rng = np.random.default_rng(seed)
    changes: list[dict[str, float]] = []
    while len(changes) < resamples:
        weights = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y))
        if task != "regression" and len(np.unique(y[weights > 0])) < len(np.unique(y)):
            continue
        ours, theirs = (metrics.score(task, y, p, weights=weights, **extra)
                        for p in (candidate, champion))
        changes.append({name: ours[name] - theirs[name] for name in ours})
    tail = (1 - confidence) / 2 * 100
    return {name: tuple(np.nanpercentile([c[name] for c in changes], [tail, 100 - tail]))
            for name in changes[0]}


@pytest.mark.parametrize(("task", "threshold"), [
    ("binary", 0.5), ("binary", 0.95), ("multiclass", 0.5), ("regression", 0.5)])
def test_vectorised_bootstrap_equals_a_per_resample_loop(task: str, threshold: float) -> None:
    """Same seed, same draws, same intervals. At threshold 0.95 one or three rows are decided
    positive, so precision is undefined on some resamples: the interval comes from the
    others."""
    make, _, extra = PAIRS[task]
    y, candidate, champion = make(rows=80, seed=12)
    got = differential.bootstrap_deltas(task, y, candidate, champion, 40, 13, 0.9,
                                        threshold=threshold, **extra)
    want = _loop_deltas(task, y, candidate, champion, 40, 13, 0.9, threshold=threshold,
                        **extra)
    if threshold == 0.95:
        assert np.sum(candidate >= threshold) == 1
    assert list(got) == list(want)
    for name, (low, high) in want.items():
        assert (got[name].low, got[name].high) == pytest.approx((low, high), rel=1e-9,
                                                                abs=1e-12), name


def test_multiclass_resamples_missing_a_class_are_redrawn() -> None:
    """A class with one row of twenty: resamples that miss it would have no one-vs-rest AUC;
    they are redrawn, so every bound is finite and the draws match the documented rule."""
    y, candidate, champion = _multiclass_pair(rows=20, seed=14)
    y = np.where(y == "train", "car", y)
    y[0] = "train"
    deltas = differential.bootstrap_deltas("multiclass", y, candidate, champion, 40, 15, 0.9,
                                           classes=CLASSES)
    want = _loop_deltas("multiclass", y, candidate, champion, 40, 15, 0.9, classes=CLASSES)
    for name, d in deltas.items():
        assert all(math.isfinite(v) for v in (d.low, d.high)), d
        assert (d.low, d.high) == pytest.approx(want[name], rel=1e-9, abs=1e-12)


def test_regression_never_redraws_and_keeps_undefined_r2_as_nan() -> None:
    """A constant target: r2 is undefined on every resample, so its bounds are NaN, while the
    other metrics get intervals (there is nothing to redraw for)."""
    y = np.full(30, 4.0)
    candidate, champion = y + np.linspace(-1, 1, 30), y + np.linspace(-2, 2, 30)
    deltas = differential.bootstrap_deltas("regression", y, candidate, champion, 30, 0, 0.9)
    assert all(math.isnan(v) for v in (deltas["r2"].low, deltas["r2"].high))
    for name in ("rmse", "mae", "median_ae"):
        assert deltas[name].high < 0, deltas[name]


def test_same_seed_same_intervals_other_seed_other_intervals() -> None:
    y, candidate, champion = _pair(seed=6)

    def run(seed: int) -> dict[str, Delta]:
        return differential.bootstrap_deltas("binary", y, candidate, champion, resamples=30,
                                             seed=seed, confidence=0.95)

    first = run(21)
    assert run(21) == first
    other = run(22)
    assert {k: (d.low, d.high) for k, d in other.items()} != {
        k: (d.low, d.high) for k, d in first.items()}
    # the point change does not depend on the seed
    assert {k: d.delta for k, d in other.items()} == {k: d.delta for k, d in first.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interval_contains_the_point_change(seed: int) -> None:
    y, candidate, champion = _pair(rows=200, seed=seed, skill=(0.35, 0.3))
    deltas = differential.bootstrap_deltas("binary", y, candidate, champion, resamples=40,
                                           seed=seed, confidence=0.95)
    for d in deltas.values():
        assert d.low <= d.delta <= d.high, d


def test_a_higher_confidence_gives_a_wider_interval() -> None:
    """Same seed, same resamples: the 99% interval contains the 80% one, strictly wider."""
    y, candidate, champion = _pair(seed=9, skill=(0.35, 0.3))
    narrow, wide = (differential.bootstrap_deltas("binary", y, candidate, champion,
                                                  resamples=50, seed=2, confidence=c)
                    for c in (0.8, 0.99))
    for name in metrics.metric_names("binary"):
        assert wide[name].low < narrow[name].low <= narrow[name].high < wide[name].high


@pytest.mark.parametrize(("task", "metric", "low", "high", "worst"), [
    ("binary", "roc_auc", -0.02, 0.03, 0.02),   # higher is better: the low bound is the worse side
    ("binary", "pr_auc", 0.01, 0.05, -0.01),    # even the low bound is a gain
    ("binary", "log_loss", -0.04, 0.01, 0.01),  # lower is better: the high bound is the worse side
    ("binary", "brier", -0.03, -0.01, -0.01),
    ("multiclass", "macro_f1", -0.02, 0.03, 0.02),
    ("regression", "rmse", -0.5, 0.2, 0.2),
    ("regression", "r2", 0.01, 0.03, -0.01),
])
def test_worst_case_reads_the_bound_on_the_worse_side(task: str, metric: str, low: float,
                                                     high: float, worst: float) -> None:
    delta = Delta(metric, 0.5, 0.5, (low + high) / 2, low, high, 0.95,
                  metrics.higher_is_better(task, metric))
    assert delta.worst_case == pytest.approx(worst)
    assert delta.to_dict()["low"] == low and delta.to_dict()["high"] == high
    assert delta.to_dict()["higher_is_better"] == metrics.higher_is_better(task, metric)


@pytest.mark.parametrize(("threshold", "agreement"), [(0.5, 0.5), (0.95, 1.0), (0.3, 0.75)])
def test_agreement_rate_at_the_threshold(threshold: float, agreement: float) -> None:
    """A probability equal to the threshold counts as a positive decision."""
    candidate = np.array([0.2, 0.5, 0.7, 0.4])
    champion = np.array([0.3, 0.49, 0.9, 0.6])
    assert differential.agreement_rate("binary", candidate, champion, threshold) == agreement


def test_multiclass_agreement_is_the_same_most_probable_class() -> None:
    candidate = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.4, 0.4, 0.2], [0.3, 0.6, 0.1]])
    champion = np.array([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.35, 0.3, 0.35], [0.2, 0.7, 0.1]])
    # rows 0 and 3 agree; row 2 is a tie that goes to the first class, as argmax
    assert differential.agreement_rate("multiclass", candidate, champion, 0.5) == 0.75


@pytest.mark.parametrize(("tolerance", "agreement"), [(None, 0.5), (0.05, 0.25), (3.0, 1.0)])
def test_regression_agreement_is_within_a_tolerance(tolerance: float | None,
                                                    agreement: float) -> None:
    """Default tolerance: 0.1 x std of the champion's predictions (here std 2, so 0.2)."""
    champion = np.array([1.0, 5.0, 1.0, 5.0])
    candidate = champion + np.array([0.0, 0.15, 0.3, -2.5])
    assert np.std(champion) == 2.0
    assert differential.agreement_rate("regression", candidate, champion, 0.5,
                                       tolerance=tolerance) == agreement


def test_disagreements_are_the_largest_gaps_first() -> None:
    """Rows are picked by position (the frame's index does not matter), with the requested
    columns in order, then both probabilities and the gap; ties keep row order."""
    frame = pd.DataFrame({"flight_id": ["a", "b", "c", "d", "e"],
                          "origin": ["EWR", "JFK", "LGA", "EWR", "JFK"],
                          "delayed": [0, 1, 0, 1, 1]}, index=[50, 10, 40, 20, 30])
    candidate = np.array([0.10, 0.90, 0.50, 0.20, 0.60])
    champion = np.array([0.15, 0.30, 0.50, 0.60, 0.20])  # gaps .05 .6 0 .4 .4
    picked = differential.disagreements("binary", frame, ["origin", "flight_id"], candidate,
                                        champion, 3)
    assert list(picked.columns) == ["origin", "flight_id", "candidate", "champion", "gap"]
    assert list(picked["flight_id"]) == ["b", "d", "e"]
    assert list(picked["origin"]) == ["JFK", "EWR", "JFK"]
    assert picked["gap"].to_list() == pytest.approx([0.6, 0.4, 0.4])
    assert picked["candidate"].to_list() == [0.9, 0.2, 0.6]
    assert picked["champion"].to_list() == [0.3, 0.6, 0.2]
    assert list(picked.index) == [0, 1, 2]
    everything = differential.disagreements("binary", frame, ["flight_id"], candidate,
                                            champion, 99)
    assert list(everything["flight_id"]) == ["b", "d", "e", "a", "c"]
    # regression: the same rule on the predictions themselves
    regression = differential.disagreements("regression", frame, ["flight_id"], candidate * 10,
                                            champion * 10, 2)
    assert list(regression["flight_id"]) == ["b", "d"]
    assert regression["gap"].to_list() == pytest.approx([6.0, 4.0])


def test_multiclass_disagreements_rank_by_total_variation_distance() -> None:
    """The gap is half the L1 distance of the probability rows; each model's decided class
    and the probability it gave that class are reported."""
    frame = pd.DataFrame({"trip": ["t0", "t1", "t2"]}, index=[7, 8, 9])
    candidate = np.array([[0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
    champion = np.array([[0.5, 0.4, 0.1], [0.7, 0.2, 0.1], [0.2, 0.5, 0.3]])
    picked = differential.disagreements("multiclass", frame, ["trip"], candidate, champion, 2,
                                        classes=np.array(["bus", "car", "foot"]))
    assert list(picked.columns) == ["trip", "candidate", "champion", "candidate_p",
                                    "champion_p", "gap"]
    assert list(picked["trip"]) == ["t1", "t2"]
    assert picked["gap"].to_list() == pytest.approx([0.7, 0.2])
    assert list(picked["candidate"]) == ["foot", "foot"]
    assert list(picked["champion"]) == ["bus", "car"]
    assert picked["candidate_p"].to_list() == [0.8, 0.4]
    assert picked["champion_p"].to_list() == [0.7, 0.5]


def test_tiny_input_with_single_class_resamples_still_gives_finite_intervals() -> None:
    """Six rows, one positive: a third of the draws miss it. Those are redrawn; scoring them
    would give NaN AUCs (or an error), so finite intervals show they were."""
    y = np.array([0, 0, 0, 0, 0, 1])
    candidate = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.5])
    champion = np.array([0.2, 0.1, 0.4, 0.3, 0.6, 0.5])
    deltas = differential.bootstrap_deltas("binary", y, candidate, champion, resamples=60,
                                           seed=0, confidence=0.9)
    for d in deltas.values():
        assert all(math.isfinite(v) for v in (d.delta, d.low, d.high)), d
        assert d.low <= d.high


@pytest.mark.timeout(2)
@pytest.mark.parametrize("label", [0, 1])
def test_single_class_labels_are_refused_not_looped_on(label: int) -> None:
    """No resample of one-class labels can hold both classes; without the check the redraw
    loop would never end (evaluation guards against this input, callers may not)."""
    y = np.full(8, label)
    p = np.linspace(0.1, 0.8, 8)
    with pytest.raises(ValueError, match="at least 2 .*rule: every resample"):
        differential.bootstrap_deltas("binary", y, p, p[::-1].copy(), resamples=20, seed=0,
                                      confidence=0.9)


@pytest.mark.timeout(2)
def test_single_class_multiclass_labels_are_refused() -> None:
    y = np.full(6, "car")
    p = np.full((6, 4), 0.25)
    with pytest.raises(ValueError, match="1 class; a multiclass bootstrap needs at least 2"):
        differential.bootstrap_deltas("multiclass", y, p, p.copy(), resamples=20, seed=0,
                                      confidence=0.9, classes=CLASSES)


def test_unknown_task_is_refused() -> None:
    y, p, q = _pair(rows=20)
    with pytest.raises(ValueError, match="unknown task 'ranking'"):
        differential.bootstrap_deltas("ranking", y, p, q, resamples=5, seed=0, confidence=0.9)
