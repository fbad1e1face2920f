"""The evaluation report people read: plots and one self-contained HTML page per run.

Logged to the candidate's MLflow run under `evaluation/`, with the plots that fit the task:
binary: ROC and PR curves, calibration, the confusion matrix at the spec's threshold;
multiclass: the normalised confusion matrix and per-class precision, recall and F1;
regression: predicted against actual, the residual distribution, residuals per slice.
Every task gets a slice bar chart, the score of every registered version on every known
problem, and `report.html`, which embeds them all (so it opens from the MLflow UI or a
download without anything beside it).
Figures are drawn with matplotlib's object API (no pyplot state), safe in any worker.
"""

from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    confusion_matrix,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_curve,
)

from pipelines import problems, registry
from pipelines.metrics import decide

if TYPE_CHECKING:
    from pipelines.evaluate import Evaluation
    from pipelines.spec import LoadedSpec

COLORS = {"candidate": "#1f77b4", "champion": "#ff7f0e"}


def _models(y_prob: np.ndarray, champion: np.ndarray | None,
            champion_version: str | None) -> dict[str, np.ndarray]:
    models = {"candidate": y_prob}
    if champion is not None:
        models[f"champion (v{champion_version})"] = champion
    return models


def _color(label: str) -> str:
    return COLORS[label.split(" ")[0]]


def curves(y: np.ndarray, models: dict[str, np.ndarray]) -> Figure:
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    roc, pr = fig.subplots(1, 2)
    for label, prob in models.items():
        fpr, tpr, _ = roc_curve(y, prob)
        precision, recall, _ = precision_recall_curve(y, prob)
        roc.plot(fpr, tpr, label=label, color=_color(label))
        pr.plot(recall, precision, label=label, color=_color(label))
    roc.plot([0, 1], [0, 1], ls=":", color="grey")
    pr.axhline(float(np.mean(y)), ls=":", color="grey", label="base rate")
    roc.set(title="ROC curve", xlabel="false positive rate", ylabel="true positive rate")
    pr.set(title="Precision-recall curve", xlabel="recall", ylabel="precision")
    for ax in (roc, pr):
        ax.legend(loc="lower right" if ax is roc else "upper right")
    return fig


def calibration(y: np.ndarray, models: dict[str, np.ndarray]) -> Figure:
    fig = Figure(figsize=(5, 4.2), layout="constrained")
    ax = fig.subplots()
    for label, prob in models.items():
        observed, predicted = calibration_curve(y, prob, n_bins=10, strategy="quantile")
        ax.plot(predicted, observed, marker="o", label=label, color=_color(label))
    ax.plot([0, 1], [0, 1], ls=":", color="grey", label="perfectly calibrated")
    ax.set(title="Calibration (10 quantile bins)", xlabel="mean predicted probability",
           ylabel="observed share of positives")
    ax.legend(loc="upper left")
    return fig


def confusion(y: np.ndarray, models: dict[str, np.ndarray], threshold: float) -> Figure:
    fig = Figure(figsize=(4.2 * len(models), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(models)))
    for ax, (label, prob) in zip(axes, models.items(), strict=True):
        matrix = confusion_matrix(y, (prob >= threshold).astype(int), labels=[0, 1])
        ax.imshow(matrix, cmap="Blues")
        for (row, col), count in np.ndenumerate(matrix):
            ax.text(col, row, f"{count:,}", ha="center", va="center",
                    color="white" if count > matrix.max() / 2 else "black")
        ax.set(title=f"{label} at {threshold:g}", xticks=[0, 1], yticks=[0, 1],
               xlabel="predicted", ylabel="actual")
    return fig


def class_confusion(y: np.ndarray, models: dict[str, np.ndarray], classes: np.ndarray
                    ) -> Figure:
    """Multiclass: each actual class's row normalised to 1, so small classes are readable."""
    fig = Figure(figsize=(4.6 * len(models), 4.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(models)))
    names = [str(c) for c in classes]
    for ax, (label, prob) in zip(axes, models.items(), strict=True):
        matrix = confusion_matrix(y, decide("multiclass", prob, 0.5, classes), labels=classes,
                                  normalize="true")
        ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
        for (row, col), share in np.ndenumerate(matrix):
            ax.text(col, row, f"{share:.2f}", ha="center", va="center",
                    color="white" if share > 0.5 else "black", fontsize=8)
        ticks = range(len(names))
        ax.set_xticks(ticks, names, rotation=45, ha="right")
        ax.set_yticks(ticks, names)
        ax.set(title=f"{label} (rows sum to 1)", xlabel="predicted", ylabel="actual")
    return fig


def per_class(y: np.ndarray, models: dict[str, np.ndarray], classes: np.ndarray) -> Figure:
    """Multiclass: precision, recall and F1 of every class, candidate beside champion."""
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    at = np.arange(len(classes))
    width = 0.8 / len(models)
    for number, (label, prob) in enumerate(models.items()):
        scores = precision_recall_fscore_support(
            y, decide("multiclass", prob, 0.5, classes), labels=classes, zero_division=0)[:3]
        for ax, values in zip(axes, scores, strict=True):
            ax.bar(at + number * width, values, width=width, label=label, color=_color(label))
    for ax, title in zip(axes, ("precision", "recall", "F1"), strict=True):
        ax.set_xticks(at + 0.4 - width / 2, [str(c) for c in classes], rotation=45, ha="right")
        ax.set(title=title, ylim=(0, 1.05))
    axes[0].legend(loc="lower left", fontsize=8)
    return fig


def predicted_actual(y: np.ndarray, models: dict[str, np.ndarray]) -> Figure:
    """Regression: every evaluation row as (actual, predicted), and the diagonal."""
    fig = Figure(figsize=(5.2, 4.6), layout="constrained")
    ax = fig.subplots()
    for label, pred in models.items():
        ax.scatter(y, pred, s=4, alpha=0.35, label=label, color=_color(label))
    low, high = float(np.min(y)), float(np.max(y))
    ax.plot([low, high], [low, high], ls=":", color="grey", label="perfect")
    ax.set(title="Predicted against actual", xlabel="actual", ylabel="predicted")
    ax.legend(loc="upper left")
    return fig


def residuals(y: np.ndarray, models: dict[str, np.ndarray]) -> Figure:
    """Regression: the distribution of prediction − actual."""
    fig = Figure(figsize=(6, 4.2), layout="constrained")
    ax = fig.subplots()
    for label, pred in models.items():
        ax.hist(pred - y, bins=50, alpha=0.5, label=label, color=_color(label))
    ax.axvline(0, ls=":", color="grey")
    ax.set(title="Residuals (predicted − actual)", xlabel="residual", ylabel="rows")
    ax.legend(loc="upper right")
    return fig


def slice_residuals(y: np.ndarray, pred: np.ndarray, keys: pd.DataFrame) -> Figure:
    """Regression: the candidate's residuals per slice value, as box plots."""
    groups = [(f"{column}={value}", (pred - y)[index])
              for column in keys.columns
              for value, index in keys[column].astype("object").to_frame()
              .groupby(column, dropna=False).indices.items()]
    fig = Figure(figsize=(8, 0.3 * len(groups) + 1.5), layout="constrained")
    ax = fig.subplots()
    if groups:
        ax.boxplot([g for _, g in groups], vert=False, showfliers=False)
        ax.set_yticks(range(1, len(groups) + 1), [name for name, _ in groups], fontsize=7)
    ax.axvline(0, ls=":", color="grey")
    ax.set(title="Residuals per slice (candidate)", xlabel="predicted − actual")
    return fig


def slice_chart(result: dict[str, Any]) -> Figure:
    """The gate metric per slice value, candidate beside champion; worst slices in red."""
    metric = result["worst_slices"]["metric"]
    worst = {(s["slice"], s["value"]) for s in result["worst_slices"]["slices"]}
    rows = result["slices"]
    theirs = {(s["slice"], s["value"]): s[metric] for s in result.get("champion_slices") or []}
    labels = [f"{r['slice']}={r['value']} ({r['rows']:,})" for r in rows]
    fig = Figure(figsize=(8, 0.28 * len(rows) + 1.5), layout="constrained")
    ax = fig.subplots()
    at = np.arange(len(rows))
    ax.barh(at + 0.2, [r[metric] for r in rows], height=0.4, label="candidate",
            color=["#d62728" if (r["slice"], r["value"]) in worst else COLORS["candidate"]
                   for r in rows])
    if theirs:
        ax.barh(at - 0.2, [theirs.get((r["slice"], r["value"]), np.nan) for r in rows],
                height=0.4, label="champion", color=COLORS["champion"])
    ax.set_yticks(at, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(title=f"{metric} per slice (rows); worst slices in red", xlabel=metric)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def problem_chart(history: pd.DataFrame, candidate: dict[str, Any]) -> Figure:
    """One line per known problem: its score for every registered version, then the candidate."""
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    versions = sorted(history["version"].unique()) if len(history) else []
    positions = {v: i for i, v in enumerate(versions)}
    markers = "osD^vP*X"
    for number, (name, scored) in enumerate(candidate.items()):
        past = history[history["problem"] == name].sort_values("version")
        nudge = (number - (len(candidate) - 1) / 2) * 0.04  # equal scores stay visible
        xs = [positions[v] + nudge for v in past["version"]] + [len(versions) + nudge]
        ax.plot(xs, [*past["score"], scored["score"]], marker=markers[number % len(markers)],
                label=name)
    ax.set_xticks(range(len(versions) + 1), [f"v{v}" for v in versions] + ["candidate"])
    ax.set(title="Known problems: share of cases solved, by version", ylim=(-0.05, 1.05),
           xlabel="model version", ylabel="score")
    if candidate:
        ax.legend(loc="lower left", fontsize=8)
    return fig


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _metrics_table(result: dict[str, Any]) -> str:
    """One row per metric: the candidate's value beside the champion's, with the change and
    its bootstrap interval ("–" where there is no champion to compare with)."""
    champion = result.get("champion_metrics") or {}
    deltas = result.get("comparison", {}).get("deltas", {})
    rows = [{"metric": k, "candidate": v, "champion": champion.get(k, "–"),
             "change": f"{deltas[k]['delta']:+.4f}" if k in deltas else "–",
             "interval": (f"{deltas[k]['low']:+.4f} to {deltas[k]['high']:+.4f}"
                          if k in deltas else "–")}
            for k, v in result["metrics"].items()]
    return _table(rows, ["metric", "candidate", "champion", "change", "interval"])


def _problems_table(result: dict[str, Any]) -> str:
    """One row per known problem: cases solved by the candidate and by the champion."""
    rows = [{"problem": k, "expected": v["expected"], "solved": f"{v['solved']}/{v['cases']}",
             "champion": (f"{result['champion_problems'][k]['solved']}/{v['cases']}"
                          if result.get("champion_problems") else "–")}
            for k, v in result["problems"].items()]
    return _table(rows, ["problem", "expected", "solved", "champion"])


def _agreement(result: dict[str, Any]) -> str:
    """The differential section: how often both models decide alike and the rows where they
    differ most, or a line saying there was no champion."""
    comparison = result.get("comparison") or {}
    if not comparison.get("disagreements"):
        return "<p>No champion to compare with.</p>"
    return (f"<p>Decisions agree with the champion's on {comparison['agreement_rate']:.1%} "
            f"of rows ({result['task']}).</p>"
            + "<h2>Rows where the models disagree most</h2>"
            + _table(comparison["disagreements"], list(comparison["disagreements"][0])))


def html_page(spec_name: str, run_id: str, result: dict[str, Any], images: dict[str, Path]
              ) -> str:
    """The evaluation report as one self-contained page (images inlined), so it can be
    logged as a single MLflow artifact and read without the server."""
    verdict = result["verdict"]
    state = "passed" if verdict["passed"] else "rejected"
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in verdict["reasons"]) or "<li>none</li>"
    reasons += "".join(f"<li>note: {html.escape(n)}</li>" for n in verdict["notes"])
    worst = result["worst_slices"]
    pictures = "".join(
        f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
        f"src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}'>"
        for title, path in images.items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(spec_name)} evaluation {run_id}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;
font-size:13px}}.passed{{color:#2a7d2a}}.rejected{{color:#c0392b}}img{{max-width:100%}}</style>
</head><body>
<h1>{html.escape(spec_name)}: candidate <span class="{state}">{state}</span></h1>
<p>MLflow run {run_id}; {result['eval_rows']:,} evaluation rows
(eval_dataset_id {result['eval_dataset_id'][:16]}…); champion:
{html.escape(str(result.get('champion_version') or 'none'))}.</p>
<h2>Why</h2><ul>{reasons}</ul>
<h2>Metrics</h2>{_metrics_table(result)}
{_agreement(result)}
<h2>Known problems</h2>{_problems_table(result)}
<h2>Worst slices by {worst['metric']}</h2>
{_table(worst['slices'], ["slice", "value", "rows", worst['metric']])}
{pictures}
</body></html>
"""


def figures(result: Evaluation, history: pd.DataFrame, as_json: dict[str, Any]
            ) -> dict[str, tuple[str, Figure]]:
    """The task's figures, by title: (file name, figure)."""
    y, champion = result.y, result.champion
    models = _models(result.candidate.pred, None if champion is None else champion.pred,
                     None if champion is None else champion.version)
    if result.task == "binary":
        drawn = {"ROC and precision-recall curves": ("curves.png", curves(y, models)),
                 "Calibration": ("calibration.png", calibration(y, models)),
                 "Confusion matrix": ("confusion.png", confusion(y, models, result.threshold))}
    elif result.task == "multiclass":
        assert result.classes is not None
        drawn = {"Confusion matrix (normalised)": ("confusion.png",
                                                   class_confusion(y, models, result.classes)),
                 "Per-class metrics": ("classes.png", per_class(y, models, result.classes))}
    else:
        drawn = {"Predicted against actual": ("predicted.png", predicted_actual(y, models)),
                 "Residuals": ("residuals.png", residuals(y, models))}
        if len(result.keys.columns):
            drawn["Residuals per slice"] = ("slice_residuals.png",
                                            slice_residuals(y, result.candidate.pred, result.keys))
    drawn["Slices"] = ("slices.png", slice_chart(as_json))
    drawn["Known problems over versions"] = ("problems.png",
                                             problem_chart(history, as_json["problems"]))
    return drawn


def log_report(spec: LoadedSpec, run_id: str, result: Evaluation) -> None:
    """Draw every figure, write the HTML page and log them under `evaluation/`."""
    as_json = result.to_json()
    drawn = figures(result, problems.history(spec), as_json)
    with tempfile.TemporaryDirectory(prefix="pitstop-report-") as tmp:
        folder = Path(tmp)
        images = {}
        for title, (name, figure) in drawn.items():
            figure.savefig(folder / name, dpi=90)
            images[title] = folder / name
        (folder / "report.html").write_text(html_page(spec.name, run_id, as_json, images))
        registry.log_directory(run_id, folder, "evaluation")
