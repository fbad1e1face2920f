"""A tiny generic pipeline (sensor readings) for testing the library without the example."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines import features, ingest, registry, training_set
from pipelines.lake import from_env as env_lake
from pipelines.registry import TrainedRun
from pipelines.spec import LoadedSpec, ModelSpec, load_spec
from pipelines.training_set import TrainingInput

SPEC = """
name: sensors
start_date: 2024-01-01
landing: {landing}
expectations: {expectations}
sources:
  readings:
    path: readings/{{date}}.csv
    event_time: ts
    keys: [sensor, ts]
    columns: {{sensor: str, ts: timestamp, value: float}}
feature_views:
  last:
    function: hooks:last_value
    sources: [readings]
    keys: [sensor]
    availability_lag: 10m
    lookback: 1d
    ttl: 2h
label:
  function: hooks:spine
  sources: [readings]
  entity: reading_id
  prediction_time: cutoff
  target: high
training_suite: sensors_training_set
split: {{eval_days: 1}}
model:
  task: binary
  estimator: sklearn.linear_model.LogisticRegression
  seed: 7
  features: [last__value]
model_name: sensors
"""

HOOKS = '''
import pandas as pd

def last_value(raw):
    frame = raw["readings"]
    return frame[["sensor", "ts", "value"]].rename(columns={"ts": "event_time"})

def spine(raw):
    frame = raw["readings"]
    return pd.DataFrame({
        "reading_id": frame["sensor"] + "-" + frame["ts"].dt.strftime("%Y%m%dT%H%M"),
        "sensor": frame["sensor"],
        "cutoff": frame["ts"] - pd.Timedelta(minutes=30),
        "high": (frame["value"] > 0.5).astype("int64"),
    })
'''


def write_readings(landing: Path, day: dt.date, seed: int = 0) -> pd.DataFrame:
    """Hourly readings of three sensors for one UTC day, as an upstream file."""
    rng = np.random.default_rng(seed + day.toordinal())
    times = pd.date_range(pd.Timestamp(day, tz="UTC"), periods=24, freq="h")
    frame = pd.DataFrame([(s, t, float(rng.random())) for s in ("a", "b", "c") for t in times],
                         columns=["sensor", "ts", "value"])
    out = landing / "readings" / f"{day.isoformat()}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.assign(ts=frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(out, index=False)
    return frame


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LoadedSpec:
    """A spec whose lake and landing live in this test's own folder."""
    monkeypatch.setenv("PITSTOP_LAKE", str(tmp_path / "lake"))
    landing = tmp_path / "landing"
    (tmp_path / "expectations").mkdir()
    (tmp_path / "sensors").mkdir()
    (tmp_path / "sensors" / "__init__.py").write_text("")
    (tmp_path / "sensors" / "hooks.py").write_text(textwrap.dedent(HOOKS))
    spec_file = tmp_path / "sensors.yaml"
    spec_file.write_text(SPEC.format(landing=landing, expectations=tmp_path / "expectations"))
    for offset in range(3):
        write_readings(landing, dt.date(2024, 1, 1) + dt.timedelta(days=offset))
    return load_spec(spec_file)


# --- shared by the lake, registry and report tests ----------------------------------------

D1, D2, D3, D4 = (dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(4))
"""The tiny pipeline's three landed days, and the end of their window."""


def amend(spec: LoadedSpec, model: dict[str, Any] | None = None, **sections: Any) -> LoadedSpec:
    """The spec with some `model` fields and whole top-level sections replaced; same file, so
    hooks and the problems file resolve as before."""
    pipeline = spec.pipeline
    if model:
        sections["model"] = ModelSpec(**{**pipeline.model.model_dump(), **model})
    return LoadedSpec(pipeline.model_copy(update=sections), spec.path)


ESTIMATORS = {"binary": "sklearn.linear_model.LogisticRegression",
              "multiclass": "sklearn.linear_model.LogisticRegression",
              "regression": "sklearn.linear_model.LinearRegression"}
"""A small estimator that fits each task."""


def for_task(spec: LoadedSpec, task: str, model: dict[str, Any] | None = None,
             **sections: Any) -> LoadedSpec:
    """The spec for `task`, with an estimator that fits it (and `amend`'s other changes)."""
    return amend(spec, model={"task": task, "estimator": ESTIMATORS[task], **(model or {})},
                 **sections)


@pytest.fixture
def ingested(tiny: LoadedSpec) -> LoadedSpec:
    """The tiny pipeline with its three days of readings ingested into this test's lake."""
    ingest.ingest(env_lake(), tiny, "readings", D1, D4)
    return tiny


@pytest.fixture
def built(ingested: LoadedSpec) -> TrainingInput:
    """The view computed and the training set of D1..D4 published, evaluating from D3."""
    features.compute_view(env_lake(), ingested, "last", D1, D4)
    return training_set.prepare(env_lake(), ingested, D1, D4)


def log_tiny_model(run_tags: dict[str, str] | None = None) -> TrainedRun:
    """A tiny real sklearn model logged in a run (with these tags) of its own experiment."""
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    experiment = registry.experiment_id(f"test-logged-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run(experiment_id=experiment, tags=run_tags) as run:
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=[])
    return TrainedRun(run.info.run_id, experiment, info.model_uri, info.model_id)


@pytest.fixture(scope="session")
def logged() -> TrainedRun:
    """One tiny logged model the registry tests register again and again."""
    return log_tiny_model()


@pytest.fixture
def model_name() -> str:
    """A registered-model name no other test uses."""
    return f"test-model-{uuid.uuid4().hex[:12]}"


def between_suite(spec: LoadedSpec, suite: str, column: str, max_value: float) -> None:
    """Write suite `suite` of one rule: `column` between 0 and `max_value`."""
    spec.suite_path(suite).write_text(json.dumps({
        "name": suite,
        "expectations": [{"type": "expect_column_values_to_be_between",
                          "kwargs": {"column": column, "min_value": 0,
                                     "max_value": max_value}}]}))


def training_suite(spec: LoadedSpec, max_value: float) -> None:
    """The tiny pipeline's training-set suite: readings between 0 and `max_value`."""
    between_suite(spec, "sensors_training_set", "last__value", max_value)
