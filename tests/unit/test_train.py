"""Training: a seeded, reproducible model behind the declared preprocessing, for every task."""

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
    fields = {"task": "binary", "estimator": "sklearn.linear_model.LogisticRegression", "seed": 7,
              "features": ["last__value"], **model}
    return LoadedSpec(spec.pipeline.model_copy(update={"model": ModelSpec(**fields)}), spec.path)


HGB = "sklearn.ensemble.HistGradientBoostingClassifier"
FOREST = "sklearn.ensemble.RandomForestClassifier"


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
    with pytest.raises(DataError, match=r"are not columns of the training set") as caught:
        train.fit(spec, _frame().drop(columns=missing))
    assert str(missing) in str(caught.value)


def _numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """The tiny frame with a numeric target and a third class, for the other tasks."""
    rng = np.random.default_rng(1)
    level = np.where(frame["city"] == "north", 2, np.where(frame["last__value"] > 0.5, 1, 0))
    return frame.assign(amount=3.0 * frame["last__value"] + (frame["city"] == "north")
                        + rng.normal(0, 0.1, len(frame)), level=level)


def test_a_regressor_predicts_values(tiny: LoadedSpec) -> None:
    spec = _with_model(tiny, task="regression", estimator="sklearn.linear_model.Ridge",
                       features=["last__value", "city"], categorical=["city"],
                       preprocessing={"encode": "onehot"})
    spec = LoadedSpec(spec.pipeline.model_copy(update={"label": spec.pipeline.label.model_copy(
        update={"target": "amount"})}), spec.path)
    frame = _numbers(_frame())
    model = train.fit(spec, frame)
    pred = train.predict(model, frame)
    assert pred.shape == (len(frame),) and train.classes(model) is None
    assert np.corrcoef(pred, frame["amount"])[0, 1] > 0.95  # one-hot city carries its offset


def test_a_multiclass_model_gives_a_probability_per_class(tiny: LoadedSpec) -> None:
    spec = _with_model(tiny, task="multiclass", estimator=FOREST, params={"n_estimators": 10},
                       features=["last__value", "city"], categorical=["city"])
    spec = LoadedSpec(spec.pipeline.model_copy(update={"label": spec.pipeline.label.model_copy(
        update={"target": "level"})}), spec.path)
    frame = _numbers(_frame())
    model = train.fit(spec, frame)
    pred = train.predict(model, frame)
    assert pred.shape == (len(frame), 3)
    np.testing.assert_allclose(pred.sum(axis=1), 1.0)
    assert train.classes(model).tolist() == [0, 1, 2]


def test_nan_without_imputation_is_a_clear_data_error(tiny: LoadedSpec) -> None:
    """LogisticRegression refuses NaN; the message says to declare imputation."""
    spec = _with_model(tiny, features=["last__value", "hour"])
    frame = _frame().assign(last__value=lambda f: f["last__value"].where(f.index % 7 != 0))
    with pytest.raises(DataError, match=r"cannot be fitted .* set model.preprocessing.impute"):
        train.fit(spec, frame)
    imputed = _with_model(tiny, features=["last__value", "hour"],
                          preprocessing={"impute": {"numeric": "median"}, "scale": "standard"})
    model = train.fit(imputed, frame)
    assert np.isfinite(train.predict(model, frame)).all()


@pytest.mark.parametrize(("prep", "columns"), [
    ({"encode": "ordinal", "impute": {"categorical": "most_frequent"}}, 2),
    ({"encode": "onehot", "impute": {"categorical": "most_frequent"}}, 4),
    ({"encode": "onehot", "impute": {"categorical": "constant"}}, 5),
    ({"encode": "onehot"}, 5),
], ids=["ordinal", "onehot-most-frequent", "onehot-missing-filled", "onehot-missing-kept"])
def test_preprocessing_builds_the_declared_columns(tiny: LoadedSpec, prep: dict,
                                                   columns: int) -> None:
    """One ordinal column, or one per category (the missing one filled, or kept as its own)."""
    spec = _with_model(tiny, features=["last__value", "city"], categorical=["city"],
                       preprocessing={**prep, "impute": {"numeric": "zero",
                                                         **prep.get("impute", {})}})
    frame = _frame()
    frame.loc[::5, "city"] = None
    model = train.fit(spec, frame)
    width = model[:-1].transform(train.model_input(frame, ["last__value", "city"],
                                                   ["city"])).shape[1]
    assert width == columns


def test_a_build_hook_makes_the_estimator(tiny: LoadedSpec) -> None:
    """`model.build` returns an unfitted estimator; the spec seed still reaches it."""
    (tiny.hooks_dir / "models.py").write_text(
        "from sklearn.ensemble import RandomForestClassifier\n\n"
        "def forest():\n    return RandomForestClassifier(n_estimators=3, max_depth=2)\n")
    spec = _with_model(tiny, estimator=None, build="models:forest", seed=11)
    model = train.fit(spec, _frame())
    assert model.named_steps["estimator"].random_state == 11
    assert model.named_steps["estimator"].max_depth == 2
