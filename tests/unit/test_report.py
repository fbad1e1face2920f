"""The evaluation report: figures that render, a self-contained page, artifacts in MLflow.

What is shown: every figure (binary curves, calibration, confusion; multiclass normalised
confusion and per-class scores; regression predicted against actual, residuals, residuals
per slice; slices, known problems) draws the right series with and without a champion and
renders to a real PNG; the HTML page states the verdict, lists every reason and note
escaped, and embeds each image once as base64 of its exact bytes; `log_report` puts
`evaluation/report.html` and the task's PNGs in a real MLflow run, from a real evaluation
(`evaluate.judge` on tiny data with small real models).
"""

from __future__ import annotations

import base64
import io
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from pipelines import evaluate, registry, report, train
from pipelines.problems import Problem, ProblemSpec
from pipelines.spec import Evaluation as EvaluationSpec
from pipelines.spec import LoadedSpec
from pipelines.training_set import Split, split_frame

from .conftest import D1, D3, D4, amend, for_task

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REASONS = ["roc_auc 0.5500 is below the floor 0.6",
           "slice origin=<EWR> & co (812 rows): roc_auc 0.5100 is below the slice floor 0.6",
           'problem "fog": solves 3/12 cases, the champion 9/12 (allowed drop 0.00)']


def _predictions(rows: int = 400, seed: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.3).astype("int64")
    candidate = np.clip(0.4 * y + 0.6 * rng.random(rows), 0.001, 0.999)
    champion = np.clip(0.2 * y + 0.8 * rng.random(rows), 0.001, 0.999)
    return y, candidate, champion


def _models(with_champion: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    y, candidate, champion = _predictions()
    models = {"candidate": candidate}
    if with_champion:
        models["champion (v3)"] = champion
    return y, models


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _assert_rendered(figure: Figure) -> None:
    """A real PNG, clearly bigger than the same layout of empty axes."""
    png = _png(figure)
    empty = Figure(figsize=tuple(figure.get_size_inches()), layout="constrained")
    empty.subplots(1, len(figure.axes))
    assert png.startswith(PNG_MAGIC)
    assert len(png) > 1.1 * len(_png(empty))


def _slices(champion: bool) -> dict[str, Any]:
    rows = [{"slice": "origin", "value": v, "rows": n, "roc_auc": auc}
            for v, n, auc in [("EWR", 900, 0.71), ("JFK", 800, 0.58), ("LGA", 300, 0.66)]]
    return {"slices": rows,
            "champion_slices": [{**r, "roc_auc": r["roc_auc"] + 0.02} for r in rows]
            if champion else None,
            "worst_slices": {"metric": "roc_auc", "slices": [rows[1]]}}


NOTE = "the evaluation set is too small to decide on roc_auc: <about 900 rows> would do"


def _comparison() -> dict[str, Any]:
    """`comparison` as `Evaluation.to_json` writes it, made by hand so the page is tested
    apart from the differential test."""
    deltas = {name: {"metric": name, "candidate": ours, "champion": theirs,
                     "delta": ours - theirs, "low": ours - theirs - 0.03,
                     "high": ours - theirs + 0.02, "confidence": 0.9,
                     "higher_is_better": name == "roc_auc"}
              for name, ours, theirs in [("roc_auc", 0.55, 0.6), ("brier", 0.2, 0.21)]}
    disagreements = [{"reading_id": f"r<{i}>", "high": i % 2, "candidate": 0.9 - i / 10,
                      "champion": 0.1 + i / 10, "gap": 0.8 - i / 5} for i in range(3)]
    return {"deltas": deltas, "agreement_rate": 0.8125, "disagreements": disagreements}


def _result(champion: bool, passed: bool, notes: list[str] | None = None) -> dict[str, Any]:
    """A binary result in the shape `evaluate.Evaluation.to_json` gives (checked against a
    real one below), with or without a champion."""
    problem = {"problem": "fog", "score": 0.25, "solved": 3, "cases": 12, "expected": 1,
               "predictions": []}
    return {
        "task": "binary", "eval_dataset_id": "e" * 64, "eval_rows": 400, "threshold": 0.4,
        "classes": [0, 1],
        "reference": {"source": "the training labels", "mean": 0.3, "low": 0.0, "high": 1.0,
                      "spread": 0.0, "shares": {}},
        "metrics": {"roc_auc": 0.55, "pr_auc": 0.41, "log_loss": 0.61, "brier": 0.2},
        "champion_version": "3" if champion else None,
        "champion_metrics": {"roc_auc": 0.6, "pr_auc": 0.4, "log_loss": 0.6, "brier": 0.21}
        if champion else None,
        "comparison": _comparison() if champion else {}, **_slices(champion),
        "problems": {"fog": problem},
        "champion_problems": {"fog": {**problem, "score": 0.75, "solved": 9}}
        if champion else None,
        "verdict": {"passed": passed, "reasons": [] if passed else REASONS,
                    "notes": notes or []},
    }


def _labels(figure: Figure) -> list[list[str]]:
    """Legend labels of each axes."""
    return [[t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []
            for ax in figure.axes]


@pytest.mark.parametrize("with_champion", [False, True])
def test_curves_draw_both_models(with_champion: bool) -> None:
    y, models = _models(with_champion)
    figure = report.curves(y, models)
    roc, pr = _labels(figure)
    assert roc == list(models)
    assert pr == [*models, "base rate"]
    _assert_rendered(figure)


@pytest.mark.parametrize("with_champion", [False, True])
def test_calibration_draws_each_model_and_the_diagonal(with_champion: bool) -> None:
    y, models = _models(with_champion)
    figure = report.calibration(y, models)
    assert _labels(figure) == [[*models, "perfectly calibrated"]]
    _assert_rendered(figure)


@pytest.mark.parametrize("with_champion", [False, True])
def test_confusion_has_one_matrix_per_model_with_the_counts(with_champion: bool) -> None:
    y, models = _models(with_champion)
    figure = report.confusion(y, models, 0.4)
    assert len(figure.axes) == len(models)
    for ax, (label, prob) in zip(figure.axes, models.items(), strict=True):
        decided = prob >= 0.4
        counts = [((y == a) & (decided == p)).sum() for a in (0, 1) for p in (False, True)]
        assert [t.get_text() for t in ax.texts] == [f"{c:,}" for c in counts]
        assert ax.get_title() == f"{label} at 0.4"
    _assert_rendered(figure)


@pytest.mark.parametrize("with_champion", [False, True])
def test_slice_chart_marks_the_worst_slices(with_champion: bool) -> None:
    result = _slices(with_champion)
    figure = report.slice_chart(result)
    (ax,) = figure.axes
    bars = ax.patches
    assert len(bars) == (6 if with_champion else 3)
    widths = [b.get_width() for b in bars]
    assert widths[:3] == [0.71, 0.58, 0.66]
    if with_champion:
        assert widths[3:] == pytest.approx([0.73, 0.60, 0.68])
    red = [i for i, b in enumerate(bars[:3]) if b.get_facecolor()[:3] == (214 / 255, 39 / 255,
                                                                           40 / 255)]
    assert red == [1]  # JFK, the worst slice
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "origin=EWR (900)", "origin=JFK (800)", "origin=LGA (300)"]
    _assert_rendered(figure)


def _class_models(with_champion: bool) -> tuple[np.ndarray, dict[str, np.ndarray],
                                                np.ndarray]:
    """Three classes; probabilities that favour the true class for the candidate, less so for
    the champion."""
    rng = np.random.default_rng(3)
    classes = np.array(["cold", "hot", "mild"])
    y = rng.choice(classes, 300)
    onehot = (y[:, None] == classes[None, :]).astype(float)
    models = {}
    for label, weight in (("candidate", 0.6), ("champion (v3)", 0.3)):
        raw = weight * onehot + rng.random((300, 3))
        models[label] = raw / raw.sum(axis=1, keepdims=True)
    if not with_champion:
        del models["champion (v3)"]
    return y, models, classes


@pytest.mark.parametrize("with_champion", [False, True])
def test_class_confusion_has_one_normalised_matrix_per_model(with_champion: bool) -> None:
    y, models, classes = _class_models(with_champion)
    figure = report.class_confusion(y, models, classes)
    assert len(figure.axes) == len(models)
    for ax, (label, prob) in zip(figure.axes, models.items(), strict=True):
        matrix = confusion_matrix(y, classes[prob.argmax(axis=1)], labels=classes,
                                  normalize="true")
        assert [t.get_text() for t in ax.texts] == [f"{v:.2f}" for v in matrix.ravel()]
        assert ax.get_title() == f"{label} (rows sum to 1)"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["cold", "hot", "mild"]
    _assert_rendered(figure)


@pytest.mark.parametrize("with_champion", [False, True])
def test_per_class_bars_are_each_models_precision_recall_and_f1(with_champion: bool) -> None:
    y, models, classes = _class_models(with_champion)
    figure = report.per_class(y, models, classes)
    assert [ax.get_title() for ax in figure.axes] == ["precision", "recall", "F1"]
    expected = [precision_recall_fscore_support(y, classes[prob.argmax(axis=1)],
                                                labels=classes, zero_division=0)[:3]
                for prob in models.values()]
    for number, ax in enumerate(figure.axes):
        heights = [b.get_height() for b in ax.patches]
        assert heights == pytest.approx([v for scores in expected for v in scores[number]])
    assert _labels(figure)[0] == list(models)
    _assert_rendered(figure)


@pytest.mark.parametrize("with_champion", [False, True])
def test_regression_figures_draw_each_model(with_champion: bool) -> None:
    rng = np.random.default_rng(5)
    y = 10 * rng.random(300)
    models = {"candidate": y + rng.normal(0, 1, 300)}
    if with_champion:
        models["champion (v3)"] = y + rng.normal(1, 2, 300)
    scatter = report.predicted_actual(y, models)
    assert _labels(scatter) == [[*models, "perfect"]]
    _assert_rendered(scatter)
    hist = report.residuals(y, models)
    assert _labels(hist) == [list(models)]
    _assert_rendered(hist)


def test_slice_residuals_has_one_box_per_slice_value() -> None:
    rng = np.random.default_rng(6)
    y = rng.random(200)
    keys = pd.DataFrame({"sensor": rng.choice(["a", "b"], 200),
                         "hour_bucket": rng.choice(["0-6", "6-12", "12-24"], 200)})
    figure = report.slice_residuals(y, y + rng.normal(0, 0.1, 200), keys)
    (ax,) = figure.axes
    assert sorted(t.get_text() for t in ax.get_yticklabels()) == sorted([
        "sensor=a", "sensor=b", "hour_bucket=0-6", "hour_bucket=6-12", "hour_bucket=12-24"])
    _assert_rendered(figure)


def test_problem_chart_has_one_line_per_problem_over_versions() -> None:
    """A problem added after version 1 starts at version 2; the candidate comes last."""
    history = pd.DataFrame({"version": [1, 2, 3, 2, 3], "problem": ["fog"] * 3 + ["snow"] * 2,
                            "score": [0.5, 0.6, 0.7, 0.9, 1.0]})
    figure = report.problem_chart(history, {"fog": {"score": 0.8}, "snow": {"score": 0.2}})
    (ax,) = figure.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"fog", "snow"}
    # lines are nudged apart by 0.04 so equal scores stay visible
    assert list(lines["fog"].get_xdata()) == pytest.approx([-0.02, 0.98, 1.98, 2.98])
    assert list(lines["fog"].get_ydata()) == [0.5, 0.6, 0.7, 0.8]
    assert list(lines["snow"].get_xdata()) == pytest.approx([1.02, 2.02, 3.02])
    assert list(lines["snow"].get_ydata()) == [0.9, 1.0, 0.2]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["v1", "v2", "v3", "candidate"]
    _assert_rendered(figure)


def test_problem_chart_without_registered_versions() -> None:
    """No champion, no history: only the candidate's points."""
    empty = pd.DataFrame(columns=["version", "problem", "score"])
    figure = report.problem_chart(empty, {"fog": {"score": 0.25}})
    (ax,) = figure.axes
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [0] and list(line.get_ydata()) == [0.25]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["candidate"]
    _assert_rendered(figure)


def _images(folder: Path, count: int) -> dict[str, Path]:
    y, models = _models(True)
    images = {}
    for i in range(count):
        path = folder / f"figure{i}.png"
        path.write_bytes(_png(report.calibration(y[i:], {k: v[i:] for k, v in models.items()})))
        images[f"Figure <{i}>"] = path
    return images


def _escaped(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


@pytest.mark.parametrize("with_champion", [False, True])
def test_html_page_states_the_verdict_and_escapes_every_reason(tmp_path: Path,
                                                               with_champion: bool) -> None:
    images = _images(tmp_path, 3)
    page = report.html_page("sensors", "run123",
                            _result(with_champion, passed=False, notes=[NOTE]), images)
    assert page.startswith("<!doctype html>")
    assert '<span class="rejected">rejected</span>' in page
    items = re.findall(r"<li>(.*?)</li>", page)
    assert items == [_escaped(r) for r in REASONS] + [f"note: {_escaped(NOTE)}"]
    assert "<EWR>" not in page and 'problem "fog"' not in page and "<about" not in page
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert [base64.b64decode(e) for e in embedded] == [p.read_bytes() for p in images.values()]
    assert page.count("data:image/png;base64") == 3
    assert "<h2>Figure &lt;0&gt;</h2>" in page
    # the worst slices: slice, value, rows and the gate metric (no positives column)
    assert ("<h2>Worst slices by roc_auc</h2>\n<table><tr><th>slice</th><th>value</th>"
            "<th>rows</th><th>roc_auc</th></tr><tr><td>origin</td><td>JFK</td><td>800</td>"
            "<td>0.5800</td></tr></table>") in page
    if with_champion:
        assert "champion:\n3." in page
        assert "agree with the champion's on 81.2% of rows (binary)." in page
        assert "<td>r&lt;0&gt;</td>" in page  # a disagreement row, its entity escaped
        assert "<td>3/12</td><td>9/12</td>" in page
        assert "<td>roc_auc</td><td>0.5500</td><td>0.6000</td><td>-0.0500</td>" in page
        assert "<td>-0.0800 to -0.0300</td>" in page  # the interval of the change
    else:
        assert "champion:\nnone." in page
        assert "No champion to compare with." in page
        assert "<td>roc_auc</td><td>0.5500</td><td>–</td><td>–</td><td>–</td>" in page


@pytest.mark.parametrize(("notes", "items"), [
    ([], ["none"]),
    ([NOTE], ["none", f"note: {_escaped(NOTE)}"]),
])
def test_html_page_of_a_passed_candidate(notes: list[str], items: list[str]) -> None:
    page = report.html_page("sensors", "run123", _result(False, passed=True, notes=notes), {})
    assert '<span class="passed">passed</span>' in page
    assert re.findall(r"<li>(.*?)</li>", page) == items
    assert "data:image/png" not in page


# --- real evaluations: `evaluate.judge` on tiny data with small real models ---------------

CLASSES = np.array(["cold", "hot", "mild"])
CANDIDATE_MODEL = {"multiclass": {"params": {"C": 100.0}}}
"""The candidate of each task is `conftest.ESTIMATORS`'; the champion is regularised harder."""
CHAMPION_MODEL = {"binary": {"params": {"C": 0.05}}, "multiclass": {"params": {"C": 1.0}},
                  "regression": {"estimator": "sklearn.linear_model.Ridge",
                                 "params": {"alpha": 2.0}}}


def _frame(task: str, rows: int = 288, seed: int = 4) -> pd.DataFrame:
    """Rows of the tiny pipeline's training set over D1..D4 with a target of `task`."""
    rng = np.random.default_rng(seed)
    value = rng.random(rows)
    noisy = value + rng.normal(0, 0.08, rows)
    target: Any
    if task == "binary":
        target = (noisy > 0.6).astype("int64")
    elif task == "multiclass":
        target = np.array(["cold", "mild", "hot"])[np.digitize(noisy, [0.35, 0.65])]
    else:
        target = 10 * noisy
    cutoff = pd.date_range(pd.Timestamp(D1, tz="UTC"), pd.Timestamp(D4, tz="UTC"),
                           periods=rows + 1, inclusive="left")
    return pd.DataFrame({"reading_id": [f"r<{i}>" for i in range(rows)], "cutoff": cutoff,
                         "sensor": rng.choice(["a", "b", "c"], rows), "last__value": value,
                         "high": target})


def _task_spec(tiny: LoadedSpec, task: str) -> LoadedSpec:
    """The tiny spec for `task`, sliced by sensor, under a model name no one registered."""
    return for_task(tiny, task, CANDIDATE_MODEL.get(task),
                 model_name=f"test-report-{uuid.uuid4().hex[:12]}",
                 evaluation=EvaluationSpec(slices=["sensor"], bootstrap=20,
                                           criteria={"slice_min_rows": 10}))


def _fog(folder: Path, task: str, evaluation: pd.DataFrame) -> Problem:
    """A known problem: ten evaluation rows, expecting what fits the task."""
    path = folder / "fog.csv"
    evaluation.head(10).to_csv(path, index=False)
    expected = {"binary": {"expected": 1}, "multiclass": {"expected": "hot"},
                "regression": {"max_error": 1.0}}[task]
    return Problem("fog", ProblemSpec(description="fog", cases="fog.csv", **expected), path,
                   "sha")


def _judged(spec: LoadedSpec, folder: Path, with_champion: bool) -> evaluate.Evaluation:
    """Candidate (and champion, another small model) fitted on D1..D3, judged on D3."""
    task = spec.pipeline.model.task
    training, evaluation = split_frame(_frame(task), spec, Split(D1, D3, D4))
    candidate = train.fit(spec, training)
    champion = (train.fit(amend(spec, model=CHAMPION_MODEL[task]), training)
                if with_champion else None)
    return evaluate.judge(spec, training, evaluation, candidate, champion,
                          "3" if with_champion else None, [_fog(folder, task, evaluation)],
                          "e" * 64)


@pytest.mark.parametrize("with_champion", [
    False, True])
def test_the_hand_made_result_has_the_shape_of_a_real_evaluation(
        tiny: LoadedSpec, tmp_path: Path, with_champion: bool) -> None:
    """What the page tests above feed `html_page` has the keys a real evaluation logs; a
    slice row is its slice, value, rows and every metric of the task (no positives)."""
    real = _judged(_task_spec(tiny, "binary"), tmp_path, with_champion).to_json()
    made = _result(with_champion, passed=False)
    assert set(made) == set(real)
    for key in ("reference", "verdict", "worst_slices", "comparison"):
        assert set(made[key]) == set(real[key])
    assert set(made["problems"]["fog"]) == set(real["problems"]["fog"])
    assert set(real["slices"][0]) == {"slice", "value", "rows", *real["metrics"]}
    assert set(made["slices"][0]) <= set(real["slices"][0])
    if with_champion:
        assert set(made["comparison"]["deltas"]["roc_auc"]) == set(
            real["comparison"]["deltas"]["roc_auc"])
        assert set(made["champion_problems"]["fog"]) == set(real["champion_problems"]["fog"])


FIGURES = {"binary": {"curves.png", "calibration.png", "confusion.png"},
           "multiclass": {"confusion.png", "classes.png"},
           "regression": {"predicted.png", "residuals.png", "slice_residuals.png"}}
TITLES = {"binary": ["ROC and precision-recall curves", "Calibration", "Confusion matrix"],
          "multiclass": ["Confusion matrix (normalised)", "Per-class metrics"],
          "regression": ["Predicted against actual", "Residuals", "Residuals per slice"]}
WIDTH = {"binary": 378, "multiclass": 414}
"""Pixels of one model's confusion matrix (4.2 and 4.6 inches at 90 dpi)."""


@pytest.mark.parametrize(("task", "with_champion"), [
    ("binary", False), ("multiclass", False), ("regression", False),
    ("binary", True),
    ("multiclass", True),
    ("regression", True),
])
def test_log_report_puts_the_page_and_the_tasks_figures_in_the_run(
        tiny: LoadedSpec, tmp_path: Path, task: str, with_champion: bool) -> None:
    """On a real MLflow run, from a real evaluation: `evaluation/` holds the page, the task's
    figures, the slice chart and the problem chart, each embedded once in the page. The
    spec's model is not registered, so the problem history is empty."""
    import mlflow
    import mlflow.artifacts

    spec = _task_spec(tiny, task)
    result = _judged(spec, tmp_path, with_champion)
    assert (result.task, result.champion is not None) == (task, with_champion)
    experiment = registry.experiment_id(f"test-report-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run(experiment_id=experiment) as run:
        pass
    report.log_report(spec, run.info.run_id, result)
    client = registry.client()
    listed = {Path(f.path).name: f.file_size for f in
              client.list_artifacts(run.info.run_id, "evaluation")}
    assert set(listed) == {"report.html", "slices.png", "problems.png", *FIGURES[task]}
    assert all(size > 5_000 for size in listed.values())
    page = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/evaluation/report.html")
    assert page.count("data:image/png;base64") == len(listed) - 1
    for title in [*TITLES[task], "Slices", "Known problems over versions"]:
        assert f"<h2>{title}</h2>" in page
    assert f"MLflow run {run.info.run_id}" in page
    assert "<td>fog</td>" in page
    assert ("agree with the champion's" in page) is with_champion
    if task in WIDTH:
        # one confusion matrix per model, side by side: the champion's doubles the width
        confusion = client.download_artifacts(run.info.run_id, "evaluation/confusion.png",
                                              str(tmp_path))
        png = Path(confusion).read_bytes()
        assert png.startswith(PNG_MAGIC)
        assert int.from_bytes(png[16:20], "big") == WIDTH[task] * (2 if with_champion else 1)
