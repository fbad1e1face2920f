"""Evaluation: metrics, slices, the champion comparison, known problems, guardrails, verdict.

Aggregate metrics hide regressions, so a candidate is judged four ways, all on the same
evaluation rows (pinned by their content hash) and all from rules in the spec: absolute
floors and ceilings, the bootstrap interval of its change against the champion, every large
slice, and every known problem. Guardrails on its predictions stop registration outright.
Everything lands in MLflow: metrics, `evaluation/evaluation.json`, plots and an HTML report.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines.differential import HIGHER_IS_BETTER, Delta, metric
from pipelines.errors import DataError
from pipelines.problems import ProblemScore
from pipelines.spec import Criteria, Guardrails, LoadedSpec, SliceSpec
from pipelines.train import Split


def metrics(y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier; AUCs are NaN when only one class is present."""
    both = len(np.unique(y_true)) == 2
    return {name: metric(name, y_true, y_prob) if both or name in ("log_loss", "brier")
            else math.nan for name in HIGHER_IS_BETTER}


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


def slice_metrics(keys: pd.DataFrame, y_true: np.ndarray, y_prob: np.ndarray
                  ) -> list[dict[str, Any]]:
    """Every metric per value of every slice column, with row and positive counts.

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
            y = y_true[index]
            rows.append({"slice": column, "value": str(value), "rows": len(index),
                         "positives": int(y.sum()), **metrics(y, y_prob[index])})
    return rows


def gate_metric(criteria: Criteria) -> str:
    """The metric slices are ranked by: the first slice floor's, else ROC AUC."""
    return next(iter(criteria.slice_min), "roc_auc")


def worst_slices(rows: list[dict[str, Any]], metric: str, min_rows: int, count: int
                 ) -> list[dict[str, Any]]:
    """The `count` slices with at least `min_rows` rows that score worst on `metric`."""
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    ranked = [r for r in rows if r["rows"] >= min_rows and not math.isnan(r[metric])]
    return sorted(ranked, key=lambda r: (sign * r[metric], r["slice"], r["value"]))[:count]


def check_guardrails(y_prob: np.ndarray, label_rate: float, guardrails: Guardrails
                     ) -> list[str]:
    """What is wrong with a set of predictions, before anyone looks at its metrics."""
    problems = []
    finite = np.isfinite(y_prob)
    if not finite.all():
        problems.append(f"{int((~finite).sum())} predictions are not finite numbers")
    elif y_prob.min() < 0 or y_prob.max() > 1:
        problems.append(f"predictions range over [{y_prob.min():.4f}, {y_prob.max():.4f}], "
                        "outside [0, 1]")
    if finite.any():
        spread = float(np.std(y_prob[finite]))
        if spread <= guardrails.min_std:
            problems.append(f"predictions are constant (std {spread:.2e} <= min_std "
                            f"{guardrails.min_std})")
        mean = float(np.mean(y_prob[finite]))
        if abs(mean - label_rate) > guardrails.max_mean_shift:
            problems.append(f"mean prediction {mean:.4f} is more than {guardrails.max_mean_shift} "
                            f"from the training label rate {label_rate:.4f}")
    return problems


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(candidate: dict[str, float], criteria: Criteria, *,
           deltas: dict[str, Delta] | None = None,
           slices: list[dict[str, Any]] | None = None,
           problem_reasons: list[str] | None = None) -> Verdict:
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
    for name, allowed in criteria.max_regression.items() if deltas is not None else ():
        d = deltas[name]
        if d.worst_case > allowed:
            reasons.append(
                f"{name} {d.candidate:.4f} vs the champion's {d.champion:.4f}: change "
                f"{d.delta:+.4f} ({d.confidence:.0%} interval {d.low:+.4f} to {d.high:+.4f}) "
                f"may be worse by {d.worst_case:.4f} (allowed {allowed})")
    for row in slices or []:
        if row["rows"] < criteria.slice_min_rows:
            continue
        for name, floor in criteria.slice_min.items():
            if row[name] < floor:  # NaN (one class in the slice) compares False: no verdict
                reasons.append(f"slice {row['slice']}={row['value']} ({row['rows']} rows): "
                               f"{name} {row[name]:.4f} is below the slice floor {floor}")
    reasons += problem_reasons or []
    return Verdict(passed=not reasons, reasons=reasons)


_METRIC_NAME = re.compile(r"[^\w.\- /]")


def metric_key(*parts: str) -> str:
    """An MLflow metric name from parts (slice values may hold characters MLflow refuses)."""
    return ".".join(_METRIC_NAME.sub("_", part) for part in parts)


@dataclass
class Scored:
    """One model's predictions on the evaluation set and what follows from them."""

    version: str | None
    y_prob: np.ndarray
    metrics: dict[str, float]
    slices: list[dict[str, Any]]
    problems: dict[str, ProblemScore]


def _score(model: Any, version: str | None, evaluation: pd.DataFrame, y: np.ndarray,
           keys: pd.DataFrame, spec: LoadedSpec, problem_list: list[Any]) -> Scored:
    from pipelines import problems, train

    y_prob = train.predict(model, evaluation)
    scores = {p.name: problems.score_problem(p, lambda cases: train.predict(model, cases),
                                             spec.pipeline.evaluation.threshold)
              for p in problem_list}
    return Scored(version, y_prob, metrics(y, y_prob), slice_metrics(keys, y, y_prob), scores)


def evaluate_candidate(
    spec: LoadedSpec,
    training_set: dict[str, Any],
    split: Split,
    run: dict[str, str],
) -> dict[str, Any]:
    """Score candidate and champion on the same rows and problems; log results and verdict.

    Raises DataError (stopping registration) when the candidate's predictions fail the
    guardrails.
    """
    from pipelines import differential, lineage, problems, registry, report, train

    config = spec.pipeline.evaluation
    client = registry.client()
    frame = train.read_training_set(training_set)
    training, evaluation = train.split_frame(frame, spec, split)
    target = spec.pipeline.label.target
    y = evaluation[target].to_numpy()
    keys = slice_keys(evaluation, config.slices)
    problem_list = problems.load_problems(spec)
    problems.rescore_versions(spec)  # every registered version scored on every problem

    candidate = _score(registry.load_model(run["model_uri"]), None, evaluation, y, keys, spec,
                       problem_list)
    label_rate = float(training[target].mean())
    if broken := check_guardrails(candidate.y_prob, label_rate, config.guardrails):
        client.set_tag(run["run_id"], "verdict", "guardrails_failed")
        client.set_tag(run["run_id"], "verdict_reasons", registry.clip("; ".join(broken)))
        raise DataError(f"guardrails on {len(y)} evaluation rows: " + "; ".join(broken)
                        + " (rule: spec evaluation.guardrails; nothing was registered)")

    champion_version = registry.champion_version(spec.pipeline.model_name)
    champion = deltas = None
    comparison: dict[str, Any] = {}
    if champion_version is not None:
        champion = _score(
            registry.load_model(f"models:/{champion_version.name}/{champion_version.version}"),
            str(champion_version.version), evaluation, y, keys, spec, problem_list)
        deltas = differential.bootstrap_deltas(
            y, candidate.y_prob, champion.y_prob, config.bootstrap, spec.pipeline.model.seed,
            config.criteria.confidence)
        columns = [spec.pipeline.label.entity, spec.pipeline.label.prediction_time, target,
                   *[s.column for s in config.slices]]
        comparison = {
            "deltas": {k: d.to_dict() for k, d in deltas.items()},
            "agreement_rate": differential.agreement_rate(candidate.y_prob, champion.y_prob,
                                                          config.threshold),
            "disagreements": differential.disagreements(
                evaluation, list(dict.fromkeys(columns)), candidate.y_prob, champion.y_prob,
                config.disagreements).to_dict(orient="records"),
        }

    criteria = config.criteria
    verdict = decide(candidate.metrics, criteria, deltas=deltas, slices=candidate.slices,
                     problem_reasons=problems.regressions(
                         candidate.problems, champion.problems if champion else None,
                         problem_list))
    metric = gate_metric(criteria)
    worst = worst_slices(candidate.slices, metric, criteria.slice_min_rows, config.worst_slices)
    eval_id = lineage.frame_content_hash(evaluation, lineage.feature_definitions_hash(spec))
    result = {
        "eval_dataset_id": eval_id, "eval_rows": len(evaluation), "threshold": config.threshold,
        "label_rate_train": label_rate,
        "metrics": candidate.metrics,
        "champion_version": champion.version if champion else None,
        "champion_metrics": champion.metrics if champion else None,
        "comparison": comparison,
        "slices": candidate.slices, "champion_slices": champion.slices if champion else None,
        "worst_slices": {"metric": metric, "slices": worst},
        "problems": {k: v.to_dict() for k, v in candidate.problems.items()},
        "champion_problems": ({k: v.to_dict() for k, v in champion.problems.items()}
                              if champion else None),
        "verdict": verdict.to_dict(),
    }
    _log(run["run_id"], result, candidate, champion)
    report.log_report(spec, run["run_id"], result, y, candidate.y_prob,
                      champion.y_prob if champion else None)
    return {k: v for k, v in result.items()
            if k not in ("slices", "champion_slices", "comparison", "champion_problems")}


def _log(run_id: str, result: dict[str, Any], candidate: Scored, champion: Scored | None
         ) -> None:
    """Metrics, tags and `evaluation/evaluation.json` on the candidate's run."""
    from pipelines import problems, registry

    values = {
        **{f"eval_{k}": v for k, v in candidate.metrics.items()},
        **{f"champion_eval_{k}": v for k, v in (champion.metrics if champion else {}).items()},
        **{metric_key("slice", s["slice"], s["value"], k): s[k]
           for s in candidate.slices for k in HIGHER_IS_BETTER},
        **{problems.SCORE_METRIC.format(name=k): v.score for k, v in candidate.problems.items()},
        "eval_rows": float(result["eval_rows"]),
    }
    for name, d in result["comparison"].get("deltas", {}).items():
        values.update({f"delta.{name}": d["delta"], f"delta.{name}.low": d["low"],
                       f"delta.{name}.high": d["high"]})
    if "agreement_rate" in result["comparison"]:
        values["agreement_rate"] = result["comparison"]["agreement_rate"]
    registry.log_metrics(run_id, values)
    registry.log_json(run_id, result, "evaluation/evaluation.json")
    verdict = result["verdict"]
    worst = result["worst_slices"]
    client = registry.client()
    client.set_tag(run_id, "eval_dataset_id", result["eval_dataset_id"])
    client.set_tag(run_id, "worst_slices", registry.clip(", ".join(
        f"{s['slice']}={s['value']} ({worst['metric']} {s[worst['metric']]:.3f})"
        for s in worst["slices"])))
    client.set_tag(run_id, "verdict", "passed" if verdict["passed"] else "rejected")
    client.set_tag(run_id, "verdict_reasons", registry.clip("; ".join(verdict["reasons"])))
