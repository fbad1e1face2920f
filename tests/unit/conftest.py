"""A tiny generic pipeline (sensor readings) for testing the library without the example."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.spec import LoadedSpec, load_spec

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
