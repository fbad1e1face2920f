"""Monitoring of scored days: distributions against the reference kept at registration.

The most expensive failure of a model raises no exception: a feature changes its unit, the
mean prediction moves, and decisions go wrong quietly. So every scored day is compared with
the reference stored with the version (its evaluation rows' predictions and features):
prediction mean and quantiles, the share above the threshold for binary classifiers, PSI
on the reference's quantile bins and the two-sample KS statistic per feature and for the
prediction, and each feature's null rate. The spec's `monitoring:` limits turn some of them
into breaches. Only numpy and scipy, and only computation: `scoring.py` does the I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import TypeAdapter
from scipy import stats

from pipelines.errors import DataError
from pipelines.spec import Monitoring

PSI_FLOOR = 1e-4
"""Shares below this count as this in PSI, so an empty bin gives a large finite value."""
SAMPLE_SIZE = 1000
"""Reference values kept for KS: this many quantiles (exact below it)."""
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class Distribution:
    """One column of the reference: enough to compute PSI, KS and the null rate later."""

    numeric: bool
    edges: list[float] = field(default_factory=list)
    """Numeric: the inner bin edges (reference quantiles); bins are right-open."""
    categories: list[str] = field(default_factory=list)
    """Categorical: the reference's values; anything else falls in one more bin."""
    shares: list[float] = field(default_factory=list)
    """The reference's share of non-null values in each bin."""
    sample: list[float] = field(default_factory=list)
    """Numeric: sorted reference values (or their quantiles), for the KS statistic."""
    null_rate: float = 0.0
    mean: float = math.nan
    std: float = math.nan


@dataclass(frozen=True)
class Reference:
    """What each scored day is compared with, stored as JSON with the model version."""

    task: str
    threshold: float
    rows: int
    prediction: Distribution
    features: dict[str, Distribution]
    share_above_threshold: float | None = None

    def to_json(self) -> Any:
        return _ADAPTER.dump_python(self, mode="json")

    @staticmethod
    def from_json(data: Any) -> Reference:
        return _ADAPTER.validate_python(data)


_ADAPTER: TypeAdapter[Reference] = TypeAdapter(Reference)


def monitored_prediction(task: str, pred: np.ndarray) -> np.ndarray:
    """The one number per row that is watched: the value (regression), P(class 1) (binary),
    the top class's probability (multiclass, whose confidence falls when inputs drift)."""
    values = np.asarray(pred, dtype="float64")
    return values.max(axis=1) if values.ndim == 2 else values


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def describe(column: pd.Series, bins: int) -> Distribution:
    """A reference column's distribution: quantile bins (numeric) or categories."""
    values = column.dropna()
    null_rate = float(column.isna().mean()) if len(column) else 0.0
    if values.empty:
        raise DataError(f"monitoring reference: column {column.name!r} has no values on the "
                        "evaluation rows, so nothing can be compared with it; a feature view's "
                        "column is null on every row when none of its rows was created by the "
                        "label's `prediction_time` and is younger than the view's `ttl`: check "
                        "the view's `availability_lag` and `ttl`, or drop the feature")
    if not _is_numeric(column):
        categories = sorted(values.astype(str).unique().tolist())
        return Distribution(False, categories=categories,
                            shares=bin_shares_categorical(values, categories), null_rate=null_rate)
    numbers = values.to_numpy(dtype="float64")
    edges = np.unique(np.quantile(numbers, np.arange(1, bins) / bins)).tolist()
    return Distribution(True, edges=edges, shares=bin_shares(numbers, edges),
                        sample=_sample(numbers), null_rate=null_rate,
                        mean=float(numbers.mean()), std=float(numbers.std()))


def _sample(numbers: np.ndarray) -> list[float]:
    if len(numbers) <= SAMPLE_SIZE:
        return np.sort(numbers).tolist()
    return np.quantile(numbers, (np.arange(SAMPLE_SIZE) + 0.5) / SAMPLE_SIZE).tolist()


def bin_shares(numbers: np.ndarray, edges: list[float]) -> list[float]:
    """Share of `numbers` in each right-open bin between `edges` (first and last unbounded)."""
    if len(numbers) == 0:
        raise DataError("monitoring: no values to bin")
    counts = np.bincount(np.searchsorted(edges, numbers, side="right"), minlength=len(edges) + 1)
    return (counts / len(numbers)).tolist()


def bin_shares_categorical(values: pd.Series, categories: list[str]) -> list[float]:
    """Share of each reference category, then of every other value together."""
    text = values.astype(str)
    counts = [int((text == c).sum()) for c in categories]
    return [c / len(text) for c in [*counts, len(text) - sum(counts)]]


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index: sum of (a - e) * ln(a / e) over bins, shares floored at
    PSI_FLOOR so an empty bin counts as a large shift, not an infinite one."""
    if len(expected) != len(actual) or not expected:
        raise ValueError(f"psi needs shares of the same bins, got {len(expected)} and "
                         f"{len(actual)}")
    e = np.maximum(np.asarray(expected, dtype="float64"), PSI_FLOOR)
    a = np.maximum(np.asarray(actual, dtype="float64"), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_statistic(reference: list[float] | np.ndarray, values: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic (largest gap between the two CDFs)."""
    if len(reference) == 0 or len(values) == 0:
        raise ValueError("ks_statistic needs values on both sides")
    return float(stats.ks_2samp(np.asarray(reference, dtype="float64"), values).statistic)


def build_reference(task: str, threshold: float, frame: pd.DataFrame, features: list[str],
                    pred: np.ndarray, bins: int) -> Reference:
    """The reference of a version: its evaluation rows' features and predictions."""
    if missing := [f for f in features if f not in frame.columns]:
        raise DataError(f"monitoring reference: features {missing} are not in the rows")
    watched = monitored_prediction(task, pred)
    above = float(np.mean(watched >= threshold)) if task == "binary" else None
    return Reference(task, threshold, len(frame),
                     describe(pd.Series(watched, name="prediction"), bins),
                     {f: describe(frame[f], bins) for f in features}, above)


@dataclass(frozen=True)
class Breach:
    """A monitored value beyond its limit."""

    metric: str
    feature: str
    """The feature's name, or `prediction`."""
    value: float
    limit: float

    def message(self) -> str:
        return (f"{self.metric} of {self.feature} is {self.value:.4g}, beyond the limit "
                f"{self.limit:g} (monitoring)")


@dataclass(frozen=True)
class DayMonitoring:
    """Every monitored value of one scored day, and those beyond their limits."""

    rows: int
    values: dict[str, float]
    """By metric name: `prediction.mean`, `prediction.psi`, `feature.<name>.null_rate`, …"""
    limits: dict[str, float]
    """The limit of each limited metric, by the same names."""
    breaches: list[Breach]


def compare(ref: Distribution, column: pd.Series) -> dict[str, float]:
    """PSI, KS (numeric only) and the null rate of one day's column against its reference.

    A day with no values at all gets PSI and KS NaN: its null rate says what happened.
    """
    values = column.dropna()
    found = {"null_rate": float(column.isna().mean()) if len(column) else math.nan,
             "psi": math.nan, "ks": math.nan}
    if values.empty:
        return found
    if not ref.numeric:
        found["psi"] = psi(ref.shares, bin_shares_categorical(values, ref.categories))
        return found
    numbers = values.to_numpy(dtype="float64")
    found["psi"] = psi(ref.shares, bin_shares(numbers, ref.edges))
    found["ks"] = ks_statistic(ref.sample, numbers)
    found["mean"] = float(numbers.mean())
    return found


def _prediction_values(ref: Reference, watched: np.ndarray) -> dict[str, float]:
    values = {f"prediction.{k}": v
              for k, v in compare(ref.prediction, pd.Series(watched)).items() if k != "null_rate"}
    if len(watched):
        values.update({f"prediction.q{round(q * 100):02d}": float(np.quantile(watched, q))
                       for q in QUANTILES})
        shift = abs(float(watched.mean()) - ref.prediction.mean)
        if ref.task == "regression":
            shift /= ref.prediction.std or 1.0
        values["prediction.mean_shift"] = shift
    if ref.share_above_threshold is not None and len(watched):
        values["prediction.share_above_threshold"] = float(np.mean(watched >= ref.threshold))
    return values


def monitor_day(ref: Reference, frame: pd.DataFrame, pred: np.ndarray,
                limits: Monitoring) -> DayMonitoring:
    """Every value of one day and its breaches, features in the reference's order."""
    if missing := [f for f in ref.features if f not in frame.columns]:
        raise DataError(f"monitoring: the scored rows lack features {missing} of the reference")
    values = _prediction_values(ref, monitored_prediction(ref.task, pred))
    bounds = {"prediction.mean_shift": limits.mean_shift(ref.task),
              "prediction.psi": limits.max_prediction_psi}
    for name, distribution in ref.features.items():
        values.update({f"feature.{name}.{k}": v
                       for k, v in compare(distribution, frame[name]).items()})
        if (psi_limit := limits.feature_psi(name)) is not None:
            bounds[f"feature.{name}.psi"] = psi_limit
        bounds[f"feature.{name}.null_rate"] = limits.null_rate(name)
    breaches = [Breach(*_split_name(key), values[key], limit) for key, limit in bounds.items()
                if values.get(key, math.nan) > limit]  # NaN (nothing to compare) never breaches
    return DayMonitoring(len(frame), values, bounds, breaches)


def _split_name(key: str) -> tuple[str, str]:
    """`feature.temp.psi` as (`psi`, `temp`); `prediction.psi` as (`psi`, `prediction`)."""
    head, rest = key.split(".", 1)
    if head == "prediction":
        return rest, "prediction"
    feature, metric = rest.rsplit(".", 1)
    return metric, feature


def table(monitoring: DayMonitoring) -> pd.DataFrame:
    """The day's values as rows (metric, feature, value, limit, breached): the lake's table."""
    rows = []
    for key, value in sorted(monitoring.values.items()):
        metric, feature = _split_name(key)
        limit = monitoring.limits.get(key, math.nan)
        rows.append({"metric": metric, "feature": feature, "value": value, "limit": limit,
                     "breached": bool(value > limit)})
    return pd.DataFrame(rows, columns=["metric", "feature", "value", "limit", "breached"])
