"""Where things live. One switch, `PITSTOP_HOME`, picks the local setup; production overrides.

Locally everything sits under `$PITSTOP_HOME` (default `./.pitstop`): the lake, the MLflow
store (SQLite + artifacts) and the Airflow home. `MLFLOW_TRACKING_URI` and `PITSTOP_LAKE`
point elsewhere in production without code changes.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("PITSTOP_HOME", ".pitstop")).resolve()


def lake_root() -> Path:
    return Path(os.environ.get("PITSTOP_LAKE") or home() / "lake").resolve()


def mlflow_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / 'mlflow.db'}"


def mlflow_artifact_root() -> Path:
    return home() / "mlartifacts"


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or home() / "airflow").resolve()
