"""The flights example with its flights read from a real PostgreSQL table, end to end.

Two copies of the flights example run a week of 2013 with `pitstop run` (Airflow's
dag.test()) in a project folder of their own: one from
its landing files, one with `sources.flights` a table in an embedded PostgreSQL loaded with
the same files' rows and named by an Airflow connection id (weather and planes still come
from the files). The same rows must give the same raw partitions, byte for byte, and the
same `dataset_id`; the database copy's manifests and lineage name the query and the
connection, never its password.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from pipelines import lake, scaffold
from tests.example_copy import copy_example
from tests.integration import examples
from tests.integration.live import service_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

START, END, EVAL_START = dt.date(2013, 1, 1), dt.date(2013, 1, 8), dt.date(2013, 1, 6)
PASSWORD = "s3cret"
"""Put in the connection, ignored by the socket's trust authentication: so the test can see
that no manifest or lineage record carries it."""


def _load_flights(url: str, landing: Path) -> None:
    """The landed flights files' rows as table `flights`: empty fields are nulls (as DuckDB
    reads them), `time_hour` a timestamptz, numbers BIGINT or DOUBLE as pandas infers them."""
    frame = pd.concat([pd.read_csv(path, keep_default_na=False, na_values=[""])
                       for path in sorted((landing / "flights").glob("*.csv"))])
    frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True)
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as con:
        frame.to_sql("flights", con, index=False)
    engine.dispose()


@pytest.fixture(scope="module")
def project(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project folder of its own with both copies in `dags/`, and the table loaded; the
    test process reads the lake the runs write."""
    project = tmp_path_factory.mktemp("database_source")
    dags = project / "dags"
    files_spec = copy_example(dags, "flights_files", example="flights_delay")
    examples.land(files_spec, START, END)
    landing = dags / "landing" / "flights_files"
    _load_flights(postgres_url, landing)

    def from_database(data: dict[str, Any]) -> None:
        data["landing"] = str(landing)
        flights = data["sources"]["flights"]
        del flights["path"], flights["event_time"]
        flights["database"] = {"conn_id": "flights_db", "table": "flights",
                               "time_column": "time_hour"}

    copy_example(dags, "flights_db", from_database, example="flights_delay")
    for name in ("flights_files", "flights_db"):
        (dags / f"{name}.py").write_text(scaffold.dag_file(name))
    (dags / ".airflowignore").write_text("flights_files/\nflights_db/\nlanding/\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PITSTOP_LAKE", str(project / "home" / "lake"))
        yield project


@pytest.fixture(scope="module")
def runs(project: Path, postgres_url: str) -> dict[str, Any]:
    """`pitstop run` of each copy over the same week, as a data engineer runs it; the
    database copy's connection is an Airflow connection in the environment."""
    server = make_url(postgres_url)
    connection = {"conn_type": "postgres", "login": "postgres", "password": PASSWORD,
                  "schema": "postgres", "extra": {"sqlalchemy_query": dict(server.query)}}
    env = {**service_env(project / "home", 0, 0),
           "AIRFLOW_CONN_FLIGHTS_DB": json.dumps(connection)}
    out = {}
    for name in ("flights_files", "flights_db"):
        done = subprocess.run(
            [examples.PITSTOP, "run", f"dags/{name}.yaml", "--json", "--start", str(START),
             "--end", str(END), "--eval-start", str(EVAL_START)],
            cwd=project, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{name}: {done.stdout}\n{done.stderr}"
        out[name] = json.loads(done.stdout)
    return out


def _raw(pipeline: str, source: str) -> dict[str, str]:
    """sha256 of each raw partition's data file of `source`, by day."""
    return {p.day.isoformat(): p.sha256
            for p in lake.list_partitions(lake.from_env(), pipeline, "raw", source)}


def test_the_table_gives_the_files_dataset_id(runs: dict[str, Any]) -> None:
    assert runs["flights_db"]["dataset_id"] == runs["flights_files"]["dataset_id"]
    flights = _raw("flights_db", "flights")
    assert len(flights) == (END - START).days
    assert flights == _raw("flights_files", "flights")


def test_manifests_and_lineage_name_the_query_not_the_password(runs: dict[str, Any],
                                                                project: Path) -> None:
    import mlflow

    first = lake.list_partitions(lake.from_env(), "flights_db", "raw", "flights")[0]
    query = first.manifest["source_query"]
    assert query["connection"].startswith(("postgresql://", "postgresql+"))  # the hook picks
    assert "://postgres@/postgres?host=" in query["connection"]  # the driver; no password
    assert query["query"].startswith('SELECT * FROM flights WHERE "time_hour" >= :start')
    assert query["rows"] == first.rows > 0
    assert len(query["sha256"]) == 64
    lineage = Path(mlflow.artifacts.download_artifacts(
        run_id=runs["flights_db"]["run_id"], artifact_path="lineage/lineage.json",
        tracking_uri=f"sqlite:///{project / 'home' / 'mlflow.db'}")).read_text()
    flights = [p for p in json.loads(lineage)["raw_partitions"] if "/raw/flights/" in p["path"]]
    assert flights and all(p["source_query"]["connection"] == query["connection"]
                           and p["source_files"] == [] for p in flights)
    assert PASSWORD not in lineage
