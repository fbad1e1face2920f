"""Extra links on pipeline tasks: from a task in the Airflow UI to what it made in MLflow.

Airflow computes a global extra link in its API server from the task instance's key; we read
that task's return value (IDs only, see the DAG factory) and turn it into MLflow UI URLs.
A task whose result names no run or version simply has no link.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

from pipelines.quality import DOCS_DIR


def mlflow_ui() -> str:
    """Base URL of the MLflow UI (`pitstop up` sets PITSTOP_MLFLOW_UI)."""
    return os.environ.get("PITSTOP_MLFLOW_UI", "http://127.0.0.1:5000").rstrip("/")


def run_url(result: Any) -> str:
    if isinstance(result, dict) and result.get("run_id") and result.get("experiment_id"):
        return f"{mlflow_ui()}/#/experiments/{result['experiment_id']}/runs/{result['run_id']}"
    return ""


def model_version_url(result: Any) -> str:
    if isinstance(result, dict) and result.get("model_name") and result.get("version"):
        return f"{mlflow_ui()}/#/models/{quote(result['model_name'])}/versions/{result['version']}"
    return ""


def data_docs_url(result: Any) -> str:
    """The Data Docs logged with the model's run (served by the MLflow server)."""
    if isinstance(result, dict) and result.get("run_id") and result.get("experiment_id"):
        path = quote(f"quality/{DOCS_DIR}/index.html", safe="")
        return f"{mlflow_ui()}/get-artifact?path={path}&run_uuid={result['run_id']}"
    return ""


def monitoring_report_url(result: Any) -> str:
    """The pinned version's monitoring report (`pin_model` of a score run names its run):
    on the task that every score run has, also when its days failed and returned nothing."""
    if isinstance(result, dict) and result.get("run_id") and result.get("reference_uri"):
        path = quote("monitoring/report.html", safe="")
        return f"{mlflow_ui()}/get-artifact?path={path}&run_uuid={result['run_id']}"
    return ""


def task_result(dag_id: str, run_id: str, task_id: str, map_index: int) -> Any:
    """The return value (XCom) of one task instance, or None."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter(
            XComModel.dag_id == dag_id, XComModel.run_id == run_id,
            XComModel.task_id == task_id, XComModel.map_index == map_index,
            XComModel.key == "return_value").first()
        return XComModel.deserialize_value(row) if row is not None else None
