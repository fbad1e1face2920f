"""The evaluation report: figures that render, a self-contained page, artifacts in MLflow.

What is shown: every figure (curves, calibration, confusion, slices, known problems) draws
the right series with and without a champion and renders to a real PNG; the HTML page
states the verdict, lists every reason escaped, and embeds each image once as base64 of its
exact bytes; `log_report` puts `evaluation/report.html` and the five PNGs in a real MLflow run.
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

from pipelines import differential, registry, report
from pipelines.spec import LoadedSpec

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
    rows = [{"slice": "origin", "value": v, "rows": n, "positives": n // 3, "roc_auc": auc}
            for v, n, auc in [("EWR", 900, 0.71), ("JFK", 800, 0.58), ("LGA", 300, 0.66)]]
    return {"slices": rows,
            "champion_slices": [{**r, "roc_auc": r["roc_auc"] + 0.02} for r in rows]
            if champion else None,
            "worst_slices": {"metric": "roc_auc", "slices": [rows[1]]}}


def _result(champion: bool, passed: bool) -> dict[str, Any]:
    """A result in the shape `evaluate.evaluate_candidate` logs, with or without a champion."""
    y, candidate, theirs = _predictions()
    frame = pd.DataFrame({"reading_id": [f"r<{i}>" for i in range(len(y))], "high": y})
    result: dict[str, Any] = {
        "eval_dataset_id": "e" * 64, "eval_rows": len(y), "threshold": 0.4,
        "metrics": {"roc_auc": 0.55, "pr_auc": 0.41, "log_loss": 0.61, "brier": 0.2},
        "champion_version": "3" if champion else None,
        "champion_metrics": {"roc_auc": 0.6, "pr_auc": 0.4, "log_loss": 0.6, "brier": 0.21}
        if champion else None,
        "comparison": {}, **_slices(champion),
        "problems": {"fog": {"problem": "fog", "score": 0.25, "solved": 3, "cases": 12,
                             "expected": 1, "probabilities": []}},
        "champion_problems": {"fog": {"problem": "fog", "score": 0.75, "solved": 9, "cases": 12,
                                      "expected": 1, "probabilities": []}} if champion else None,
        "verdict": {"passed": passed, "reasons": [] if passed else REASONS},
    }
    if champion:
        deltas = differential.bootstrap_deltas(y, candidate, theirs, 20, 0, 0.9)
        result["comparison"] = {
            "deltas": {k: d.to_dict() for k, d in deltas.items()},
            "agreement_rate": differential.agreement_rate(candidate, theirs, 0.4),
            "disagreements": differential.disagreements(frame, ["reading_id", "high"], candidate,
                                                        theirs, 5).to_dict(orient="records"),
        }
    return result


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


@pytest.mark.parametrize("with_champion", [False, True])
def test_html_page_states_the_verdict_and_escapes_every_reason(tmp_path: Path,
                                                               with_champion: bool) -> None:
    images = _images(tmp_path, 3)
    page = report.html_page("sensors", "run123", _result(with_champion, passed=False), images)
    assert page.startswith("<!doctype html>")
    assert '<span class="rejected">rejected</span>' in page
    items = re.findall(r"<li>(.*?)</li>", page)
    assert items == [r.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                     .replace('"', "&quot;") for r in REASONS]
    assert "<EWR>" not in page and 'problem "fog"' not in page
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert [base64.b64decode(e) for e in embedded] == [p.read_bytes() for p in images.values()]
    assert page.count("data:image/png;base64") == 3
    assert "<h2>Figure &lt;0&gt;</h2>" in page
    if with_champion:
        assert "champion:\n3." in page
        assert re.search(r"agree with the champion's on \d+\.\d% of rows at threshold 0\.4", page)
        assert "<td>r&lt;" in page  # a disagreement row, its entity escaped
        assert "<td>3/12</td><td>9/12</td>" in page
    else:
        assert "champion:\nnone." in page
        assert "No champion to compare with." in page


def test_html_page_of_a_passed_candidate(tmp_path: Path) -> None:
    page = report.html_page("sensors", "run123", _result(False, passed=True), {})
    assert '<span class="passed">passed</span>' in page
    assert re.findall(r"<li>(.*?)</li>", page) == ["none"]
    assert "data:image/png" not in page


@pytest.mark.parametrize("with_champion", [False, True])
def test_log_report_puts_the_page_and_figures_in_the_run(tiny: LoadedSpec, tmp_path: Path,
                                                         with_champion: bool) -> None:
    """On a real MLflow run; the spec's model is not registered, so the problem history is
    empty and the candidate stands alone in the problem chart."""
    import mlflow
    import mlflow.artifacts

    spec = LoadedSpec(tiny.pipeline.model_copy(
        update={"model_name": f"test-report-{uuid.uuid4().hex[:12]}"}), tiny.path)
    y, candidate, champion = _predictions()
    experiment = registry.experiment_id(f"test-report-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run(experiment_id=experiment) as run:
        pass
    result = _result(with_champion, passed=False)
    report.log_report(spec, run.info.run_id, result, y, candidate,
                      champion if with_champion else None)
    client = registry.client()
    listed = {Path(f.path).name: f.file_size for f in
              client.list_artifacts(run.info.run_id, "evaluation")}
    assert set(listed) == {"report.html", "curves.png", "calibration.png", "confusion.png",
                           "slices.png", "problems.png"}
    assert all(size > 5_000 for size in listed.values())
    page = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/evaluation/report.html")
    assert page.count("data:image/png;base64") == 5
    assert f"MLflow run {run.info.run_id}" in page
    # one confusion matrix per model, side by side: the champion's doubles the width
    confusion = client.download_artifacts(run.info.run_id, "evaluation/confusion.png", str(
        tmp_path))
    png = Path(confusion).read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert int.from_bytes(png[16:20], "big") == (756 if with_champion else 378)
