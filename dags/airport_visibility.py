"""Airflow DAGs of the airport_visibility pipeline, built from airport_visibility.yaml beside this file."""

from pathlib import Path

from pipelines.orchestration.factory import build_dags

globals().update(build_dags(Path(__file__).with_suffix(".yaml")))
