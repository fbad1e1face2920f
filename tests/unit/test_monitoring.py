"""Monitoring computations against hand-computed values, and their error cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipelines import monitoring
from pipelines.errors import DataError
from pipelines.monitoring import Reference, build_reference, monitor_day
from pipelines.spec import FeatureLimits, Monitoring


def test_psi_by_hand() -> None:
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    expected = 0.25 * math.log(2) + 0.25 * math.log(1.5)
    assert monitoring.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected)
    assert monitoring.psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_psi_floors_an_empty_bin() -> None:
    # the empty bin counts as PSI_FLOOR: large and finite
    value = monitoring.psi([0.5, 0.5], [1.0, 0.0])
    floor = monitoring.PSI_FLOOR
    assert value == pytest.approx(0.5 * math.log(2) + (floor - 0.5) * math.log(floor / 0.5))
    assert math.isfinite(value) and value > 2


@pytest.mark.parametrize(("expected", "actual"), [([0.5, 0.5], [1.0]), ([], [])])
def test_psi_refuses_other_bins(expected: list[float], actual: list[float]) -> None:
    with pytest.raises(ValueError, match="same bins"):
        monitoring.psi(expected, actual)


def test_ks_by_hand() -> None:
    # CDFs of {1,2,3} and {2,3,4} differ by at most 1/3 (at 1, 2 and 3)
    assert monitoring.ks_statistic([1.0, 2.0, 3.0], np.array([2.0, 3.0, 4.0])) == pytest.approx(1 / 3)
    assert monitoring.ks_statistic([1.0, 2.0], np.array([5.0, 6.0])) == 1.0
    with pytest.raises(ValueError, match="both sides"):
        monitoring.ks_statistic([], np.array([1.0]))


def test_bin_shares_are_right_open() -> None:
    # edges 1 and 2: bins (-inf, 1), [1, 2), [2, inf)
    assert monitoring.bin_shares(np.array([0.0, 1.0, 1.5, 2.0]), [1.0, 2.0]) == [0.25, 0.5, 0.25]
    with pytest.raises(DataError, match="no values"):
        monitoring.bin_shares(np.array([]), [1.0])


def test_describe_a_numeric_and_a_categorical_column() -> None:
    numeric = monitoring.describe(pd.Series([1.0, 2.0, 3.0, 4.0, None], name="x"), bins=2)
    assert numeric.numeric and numeric.edges == [2.5] and numeric.shares == [0.5, 0.5]
    assert numeric.null_rate == 0.2 and numeric.sample == [1.0, 2.0, 3.0, 4.0]
    text = monitoring.describe(pd.Series(["a", "b", "a", None], name="c"), bins=10)
    assert not text.numeric and text.categories == ["a", "b"]
    assert text.shares == [2 / 3, 1 / 3, 0.0]  # the last bin: values the reference never had
    with pytest.raises(DataError, match="'empty' has no values") as error:
        monitoring.describe(pd.Series([None, None], name="empty", dtype="float64"), bins=10)
    # the usual cause, a view whose rows are never known at the cutoff, and what to check
    assert "check the view's `availability_lag` and `ttl`, or drop the feature" in str(error.value)


def _reference(rows: int = 400) -> tuple[Reference, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(10, 2, rows), "kind": rng.choice(["p", "q"], rows)})
    pred = 1 / (1 + np.exp(-(frame["x"] - 10)))
    return (build_reference("binary", 0.5, frame, ["x", "kind"], pred.to_numpy(), bins=10),
            frame, pred.to_numpy())


def test_the_reference_day_itself_breaches_nothing() -> None:
    ref, frame, pred = _reference()
    day = monitor_day(ref, frame, pred, Monitoring())
    assert day.breaches == []
    assert day.values["feature.x.psi"] == pytest.approx(0.0, abs=1e-9)
    assert day.values["feature.x.ks"] == pytest.approx(0.0, abs=1e-9)
    assert day.values["prediction.mean_shift"] == pytest.approx(0.0, abs=1e-12)
    assert day.values["prediction.share_above_threshold"] == ref.share_above_threshold
    assert {"prediction.q05", "prediction.q95", "feature.kind.psi", "feature.x.null_rate"} <= set(day.values)


def test_a_unit_change_breaches_that_feature_by_name() -> None:
    ref, frame, pred = _reference()
    changed = frame.assign(x=frame["x"] * 1000)
    day = monitor_day(ref, changed, pred, Monitoring())
    assert [(b.metric, b.feature) for b in day.breaches] == [("psi", "x")]
    assert day.values["feature.x.ks"] == 1.0
    assert "psi of x is" in day.breaches[0].message() and "limit 0.25" in day.breaches[0].message()


def test_mean_shift_null_rate_and_per_feature_limits() -> None:
    ref, frame, pred = _reference()
    nulls = frame.assign(kind=[None] * 300 + list(frame["kind"][300:]))
    day = monitor_day(ref, nulls, np.clip(pred + 0.3, 0, 1),
                      Monitoring(features={"kind": FeatureLimits(max_null_rate=0.8)}))
    found = {(b.metric, b.feature): b for b in day.breaches}
    assert ("mean_shift", "prediction") in found and ("null_rate", "kind") not in found
    strict = monitor_day(ref, nulls, pred, Monitoring(max_null_rate=0.5))
    assert [(b.metric, b.feature, b.value, b.limit) for b in strict.breaches] == [
        ("null_rate", "kind", 0.75, 0.5)]


def test_regression_shift_is_in_reference_standard_deviations() -> None:
    frame = pd.DataFrame({"x": np.arange(100.0)})
    pred = np.arange(100.0)  # std 28.87
    ref = build_reference("regression", 0.5, frame, ["x"], pred, bins=4)
    day = monitor_day(ref, frame, pred + ref.prediction.std, Monitoring())
    assert day.values["prediction.mean_shift"] == pytest.approx(1.0)
    assert "prediction.share_above_threshold" not in day.values


def test_missing_feature_and_round_trip() -> None:
    ref, frame, pred = _reference()
    assert Reference.from_json(ref.to_json()) == ref
    with pytest.raises(DataError, match=r"lack features \['kind'\]"):
        monitor_day(ref, frame.drop(columns="kind"), pred, Monitoring())
    with pytest.raises(DataError, match=r"features \['y'\] are not in the rows"):
        build_reference("binary", 0.5, frame, ["y"], pred, bins=10)


def test_table_marks_the_breached_rows() -> None:
    ref, frame, pred = _reference()
    rows = monitoring.table(monitor_day(ref, frame.assign(x=frame["x"] * 1000), pred, Monitoring()))
    breached = rows[rows["breached"]]
    assert breached[["metric", "feature"]].values.tolist() == [["psi", "x"]]
    assert set(rows.columns) == {"metric", "feature", "value", "limit", "breached"}


def test_a_feature_without_a_psi_limit_is_logged_but_never_breaches() -> None:
    """A weekday is one value on any one day: its PSI against a week is always large."""
    ref, frame, pred = _reference()
    changed = frame.assign(x=frame["x"] * 1000)
    day = monitor_day(ref, changed, pred,
                      Monitoring(features={"x": FeatureLimits(limit_psi=False)}))
    assert day.breaches == [] and day.values["feature.x.psi"] > 5
    assert "feature.x.psi" not in day.limits and "feature.x.null_rate" in day.limits
