"""The differential test against the champion, proven on synthetic predictions.

What is shown: identical models give zero change with a [0, 0] interval and full agreement;
a clearly better candidate gets an interval that excludes 0 and a negative worst case; point
changes are exactly scikit-learn's metric differences; the bootstrap is a paired percentile
bootstrap (checked against a brute-force reference that repeats rows), reproducible by seed,
with nested intervals for nested confidences; `worst_case` reads the bound on the worse side
of each metric; `disagreements` returns the largest gaps first with the requested columns;
tiny inputs whose resamples often hold one class still give finite intervals.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from pipelines import differential
from pipelines.differential import HIGHER_IS_BETTER, Delta

SKLEARN = {
    "roc_auc": roc_auc_score,
    "pr_auc": average_precision_score,
    "log_loss": lambda y, p: log_loss(y, p, labels=[0, 1]),
    "brier": brier_score_loss,
}


def _pair(rows: int = 300, seed: int = 11, skill: tuple[float, float] = (0.3, 0.3)
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two models' probabilities; `skill` is how much each model sees the label."""
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.35).astype("int64")
    candidate, champion = (
        np.clip(s * y + (1 - s) * rng.random(rows), 0.01, 0.99) for s in skill)
    return y, candidate, champion


def test_identical_predictions_change_nothing() -> None:
    y, p, _ = _pair()
    deltas = differential.bootstrap_deltas(y, p, p.copy(), resamples=50, seed=1, confidence=0.95)
    assert set(deltas) == set(HIGHER_IS_BETTER)
    for d in deltas.values():
        assert (d.delta, d.low, d.high) == (0.0, 0.0, 0.0)
        assert d.candidate == d.champion
    assert differential.agreement_rate(p, p.copy(), 0.5) == 1.0


def test_a_clearly_better_candidate_has_an_interval_excluding_zero() -> None:
    """Better on every metric: AUCs up, losses down, and even the worse bound is a gain."""
    y, candidate, champion = _pair(skill=(0.7, 0.1))
    deltas = differential.bootstrap_deltas(y, candidate, champion, resamples=40, seed=3,
                                           confidence=0.95)
    for name in ("roc_auc", "pr_auc"):
        assert deltas[name].delta > 0 and deltas[name].low > 0
    for name in ("log_loss", "brier"):
        assert deltas[name].delta < 0 and deltas[name].high < 0
    assert all(d.worst_case < 0 for d in deltas.values())
    # and the other way round: the champion is the better one, so every worst case is a loss
    swapped = differential.bootstrap_deltas(y, champion, candidate, resamples=40, seed=3,
                                            confidence=0.95)
    assert all(d.worst_case > 0 for d in swapped.values())


def test_point_change_is_the_sklearn_metric_difference() -> None:
    y, candidate, champion = _pair(seed=4)
    deltas = differential.bootstrap_deltas(y, candidate, champion, resamples=20, seed=0,
                                           confidence=0.9)
    for name, metric in SKLEARN.items():
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
    got = differential.bootstrap_deltas(y, candidate, champion, resamples, seed, confidence)
    for name, values in changes.items():
        low, high = np.percentile(values, [10, 90])
        assert (got[name].low, got[name].high) == pytest.approx((low, high), abs=1e-9), name


def test_same_seed_same_intervals_other_seed_other_intervals() -> None:
    y, candidate, champion = _pair(seed=6)

    def run(seed: int) -> dict[str, Delta]:
        return differential.bootstrap_deltas(y, candidate, champion, resamples=30, seed=seed,
                                             confidence=0.95)

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
    deltas = differential.bootstrap_deltas(y, candidate, champion, resamples=40, seed=seed,
                                           confidence=0.95)
    for d in deltas.values():
        assert d.low <= d.delta <= d.high, d


def test_a_higher_confidence_gives_a_wider_interval() -> None:
    """Same seed, same resamples: the 99% interval contains the 80% one, strictly wider."""
    y, candidate, champion = _pair(seed=9, skill=(0.35, 0.3))
    narrow, wide = (differential.bootstrap_deltas(y, candidate, champion, resamples=50, seed=2,
                                                  confidence=c) for c in (0.8, 0.99))
    for name in HIGHER_IS_BETTER:
        assert wide[name].low < narrow[name].low <= narrow[name].high < wide[name].high


@pytest.mark.parametrize(("metric", "low", "high", "worst"), [
    ("roc_auc", -0.02, 0.03, 0.02),   # higher is better: the low bound is the worse side
    ("pr_auc", 0.01, 0.05, -0.01),    # even the low bound is a gain
    ("log_loss", -0.04, 0.01, 0.01),  # lower is better: the high bound is the worse side
    ("brier", -0.03, -0.01, -0.01),
])
def test_worst_case_reads_the_bound_on_the_worse_side(metric: str, low: float, high: float,
                                                     worst: float) -> None:
    delta = Delta(metric, 0.5, 0.5, (low + high) / 2, low, high, 0.95)
    assert delta.worst_case == pytest.approx(worst)
    assert delta.to_dict()["low"] == low and delta.to_dict()["high"] == high


@pytest.mark.parametrize(("threshold", "agreement"), [(0.5, 0.5), (0.95, 1.0), (0.3, 0.75)])
def test_agreement_rate_at_the_threshold(threshold: float, agreement: float) -> None:
    """A probability equal to the threshold counts as a positive decision."""
    candidate = np.array([0.2, 0.5, 0.7, 0.4])
    champion = np.array([0.3, 0.49, 0.9, 0.6])
    assert differential.agreement_rate(candidate, champion, threshold) == agreement


def test_disagreements_are_the_largest_gaps_first() -> None:
    """Rows are picked by position (the frame's index does not matter), with the requested
    columns in order, then both probabilities and the gap; ties keep row order."""
    frame = pd.DataFrame({"flight_id": ["a", "b", "c", "d", "e"],
                          "origin": ["EWR", "JFK", "LGA", "EWR", "JFK"],
                          "delayed": [0, 1, 0, 1, 1]}, index=[50, 10, 40, 20, 30])
    candidate = np.array([0.10, 0.90, 0.50, 0.20, 0.60])
    champion = np.array([0.15, 0.30, 0.50, 0.60, 0.20])  # gaps .05 .6 0 .4 .4
    picked = differential.disagreements(frame, ["origin", "flight_id"], candidate, champion, 3)
    assert list(picked.columns) == ["origin", "flight_id", "candidate", "champion", "gap"]
    assert list(picked["flight_id"]) == ["b", "d", "e"]
    assert list(picked["origin"]) == ["JFK", "EWR", "JFK"]
    assert picked["gap"].to_list() == pytest.approx([0.6, 0.4, 0.4])
    assert picked["candidate"].to_list() == [0.9, 0.2, 0.6]
    assert picked["champion"].to_list() == [0.3, 0.6, 0.2]
    assert list(picked.index) == [0, 1, 2]
    everything = differential.disagreements(frame, ["flight_id"], candidate, champion, 99)
    assert list(everything["flight_id"]) == ["b", "d", "e", "a", "c"]


def test_tiny_input_with_single_class_resamples_still_gives_finite_intervals() -> None:
    """Six rows, one positive: a third of the draws miss it. Those are redrawn; scoring them
    would give NaN AUCs (or an error), so finite intervals show they were."""
    y = np.array([0, 0, 0, 0, 0, 1])
    candidate = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.5])
    champion = np.array([0.2, 0.1, 0.4, 0.3, 0.6, 0.5])
    deltas = differential.bootstrap_deltas(y, candidate, champion, resamples=60, seed=0,
                                           confidence=0.9)
    for d in deltas.values():
        assert all(math.isfinite(v) for v in (d.delta, d.low, d.high)), d
        assert d.low <= d.high


@pytest.mark.timeout(2)
@pytest.mark.parametrize("label", [0, 1])
def test_single_class_labels_are_refused_not_looped_on(label: int) -> None:
    """No resample of one-class labels can hold both classes. Fails today: the redraw loop in
    `bootstrap_deltas` never ends (evaluation guards against this input, callers may not)."""
    y = np.full(8, label)
    p = np.linspace(0.1, 0.8, 8)
    with pytest.raises(ValueError, match="class"):
        differential.bootstrap_deltas(y, p, p[::-1].copy(), resamples=20, seed=0,
                                      confidence=0.9)
