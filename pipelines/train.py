"""Deterministic training: the spec's preprocessing and estimator as one scikit-learn Pipeline.

Pure computation: a frame in, a fitted model out, no MLflow and no lake (those are in
`registry.log_training_run` and `training_set`). The estimator comes from the spec (`estimator`
and `params`, or a `build` hook), seeded from the spec; the preprocessing is a
`ColumnTransformer` declared in the spec. The same training rows and spec give the same model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import is_regressor
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from pipelines.errors import DataError
from pipelines.spec import LoadedSpec, Preprocessing, make_estimator

MISSING_CATEGORY = "__missing__"
"""What `impute.categorical: constant` fills missing categories with."""
_NUMERIC_FILL = {"mean": "mean", "median": "median", "zero": "constant"}


def _categorical_steps(prep: Preprocessing) -> Pipeline | OrdinalEncoder | OneHotEncoder:
    if prep.encode == "onehot":
        encoder: OrdinalEncoder | OneHotEncoder = OneHotEncoder(
            handle_unknown="ignore", sparse_output=False)
    else:
        encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                 encoded_missing_value=np.nan)
    if prep.impute.categorical == "none":
        return encoder
    imputer = SimpleImputer(strategy=prep.impute.categorical, fill_value=MISSING_CATEGORY,
                            missing_values=np.nan)
    return Pipeline([("impute", imputer), ("encode", encoder)])


def _numeric_steps(prep: Preprocessing) -> Pipeline | str:
    steps = []
    if prep.impute.numeric != "none":
        steps.append(("impute", SimpleImputer(strategy=_NUMERIC_FILL[prep.impute.numeric],
                                              fill_value=0.0)))
    if prep.scale == "standard":
        steps.append(("scale", StandardScaler()))
    return Pipeline(steps) if steps else "passthrough"


def make_model(spec: LoadedSpec) -> Pipeline:
    """An unfitted pipeline: the declared preprocessing, then the spec's estimator.

    Categoricals come first, so an estimator with native categorical support (histogram
    gradient boosting) is told their positions when they stay ordinal-encoded.
    """
    model = spec.pipeline.model
    prep = model.preprocessing
    estimator = make_estimator(spec)
    numeric = [c for c in model.features if c not in model.categorical]
    params = estimator.get_params()
    if (model.categorical and prep.encode == "ordinal" and "categorical_features" in params
            and params["categorical_features"] in (None, "from_dtype", "warn")):
        estimator.set_params(categorical_features=list(range(len(model.categorical))))
    columns = ColumnTransformer(
        [("categorical", _categorical_steps(prep), model.categorical),
         ("numeric", _numeric_steps(prep), numeric)],
        verbose_feature_names_out=False,
    )
    return Pipeline([("columns", columns), ("estimator", estimator)])


def fit(spec: LoadedSpec, train: pd.DataFrame) -> Pipeline:
    """Fit on the train rows. A fit that the data or the params make impossible is a
    DataError naming the estimator and the fix, so it is not retried."""
    model = spec.pipeline.model
    if missing := [c for c in model.features if c not in train.columns]:
        raise DataError(f"{spec.path}: model.features {missing} are not columns of the training "
                        "set (rule: every model feature comes from the label or a view)")
    pipeline = make_model(spec)
    features = model_input(train, model.features, model.categorical)
    try:
        return pipeline.fit(features, train[spec.pipeline.label.target].to_numpy())
    except (ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (" Missing values reach the estimator: set model.preprocessing.impute, or use "
                "an estimator that accepts NaN." if "NaN" in first else "")
        raise DataError(f"{spec.path}: model {model.estimator or model.build} cannot be fitted "
                        f"on {len(train)} rows: {first}{hint}") from exc


def model_input(frame: pd.DataFrame, columns: list[str], categorical: list[str]
                ) -> pd.DataFrame:
    """The model's input columns; categoricals as Python objects (missing as NaN), the same
    way when fitting and predicting."""
    return frame[columns].astype({c: "object" for c in categorical})


def input_columns(model: Pipeline) -> tuple[list[str], list[str]]:
    """The columns a fitted model reads, and which of them are categorical."""
    categorical = next((list(cols) for name, _, cols in model.named_steps["columns"].transformers_
                        if name == "categorical"), [])
    return list(model.feature_names_in_), categorical


def predict(model: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """What the gate scores: the value (regression), P(class 1) (binary), or one probability
    column per class in `model.classes_` order (multiclass).

    Using the model's own `feature_names_in_` lets a champion with another feature list
    score the same evaluation rows as the candidate.
    """
    columns, categorical = input_columns(model)
    features = model_input(frame, columns, categorical)
    if is_regressor(model):
        return np.asarray(model.predict(features), dtype="float64")
    probabilities = model.predict_proba(features)
    return probabilities[:, 1] if len(model.classes_) == 2 else probabilities


def classes(model: Pipeline) -> np.ndarray | None:
    """A classifier's classes in probability-column order; None for a regressor."""
    return None if is_regressor(model) else np.asarray(model.classes_)
