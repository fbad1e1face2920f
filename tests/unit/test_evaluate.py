"""Evaluation: metrics as scikit-learn computes them, slices that add up, a declarative gate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from pipelines import evaluate
from pipelines.differential import Delta
from pipelines.errors import DataError
from pipelines.spec import Criteria, Guardrails, SliceSpec


def _scores(rows: int = 500, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.3).astype("int64")
    p = np.clip(0.3 * y + 0.7 * rng.random(rows), 0.001, 0.999)
    return y, p


def test_metrics_match_sklearn() -> None:
    y, p = _scores()
    got = evaluate.metrics(y, p)
    assert got == pytest.approx({
        "roc_auc": roc_auc_score(y, p), "pr_auc": average_precision_score(y, p),
        "log_loss": log_loss(y, p), "brier": brier_score_loss(y, p),
    })
    assert set(got) == set(evaluate.HIGHER_IS_BETTER)
    assert all(type(v) is float for v in got.values())


def test_metrics_on_hand_computed_values() -> None:
    """Perfect ranking: AUCs 1; Brier and log loss from their definitions."""
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.6, 0.8])
    got = evaluate.metrics(y, p)
    assert got["roc_auc"] == 1.0 and got["pr_auc"] == 1.0
    assert got["brier"] == pytest.approx((0.01 + 0.16 + 0.16 + 0.04) / 4)
    assert got["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.6, 0.6, 0.8])))


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_gives_nan_aucs_and_finite_losses(label: int) -> None:
    y, p = np.full(6, label), np.linspace(0.1, 0.9, 6)
    got = evaluate.metrics(y, p)
    assert math.isnan(got["roc_auc"]) and math.isnan(got["pr_auc"])
    assert got["log_loss"] == pytest.approx(log_loss(y, p, labels=[0, 1]))
    assert got["brier"] == pytest.approx(float(np.mean((p - label) ** 2)))


def test_slice_rows_and_positives_add_up() -> None:
    """Per slice column, rows and positives sum to the whole, missing values included."""
    y, p = _scores(300)
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({
        "y": y,
        "origin": rng.choice(["EWR", "JFK", "LGA"], len(y)),
        "hour": rng.integers(0, 4, len(y)).astype(float),
    }, index=np.arange(len(y)) * 10 + 7)  # non-default index: slices are positional
    frame.loc[frame.index[::25], "hour"] = np.nan
    frame.loc[frame.index[::40], "origin"] = None
    keys = evaluate.slice_keys(frame, [SliceSpec(column="origin"), SliceSpec(column="hour")])
    rows = evaluate.slice_metrics(keys, y, p)
    for column in ("origin", "hour"):
        mine = [r for r in rows if r["slice"] == column]
        assert sum(r["rows"] for r in mine) == len(frame)
        assert sum(r["positives"] for r in mine) == int(y.sum())
        assert len(mine) == frame[column].nunique(dropna=False)
        assert "nan" in {r["value"] for r in mine}
    jfk = next(r for r in rows if r["slice"] == "origin" and r["value"] == "JFK")
    mask = (frame["origin"] == "JFK").to_numpy()
    assert jfk["rows"] == int(mask.sum())
    assert {k: jfk[k] for k in evaluate.HIGHER_IS_BETTER} == pytest.approx(
        evaluate.metrics(y[mask], p[mask]))


def test_slice_of_one_class_has_nan_auc() -> None:
    frame = pd.DataFrame({"y": [0, 1, 0, 0], "s": ["a", "a", "b", "b"]})
    keys = evaluate.slice_keys(frame, [SliceSpec(column="s")])
    rows = {r["value"]: r for r in evaluate.slice_metrics(keys, frame["y"].to_numpy(),
                                                           np.full(4, 0.5))}
    assert rows["a"]["roc_auc"] == 0.5
    assert math.isnan(rows["b"]["roc_auc"]) and rows["b"]["positives"] == 0


GOOD = {"roc_auc": 0.80, "pr_auc": 0.50, "log_loss": 0.40, "brier": 0.15}


def _deltas(candidate: dict[str, float], champion: dict[str, float], spread: float = 0.0
            ) -> dict[str, Delta]:
    """Changes with an interval of +-spread around the point change."""
    return {k: Delta(k, candidate[k], champion[k], candidate[k] - champion[k],
                     candidate[k] - champion[k] - spread, candidate[k] - champion[k] + spread,
                     0.95) for k in candidate}


def _decide(candidate: dict[str, float], champion: dict[str, float] | None, criteria: Criteria,
            spread: float = 0.0) -> evaluate.Verdict:
    deltas = _deltas(candidate, champion, spread) if champion is not None else None
    return evaluate.decide(candidate, criteria, deltas=deltas)


@pytest.mark.parametrize(("candidate", "champion", "criteria", "expected"), [
    ({**GOOD, "roc_auc": 0.55}, None, Criteria(min={"roc_auc": 0.6}),
     "roc_auc 0.5500 is below the floor 0.6"),
    ({**GOOD, "roc_auc": math.nan}, None, Criteria(min={"roc_auc": 0.6}),
     "roc_auc nan is below the floor 0.6"),
    ({**GOOD, "brier": 0.3}, None, Criteria(max={"brier": 0.25}),
     "brier 0.3000 is above the ceiling 0.25"),
    ({**GOOD, "log_loss": 0.9}, None, Criteria(max={"log_loss": 0.69}),
     "log_loss 0.9000 is above the ceiling 0.69"),
    ({**GOOD, "roc_auc": 0.70}, {**GOOD, "roc_auc": 0.75},
     Criteria(max_regression={"roc_auc": 0.01}),
     "roc_auc 0.7000 vs the champion's 0.7500: change -0.0500 (95% interval -0.0500 to "
     "-0.0500) may be worse by 0.0500 (allowed 0.01)"),
    ({**GOOD, "brier": 0.20}, {**GOOD, "brier": 0.15}, Criteria(max_regression={"brier": 0.01}),
     "brier 0.2000 vs the champion's 0.1500: change +0.0500 (95% interval +0.0500 to "
     "+0.0500) may be worse by 0.0500 (allowed 0.01)"),
], ids=["floor", "floor-nan", "ceiling", "ceiling-log-loss", "regression-higher-better",
        "regression-lower-better"])
def test_decide_rejects_with_a_reason_naming_metric_and_numbers(
        candidate: dict[str, float], champion: dict[str, float] | None, criteria: Criteria,
        expected: str) -> None:
    verdict = _decide(candidate, champion, criteria)
    assert not verdict.passed
    assert verdict.reasons == [expected]
    assert verdict.to_dict() == {"passed": False, "reasons": [expected]}


def test_decide_lists_every_failed_rule() -> None:
    criteria = Criteria(min={"roc_auc": 0.9, "pr_auc": 0.6}, max={"brier": 0.1},
                        max_regression={"roc_auc": 0.01})
    verdict = _decide(GOOD, {**GOOD, "roc_auc": 0.9}, criteria)
    assert not verdict.passed and len(verdict.reasons) == 4
    for name in ("roc_auc", "pr_auc", "brier"):
        assert any(r.startswith(name) for r in verdict.reasons)


SPEC_CRITERIA = Criteria(min={"roc_auc": 0.6}, max={"brier": 0.25},
                         max_regression={"roc_auc": 0.01, "brier": 0.01})


@pytest.mark.parametrize(("candidate", "champion"), [
    (GOOD, None),  # no champion: regression rules do not apply
    (GOOD, GOOD),  # equal to the champion
    ({**GOOD, "roc_auc": 0.795, "brier": 0.155}, GOOD),  # worse, within tolerance
    ({**GOOD, "roc_auc": 0.95, "brier": 0.05}, GOOD),  # better on both
    ({**GOOD, "roc_auc": 0.6, "brier": 0.25}, None),  # exactly on floor and ceiling
    ({**GOOD, "roc_auc": 0.5}, {**GOOD, "roc_auc": 0.5}),  # ...except the floor
], ids=["no-champion", "equal", "within-tolerance", "better", "on-the-bounds", "floor-only"])
def test_decide_passes_within_the_rules(candidate: dict[str, float],
                                        champion: dict[str, float] | None) -> None:
    verdict = _decide(candidate, champion, SPEC_CRITERIA)
    expected_pass = candidate["roc_auc"] >= 0.6
    assert verdict.passed is expected_pass
    assert verdict.reasons == ([] if expected_pass else
                               ["roc_auc 0.5000 is below the floor 0.6"])


def test_regression_allowance_is_inclusive() -> None:
    """Worse by exactly the allowance passes (values exact in binary floating point)."""
    criteria = Criteria(max_regression={"roc_auc": 0.25, "brier": 0.125})
    champion = {**GOOD, "roc_auc": 0.75, "brier": 0.125}
    assert _decide({**GOOD, "roc_auc": 0.5, "brier": 0.25}, champion, criteria).passed
    assert not _decide({**GOOD, "roc_auc": 0.4999, "brier": 0.25}, champion, criteria).passed


def test_the_gate_judges_the_interval_not_the_point() -> None:
    """A point change inside the allowance is refused when the interval reaches past it,
    and a point change past it is refused however narrow the interval."""
    criteria = Criteria(max_regression={"roc_auc": 0.01})
    champion = {**GOOD, "roc_auc": 0.800}
    slightly_worse = {**GOOD, "roc_auc": 0.795}
    assert _decide(slightly_worse, champion, criteria, spread=0.004).passed
    refused = _decide(slightly_worse, champion, criteria, spread=0.02)
    assert not refused.passed
    assert "may be worse by 0.0250 (allowed 0.01)" in refused.reasons[0]
    # an improvement whose interval still reaches 0.02 below zero is refused too
    assert not _decide({**GOOD, "roc_auc": 0.805}, champion, criteria, spread=0.03).passed


def _slice(value: str, rows: int, roc_auc: float) -> dict:
    return {"slice": "origin", "value": value, "rows": rows, "positives": rows // 3,
            **GOOD, "roc_auc": roc_auc}


def test_slice_floor_applies_to_slices_with_enough_rows() -> None:
    criteria = Criteria(slice_min={"roc_auc": 0.6}, slice_min_rows=100)
    slices = [_slice("EWR", 500, 0.58), _slice("JFK", 99, 0.40), _slice("LGA", 100, 0.61),
              _slice("XYZ", 300, math.nan)]
    verdict = evaluate.decide(GOOD, criteria, slices=slices)
    assert verdict.reasons == [
        "slice origin=EWR (500 rows): roc_auc 0.5800 is below the slice floor 0.6"]


def test_problem_reasons_refuse_the_candidate() -> None:
    verdict = evaluate.decide(GOOD, Criteria(), problem_reasons=["problem fog: solves 3/15"])
    assert not verdict.passed and verdict.reasons == ["problem fog: solves 3/15"]


def test_worst_slices_skip_small_and_undefined_slices() -> None:
    slices = [_slice("A", 500, 0.70), _slice("B", 50, 0.10), _slice("C", 500, 0.65),
              _slice("D", 500, math.nan), _slice("E", 500, 0.90)]
    worst = evaluate.worst_slices(slices, "roc_auc", min_rows=100, count=2)
    assert [s["value"] for s in worst] == ["C", "A"]
    brier = [{**_slice("A", 500, 0.7), "brier": 0.1}, {**_slice("C", 500, 0.7), "brier": 0.3}]
    assert [s["value"] for s in evaluate.worst_slices(brier, "brier", 1, 1)] == ["C"]


def test_slice_buckets_are_right_open_and_named() -> None:
    frame = pd.DataFrame({"hour": [0, 8, 9, 12, 13, 23, 24]})
    keys = evaluate.slice_keys(frame, [SliceSpec(column="hour", bins=[0, 9, 13, 24])])
    assert list(keys.columns) == ["hour_bucket"]
    assert [str(v) for v in keys["hour_bucket"]] == ["0-9", "0-9", "9-13", "9-13", "13-24",
                                                     "13-24", "nan"]


def test_unknown_slice_column_is_a_data_error() -> None:
    with pytest.raises(DataError, match="evaluation.slices: column 'gate'"):
        evaluate.slice_keys(pd.DataFrame({"hour": [1]}), [SliceSpec(column="gate")])


@pytest.mark.parametrize(("prob", "label_rate", "expected"), [
    (np.full(100, 0.3), 0.3, "predictions are constant"),
    (np.linspace(-0.2, 0.8, 100), 0.3, "outside [0, 1]"),
    (np.r_[np.linspace(0, 1, 99), np.nan], 0.5, "1 predictions are not finite"),
    (np.linspace(0.5, 0.9, 100), 0.2, "mean prediction 0.7000 is more than 0.1 from the "
     "training label rate 0.2000"),
], ids=["constant", "out-of-range", "nan", "mean-shift"])
def test_guardrails_name_what_is_wrong(prob: np.ndarray, label_rate: float,
                                       expected: str) -> None:
    found = evaluate.check_guardrails(prob, label_rate, Guardrails())
    assert any(expected in f for f in found), found


def test_guardrails_pass_sane_predictions() -> None:
    _, p = _scores()
    assert evaluate.check_guardrails(p, float(np.mean(p)), Guardrails()) == []


def test_metric_keys_keep_mlflow_happy() -> None:
    assert evaluate.metric_key("slice", "hour_bucket", "9-13", "roc_auc") == \
        "slice.hour_bucket.9-13.roc_auc"
    assert evaluate.metric_key("slice", "x", "a(b),c", "brier") == "slice.x.a_b__c.brier"


def test_slices_come_in_bucket_order_with_missing_last() -> None:
    frame = pd.DataFrame({"hour": [23, 0, 12, 9, 30, 14], "o": ["b", "a", None, "a", "b", "c"]})
    y, p = np.array([0, 1, 0, 1, 1, 0]), np.linspace(0.1, 0.9, 6)
    keys = evaluate.slice_keys(frame, [SliceSpec(column="hour", bins=[0, 9, 13, 24]),
                                       SliceSpec(column="o")])
    rows = evaluate.slice_metrics(keys, y, p)
    assert [(r["slice"], r["value"]) for r in rows] == [
        ("hour_bucket", "0-9"), ("hour_bucket", "9-13"), ("hour_bucket", "13-24"),
        ("hour_bucket", "nan"), ("o", "a"), ("o", "b"), ("o", "c"), ("o", "nan")]
