"""Airflow plugin: links from pitstop tasks to their MLflow run, model version, Data Docs and
monitoring report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

from pipelines.orchestration import links


class _ResultLink(BaseOperatorLink):
    """A link computed from the task's own return value (empty when it names nothing)."""

    url: ClassVar[Callable[[Any], str]]

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return type(self).url(links.task_result(ti_key.dag_id, ti_key.run_id, ti_key.task_id,
                                                ti_key.map_index))


class MlflowRunLink(_ResultLink):
    name = "MLflow run"
    url = staticmethod(links.run_url)


class ModelVersionLink(_ResultLink):
    name = "MLflow model version"
    url = staticmethod(links.model_version_url)


class DataDocsLink(_ResultLink):
    name = "Data Docs"
    url = staticmethod(links.data_docs_url)


class MonitoringReportLink(_ResultLink):
    name = "Monitoring report"
    url = staticmethod(links.monitoring_report_url)


class PitstopLinksPlugin(AirflowPlugin):
    name = "pitstop_links"
    global_operator_extra_links: ClassVar[list[BaseOperatorLink]] = [
        MlflowRunLink(), ModelVersionLink(), DataDocsLink(), MonitoringReportLink()]
