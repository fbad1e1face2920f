"""Where things live. One switch, `PITSTOP_HOME`, picks the local setup; production overrides.

Locally everything sits under `$PITSTOP_HOME` (default `./.pitstop`): the lake, the MLflow
store (SQLite + artifacts) and the Airflow home. `MLFLOW_TRACKING_URI` and `PITSTOP_LAKE`
point elsewhere in production without code changes.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

MAX_BACKFILL_DAYS = 731
"""Longest range one feature backfill request may cover: split longer ones."""
MAX_REASON_LENGTH = 500
"""Longest `reason` a run or backfill may give: the DAG forms' limit (Airflow refuses a
longer one), well inside MLflow's tag values, where the train DAG keeps it."""

MLFLOW_HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
                      "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
"""pitstop's waits on the MLflow tracking server, applied unless the environment sets these
MLflow variables itself. MLflow's own defaults (120 s per request, 7 retries, backoff factor 2)
let one call to a server that is down or hung take over four minutes, and a task about twenty:
here a call gives up after at most 4 tries of 30 s (about 2 min), and a refused connection
after about 7 s, naming the server's URI."""


def home() -> Path:
    return Path(os.environ.get("PITSTOP_HOME", ".pitstop")).resolve()


def database_url() -> str | None:
    """An existing PostgreSQL server for `pitstop up` (`PITSTOP_DATABASE_URL`, any SQLAlchemy
    PostgreSQL URL; its `airflow` and `mlflow` databases are created when missing). Unset:
    `pitstop up` starts an embedded one under `$PITSTOP_HOME/postgres`."""
    return os.environ.get("PITSTOP_DATABASE_URL") or None


def redis_url() -> str | None:
    """An existing Redis for `pitstop up --executor celery` to use as the Celery broker
    (`PITSTOP_REDIS_URL`, `redis://:password@host:port/db`). Unset: `pitstop up` starts
    Debian's `redis-server` under `$PITSTOP_HOME/redis`, on 127.0.0.1 only."""
    return os.environ.get("PITSTOP_REDIS_URL") or None


def mlflow_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / 'mlflow.db'}"


def mlflow_artifact_root() -> Path:
    """Where a local tracking store (no server) keeps each experiment's artifacts."""
    return home() / "mlartifacts"


def mlflow_artifacts_destination() -> str:
    """Where `pitstop up`'s MLflow server keeps the artifacts it proxies
    (`PITSTOP_MLFLOW_ARTIFACTS`: a folder or `s3://bucket/prefix`, by default
    `mlflow_artifact_root()`). Clients reach them through the server, so they need no
    credentials of the store; the server takes them from the standard AWS variables."""
    return os.environ.get("PITSTOP_MLFLOW_ARTIFACTS") or str(mlflow_artifact_root())


def tracks_on_a_server() -> bool:
    """Whether MLflow is a tracking server (http/https), which then owns artifact locations."""
    return mlflow_tracking_uri().startswith(("http://", "https://"))


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or home() / "airflow").resolve()


def pit_memory_limit() -> str:
    """DuckDB `memory_limit` of a point-in-time join (`PITSTOP_PIT_MEMORY_LIMIT`, default 3GiB).

    DuckDB's own default is 80% of RAM, so a join over a spine larger than memory grows to
    that before it spills; a fixed budget makes it spill early and keeps it beside other work
    on the machine (Airflow workers, MLflow). Raise it on a dedicated host.
    """
    return os.environ.get("PITSTOP_PIT_MEMORY_LIMIT") or "3GiB"


def pit_spill_root() -> Path | None:
    """Folder under which a join's spill directory is made (`PITSTOP_PIT_TEMP_DIR`).

    Unset: the system temp folder. Point it at a large local disk for spines larger than
    memory: spilled sort and join runs can reach a few times the spine's Parquet size.
    """
    raw = os.environ.get("PITSTOP_PIT_TEMP_DIR")
    return Path(raw) if raw else None


GC_THRESHOLDS = (10_000, 10, 10)
"""The cyclic collector's generation-0 threshold raised from CPython's 700: a pitstop
process holds Airflow, MLflow, GX and scikit-learn, whose imports and DataFrames allocate
millions of objects, and each collection that promotes them brings the next full pass (which
walks everything alive) closer. Measured on an unchanged year's `pitstop run`: 2.6 s of
collection with the default, 0.8 s with this."""


def tune_garbage_collector() -> None:
    """Apply `GC_THRESHOLDS` to this process (a CLI command, a task process)."""
    gc.set_threshold(*GC_THRESHOLDS)
