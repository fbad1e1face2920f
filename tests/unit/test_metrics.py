"""The metric definitions of each task, proven against scikit-learn.

What is shown: the metric names and directions of each task; `score` is scikit-learn's metric
(with and without integer sample weights) on random data of each task; `score_resamples`
equals a loop of `score` over the resamples for each task (binary scores with many ties,
multiclass with 3 and 4 classes, regression with tied errors; weights with zeros, a resample
that misses a class, an all-zero resample), block by block the same as in one block, and for
the weighted AUCs and median with ties on any small input (hypothesis, against repeated
rows); undefined metrics are NaN on both paths; bad input raises a ValueError that says what
is wrong.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from pipelines import metrics

CLASSES = {3: np.array([2, 5, 9]), 4: np.array(["a", "b", "c", "d"])}


def _binary(rows: int, seed: int, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.3).astype("int64")
    p = 1 / (1 + np.exp(-(1.5 * y - 1 + rng.normal(0, 1, rows))))
    return y, (np.round(p, 1) if ties else p)  # rounded: about ten distinct scores


def _multiclass(rows: int, seed: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, k, rows)
    logits = rng.normal(0, 1, (rows, k)) + 1.2 * np.eye(k)[codes]
    p = np.round(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), 2)
    p[:, -1] = 1 - p[:, :-1].sum(axis=1)  # rounded (tied), still rows of probabilities
    return CLASSES[k][codes], p


def _regression(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.round(rng.normal(10, 3, rows), 1)
    return y, np.round(y + rng.normal(0, 1, rows), 1)  # many tied absolute errors


def _case(task: str, rows: int = 400, seed: int = 0, k: int = 3) -> dict:
    if task == "binary":
        y, p = _binary(rows, seed)
        return {"task": task, "y": y, "pred": p, "threshold": 0.4}
    if task == "multiclass":
        y, p = _multiclass(rows, seed, k)
        return {"task": task, "y": y, "pred": p, "classes": CLASSES[k]}
    y, p = _regression(rows, seed)
    return {"task": task, "y": y, "pred": p}


def _sklearn(case: dict, w: np.ndarray | None) -> dict[str, float]:
    """The task's metrics written out with scikit-learn, independently of `score`."""
    y, p = case["y"], case["pred"]
    if case["task"] == "binary":
        d = (p >= case["threshold"]).astype(int)
        return {"roc_auc": skm.roc_auc_score(y, p, sample_weight=w),
                "pr_auc": skm.average_precision_score(y, p, sample_weight=w),
                "log_loss": skm.log_loss(y, p, sample_weight=w, labels=[0, 1]),
                "brier": skm.brier_score_loss(y, p, sample_weight=w),
                "f1": skm.f1_score(y, d, sample_weight=w),
                "precision": skm.precision_score(y, d, sample_weight=w),
                "recall": skm.recall_score(y, d, sample_weight=w)}
    if case["task"] == "multiclass":
        classes = case["classes"]
        d = classes[np.argmax(p, axis=1)]
        return {"log_loss": skm.log_loss(y, p, sample_weight=w, labels=classes),
                "accuracy": skm.accuracy_score(y, d, sample_weight=w),
                "balanced_accuracy": skm.balanced_accuracy_score(y, d, sample_weight=w),
                "macro_f1": skm.f1_score(y, d, average="macro", sample_weight=w),
                "roc_auc_ovr": skm.roc_auc_score(y, p, multi_class="ovr", average="macro",
                                                 labels=classes, sample_weight=w)}
    return {"rmse": skm.root_mean_squared_error(y, p, sample_weight=w),
            "mae": skm.mean_absolute_error(y, p, sample_weight=w),
            "r2": skm.r2_score(y, p, sample_weight=w),
            "median_ae": skm.median_absolute_error(y, p, sample_weight=w)}


def _score(case: dict, **extra) -> dict[str, float]:
    return metrics.score(case["task"], case["y"], case["pred"], **{
        k: case[k] for k in ("threshold", "classes") if k in case}, **extra)


def _resampled(case: dict, weights: np.ndarray) -> dict[str, np.ndarray]:
    return metrics.score_resamples(case["task"], case["y"], case["pred"], weights, **{
        k: case[k] for k in ("threshold", "classes") if k in case})


def _counts(rows: int, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, rows, rows), minlength=rows)
                     for _ in range(resamples)])


def _same(got: float, want: float) -> bool:
    """Equal to 1e-9 (relative or absolute), or both NaN."""
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize(("task", "names"), [
    ("binary", ["roc_auc", "pr_auc", "log_loss", "brier", "f1", "precision", "recall"]),
    ("multiclass", ["log_loss", "accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr"]),
    ("regression", ["rmse", "mae", "r2", "median_ae"]),
])
def test_each_task_has_its_metrics_with_one_line_descriptions(task: str, names: list[str]
                                                              ) -> None:
    assert metrics.metric_names(task) == names
    assert list(metrics.METRICS[task]) == names
    for name, definition in metrics.METRICS[task].items():
        assert definition.name == name
        assert definition.description and "\n" not in definition.description
    losses = {"log_loss", "brier", "rmse", "mae", "median_ae"}
    assert {n for n in names if not metrics.higher_is_better(task, n)} == losses & set(names)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("task", "k"), [("binary", 0), ("multiclass", 3), ("multiclass", 4),
                                         ("regression", 0)])
def test_score_is_the_sklearn_metric(task: str, k: int, weighted: bool) -> None:
    case = _case(task, rows=500, seed=3, k=k)
    w = _counts(500, 1, seed=4)[0] if weighted else None
    got = _score(case, weights=w)
    want = _sklearn(case, w)
    assert list(got) == metrics.metric_names(task)
    assert all(type(v) is float for v in got.values())
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_weights_are_row_counts() -> None:
    """Weight 2 is the row twice, weight 0 the row left out (binary, multiclass, regression)."""
    for task in metrics.TASKS:
        case = _case(task, rows=120, seed=5, k=4)
        w = _counts(120, 1, seed=6)[0]
        repeated = {**case, "y": np.repeat(case["y"], w), "pred": np.repeat(case["pred"], w,
                                                                             axis=0)}
        got, want = _score(case, weights=w), _score(repeated)
        assert all(_same(got[n], want[n]) for n in want), (task, got, want)


def _resamples_with_edge_cases(case: dict, resamples: int, seed: int) -> np.ndarray:
    """Bootstrap counts, plus: half the rows at 0, one class (or all but one value) left out,
    every count 0."""
    rows = len(case["y"])
    weights = _counts(rows, resamples, seed)
    weights[1, : rows // 2] = 0
    if case["task"] == "regression":
        weights[2, case["y"] != case["y"][0]] = 0  # y constant on this resample
    else:
        weights[2, case["y"] == case["y"][0]] = 0  # a class missing
    weights[3] = 0
    return weights


@pytest.mark.parametrize(("task", "k"), [("binary", 0), ("multiclass", 3), ("multiclass", 4),
                                         ("regression", 0)])
def test_score_resamples_equals_scoring_each_resample(task: str, k: int) -> None:
    case = _case(task, rows=300, seed=7, k=k)
    weights = _resamples_with_edge_cases(case, 25, seed=8)
    got = _resampled(case, weights)
    assert set(got) == set(metrics.metric_names(task))
    for r, w in enumerate(weights):
        want = _score(case, weights=w)
        for name, value in want.items():
            assert _same(float(got[name][r]), value), (name, r, got[name][r], value)
    # the edge cases are what they claim: undefined metrics there are NaN
    auc = {"binary": "roc_auc", "multiclass": "roc_auc_ovr", "regression": "r2"}[task]
    assert math.isnan(got[auc][2]) and not math.isnan(got[auc][0])
    assert all(math.isnan(v[3]) for v in got.values())


def test_binary_resamples_without_ties_and_with_one_score_for_all() -> None:
    """No two scores equal, and every score equal (one threshold; AUC 0.5, AP the rate)."""
    y, p = _binary(200, seed=9, ties=False)
    weights = _counts(200, 10, seed=10)
    for pred in (p, np.full(200, 0.3)):
        got = metrics.score_resamples("binary", y, pred, weights)
        for r, w in enumerate(weights):
            want = metrics.score("binary", y, pred, weights=w)
            assert all(_same(float(got[n][r]), v) for n, v in want.items()), r
    assert got["roc_auc"] == pytest.approx(0.5)
    assert got["pr_auc"] == pytest.approx(weights @ y / weights.sum(axis=1))


@pytest.mark.parametrize("task", metrics.TASKS)
def test_blocks_of_resamples_give_the_values_of_one_block(task: str,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    case = _case(task, rows=200, seed=11, k=4)
    weights = _counts(200, 12, seed=12).astype(np.uint8)
    whole = _resampled(case, weights)
    # 200 rows x 5 arrays x 8 bytes = 8000 bytes a resample: blocks of 2, then of 1
    for budget in (16_000, 1):
        monkeypatch.setattr(metrics, "_BLOCK_BYTES", budget)
        assert len(list(metrics._blocks(12, 200))) == (6 if budget > 1 else 12)
        parts = _resampled(case, weights)
        for name in whole:
            # equal but for the rounding of a matrix product of another shape
            np.testing.assert_allclose(parts[name], whole[name], rtol=1e-13, atol=0)


def test_undefined_metrics_are_nan_not_errors() -> None:
    y1 = np.ones(5, dtype=int)
    p = np.array([0.2, 0.4, 0.6, 0.8, 0.9])
    one_class = metrics.score("binary", y1, p)
    assert math.isnan(one_class["roc_auc"]) and math.isnan(one_class["pr_auc"])
    assert one_class["recall"] == pytest.approx(0.6) and math.isfinite(one_class["log_loss"])
    nothing_decided = metrics.score("binary", np.array([0, 1, 0, 1]),
                                    np.array([0.1, 0.2, 0.3, 0.4]), threshold=0.9)
    assert math.isnan(nothing_decided["precision"])
    assert nothing_decided["recall"] == 0.0 and nothing_decided["f1"] == 0.0
    # sklearn gives r2 = 0.0 for a constant y; undefined here
    assert math.isnan(metrics.score("regression", np.full(4, 0.1), np.arange(4.0))["r2"])
    # weighted so that only equal y values count: sklearn would give about -3e33 here
    r2 = metrics.score("regression", np.array([0.1, 0.1, 0.1, 5.0]), np.arange(4.0),
                       weights=np.array([1, 2, 3, 0]))["r2"]
    assert math.isnan(r2)
    missing = metrics.score("multiclass", np.array([2, 5, 2, 5]),
                            np.array([[0.5, 0.3, 0.2]] * 4), classes=CLASSES[3])
    assert math.isnan(missing["roc_auc_ovr"]) and missing["accuracy"] == 0.5
    nothing = metrics.score("binary", y1, p, weights=np.zeros(5, dtype=int))
    assert all(math.isnan(v) for v in nothing.values())


def test_log_loss_clips_like_sklearn() -> None:
    """A certain wrong prediction costs -log(eps), not infinity."""
    got = metrics.score("binary", np.array([1, 0]), np.array([0.0, 0.0]))["log_loss"]
    assert got == pytest.approx(-math.log(np.finfo(float).eps) / 2)
    resampled = metrics.score_resamples("binary", np.array([1, 0]), np.array([0.0, 0.0]),
                                        np.array([[1, 1], [3, 1]]))["log_loss"]
    assert resampled == pytest.approx([got, 3 * got * 2 / 4])


@pytest.mark.parametrize(("task", "pred", "threshold", "classes", "want"), [
    ("binary", [0.2, 0.5, 0.7], 0.5, None, [0, 1, 1]),
    ("multiclass", [[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]], 0.5, ["x", "y", "z"], ["y", "x"]),
    ("regression", [1.5, -2.0], 0.5, None, [1.5, -2.0]),
])
def test_decide(task: str, pred: list, threshold: float, classes: list | None, want: list
                ) -> None:
    """Binary: p >= threshold; multiclass: the most probable class, the first on ties."""
    got = metrics.decide(task, np.array(pred), threshold,
                         None if classes is None else np.array(classes))
    assert got.tolist() == want


@pytest.mark.parametrize(("call", "message"), [
    (lambda: metrics.metric_names("ranking"), "unknown task 'ranking'.*binary, multiclass"),
    (lambda: metrics.higher_is_better("binary", "r2"), "unknown metric 'r2' for task 'binary'"),
    (lambda: metrics.higher_is_better("poisson", "rmse"), "unknown task"),
    (lambda: metrics.score("ranking", np.array([0, 1]), np.array([0.1, 0.9])), "unknown task"),
    (lambda: metrics.score_resamples("ranking", np.array([0, 1]), np.array([0.1, 0.9]),
                                     np.ones((1, 2))), "unknown task"),
    (lambda: metrics.score("binary", np.array([0, 2]), np.array([0.1, 0.9])), "only 0 and 1"),
    (lambda: metrics.score("binary", np.array([0, 1]), np.array([0.1, 1.2])), r"\[0, 1\]"),
    (lambda: metrics.score("multiclass", np.array([2, 7]), np.full((2, 3), 1 / 3),
                           classes=CLASSES[3]), "not in `classes`"),
    (lambda: metrics.score("multiclass", np.array([2, 5]), np.full((2, 3), 0.5),
                           classes=CLASSES[3]), "sum to 1"),
    (lambda: metrics.score("multiclass", np.array([2, 5]), np.full((2, 3), 1 / 3)),
     "need `classes`"),
    (lambda: metrics.score("multiclass", np.array([2, 5]), np.full((2, 3), 1 / 3),
                           classes=np.array([9, 5, 2])), "sorted"),
    (lambda: metrics.score("regression", np.array([1.0, 2.0]), np.array([1.0])), "shape"),
    (lambda: metrics.score("regression", np.array([1.0, 2.0]), np.array([1.0, 2.0]),
                           weights=np.array([1, -1])), "non-negative"),
    (lambda: metrics.score_resamples("regression", np.array([1.0, 2.0]), np.array([1.0, 2.0]),
                                     np.ones(2)), r"\(resamples, 2\)"),
    (lambda: metrics.score_resamples("regression", np.array([1.0, 2.0]), np.array([1.0, 2.0]),
                                     np.array([[0.5, 1.0]])), "integer row counts"),
    (lambda: metrics.decide("multiclass", np.full((2, 3), 1 / 3), 0.5, None), "classes"),
])
def test_bad_input_is_a_clear_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 4), st.integers(0, 3)),
                min_size=2, max_size=30))
def test_weighted_aucs_with_ties_equal_sklearn_on_repeated_rows(rows: list) -> None:
    """Few distinct scores (many ties), counts 0-3: the vectorised AUCs are sklearn's on the
    rows repeated as counted, whenever the counted rows hold both classes."""
    y, s, w = (np.array(c) for c in zip(*rows, strict=True))
    p = s / 4
    got = metrics.score_resamples("binary", y, p, w[None, :])
    kept_y, kept_p = np.repeat(y, w), np.repeat(p, w)
    if len(np.unique(kept_y)) < 2:
        assert math.isnan(got["roc_auc"][0]) and math.isnan(got["pr_auc"][0])
        return
    assert got["roc_auc"][0] == pytest.approx(skm.roc_auc_score(kept_y, kept_p), abs=1e-12)
    assert got["pr_auc"][0] == pytest.approx(skm.average_precision_score(kept_y, kept_p),
                                             abs=1e-12)
    assert got["roc_auc"][0] == pytest.approx(skm.roc_auc_score(y, p, sample_weight=w),
                                              abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), min_size=1, max_size=20))
def test_weighted_median_of_errors_equals_sklearn(rows: list) -> None:
    """Tied errors, zero counts, totals landing exactly on a half: sklearn's weighted median
    (the averaged inverted CDF, which for counts is the plain median of repeated rows)."""
    errors, w = (np.array(c) for c in zip(*rows, strict=True))
    y = np.zeros(len(errors))
    got = metrics.score_resamples("regression", y, errors / 2, w[None, :])["median_ae"][0]
    if w.sum() == 0:
        assert math.isnan(got)
        return
    assert got == skm.median_absolute_error(y, errors / 2, sample_weight=w)
    assert got == np.median(np.repeat(errors / 2, w))
