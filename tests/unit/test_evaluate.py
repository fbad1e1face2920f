"""Evaluation: slices that add up, a declarative gate, guardrails per task, the judged result."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipelines import evaluate
from pipelines.differential import Delta
from pipelines.errors import DataError
from pipelines.metrics import metric_names, score
from pipelines.spec import Criteria, Guardrails, SliceSpec


def _scores(rows: int = 500, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.3).astype("int64")
    p = np.clip(0.3 * y + 0.7 * rng.random(rows), 0.001, 0.999)
    return y, p


def test_slice_rows_add_up() -> None:
    """Per slice column, rows sum to the whole, missing values included."""
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
    rows = evaluate.slice_metrics("binary", keys, y, p, 0.5, None)
    for column in ("origin", "hour"):
        mine = [r for r in rows if r.slice == column]
        assert sum(r.rows for r in mine) == len(frame)
        assert len(mine) == frame[column].nunique(dropna=False)
        assert "nan" in {r.value for r in mine}
    jfk = next(r for r in rows if r.slice == "origin" and r.value == "JFK")
    mask = (frame["origin"] == "JFK").to_numpy()
    assert jfk.rows == int(mask.sum())
    assert set(jfk.metrics) == set(metric_names("binary"))
    assert jfk.metrics == pytest.approx(score("binary", y[mask], p[mask]))


def test_slice_of_one_class_has_nan_auc() -> None:
    frame = pd.DataFrame({"y": [0, 1, 0, 0], "s": ["a", "a", "b", "b"]})
    keys = evaluate.slice_keys(frame, [SliceSpec(column="s")])
    rows = {r.value: r for r in evaluate.slice_metrics("binary", keys, frame["y"].to_numpy(),
                                                         np.full(4, 0.5), 0.5, None)}
    assert rows["a"].metrics["roc_auc"] == 0.5
    assert math.isnan(rows["b"].metrics["roc_auc"])


GOOD = {"roc_auc": 0.80, "pr_auc": 0.50, "log_loss": 0.40, "brier": 0.15}


def _deltas(candidate: dict[str, float], champion: dict[str, float], spread: float = 0.0
            ) -> dict[str, Delta]:
    """Changes with an interval of +-spread around the point change."""
    return {k: Delta(metric=k, candidate=candidate[k], champion=champion[k],
                     delta=candidate[k] - champion[k], low=candidate[k] - champion[k] - spread,
                     high=candidate[k] - champion[k] + spread, confidence=0.95,
                     higher_is_better=k in ("roc_auc", "pr_auc")) for k in candidate}


def _decide(candidate: dict[str, float], champion: dict[str, float] | None, criteria: Criteria,
            spread: float = 0.0) -> evaluate.Verdict:
    deltas = _deltas(candidate, champion, spread) if champion is not None else None
    return evaluate.decide("binary", candidate, criteria, deltas=deltas, rows=10_000)


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
    assert verdict == evaluate.Verdict(False, [expected], [])


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


def _slice(value: str, rows: int, roc_auc: float, **extra: float) -> evaluate.SliceScore:
    return evaluate.SliceScore("origin", value, rows, {**GOOD, "roc_auc": roc_auc, **extra})


def test_slice_floor_applies_to_slices_with_enough_rows() -> None:
    criteria = Criteria(slice_min={"roc_auc": 0.6}, slice_min_rows=100)
    slices = [_slice("EWR", 500, 0.58), _slice("JFK", 99, 0.40), _slice("LGA", 100, 0.61),
              _slice("XYZ", 300, math.nan)]
    verdict = evaluate.decide("binary", GOOD, criteria, slices=slices)
    assert verdict.reasons == [
        "slice origin=EWR (500 rows): roc_auc 0.5800 is below the slice floor 0.6"]


def test_problem_reasons_refuse_the_candidate() -> None:
    verdict = evaluate.decide("binary", GOOD, Criteria(),
                              problem_reasons=["problem fog: solves 3/15"])
    assert not verdict.passed and verdict.reasons == ["problem fog: solves 3/15"]


def test_worst_slices_skip_small_and_undefined_slices() -> None:
    slices = [_slice("A", 500, 0.70), _slice("B", 50, 0.10), _slice("C", 500, 0.65),
              _slice("D", 500, math.nan), _slice("E", 500, 0.90)]
    worst = evaluate.worst_slices("binary", slices, "roc_auc", min_rows=100, count=2)
    assert [s.value for s in worst] == ["C", "A"]
    brier = [_slice("A", 500, 0.7, brier=0.1), _slice("C", 500, 0.7, brier=0.3)]
    assert [s.value for s in evaluate.worst_slices("binary", brier, "brier", 1, 1)] == ["C"]


def test_slice_buckets_are_right_open_and_named() -> None:
    frame = pd.DataFrame({"hour": [0, 8, 9, 12, 13, 23, 24]})
    keys = evaluate.slice_keys(frame, [SliceSpec(column="hour", bins=[0, 9, 13, 24])])
    assert list(keys.columns) == ["hour_bucket"]
    assert [str(v) for v in keys["hour_bucket"]] == ["0-9", "0-9", "9-13", "9-13", "13-24",
                                                     "13-24", "nan"]


def test_unknown_slice_column_is_a_data_error() -> None:
    with pytest.raises(DataError, match="evaluation.slices: column 'gate'"):
        evaluate.slice_keys(pd.DataFrame({"hour": [1]}), [SliceSpec(column="gate")])


def _ref(mean: float = 0.3, low: float = 0.0, high: float = 1.0, spread: float = 0.0,
         shares: dict[str, float] | None = None) -> evaluate.Reference:
    return evaluate.Reference("the training labels", mean, low, high, spread, shares or {})


@pytest.mark.parametrize(("task", "pred", "ref", "expected"), [
    ("binary", np.full(100, 0.3), _ref(), "predictions are constant"),
    ("binary", np.linspace(-0.2, 0.8, 100), _ref(), "outside [0, 1]"),
    ("binary", np.r_[np.linspace(0, 1, 99), np.nan], _ref(0.5), "1 predictions are not finite"),
    ("binary", np.linspace(0.5, 0.9, 100), _ref(0.2), "mean prediction 0.7000 is more than 0.1 "
     "from 0.2000, that of the training labels"),
    ("regression", np.full(50, 7.0), _ref(7, 0, 20, 5), "predictions are constant"),
    ("regression", np.linspace(30, 40, 50), _ref(10, 0, 40, 5), "mean prediction 35 is 5.00 "
     "standard deviations"),
    ("regression", np.linspace(-20, 40, 50), _ref(10, 0, 40, 5), "beyond [0, 40]"),
    ("regression", np.r_[np.ones(9), np.inf], _ref(1, 0, 2, 1), "1 predictions are not finite"),
    ("multiclass", np.tile([0.5, 0.3, 0.1], (20, 1)), _ref(shares={"a": 1.0}),
     "20 rows' class probabilities do not sum to 1"),
    ("multiclass", np.r_[np.tile([0.8, 0.1, 0.1], (18, 1)), np.tile([0.1, 0.8, 0.1], (2, 1))],
     _ref(shares={"a": 0.4, "b": 0.3, "c": 0.3}), "class 'a' has mean probability 73.0%, "
     "against 40.0% in the training labels"),
], ids=["constant", "out-of-range", "nan", "mean-shift", "regression-constant",
        "regression-mean-shift", "regression-range", "regression-inf", "multiclass-sum",
        "multiclass-shares"])
def test_guardrails_name_what_is_wrong(task: str, pred: np.ndarray, ref: evaluate.Reference,
                                       expected: str) -> None:
    found = evaluate.check_guardrails(task, pred, ref, Guardrails(), np.array(["a", "b", "c"]))
    assert any(expected in f for f in found), found


def test_guardrails_pass_sane_predictions() -> None:
    _, p = _scores()
    assert evaluate.check_guardrails("binary", p, _ref(float(np.mean(p))), Guardrails(),
                                     None) == []
    values = np.linspace(0, 20, 100)
    assert evaluate.check_guardrails("regression", values, _ref(10, 0, 20, 6), Guardrails(),
                                     None) == []


def test_an_uncertain_calibrated_multiclass_model_passes_against_the_labels() -> None:
    """Found by a stranger's 4-class pipeline: a weak but calibrated first model decides the
    majority class for most rows (argmax), yet its mean probabilities match the label shares.
    The rule compares those, like binary's mean prediction; decision shares refused it."""
    labels = np.array(["a"] * 40 + ["b"] * 30 + ["c"] * 30)
    pred = np.tile([0.40, 0.30, 0.30], (100, 1)) + np.linspace(-0.01, 0.01, 100)[:, None] * [
        1, -1, 0]
    ref = evaluate.reference("multiclass", labels, None, np.array(["a", "b", "c"]))
    assert ref.shares == {"a": 0.4, "b": 0.3, "c": 0.3}
    assert evaluate.check_guardrails("multiclass", pred, ref, Guardrails(),
                                     np.array(["a", "b", "c"])) == []
    champion = evaluate.Scored("2", np.tile([0.7, 0.2, 0.1], (100, 1)), {}, [], {})
    against = evaluate.reference("multiclass", labels, champion, np.array(["a", "b", "c"]))
    assert against.shares == pytest.approx({"a": 0.7, "b": 0.2, "c": 0.1})
    assert "class 'a' has mean probability 40.0%, against 70.0% in champion version 2" in \
        evaluate.check_guardrails("multiclass", pred, against, Guardrails(),
                                  np.array(["a", "b", "c"]))[0]


def test_the_reference_is_the_champion_when_there_is_one() -> None:
    """A seasonal window moves the champion too: its predictions, not the training labels,
    are what the candidate's mean is held to."""
    champion = evaluate.Scored("3", np.full(10, 0.6), {}, [], {})
    ref = evaluate.reference("binary", np.array([0, 0, 0, 1]), champion, None)
    assert ref.mean == pytest.approx(0.6) and "champion version 3" in ref.source
    assert evaluate.reference("binary", np.array([0, 0, 0, 1]), None, None).mean == 0.25
    regression = evaluate.reference("regression", np.array([1.0, 3.0]), None, None)
    assert (regression.mean, regression.low, regression.high, regression.spread) == (2, 1, 3, 1)


def test_slice_ceilings_refuse_a_regression_slice() -> None:
    criteria = Criteria(slice_max={"rmse": 10.0}, slice_min_rows=50)
    slices = [evaluate.SliceScore("engines", "2", 80, {"rmse": 12.5}),
              evaluate.SliceScore("engines", "4", 20, {"rmse": 40.0})]
    verdict = evaluate.decide("regression", {"rmse": 8.0}, criteria, slices=slices)
    assert verdict.reasons == [
        "slice engines=2 (80 rows): rmse 12.5000 is above the slice ceiling 10.0"]


def test_a_too_small_evaluation_set_is_named_with_the_rows_needed() -> None:
    """An interval of +-0.04 cannot show a drop of at most 0.01: the note says so and how
    many rows would do (0.04/0.01 squared times the rows)."""
    criteria = Criteria(max_regression={"roc_auc": 0.01})
    verdict = _decide({**GOOD, "roc_auc": 0.80}, GOOD, criteria, spread=0.04)
    assert not verdict.passed
    assert "too small to decide on roc_auc" in verdict.reasons[0]
    assert verdict.notes == ["the evaluation set is too small to decide on roc_auc: its "
                             "interval is ±0.0400 on 10000 rows, wider than max_regression "
                             "0.01; about 160000 rows would be needed (widen the evaluation "
                             "window)"]
    assert _decide({**GOOD, "roc_auc": 0.80}, GOOD, criteria, spread=0.004).notes == []


def test_metric_keys_keep_mlflow_happy() -> None:
    assert evaluate.metric_key("slice", "hour_bucket", "9-13", "roc_auc") == \
        "slice.hour_bucket.9-13.roc_auc"
    assert evaluate.metric_key("slice", "x", "a(b),c", "brier") == "slice.x.a_b__c.brier"


def test_slices_come_in_bucket_order_with_missing_last() -> None:
    frame = pd.DataFrame({"hour": [23, 0, 12, 9, 30, 14], "o": ["b", "a", None, "a", "b", "c"]})
    y, p = np.array([0, 1, 0, 1, 1, 0]), np.linspace(0.1, 0.9, 6)
    keys = evaluate.slice_keys(frame, [SliceSpec(column="hour", bins=[0, 9, 13, 24]),
                                       SliceSpec(column="o")])
    rows = evaluate.slice_metrics("binary", keys, y, p, 0.5, None)
    assert [(r.slice, r.value) for r in rows] == [
        ("hour_bucket", "0-9"), ("hour_bucket", "9-13"), ("hour_bucket", "13-24"),
        ("hour_bucket", "nan"), ("o", "a"), ("o", "b"), ("o", "c"), ("o", "nan")]


def _task_spec(tiny, task: str, estimator: str, target: str, **evaluation):
    """The tiny spec as a `task` pipeline over `_task_frame`'s columns."""
    from pipelines.spec import Evaluation, LoadedSpec, ModelSpec

    pipeline = tiny.pipeline.model_copy(update={
        "model": ModelSpec(task=task, estimator=estimator, seed=3, features=["x", "city"],
                           categorical=["city"], params={"max_iter": 30}),
        "label": tiny.pipeline.label.model_copy(update={"target": target}),
        "evaluation": Evaluation(slices=[SliceSpec(column="city")], bootstrap=50, **evaluation),
    })
    return LoadedSpec(pipeline, tiny.path)


def _task_frame(rows: int = 900, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.random(rows)
    city = rng.choice(["north", "south", "east"], rows)
    noise = rng.normal(0, 0.05, rows)
    return pd.DataFrame({
        "reading_id": [f"r{i}" for i in range(rows)],
        "cutoff": pd.date_range("2024-01-01", periods=rows, freq="min", tz="UTC"),
        "x": x, "city": city,
        "high": ((x + noise > 0.5) ^ (city == "north")).astype("int64"),
        "level": np.where(city == "north", "n", np.where(x + noise > 0.5, "hi", "lo")),
        "amount": 10 * x + 5 * (city == "north") + noise,
    })


TASKS = [
    ("binary", "sklearn.ensemble.HistGradientBoostingClassifier", "high", "roc_auc"),
    ("multiclass", "sklearn.ensemble.HistGradientBoostingClassifier", "level", "macro_f1"),
    ("regression", "sklearn.ensemble.HistGradientBoostingRegressor", "amount", "r2"),
]


@pytest.mark.parametrize(("task", "estimator", "target", "metric"), TASKS,
                         ids=[t[0] for t in TASKS])
def test_judge_passes_a_good_candidate_against_itself(tiny, task: str, estimator: str,
                                                      target: str, metric: str) -> None:
    """A real model judged with itself as champion: every metric of the task, a zero change,
    full agreement, no guardrail, and a pass."""
    from pipelines import train

    spec = _task_spec(tiny, task, estimator, target,
                      criteria=Criteria(min={metric: 0.8}, max_regression={metric: 0.05}))
    frame = _task_frame()
    training, rows = frame.iloc[:600], frame.iloc[600:]
    model = train.fit(spec, training)
    result = evaluate.judge(spec, training, rows, model, model, "1", [], "e" * 64)
    assert set(result.candidate.metrics) == set(metric_names(task))
    assert result.verdict.passed, result.verdict.reasons
    assert result.deltas[metric].delta == 0 and result.agreement_rate == 1.0
    assert {s.value for s in result.candidate.slices} == {"north", "south", "east"}
    summary = result.summary()
    assert summary.eval_rows == 300 and summary.champion_version == "1"
    assert result.to_json()["task"] == task


@pytest.mark.parametrize(("task", "estimator", "target", "metric"), TASKS,
                         ids=[t[0] for t in TASKS])
def test_judge_stops_a_constant_model(tiny, task: str, estimator: str, target: str,
                                      metric: str) -> None:
    from pipelines import train

    dummy = ("sklearn.dummy.DummyRegressor" if task == "regression"
             else "sklearn.dummy.DummyClassifier")
    spec = _task_spec(tiny, task, dummy, target)
    spec = type(spec)(spec.pipeline.model_copy(update={"model": spec.pipeline.model.model_copy(
        update={"params": {}})}), spec.path)
    frame = _task_frame()
    model = train.fit(spec, frame.iloc[:600])
    with pytest.raises(evaluate.GuardrailsFailed, match="predictions are constant"):
        evaluate.judge(spec, frame.iloc[:600], frame.iloc[600:], model, None, None, [], "e")


def test_judge_refuses_a_regression_over_its_slice_ceiling(tiny) -> None:
    """A regressor that ignores `city` misses north's offset: that slice's rmse is over the
    ceiling, and the reason names it."""
    from pipelines import train

    spec = _task_spec(tiny, "regression", "sklearn.ensemble.HistGradientBoostingRegressor",
                      "amount", criteria=Criteria(slice_max={"rmse": 1.0}, slice_min_rows=20))
    blind = type(spec)(spec.pipeline.model_copy(update={"model": spec.pipeline.model.model_copy(
        update={"features": ["x"], "categorical": []})}), spec.path)
    frame = _task_frame()
    model = train.fit(blind, frame.iloc[:600])
    result = evaluate.judge(spec, frame.iloc[:600], frame.iloc[600:], model, None, None, [],
                            "e")
    assert not result.verdict.passed
    assert any(r.startswith("slice city=north") and "above the slice ceiling 1.0" in r
               for r in result.verdict.reasons), result.verdict.reasons


def test_judge_refuses_a_regression_that_loses_a_known_problem(tiny, tmp_path) -> None:
    """The champion knows north's offset and solves the north cases within max_error; a
    candidate blind to the city does not, and the reason names the problem."""
    from pipelines import problems, train
    from pipelines.problems import Problem, ProblemSpec

    spec = _task_spec(tiny, "regression", "sklearn.ensemble.HistGradientBoostingRegressor",
                      "amount")
    blind = type(spec)(spec.pipeline.model_copy(update={"model": spec.pipeline.model.model_copy(
        update={"features": ["x"], "categorical": []})}), spec.path)
    frame = _task_frame()
    training, rows = frame.iloc[:600], frame.iloc[600:]
    cases = tmp_path / "north.csv"
    rows[rows["city"] == "north"].head(12).to_csv(cases, index=False)
    problem = Problem("north", ProblemSpec(description="north's offset", max_error=1.0,
                                           cases=cases.name), cases, "0" * 64)
    problems.check_declaration(cases, "north", problem.spec, "regression")
    champion, candidate = train.fit(spec, training), train.fit(blind, training)
    result = evaluate.judge(spec, training, rows, candidate, champion, "1", [problem], "e")
    assert result.champion.problems["north"].solved == 12
    assert result.candidate.problems["north"].solved < 12
    assert any(r.startswith("problem north: solves") for r in result.verdict.reasons)


def test_judge_stops_a_shifted_regression(tiny) -> None:
    """Predictions on another scale (here +100, eight standard deviations) never register."""
    from pipelines import train

    spec = _task_spec(tiny, "regression", "sklearn.ensemble.HistGradientBoostingRegressor",
                      "amount")
    frame = _task_frame()
    shifted = train.fit(spec, frame.iloc[:600].assign(amount=lambda f: f["amount"] + 100))
    with pytest.raises(evaluate.GuardrailsFailed, match="standard deviations"):
        evaluate.judge(spec, frame.iloc[:600], frame.iloc[600:], shifted, None, None, [], "e")
