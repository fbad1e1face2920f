"""The spec loads the example, and every kind of mistake names the file and the field."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from pipelines.errors import SpecError
from pipelines.spec import load_spec, parse_duration


def test_example_loads(spec_path: Path) -> None:
    spec = load_spec(spec_path)
    assert spec.name == "flights_delay"
    assert spec.pipeline.feature_views["origin_weather"].ttl == dt.timedelta(hours=3)
    assert spec.pipeline.feature_views["plane"].ttl is None
    assert callable(spec.resolve(spec.pipeline.label.function))
    assert spec.suite_path("x").parent.name == "expectations"


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", dt.timedelta(seconds=90)), ("30m", dt.timedelta(minutes=30)),
    ("3h", dt.timedelta(hours=3)), ("1d", dt.timedelta(days=1)), ("PT2H", "PT2H"),
])
def test_durations(text: str, expected: object) -> None:
    assert parse_duration(text) == expected


def _broken(spec_path: Path, tmp_path: Path, change: callable) -> Path:
    data = yaml.safe_load(spec_path.read_text())
    change(data)
    target = tmp_path / "broken.yaml"
    target.write_text(yaml.safe_dump(data))
    return target


def _from_database(data: dict, **fields: object) -> None:
    """Make the flights source a database source: `fields` set (or with None, drop) the
    `database` section's and then the source's own fields."""
    source = data["sources"]["flights"]
    source.pop("path")
    source.pop("event_time")
    database = {"table": "flights", "time_column": "time_hour"}
    for name, value in fields.items():
        target = database if name in ("url", "conn_id", "table", "query", "time_column") \
            else source
        target.pop(name, None) if value is None else target.update({name: value})
    source["database"] = database


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d.update(colour="red"), "colour"),
    (lambda d: d["sources"]["flights"].update(delimiter=";;"), "sources.flights.delimiter"),
    (lambda d: d["sources"]["flights"].update(delimiter='"'),
     "sources.flights: Value error, delimiter '\"' cannot separate fields"),
    (lambda d: d["sources"]["flights"].update(format="parquet", delimiter=","),
     "sources.flights: Value error, `delimiter` applies to csv sources only"),
    (lambda d: d["sources"]["flights"].update(min_rows=-1), "sources.flights.min_rows"),
    (lambda d: d["sources"]["flights"].update(future_tolerance="later"),
     "sources.flights.future_tolerance"),
    (lambda d: d["sources"]["flights"].pop("event_time"), "sources.flights"),
    (lambda d: d["sources"]["flights"].update(path="flights.csv"), "sources.flights.path"),
    (lambda d: d["feature_views"]["plane"].update(sources=["nope"]), "feature_views.plane.sources"),
    (lambda d: d["feature_views"]["origin_weather"].update(ttl="soon"),
     "feature_views.origin_weather.ttl"),
    (lambda d: d["model"].update(categorical=["colour"]), "model"),
    (lambda d: d["split"].update(eval_days=0), "split.eval_days"),
    (lambda d: d["evaluation"]["criteria"]["min"].update(accuracy=0.5),
     "evaluation.criteria.min: ['accuracy'] are not binary metrics"),
    (lambda d: d["evaluation"]["criteria"].update(slice_max={"rmse": 3}),
     "evaluation.criteria.slice_max: ['rmse'] are not binary metrics"),
    (lambda d: d["model"].pop("task"), "model.task"),
    (lambda d: d["model"].update(task="ranking"), "model.task"),
    (lambda d: d["model"].update(build="models:make"), "exactly one of `estimator`"),
    (lambda d: d["airflow"].update(retries=-1) if "airflow" in d else d.update(
        airflow={"retries": -1}), "airflow.retries"),
    (lambda d: d.pop("label"), "label"),
    (lambda d: d.update(monitoring={"features": {"colour": {"max_psi": 0.1}}}),
     "monitoring.features: ['colour'] are not in model.features"),
    (lambda d: d.update(monitoring={"max_feature_psi": 0}), "monitoring.max_feature_psi"),
    (lambda d: d.update(monitoring={"max_null_rate": 1.5}), "monitoring.max_null_rate"),
    (lambda d: d.update(score={"alias": "no spaces"}), "score.alias"),
    (lambda d: d.update(score={"version": 3}), "score.version"),
    (lambda d: _from_database(d, url="postgresql://db/x", conn_id="flights_db"),
     "sources.flights.database: Value error, give exactly one of `url`"),
    (lambda d: _from_database(d), "sources.flights.database: Value error, give exactly one of `url`"),
    (lambda d: _from_database(d, conn_id="flights_db", time_column=None),
     "sources.flights.database.time_column: Field required"),
    (lambda d: _from_database(d, conn_id="flights_db", table=None),
     "sources.flights.database: Value error, give exactly one of `table` or `query`"),
    (lambda d: _from_database(d, conn_id="flights_db", table="flights; drop table x"),
     "sources.flights.database.table: String should match pattern"),
    (lambda d: _from_database(d, conn_id="flights_db", path="flights/{date}.csv"),
     "['path'] describe landing files, which a `database` source has none of"),
    (lambda d: _from_database(d, conn_id="flights_db", event_time="sched_dep"),
     "event_time 'sched_dep' and database.time_column 'time_hour' differ"),
    (lambda d: d["sources"]["flights"].pop("path"),
     "sources.flights: Value error, give `path` (landing files) or `database`"),
])
def test_bad_spec_names_file_and_field(spec_path: Path, tmp_path: Path, change: callable,
                                       field: str) -> None:
    target = _broken(spec_path, tmp_path, change)
    with pytest.raises(SpecError) as error:
        load_spec(target)
    assert str(target) in str(error.value)
    assert field in str(error.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)


def test_unknown_hook_names_the_ref(spec_path: Path) -> None:
    spec = load_spec(spec_path)
    with pytest.raises(SpecError, match="features:nothing_here"):
        spec.resolve("features:nothing_here")


def test_landing_can_be_overridden(spec_path: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PITSTOP_LANDING", str(tmp_path))
    assert load_spec(spec_path).landing_dir() == tmp_path.resolve()


@pytest.mark.parametrize(("model", "message"), [
    ({"task": "regression"}, "HistGradientBoostingClassifier is a classifier, but model.task is "
     "'regression', which needs a regressor; choose a regressor, or set model.task: binary or "
     "multiclass"),
    ({"estimator": "sklearn.ensemble.HistGradientBoostingRegressor"},
     "HistGradientBoostingRegressor is a regressor, but model.task is 'binary'"),
    ({"estimator": "sklearn.ensemble.NoSuchForest"}, "model.estimator "
     "'sklearn.ensemble.NoSuchForest' cannot be imported"),
    ({"estimator": "nosuchpackage.models.Thing"}, "module 'nosuchpackage', which is not installed"),
    ({"params": {"n_trees": 3}}, "model.params do not fit"),
    ({"estimator": "sklearn.svm.SVC", "params": {}}, "SVC has no predict_proba"),
    ({"estimator": "sklearn.preprocessing.StandardScaler", "params": {}},
     "StandardScaler is a neither classifier nor regressor"),
])
def test_the_estimator_is_checked_against_the_task(spec_path: Path, tmp_path: Path,
                                                    model: dict, message: str) -> None:
    """Before anything runs: importable, takes its params, fits `model.task`."""
    target = _broken(spec_path, tmp_path, lambda d: (d["model"].update(model),
                                                     d["evaluation"].update(criteria={})))
    with pytest.raises(SpecError) as error:
        load_spec(target)
    assert str(target) in str(error.value) and message in str(error.value)
    load_spec(target, check=False)  # the cheap parse-time load leaves the estimator alone


def test_a_regression_spec_takes_regression_metrics(spec_path: Path, tmp_path: Path) -> None:
    def regression(d: dict) -> None:
        d["model"].update(task="regression", params={"max_iter": 5},
                          estimator="sklearn.ensemble.HistGradientBoostingRegressor")
        d["evaluation"].pop("guardrails")
        d["evaluation"]["criteria"] = {"min": {"r2": 0.1}, "max_regression": {"rmse": 1.0},
                                       "slice_max": {"mae": 20}}
    spec = load_spec(_broken(spec_path, tmp_path, regression))
    assert spec.pipeline.model.task == "regression"
    assert spec.pipeline.evaluation.guardrails.mean_shift("regression") == 0.5
    assert spec.pipeline.evaluation.guardrails.mean_shift("binary") == 0.1


def test_score_and_monitoring_sections(spec_path: Path, tmp_path: Path) -> None:
    """Both optional: defaults without them; per-feature limits override the pipeline's."""
    default = load_spec(spec_path).pipeline
    assert default.score.alias == "champion" and default.schedules.score == "0 3 * * *"
    assert default.monitoring.mean_shift("binary") == 0.1
    feature = default.model.features[0]
    spec = load_spec(_broken(spec_path, tmp_path, lambda d: d.update(
        score={"alias": "challenger"},
        monitoring={"max_feature_psi": 0.3, "max_mean_shift": 0.05,
                    "features": {feature: {"max_psi": 0.9}}}))).pipeline
    assert spec.score.alias == "challenger" and spec.monitoring.mean_shift("regression") == 0.05
    assert spec.monitoring.feature_psi(feature) == 0.9
    assert spec.monitoring.feature_psi(default.model.features[1]) == 0.3
    assert spec.monitoring.null_rate(feature) == 0.5
    off = load_spec(_broken(spec_path, tmp_path, lambda d: d.update(
        monitoring={"features": {feature: {"limit_psi": False}}}))).pipeline.monitoring
    assert off.feature_psi(feature) is None and off.null_rate(feature) == 0.5
