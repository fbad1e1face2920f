"""Airflow DAGs of the flights_delay pipeline, built from flights_delay.yaml beside this file."""

from pathlib import Path

from pipelines.orchestration.factory import build_dags

globals().update(build_dags(Path(__file__).with_suffix(".yaml")))
