"""Training: a time-based split without overlap and a seeded, reproducible model."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines import train
from pipelines.errors import DataError
from pipelines.spec import LoadedSpec, ModelSpec

D0, D1, D2, D3, D4, D5 = (dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(-1, 5))


def _frame(rows_per_day: int = 48, days: int = 3, seed: int = 0) -> pd.DataFrame:
    """A training frame of the tiny spec: cutoffs spread over [D1, D1 + days)."""
    rng = np.random.default_rng(seed)
    rows = rows_per_day * days
    cutoff = pd.date_range(pd.Timestamp(D1, tz="UTC"), periods=rows,
                           freq=pd.Timedelta(days=1) / rows_per_day)
    value = rng.random(rows)
    city = rng.choice(["north", "south", "east"], rows)
    noise = rng.random(rows) < 0.15
    high = ((value > 0.5) ^ (city == "north") ^ noise).astype("int64")
    return pd.DataFrame({"reading_id": [f"r{i}" for i in range(rows)], "cutoff": cutoff,
                         "last__value": value, "city": city, "hour": cutoff.hour,
                         "high": high})


def _with_model(spec: LoadedSpec, **model: Any) -> LoadedSpec:
    """The tiny spec with another model section."""
    fields = {"estimator": "sklearn.linear_model.LogisticRegression", "seed": 7,
              "features": ["last__value"], **model}
    return LoadedSpec(spec.pipeline.model_copy(update={"model": ModelSpec(**fields)}), spec.path)


HGB = "sklearn.ensemble.HistGradientBoostingClassifier"
FOREST = "sklearn.ensemble.RandomForestClassifier"


def test_split_window_keeps_the_last_eval_days(tiny: LoadedSpec) -> None:
    """Without eval_start the last `eval_days` (1 in the tiny spec) evaluate."""
    assert train.split_window(tiny, D1, D4) == train.Split(D1, D3, D4)
    assert train.split_window(tiny, D1, D4, eval_start=D2) == train.Split(D1, D2, D4)


@pytest.mark.parametrize(("start", "end", "eval_start"), [
    (D1, D2, None),  # one-day window, one eval day: nothing left to train on
    (D1, D1, None),  # empty window
    (D1, D4, D1),    # eval_start at the window start: no training days
    (D1, D4, D4),    # eval_start at the window end: no evaluation days
    (D1, D4, D5),    # after the window
    (D1, D4, D0),    # before the window
], ids=["no-train-days", "empty", "at-start", "at-end", "after", "before"])
def test_split_window_rejects_empty_sides(tiny: LoadedSpec, start: dt.date, end: dt.date,
                                          eval_start: dt.date | None) -> None:
    with pytest.raises(DataError, match=r"split: evaluation start .* must fall inside the window"):
        train.split_window(tiny, start, end, eval_start)


def test_split_frame_is_time_based_without_overlap(tiny: LoadedSpec) -> None:
    """No eval row is earlier than eval_start, no train row at or after it; nothing lost."""
    frame = _frame()
    boundary = pd.Timestamp(D3, tz="UTC")
    assert (frame["cutoff"] == boundary).any()  # a row exactly on the boundary
    train_rows, eval_rows = train.split_frame(frame, tiny, train.split_window(tiny, D1, D4))
    assert (train_rows["cutoff"] < boundary).all()
    assert (eval_rows["cutoff"] >= boundary).all()
    assert boundary in set(eval_rows["cutoff"])
    assert len(train_rows) + len(eval_rows) == len(frame)
    assert set(train_rows["reading_id"]).isdisjoint(eval_rows["reading_id"])
    assert len(eval_rows) == 48


def test_split_frame_ignores_row_order(tiny: LoadedSpec) -> None:
    frame = _frame()
    split = train.split_window(tiny, D1, D4)
    shuffled = frame.sample(frac=1.0, random_state=3)
    train_a, eval_a = train.split_frame(frame, tiny, split)
    train_b, eval_b = train.split_frame(shuffled, tiny, split)
    assert set(train_a["reading_id"]) == set(train_b["reading_id"])
    assert set(eval_a["reading_id"]) == set(eval_b["reading_id"])


@pytest.mark.parametrize(("mutate", "side"), [
    (lambda f: f[f["cutoff"] < pd.Timestamp(D3, tz="UTC")], "evaluation"),
    (lambda f: f[f["cutoff"] >= pd.Timestamp(D3, tz="UTC")], "train"),
    (lambda f: f.assign(high=np.where(f["cutoff"] >= pd.Timestamp(D3, tz="UTC"), 1, f["high"])),
     "evaluation"),
    (lambda f: f.assign(high=np.where(f["cutoff"] < pd.Timestamp(D3, tz="UTC"), 0, f["high"])),
     "train"),
], ids=["no-eval-rows", "no-train-rows", "eval-one-class", "train-one-class"])
def test_split_frame_needs_both_classes_on_both_sides(tiny: LoadedSpec, mutate: Any,
                                                      side: str) -> None:
    split = train.split_window(tiny, D1, D4)
    with pytest.raises(DataError, match=f"the {side} set of .* has no rows of both classes"):
        train.split_frame(mutate(_frame()), tiny, split)


@pytest.mark.parametrize("estimator", [
    "sklearn.linear_model.LogisticRegression", HGB, FOREST,
])
def test_two_fits_give_identical_probabilities(tiny: LoadedSpec, estimator: str) -> None:
    """Same data and spec, same model: the spec seed reaches the estimator."""
    params = {"n_estimators": 5} if estimator == FOREST else {}
    if estimator == HGB:
        params = {"max_iter": 20, "early_stopping": True, "validation_fraction": 0.2}
    spec = _with_model(tiny, estimator=estimator, params=params, seed=123,
                       features=["last__value", "hour", "city"], categorical=["city"])
    frame = _frame()
    first, second = train.fit(spec, frame), train.fit(spec, frame)
    estimator_object = first.named_steps["estimator"]
    if "random_state" in estimator_object.get_params():
        assert estimator_object.random_state == 123
    np.testing.assert_array_equal(train.predict(first, frame), train.predict(second, frame))


def test_the_seed_matters_for_a_random_estimator(tiny: LoadedSpec) -> None:
    """Different seeds give different forests, so the identical fits above are not luck."""
    frame = _frame()
    probabilities = [
        train.predict(train.fit(_with_model(tiny, estimator=FOREST, seed=seed,
                                            params={"n_estimators": 5}), frame), frame)
        for seed in (1, 2)
    ]
    assert not np.array_equal(*probabilities)


def test_categorical_features_are_ordinal_encoded_first(tiny: LoadedSpec) -> None:
    """Strings become category codes ahead of numeric columns; HGB is told which they are."""
    spec = _with_model(tiny, estimator=HGB, params={"max_iter": 30},
                       features=["last__value", "city", "hour"], categorical=["city"])
    frame = _frame()
    model = train.fit(spec, frame)
    assert model.named_steps["estimator"].categorical_features == [0]
    encoded = model[:-1].transform(frame[["last__value", "city", "hour"]].astype({"city": object}))
    codes = {"east": 0.0, "north": 1.0, "south": 2.0}
    np.testing.assert_array_equal(encoded[:, 0], frame["city"].map(codes).to_numpy())
    np.testing.assert_array_equal(encoded[:, 1:],
                                  frame[["last__value", "hour"]].to_numpy(dtype=float))
    # the category carries signal (the label flips for "north"), and the model uses it
    probe = frame.iloc[:1].assign(last__value=0.9)
    north = train.predict(model, probe.assign(city="north"))[0]
    south = train.predict(model, probe.assign(city="south"))[0]
    assert north < 0.5 < south


def test_unknown_and_missing_categories_predict(tiny: LoadedSpec) -> None:
    """A category never seen in training, or a missing one, is scored (as missing), not an error."""
    spec = _with_model(tiny, estimator=HGB, params={"max_iter": 10},
                       features=["last__value", "city"], categorical=["city"])
    frame = _frame()
    model = train.fit(spec, frame)
    odd = frame.iloc[:3].assign(city=["west", None, "north"])
    probabilities = train.predict(model, odd)
    assert probabilities.shape == (3,) and np.isfinite(probabilities).all()


def test_predict_uses_the_training_feature_order(tiny: LoadedSpec) -> None:
    """Permuted and extra columns in the frame do not change a prediction."""
    spec = _with_model(tiny, estimator=HGB, params={"max_iter": 20},
                       features=["last__value", "city", "hour"], categorical=["city"])
    frame = _frame()
    model = train.fit(spec, frame)
    assert list(model.feature_names_in_) == ["last__value", "city", "hour"]
    expected = train.predict(model, frame)
    permuted = frame[["high", "hour", "reading_id", "city", "cutoff", "last__value"]]
    np.testing.assert_array_equal(train.predict(model, permuted), expected)
    # a column of another feature swapped into the place of one would change the scores
    assert not np.array_equal(
        train.predict(model, frame.assign(hour=frame["last__value"], last__value=frame["hour"])),
        expected)


def test_string_dtype_categoricals_predict_like_object(tiny: LoadedSpec) -> None:
    """A frame read back with pandas' string dtype scores like the object frame it fit on."""
    spec = _with_model(tiny, estimator=HGB, params={"max_iter": 10},
                       features=["last__value", "city"], categorical=["city"])
    frame = _frame()
    model = train.fit(spec, frame)
    np.testing.assert_array_equal(
        train.predict(model, frame.astype({"city": "string"})), train.predict(model, frame))


def test_numeric_categorical_feature_round_trips(tiny: LoadedSpec) -> None:
    """An integer column declared categorical (e.g. an hour) fits and predicts."""
    spec = _with_model(tiny, estimator=HGB, params={"max_iter": 10},
                       features=["last__value", "hour"], categorical=["hour"])
    frame = _frame()
    model = train.fit(spec, frame)
    assert train.predict(model, frame).shape == (len(frame),)


@pytest.mark.parametrize("missing", [["city"], ["city", "hour"]])
def test_fit_names_missing_features(tiny: LoadedSpec, missing: list[str]) -> None:
    spec = _with_model(tiny, features=["last__value", "city", "hour"], categorical=["city"])
    with pytest.raises(DataError, match=r"training set lacks model features") as caught:
        train.fit(spec, _frame().drop(columns=missing))
    assert str(missing) in str(caught.value)
