"""Airflow DAGs of the aircraft_utilisation pipeline, built from the YAML spec beside this file."""

from pathlib import Path

from pipelines.orchestration.factory import build_dags

globals().update(build_dags(Path(__file__).with_suffix(".yaml")))
