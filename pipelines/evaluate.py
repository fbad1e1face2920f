"""Evaluation: metrics, slices, the champion comparison, known problems, guardrails, verdict.

Aggregate metrics hide regressions, so a candidate is judged four ways, all on the same
evaluation rows (pinned by their content hash) and all from rules in the spec: absolute
floors and ceilings, the bootstrap interval of its change against the champion, every large
slice, and every known problem. Guardrails on its predictions stop registration outright.
Every rule follows `model.task`: its metrics (`pipelines/metrics.py`), its decisions and its
guardrails. This module only computes: the models come in, an `Evaluation` comes out;
logging it is `registry`'s and `report`'s job.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines import differential, problems, train
from pipelines.differential import Delta
from pipelines.errors import DataError
from pipelines.metrics import higher_is_better, score
from pipelines.problems import Problem, ProblemScore
from pipelines.spec import Criteria, Guardrails, LoadedSpec, SliceSpec

GATE_METRIC = {"binary": "roc_auc", "multiclass": "balanced_accuracy", "regression": "rmse"}
"""The metric slices are ranked by when no slice rule names one."""


class GuardrailsFailed(DataError):
    """The candidate's predictions are broken (not finite, constant, shifted): not registered."""


def _bucket_labels(bins: list[float]) -> list[str]:
    return [f"{lo:g}-{hi:g}" for lo, hi in zip(bins, bins[1:], strict=False)]


def slice_keys(frame: pd.DataFrame, slices: list[SliceSpec]) -> pd.DataFrame:
    """One column per slice: the column itself, or its bucket (`lo-hi`, right-open)."""
    keys = {}
    for spec in slices:
        if spec.column not in frame.columns:
            raise DataError(f"evaluation.slices: column {spec.column!r} is not in the "
                            "evaluation set (rule: slice columns come from the training set)")
        column = frame[spec.column]
        if spec.bins:
            column = pd.cut(column, spec.bins, right=False, labels=_bucket_labels(spec.bins))
        keys[spec.name] = column.array if spec.bins else column.astype("object").to_numpy()
    return pd.DataFrame(keys, index=frame.index)


@dataclass(frozen=True)
class SliceScore:
    """Every metric of the task on the rows of one slice value."""

    slice: str
    value: str
    rows: int
    metrics: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"slice": self.slice, "value": self.value, "rows": self.rows, **self.metrics}


def slice_metrics(task: str, keys: pd.DataFrame, y: np.ndarray, pred: np.ndarray,
                  threshold: float, classes: np.ndarray | None) -> list[SliceScore]:
    """Every metric per value of every slice column.

    Values come in sorted order, buckets in the order of their edges, missing values last.
    """
    rows = []
    for column in keys.columns:
        values = keys[column]
        groups = values.astype("object").to_frame().groupby(column, dropna=False).indices
        order = (list(values.cat.categories) if isinstance(values.dtype, pd.CategoricalDtype)
                 else sorted((v for v in groups if not pd.isna(v)), key=str))
        order += [v for v in groups if pd.isna(v)]
        for value in (v for v in order if v in groups):
            index = groups[value]
            rows.append(SliceScore(column, str(value), len(index),
                                   score(task, y[index], pred[index], threshold=threshold,
                                         classes=classes)))
    return rows


def gate_metric(task: str, criteria: Criteria) -> str:
    """The metric slices are ranked by: the first slice rule's, else the task's default."""
    return next(iter({**criteria.slice_min, **criteria.slice_max}), GATE_METRIC[task])


def worst_slices(task: str, rows: list[SliceScore], metric: str, min_rows: int, count: int
                 ) -> list[SliceScore]:
    """The `count` slices with at least `min_rows` rows that score worst on `metric`."""
    sign = 1 if higher_is_better(task, metric) else -1
    ranked = [r for r in rows if r.rows >= min_rows and not math.isnan(r.metrics[metric])]
    return sorted(ranked, key=lambda r: (sign * r.metrics[metric], r.slice, r.value))[:count]


@dataclass(frozen=True)
class Reference:
    """What a candidate's predictions are compared with by the guardrails.

    The champion's predictions on the same rows when there is a champion, else the training
    labels: a seasonal evaluation window then moves both, and only a shifted model fails.
    """

    source: str
    mean: float
    low: float
    high: float
    spread: float
    """Standard deviation of the training target (regression's unit of shift)."""
    shares: dict[str, float] = field(default_factory=dict)
    """Multiclass: each class's share of the training labels, or the champion's mean
    probability of it on the same rows."""


def _shares(labels: np.ndarray) -> dict[str, float]:
    values, counts = np.unique(labels.astype(str), return_counts=True)
    return {str(v): float(c) / len(labels) for v, c in zip(values, counts, strict=True)}


def _mean_probabilities(pred: np.ndarray, classes: np.ndarray | None) -> dict[str, float]:
    """Each class's mean predicted probability (columns in `classes` order): the multiclass
    counterpart of binary's mean prediction. Not the share of argmax decisions, which an
    uncertain but calibrated model concentrates on the majority class."""
    names = classes if classes is not None else np.arange(pred.shape[1])
    return {str(c): float(m) for c, m in zip(names, pred.mean(axis=0), strict=True)}


def reference(task: str, training_y: np.ndarray, champion: Scored | None,
              classes: np.ndarray | None) -> Reference:
    spread = float(np.std(training_y)) if task == "regression" else 0.0
    if champion is not None:
        pred = champion.pred
        source = f"champion version {champion.version} on the same rows"
        if task == "multiclass":
            return Reference(source, 0.0, 0.0, 0.0, spread, _mean_probabilities(pred, classes))
        return Reference(source, float(np.mean(pred)), float(np.min(pred)), float(np.max(pred)),
                         spread)
    source = "the training labels"
    if task == "multiclass":
        return Reference(source, 0.0, 0.0, 0.0, spread, _shares(training_y))
    values = training_y.astype("float64")
    return Reference(source, float(values.mean()), float(values.min()), float(values.max()),
                     spread)


def check_guardrails(task: str, pred: np.ndarray, ref: Reference, guardrails: Guardrails,
                     classes: np.ndarray | None) -> list[str]:
    """What is wrong with a set of predictions, before anyone looks at its metrics.

    Non-finite predictions are reported alone: every other rule would compare NaNs. The
    rest follow the task, since "shifted" means a mean for binary, standard deviations of
    the target for regression and each class's mean probability for multiclass.
    """
    finite = np.isfinite(pred).all(axis=1) if pred.ndim == 2 else np.isfinite(pred)
    if not finite.all():
        return [f"{int((~finite).sum())} predictions are not finite numbers"]
    found = []
    spread = float(pred.std(axis=0).max()) if pred.ndim == 2 else float(np.std(pred))
    if spread <= guardrails.min_std:
        found.append(f"predictions are constant (std {spread:.2e} <= min_std "
                     f"{guardrails.min_std})")
    if task == "binary":
        return found + _binary_guardrails(pred, ref, guardrails.mean_shift(task))
    if task == "regression":
        return found + _regression_guardrails(pred, ref, guardrails)
    return found + _multiclass_guardrails(pred, ref, guardrails.mean_shift(task), classes)


def _binary_guardrails(pred: np.ndarray, ref: Reference, shift: float) -> list[str]:
    """Probabilities outside [0, 1], or a mean prediction moved by more than `shift` from the
    reference's: a model that predicts a different base rate."""
    found = []
    if pred.min() < 0 or pred.max() > 1:
        found.append(f"predictions range over [{pred.min():.4f}, {pred.max():.4f}], "
                     "outside [0, 1]")
    mean = float(np.mean(pred))
    if abs(mean - ref.mean) > shift:
        found.append(f"mean prediction {mean:.4f} is more than {shift} from "
                     f"{ref.mean:.4f}, that of {ref.source} (guardrails.max_mean_shift)")
    return found


def _regression_guardrails(pred: np.ndarray, ref: Reference, guardrails: Guardrails
                           ) -> list[str]:
    """A mean moved, or a range stretched, by more than allowed, both measured in standard
    deviations of the training target so that one rule fits targets of any scale (a target
    without spread measures in its own units)."""
    found = []
    unit = ref.spread or 1.0
    shift = guardrails.mean_shift("regression")
    mean = float(np.mean(pred))
    if abs(mean - ref.mean) / unit > shift:
        found.append(f"mean prediction {mean:.4g} is {abs(mean - ref.mean) / unit:.2f} "
                     f"standard deviations ({unit:.4g}) from {ref.mean:.4g}, that of "
                     f"{ref.source}; allowed {shift} (guardrails.max_mean_shift)")
    excess = guardrails.max_range_excess * unit
    if pred.min() < ref.low - excess or pred.max() > ref.high + excess:
        found.append(f"predictions range over [{pred.min():.4g}, {pred.max():.4g}], beyond "
                     f"[{ref.low:.4g}, {ref.high:.4g}] of {ref.source} by more than "
                     f"{guardrails.max_range_excess} standard deviations "
                     "(guardrails.max_range_excess)")
    return found


def _multiclass_guardrails(pred: np.ndarray, ref: Reference, shift: float,
                           classes: np.ndarray | None) -> list[str]:
    """Probability rows that do not sum to 1, or some class's mean probability moved by more
    than `shift` from the reference's share: only the class that moved most is named."""
    found = []
    if (off := np.abs(pred.sum(axis=1) - 1) > 1e-6).any():
        found.append(f"{int(off.sum())} rows' class probabilities do not sum to 1")
    ours = _mean_probabilities(pred, classes)
    moved = {c: ours.get(c, 0.0) - ref.shares.get(c, 0.0) for c in {*ours, *ref.shares}}
    worst = max(moved, key=lambda c: abs(moved[c]))
    if abs(moved[worst]) > shift:
        found.append(f"class {worst!r} has mean probability {ours.get(worst, 0.0):.1%}, "
                     f"against {ref.shares.get(worst, 0.0):.1%} in {ref.source}; allowed "
                     f"change {shift:.1%} (guardrails.max_mean_shift)")
    return found


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the reader must know to trust the verdict, e.g. an evaluation set too small."""


def undecidable(deltas: dict[str, Delta], max_regression: dict[str, float], rows: int
                ) -> dict[str, str]:
    """Metrics whose interval is too wide for the gate to decide on this many rows.

    The interval's half-width shrinks as 1/sqrt(rows); when it exceeds the allowance, even a
    candidate identical to the champion would be refused. Names the rows that would do.
    """
    notes = {}
    for name, allowed in max_regression.items():
        half = (deltas[name].high - deltas[name].low) / 2
        if half > allowed:
            needed = math.ceil(rows * (half / allowed) ** 2)
            notes[name] = (f"the evaluation set is too small to decide on {name}: its interval "
                           f"is ±{half:.4f} on {rows} rows, wider than max_regression {allowed}; "
                           f"about {needed} rows would be needed (widen the evaluation window)")
    return notes


def decide(task: str, candidate: dict[str, float], criteria: Criteria, *,
           deltas: dict[str, Delta] | None = None, slices: list[SliceScore] | None = None,
           problem_reasons: list[str] | None = None, rows: int = 0) -> Verdict:
    """Apply the gate; every failed rule becomes a reason naming the metric, slice or problem.

    Against the champion the rule is one of non-inferiority: refused when the candidate may
    be worse than allowed, i.e. when the bound of the change's interval on the worse side
    lies beyond the allowance.
    """
    reasons = []
    for name, floor in criteria.min.items():
        if not candidate[name] >= floor:
            reasons.append(f"{name} {candidate[name]:.4f} is below the floor {floor}")
    for name, ceiling in criteria.max.items():
        if not candidate[name] <= ceiling:
            reasons.append(f"{name} {candidate[name]:.4f} is above the ceiling {ceiling}")
    small = undecidable(deltas, criteria.max_regression, rows) if deltas is not None else {}
    for name, allowed in criteria.max_regression.items() if deltas is not None else ():
        d = deltas[name]
        if d.worst_case > allowed:
            reasons.append(
                f"{name} {d.candidate:.4f} vs the champion's {d.champion:.4f}: change "
                f"{d.delta:+.4f} ({d.confidence:.0%} interval {d.low:+.4f} to {d.high:+.4f}) "
                f"may be worse by {d.worst_case:.4f} (allowed {allowed})"
                + (f"; {small[name]}" if name in small else ""))
    for row in slices or []:
        if row.rows < criteria.slice_min_rows:
            continue
        where = f"slice {row.slice}={row.value} ({row.rows} rows)"
        for name, floor in criteria.slice_min.items():
            if row.metrics[name] < floor:  # NaN (one class in the slice) compares False
                reasons.append(f"{where}: {name} {row.metrics[name]:.4f} is below the slice "
                               f"floor {floor}")
        for name, ceiling in criteria.slice_max.items():
            if row.metrics[name] > ceiling:
                reasons.append(f"{where}: {name} {row.metrics[name]:.4f} is above the slice "
                               f"ceiling {ceiling}")
    reasons += problem_reasons or []
    return Verdict(passed=not reasons, reasons=reasons, notes=list(small.values()))


_METRIC_NAME = re.compile(r"[^\w.\- /]")


def metric_key(*parts: str) -> str:
    """An MLflow metric name from parts (slice values may hold characters MLflow refuses)."""
    return ".".join(_METRIC_NAME.sub("_", part) for part in parts)


@dataclass(frozen=True)
class Scored:
    """One model's predictions on the evaluation set and what follows from them."""

    version: str | None
    pred: np.ndarray
    metrics: dict[str, float]
    slices: list[SliceScore]
    problems: dict[str, ProblemScore]


@dataclass(frozen=True)
class Rows:
    """The evaluation rows as every model is scored on them."""

    frame: pd.DataFrame
    y: np.ndarray
    keys: pd.DataFrame
    classes: np.ndarray | None


def score_model(spec: LoadedSpec, model: Any, version: str | None, rows: Rows,
                problem_list: list[Problem]) -> Scored:
    task, config = spec.pipeline.model.task, spec.pipeline.evaluation
    pred = train.predict(model, rows.frame)
    if task == "multiclass" and not np.array_equal(train.classes(model), rows.classes):
        raise DataError(f"model {version or 'candidate'} knows the classes "
                        f"{train.classes(model).tolist()}, the evaluation rows "
                        f"{rows.classes.tolist()}; train on a window holding every class")
    scores = {p.name: problems.score_problem(p, functools.partial(train.predict, model),
                                             task, config.threshold, rows.classes,
                                             spec.pipeline.label.target)
              for p in problem_list}
    return Scored(version, pred, score(task, rows.y, pred, threshold=config.threshold,
                                       classes=rows.classes),
                  slice_metrics(task, rows.keys, rows.y, pred, config.threshold, rows.classes),
                  scores)


@dataclass(frozen=True)
class ProblemTally:
    solved: int
    cases: int


@dataclass(frozen=True)
class EvaluationSummary:
    """What the register step needs of an evaluation; the full result is in MLflow."""

    eval_dataset_id: str
    eval_rows: int
    metrics: dict[str, float]
    champion_version: str | None
    verdict: Verdict
    problems: dict[str, ProblemTally]


@dataclass(frozen=True)
class Evaluation:
    """A judged candidate: both models' scores, the comparison and the verdict."""

    task: str
    eval_dataset_id: str
    threshold: float
    reference: Reference
    candidate: Scored
    champion: Scored | None
    deltas: dict[str, Delta]
    agreement_rate: float | None
    disagreements: list[dict[str, Any]]
    gate_metric: str
    worst: list[SliceScore]
    verdict: Verdict
    y: np.ndarray
    classes: np.ndarray | None
    keys: pd.DataFrame
    """The evaluation rows' slice values, one column per slice."""

    def summary(self) -> EvaluationSummary:
        return EvaluationSummary(
            self.eval_dataset_id, len(self.y), self.candidate.metrics,
            self.champion.version if self.champion else None, self.verdict,
            {k: ProblemTally(v.solved, v.cases) for k, v in self.candidate.problems.items()})

    def to_json(self) -> dict[str, Any]:
        """`evaluation/evaluation.json`: everything the report and a reviewer read."""
        champion = self.champion
        return {
            "task": self.task, "eval_dataset_id": self.eval_dataset_id,
            "eval_rows": len(self.y), "threshold": self.threshold,
            "classes": None if self.classes is None else self.classes.tolist(),
            "reference": vars(self.reference),
            "metrics": self.candidate.metrics,
            "champion_version": champion.version if champion else None,
            "champion_metrics": champion.metrics if champion else None,
            "comparison": {"deltas": {k: vars(d) for k, d in self.deltas.items()},
                           "agreement_rate": self.agreement_rate,
                           "disagreements": self.disagreements} if champion else {},
            "slices": [s.to_json() for s in self.candidate.slices],
            "champion_slices": [s.to_json() for s in champion.slices] if champion else None,
            "worst_slices": {"metric": self.gate_metric,
                             "slices": [s.to_json() for s in self.worst]},
            "problems": {k: vars(v) for k, v in self.candidate.problems.items()},
            "champion_problems": ({k: vars(v) for k, v in champion.problems.items()}
                                  if champion else None),
            "verdict": vars(self.verdict),
        }


def judge(spec: LoadedSpec, training: pd.DataFrame, evaluation: pd.DataFrame,
          candidate_model: Any, champion_model: Any | None, champion_version: str | None,
          problem_list: list[Problem], eval_dataset_id: str) -> Evaluation:
    """Score candidate (and champion) on the same rows and problems, apply the gate.

    Raises GuardrailsFailed, naming what is wrong, when the candidate's predictions are
    broken: such a model is never registered.
    """
    task, config = spec.pipeline.model.task, spec.pipeline.evaluation
    target = spec.pipeline.label.target
    rows = Rows(evaluation, evaluation[target].to_numpy(), slice_keys(evaluation, config.slices),
                train.classes(candidate_model))
    candidate = score_model(spec, candidate_model, None, rows, problem_list)
    champion = (None if champion_model is None else
                score_model(spec, champion_model, champion_version, rows, problem_list))
    ref = reference(task, training[target].to_numpy(), champion, rows.classes)
    if broken := check_guardrails(task, candidate.pred, ref, config.guardrails, rows.classes):
        raise GuardrailsFailed(f"guardrails on {len(rows.y)} evaluation rows: "
                               + "; ".join(broken)
                               + " (rule: spec evaluation.guardrails; nothing was registered)")
    comparison = Comparison() if champion is None else compare(spec, rows, candidate, champion)
    criteria = config.criteria
    verdict = decide(task, candidate.metrics, criteria,
                     deltas=comparison.deltas if champion else None, slices=candidate.slices,
                     rows=len(rows.y), problem_reasons=problems.regressions(
                         candidate.problems, champion.problems if champion else None,
                         problem_list))
    metric = gate_metric(task, criteria)
    return Evaluation(task, eval_dataset_id, config.threshold, ref, candidate, champion,
                      comparison.deltas, comparison.agreement_rate, comparison.disagreements,
                      metric, worst_slices(task, candidate.slices, metric,
                                           criteria.slice_min_rows, config.worst_slices),
                      verdict, rows.y, rows.classes, rows.keys)


@dataclass(frozen=True)
class Comparison:
    """Candidate against champion on the same rows; empty when there is no champion."""

    deltas: dict[str, Delta] = field(default_factory=dict)
    agreement_rate: float | None = None
    disagreements: list[dict[str, Any]] = field(default_factory=list)
    """The rows where the two differ most, as records, with the label's key columns, the
    target and the slice columns, so a reviewer can find them again."""


def compare(spec: LoadedSpec, rows: Rows, candidate: Scored, champion: Scored) -> Comparison:
    """The differential test: paired bootstrap intervals of every metric's change (seeded by
    the model's seed), the share of rows on which both decide alike, and the rows where they
    disagree most."""
    task, config = spec.pipeline.model.task, spec.pipeline.evaluation
    label = spec.pipeline.label
    deltas = differential.bootstrap_deltas(
        task, rows.y, candidate.pred, champion.pred, config.bootstrap, spec.pipeline.model.seed,
        config.criteria.confidence, threshold=config.threshold, classes=rows.classes)
    columns = [label.entity, label.prediction_time, label.target,
               *[s.column for s in config.slices]]
    disagreeing = differential.disagreements(
        task, rows.frame, list(dict.fromkeys(columns)), candidate.pred, champion.pred,
        config.disagreements, rows.classes)
    return Comparison(deltas, differential.agreement_rate(task, candidate.pred, champion.pred,
                                                          config.threshold, rows.classes),
                      disagreeing.to_dict(orient="records"))


def metric_values(result: Evaluation) -> dict[str, float]:
    """Every number of an evaluation as MLflow metrics (NaN dropped by the logger)."""
    candidate, champion = result.candidate, result.champion
    values = {
        **{f"eval_{k}": v for k, v in candidate.metrics.items()},
        **{f"champion_eval_{k}": v for k, v in (champion.metrics if champion else {}).items()},
        **{metric_key("slice", s.slice, s.value, k): v
           for s in candidate.slices for k, v in s.metrics.items()},
        **{problems.SCORE_METRIC.format(name=k): v.score for k, v in candidate.problems.items()},
        "eval_rows": float(len(result.y)),
    }
    for name, d in result.deltas.items():
        values.update({f"delta.{name}": d.delta, f"delta.{name}.low": d.low,
                       f"delta.{name}.high": d.high})
    if result.agreement_rate is not None:
        values["agreement_rate"] = result.agreement_rate
    return values


def verdict_tags(result: Evaluation) -> dict[str, str]:
    """The run tags a reviewer filters on: verdict, reasons, worst slices, evaluation rows."""
    metric = result.gate_metric
    return {
        "eval_dataset_id": result.eval_dataset_id,
        "worst_slices": ", ".join(f"{s.slice}={s.value} ({metric} {s.metrics[metric]:.3f})"
                                  for s in result.worst),
        "verdict": "passed" if result.verdict.passed else "rejected",
        "verdict_reasons": "; ".join(result.verdict.reasons),
        "verdict_notes": "; ".join(result.verdict.notes),
    }
