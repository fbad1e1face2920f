"""The GX gate: real Great Expectations runs, published results and Data Docs, clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines import lake, quality
from pipelines.errors import SpecError, ValidationFailed
from pipelines.lake import from_env as env_lake
from pipelines.spec import LoadedSpec
from pipelines.training_set import TrainingInput

from .conftest import training_suite

REPO_SUITES = sorted((Path(__file__).resolve().parents[2] / "expectations").glob("*.json"))
SUITE = {
    "name": "readings_check",
    "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "value"}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "value", "min_value": 0, "max_value": 1}},
        {"type": "expect_column_values_to_be_in_set",
         "kwargs": {"column": "sensor", "value_set": ["a", "b", "c"]}},
    ],
}

REMEDY = "Fix the rows, or the rule in the suite; then run the task again."


@pytest.fixture
def lake_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own lake, so report summaries resolve lake-relative paths."""
    root = tmp_path / "lake"
    root.mkdir()
    monkeypatch.setenv("PITSTOP_LAKE", str(root))
    return root


@pytest.fixture
def suite_path(tmp_path: Path) -> Path:
    path = tmp_path / "expectations" / "readings_check.json"
    path.parent.mkdir()
    path.write_text(json.dumps(SUITE))
    return path


def _readings(rows: int = 12) -> pd.DataFrame:
    return pd.DataFrame({
        "sensor": [("a", "b", "c")[i % 3] for i in range(rows)],
        "value": np.linspace(0.05, 0.95, rows),
    })


def _files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_valid_frame_passes_and_publishes_result_docs_and_manifest(
        suite_path: Path, lake_dir: Path) -> None:
    """A passing run keeps the full result and Data Docs under out_dir, all in the manifest."""
    out_dir = lake_dir / "_quality" / "readings"
    report = quality.validate(_readings(), suite_path, "readings day 1", out_dir)
    quality.require_valid(report, REMEDY)  # no exception
    assert report.success and report.failures == []
    assert (report.evaluated, report.successful) == (3, 3)
    assert report.suite == "readings_check"

    manifest = lake.read_manifest(out_dir)
    assert manifest is not None
    published = out_dir / manifest["generation"]
    assert report.result_path == lake.committed_file(out_dir, quality.RESULT_FILE)
    assert report.result_path == published / quality.RESULT_FILE
    result = json.loads(report.result_path.read_text())
    assert result["success"] is True
    assert report.docs_path.suffix == ".html" and report.docs_path.is_file()
    assert report.docs_path.is_relative_to(published / quality.DOCS_DIR / "validations")

    assert manifest["suite"] == "readings_check" and manifest["success"] is True
    assert manifest["suite_sha256"] == lake.sha256_file(suite_path)
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == _files_under(published)
    assert _files_under(out_dir) - {lake.MANIFEST} == {f"{published.name}/{n}" for n in listed}
    assert quality.RESULT_FILE in listed
    assert report.docs_path.relative_to(published).as_posix() in listed
    for name, entry in listed.items():
        assert entry["sha256"] == lake.sha256_file(published / name)

    assert report.summary(env_lake()) == quality.QualitySummary(
        suite="readings_check", success=True, evaluated=3, successful=3,
        result_path=f"_quality/readings/{published.name}/{quality.RESULT_FILE}",
        docs_dir=f"_quality/readings/{published.name}/{quality.DOCS_DIR}",
        docs_path=report.docs_path.relative_to(lake_dir).as_posix())


@pytest.mark.parametrize(("column", "bad_value", "expectation"), [
    ("value", None, "expect_column_values_to_not_be_null"),
    ("value", 7.5, "expect_column_values_to_be_between"),
    ("sensor", "zz", "expect_column_values_to_be_in_set"),
])
def test_failure_names_suite_expectation_and_column(
        suite_path: Path, lake_dir: Path, column: str, bad_value: Any, expectation: str) -> None:
    """One bad value fails exactly its expectation; the error names suite, type and column."""
    frame = _readings()
    frame[column] = frame[column].astype(object)
    frame.loc[4, column] = bad_value
    report = quality.validate(frame, suite_path, "readings day 2", lake_dir / "q")
    assert not report.success
    assert (report.evaluated, report.successful) == (3, 2)
    (failure,) = report.failures
    assert (failure.expectation, failure.column) == (expectation, column)
    with pytest.raises(ValidationFailed) as caught:
        quality.require_valid(report, REMEDY, lambda failure: f"in {failure.column}.csv")
    message = str(caught.value)
    assert message.startswith("GX suite 'readings_check' failed on readings day 2: 1 of 3 "
                              f"expectations failed: {expectation} on column '{column}'")
    # where its rows are, after what GX saw and before the rule and the remedy
    assert f", in {column}.csv" in message
    assert message.index(f", in {column}.csv") < message.index(f". {REMEDY}")
    assert f". {REMEDY} (full result: {report.result_path}; Data Docs: " in message


def test_a_column_the_table_lacks_is_named_as_missing(suite_path: Path, lake_dir: Path) -> None:
    """GX reports an expectation on a missing column with an empty result; the message must say
    the column is not there (a stranger read `... on column 'x' {}` and could not tell)."""
    frame = _readings().rename(columns={"sensor": "sensor_id"})
    report = quality.validate(frame, suite_path, "readings day 2", lake_dir / "q")
    (failure,) = report.failures
    assert failure.error == 'Error: The column "sensor" in BatchData does not exist.'
    with pytest.raises(ValidationFailed) as caught:
        quality.require_valid(report, REMEDY)
    assert ("expect_column_values_to_be_in_set on column 'sensor' could not be evaluated: "
            'Error: The column "sensor" in BatchData does not exist.') in str(caught.value)


@pytest.mark.parametrize(("observed", "shown"), [
    (np.float64(0.0), ": observed 0.0"),
    (np.int64(3), ": observed 3"),
    (np.array([0, 0]), ": observed [0, 0]"),
    (np.array([]), ""),
    ([np.int64(1), "b"], ": observed [1, 'b']"),
    ({"values": np.array([1.5]), "n": np.int64(2)},
     ": observed {'values': [1.5], 'n': 2}"),
    (0.25, ": observed 0.25"),
    (None, ""),
])
def test_a_failure_describes_any_observed_value(observed: Any, shown: str) -> None:
    failure = quality.Failure("expect_x", "label", {}, {"observed_value": observed,
                                                          "unexpected_count": None})
    assert failure.describe() == f"expect_x on column 'label'{shown}"


def test_a_failure_says_how_many_rows_broke_the_rule_and_a_few_of_their_values() -> None:
    failure = quality.Failure("expect_column_values_to_be_between", "value",
                              {"column": "value", "min_value": 0.0, "max_value": 150.0},
                              {"unexpected_count": np.int64(19), "unexpected_percent": 0.3534,
                               "partial_unexpected_list": [-2.64, -2.74, -2.22, -17.04, -4.56,
                                                           -4.3, -6.08]})
    assert failure.describe() == (
        "expect_column_values_to_be_between on column 'value': 19 rows break it (0.35% of "
        "those checked), such as [-2.64, -2.74, -2.22, -17.04, -4.56]; rule {'min_value': 0.0, "
        "'max_value': 150.0}")


def test_a_single_class_label_fails_the_gate_with_its_mean(tmp_path: Path,
                                                           lake_dir: Path) -> None:
    """GX reports a column mean as a numpy scalar: the gate names it, it does not crash."""
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"name": "labels", "expectations": [
        {"type": "expect_column_mean_to_be_between",
         "kwargs": {"column": "late", "min_value": 0.05, "max_value": 0.6}}]}))
    report = quality.validate(pd.DataFrame({"late": [0] * 50}), path, "one class", lake_dir / "q")
    with pytest.raises(ValidationFailed, match=r"on column 'late': observed 0\.0; rule"):
        quality.require_valid(report, REMEDY)


def test_revalidating_replaces_out_dir_whole(suite_path: Path, lake_dir: Path) -> None:
    """A second run commits a new generation: its manifest names only its own result and
    page; the first generation stays (for readers still on it) until the next commit."""
    out_dir = lake_dir / "_quality" / "readings"
    first = quality.validate(_readings(), suite_path, "first", out_dir)
    bad = _readings()
    bad.loc[0, "value"] = 3.0
    second = quality.validate(bad, suite_path, "second", out_dir)

    assert first.success and not second.success
    assert json.loads(second.result_path.read_text())["success"] is False
    manifest = lake.read_manifest(out_dir)
    assert manifest is not None and manifest["success"] is False
    published = out_dir / manifest["generation"]
    pages = sorted((published / quality.DOCS_DIR / "validations").rglob("*.html"))
    assert pages == [second.docs_path]
    assert {f["name"] for f in manifest["files"]} == _files_under(published)
    assert first.result_path.parent.name == manifest["previous"]
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        [lake.MANIFEST, manifest["generation"], manifest["previous"]])


@pytest.mark.parametrize(("content", "problem"), [
    (None, "GX suite file not found"),
    ("{not json", "not valid JSON"),
    (json.dumps({"name": "another_name", "expectations": []}), "equal to the file stem"),
    (json.dumps({"expectations": []}), "equal to the file stem"),
    (json.dumps({"name": "broken", "expectations": {"type": "x"}}), "a list of `expectations`"),
])
def test_load_suite_errors_name_the_file(tmp_path: Path, content: str | None,
                                         problem: str) -> None:
    """Missing, malformed or misnamed suite files are SpecErrors naming the file."""
    path = tmp_path / "broken.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SpecError, match=problem) as caught:
        quality.load_suite(path)
    assert str(path) in str(caught.value)


def test_validate_with_bad_suite_publishes_nothing(tmp_path: Path, lake_dir: Path) -> None:
    """A suite error stops before anything is written under the lake."""
    with pytest.raises(SpecError):
        quality.validate(_readings(), tmp_path / "missing.json", "x", lake_dir / "q")
    assert list(lake_dir.iterdir()) == []


@pytest.mark.parametrize("path", REPO_SUITES, ids=lambda p: p.stem)
def test_repo_suites_load_into_gx(path: Path) -> None:
    """Every suite in expectations/ loads and is a suite GX itself accepts."""
    import great_expectations as gx

    suite = quality.load_suite(path)
    assert suite["name"] == path.stem and suite["expectations"]
    gx_suite = gx.ExpectationSuite(**quality._strip_ids(suite))
    assert len(gx_suite.expectations) == len(suite["expectations"])


def test_repo_has_the_example_suites() -> None:
    assert {p.stem for p in REPO_SUITES} >= {
        "flights_delay_raw_flights", "flights_delay_raw_weather", "flights_delay_training_set"}


def _training_set(rows: int = 1200) -> pd.DataFrame:
    """Rows satisfying every expectation of the training-set suite."""
    cutoff = pd.date_range("2013-03-01T06:00Z", periods=rows, freq="15min")
    as_of = pd.Series(cutoff - pd.Timedelta(minutes=50))  # copied per column: no shared buffer
    return pd.DataFrame({
        "flight_id": [f"UA-{i}" for i in range(rows)],
        "prediction_time": cutoff,
        "origin": [("EWR", "JFK", "LGA")[i % 3] for i in range(rows)],
        "dest": "ORD",
        "carrier": "UA",
        "distance": 719,
        "sched_dep_hour": cutoff.hour,
        "day_of_week": cutoff.dayofweek,
        "delayed": [int(i % 4 == 0) for i in range(rows)],
        "origin_weather__as_of": as_of.copy(),
        "origin_weather__temp": 41.0,
        "origin_weather__humid": 60.0,
        "origin_weather__wind_speed": 9.0,
        "origin_delays__as_of": as_of.copy(),
        "origin_delays__departures": 12,
        "origin_delays__delayed_share": 0.25,
        "carrier_delays__as_of": as_of.copy(),
        "carrier_delays__departures": 7,
        "carrier_delays__delayed_share": 0.3,
        "plane__as_of": as_of.where(np.arange(rows) % 5 != 0),  # some planes unknown: NaT
        "plane__seats": 180,
        "plane__engines": 2,
    })


@pytest.mark.parametrize("leaking", [
    "origin_weather__as_of", "origin_delays__as_of", "carrier_delays__as_of", "plane__as_of",
])
def test_training_suite_catches_a_feature_from_the_future(lake_dir: Path, leaking: str) -> None:
    """One row whose feature is newer than its prediction_time is the only failure."""
    path = next(p for p in REPO_SUITES if p.stem == "flights_delay_training_set")
    frame = _training_set()
    frame.loc[101, leaking] = frame.loc[101, "prediction_time"] + pd.Timedelta(minutes=1)
    report = quality.validate(frame, path, "leaky training set", lake_dir / "q")
    assert not report.success
    assert [(f.expectation, f.column) for f in report.failures] == [
        ("expect_column_pair_values_a_to_be_greater_than_b", f"prediction_time vs {leaking}")]
    assert report.failures[0].observed.get("unexpected_count") == 1
    with pytest.raises(ValidationFailed) as caught:
        quality.require_valid(report, REMEDY)
    message = str(caught.value)
    assert "flights_delay_training_set" in message
    assert "expect_column_pair_values_a_to_be_greater_than_b" in message
    assert leaking in message


def test_training_suite_accepts_features_at_the_cutoff(lake_dir: Path) -> None:
    """A feature known exactly at prediction_time is allowed (or_equal)."""
    path = next(p for p in REPO_SUITES if p.stem == "flights_delay_training_set")
    frame = _training_set()
    frame["origin_weather__as_of"] = frame["prediction_time"]
    report = quality.validate(frame, path, "training set", lake_dir / "q")
    assert report.success, [f.describe() for f in report.failures]


def test_validate_training_set_checks_the_published_set(ingested: LoadedSpec,
                                                        built: TrainingInput) -> None:
    """The suite runs over the set's own rows; the summary's paths are lake-relative and
    resolve, under the set's dataset_id."""
    training_suite(ingested, 1.0)
    summary = quality.validate_training_set(env_lake(), ingested, built.training_set)
    assert isinstance(summary, quality.QualitySummary)
    assert (summary.suite, summary.success, summary.evaluated, summary.successful) == (
        "sensors_training_set", True, 1, 1)
    folder = f"sensors/_quality/datasets/{built.training_set.dataset_id}"
    generation = lake.read_manifest(env_lake().root / folder)["generation"]
    assert summary.result_path == f"{folder}/{generation}/{quality.RESULT_FILE}"
    assert summary.docs_dir == f"{folder}/{generation}/{quality.DOCS_DIR}"
    for path in (summary.result_path, summary.docs_path):
        assert (env_lake().root / path).is_file()
    result = json.loads((env_lake().root / summary.result_path).read_text())
    (checked,) = result["results"]
    assert checked["result"]["element_count"] == built.training_set.rows


def test_validate_training_set_refuses_a_set_that_fails_its_suite(
        ingested: LoadedSpec, built: TrainingInput) -> None:
    training_suite(ingested, 0.5)  # the readings are uniform on [0, 1)
    with pytest.raises(ValidationFailed) as caught:
        quality.validate_training_set(env_lake(), ingested, built.training_set)
    message = str(caught.value)
    assert f"training set {built.training_set.dataset_id[:12]} ({built.training_set.path})" in (
        message)
    assert "expect_column_values_to_be_between on column 'last__value'" in message


def _gate(spec: LoadedSpec, built: TrainingInput, force: bool = False) -> str:
    """The generation of the committed result the gate's summary points at."""
    summary = quality.validate_training_set(env_lake(), spec, built.training_set, force)
    return summary.result_path.split("/")[-2]


def test_an_unchanged_set_keeps_its_validation(ingested: LoadedSpec,
                                               built: TrainingInput) -> None:
    """The same set, suite and code: the committed result is reused (no new generation);
    a changed suite, a damaged result file or `force` validate again."""
    training_suite(ingested, 1.0)
    first = _gate(ingested, built)
    assert _gate(ingested, built) == first
    assert _gate(ingested, built, force=True) != first
    kept = _gate(ingested, built)
    result = env_lake().root / f"sensors/_quality/datasets/{built.training_set.dataset_id}" / kept
    (result / quality.RESULT_FILE).write_text("{}")
    repaired = _gate(ingested, built)
    assert repaired != kept
    training_suite(ingested, 2.0)
    assert _gate(ingested, built) != repaired


def test_a_kept_failed_validation_still_refuses_the_set(ingested: LoadedSpec,
                                                         built: TrainingInput) -> None:
    training_suite(ingested, 0.5)
    for _ in range(2):
        with pytest.raises(ValidationFailed, match="last__value"):
            quality.validate_training_set(env_lake(), ingested, built.training_set)
