"""The third example, airport_visibility, end to end through Airflow's dag.test().

A multiclass task (the visibility class at an airport 3 hours ahead) that reads the flights
example's own landing folder and reuses its source names (`weather`, `flights`) and view names
(`origin_weather`, `origin_delays`), in the session's home beside the other two examples: one
`dags/` folder, one lake, one MLflow store, one Airflow DB. The lake is namespaced per
pipeline, so everything this version was made from must lie under `<lake>/airport_visibility/`
and name that pipeline, and the flights example's `weather` partitions must keep their bytes.
Two months of 2013, evaluated on the last three weeks (storm Nemo included).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from pipelines import lake, registry
from pipelines.lake import from_env as env_lake
from pipelines.spec import load_spec
from tests.integration import examples

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

DAGS = Path(__file__).resolve().parents[2] / "dags"
SPEC = DAGS / "airport_visibility.yaml"
FLIGHTS = DAGS / "flights_delay.yaml"
NAME = "airport_visibility"
START, END, EVAL_START = dt.date(2013, 1, 1), dt.date(2013, 3, 1), dt.date(2013, 2, 8)
VIEWS = {"origin_weather", "visibility_trend", "origin_delays"}
CLASSES = {"low", "reduced", "clear"}
FLIGHTS_WEEK = (dt.date(2013, 1, 1), dt.date(2013, 1, 8))  # when the flights e2e has not run


def _files(pipeline: str, source: str) -> dict[str, str]:
    """sha256 of every file of a pipeline's raw partitions of `source`, read from disk."""
    root = lake.pipeline_dir(env_lake(), pipeline, "raw", source)
    return {p.relative_to(root).as_posix(): lake.sha256_file(p)
            for p in sorted(root.glob("date=*/**/*")) if p.is_file()}


@pytest.fixture(scope="module")
def flights_weather(airflow_db: Path) -> dict[str, str]:
    """The flights example's raw `weather` files before this pipeline runs.

    When the flights e2e ran earlier in the session they are its partitions; otherwise a
    week of them is ingested here, through the flights example's own spec.
    """
    if not _files("flights_delay", "weather"):
        from pipelines import ingest

        examples.land(FLIGHTS, *FLIGHTS_WEEK)
        ingest.ingest(env_lake(), load_spec(FLIGHTS), "weather", *FLIGHTS_WEEK)
    before = _files("flights_delay", "weather")
    assert before
    return before


@pytest.fixture(scope="module")
def first_run(airflow_db: Path, flights_weather: dict[str, str]) -> dict:
    from pipelines.orchestration.runner import run_pipeline

    examples.land(SPEC, START, END)
    return run_pipeline(SPEC, START, END, "third example e2e", echo=lambda _: None,
                        eval_start=EVAL_START)


@pytest.fixture(scope="module")
def lineage(first_run: dict) -> dict:
    from pipelines import audit

    (traced,) = audit.trace(f"{NAME}@champion")["versions"]
    return traced["lineage"]


def test_registers_a_multiclass_version_with_ids(first_run: dict) -> None:
    version = examples.registered_champion(first_run, NAME)
    assert version.tags["gx_suite"] == "airport_visibility_training_set"
    assert int(version.tags["raw_partitions"]) == 2 * (END - START).days  # weather and flights
    found = registry.client().search_model_versions(f"tags.pair_id = '{first_run['pair_id']}'")
    assert [(v.name, str(v.version)) for v in found] == [(NAME, "1")]


def test_logs_multiclass_metrics(first_run: dict) -> None:
    metrics = registry.client().get_run(first_run["run_id"]).data.metrics
    assert metrics["eval_balanced_accuracy"] >= 0.5  # the spec's floors and ceiling
    assert metrics["eval_macro_f1"] >= 0.5
    assert 0.8 <= metrics["eval_roc_auc_ovr"] < 1.0
    assert metrics["eval_log_loss"] <= 0.6
    assert "eval_roc_auc" not in metrics and "eval_rmse" not in metrics
    assert {f"slice.origin.{o}.balanced_accuracy" for o in ("EWR", "JFK", "LGA")} <= set(metrics)


def test_training_set_is_one_row_per_airport_hour_three_hours_ahead(first_run: dict) -> None:
    import pandas as pd

    frame = pd.read_parquet(lake.committed_file(env_lake().root / first_run["training_set"]["path"]))
    assert len(frame) == first_run["training_set"]["rows"] > 4_000
    assert frame["station_hour"].is_unique
    assert not frame.duplicated(["origin", "target_time"]).any()
    assert ((frame["target_time"] - frame["prediction_time"]) == pd.Timedelta(hours=3)).all()
    assert set(frame["visibility_class"]) == CLASSES
    evaluated = frame[frame["prediction_time"] >= pd.Timestamp(EVAL_START, tz="UTC")]
    assert evaluated["visibility_class"].value_counts().min() >= 50  # every class, enough rows
    for view in VIEWS:
        as_of = frame[f"{view}__as_of"]
        assert (as_of.dropna() <= frame.loc[as_of.notna(), "prediction_time"]).all(), view
    age = (frame["prediction_time"] - frame["origin_weather__as_of"]).dropna()
    assert age.min() >= pd.Timedelta(hours=1) and age.max() <= pd.Timedelta(hours=3)


def test_verify_finds_everything_intact(first_run: dict) -> None:
    from pipelines import audit

    (result,) = audit.verify(env_lake(), f"{NAME}@champion")
    assert result.intact, [m.what for m in result.mismatches]
    assert result.checked > 300


def test_every_manifest_of_the_lineage_is_this_pipelines(lineage: dict) -> None:
    """Raw and feature partitions, the training set and the GX results it names."""
    assert lineage["pipeline"] == NAME
    folders = [p["path"] for p in lineage["raw_partitions"]]
    folders += [p["path"] for p in lineage["feature_partitions"]]
    folders.append(lineage["training_set"]["path"])
    results = [c["result"] for c in lineage["checks"]["raw"]]
    results.append(lineage["checks"]["training_set"]["result"])
    folders += [str(Path(r).parents[1]) for r in results]  # <folder>/g-<uuid>/<result>
    assert {p["path"].split("/date=")[0] for p in lineage["raw_partitions"]} == {
        f"{NAME}/raw/weather", f"{NAME}/raw/flights"}
    assert {p["view"] for p in lineage["feature_partitions"]} == VIEWS
    own = (env_lake().root / NAME).resolve()
    for folder in folders:
        path = (env_lake().root / folder).resolve()
        assert path.is_relative_to(own), folder
        manifest = json.loads((path / lake.MANIFEST).read_text())
        assert manifest.get("pipeline") == NAME, folder


def test_flights_example_weather_is_untouched(first_run: dict,
                                              flights_weather: dict[str, str]) -> None:
    """Same source name, same landing files, different partitions: the flights ones keep
    their bytes (data and manifests), and ours are a separate set of files."""
    assert _files("flights_delay", "weather") == flights_weather
    files = _files(NAME, "weather")
    ours = {name: sha for name, sha in files.items() if f"/{lake.PINS}/" not in name}
    assert len(ours) == 2 * (END - START).days  # data.parquet and _manifest.json per day
    # and the pin of the generation the trained version read (`lineage.pin_inputs`)
    assert len(files) - len(ours) == (END - START).days
    flights_manifest = json.loads(
        (lake.partition_dir(env_lake(), "flights_delay", "raw", "weather", START)
         / lake.MANIFEST).read_text())
    our_manifest = json.loads(
        (lake.partition_dir(env_lake(), NAME, "raw", "weather", START) / lake.MANIFEST).read_text())
    assert flights_manifest["pipeline"] == "flights_delay" and our_manifest["pipeline"] == NAME
    assert flights_manifest["source_files"] == our_manifest["source_files"]  # one upstream file
