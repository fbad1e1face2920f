"""`pitstop validate` catches, before anything runs, every mistake that would otherwise fail
deep inside a task, each named by file and field; the cheap part stays cheap.

Each bad spec is a copy of the aircraft_utilisation example (tests/example_copy.py) with one
thing broken.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipelines import cli, validation
from pipelines.errors import SpecError
from pipelines.spec import load_spec
from tests.example_copy import ROOT, copy_example

Edit = Callable[[dict[str, Any]], Any]


def _suite(folder: Path, suite: str, change: Callable[[dict[str, Any]], Any]) -> None:
    path = folder / "expectations" / f"{suite}.json"
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


def _views(data: dict[str, Any]) -> dict[str, Any]:
    return data["feature_views"]


def _estimator(ref: str) -> Edit:
    return lambda d: d["model"].update(estimator=ref)


def _build(ref: str) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        data["model"].pop("estimator")
        data["model"].pop("params")
        data["model"]["build"] = ref
    return edit


FLEET = "aircraft_utilisation_raw_fleet"
MISTAKES = [  # (spec edit, files edit, field, words the message must hold)
    pytest.param(lambda d: _views(d)["airframe"].update(function="features:airfame"), None,
                 "feature_views.airframe.function", "did you mean 'airframe'", id="view-hook"),
    pytest.param(lambda d: d["label"].update(function="labels:daily_minutes"), None,
                 "label.function", "defines no 'daily_minutes'", id="label-hook"),
    pytest.param(lambda d: _views(d)["airframe"].update(function="fleet:airframe"), None,
                 "feature_views.airframe.function", "fleet.py not found", id="hook-module"),
    pytest.param(_build("models:make_estimator"), None, "model.build", "models.py not found",
                 id="build-hook"),
    pytest.param(lambda d: d["sources"]["legs"].update(timezone="America/NewYork"), None,
                 "sources.legs.timezone", "America/New_York", id="timezone"),
    pytest.param(lambda d: d["sources"]["legs"].update(path="legs/{day}.parquet"), None,
                 "sources.legs.path", "names the placeholders ['day'], but period: day needs "
                 "['date']", id="placeholder"),
    pytest.param(lambda d: d["sources"]["legs"].update(path="legs/{date}}.parquet"), None,
                 "sources.legs.path", "is not a path template (Single '}'", id="lone-brace"),
    pytest.param(lambda d: d["sources"]["fleet"].update(suite="aircraft_fleet"), None,
                 "sources.fleet.suite", "aircraft_fleet.json: GX suite file not found",
                 id="suite-missing"),
    pytest.param(None, lambda f: (f / "expectations" / f"{FLEET}.json").write_text("{oops"),
                 "sources.fleet.suite", "not valid JSON", id="suite-json"),
    pytest.param(None, lambda f: _suite(f, FLEET, lambda s: s["expectations"][0].update(
        expectation_type=s["expectations"][0].pop("type"))), "sources.fleet.suite",
        "expectations[0]: a GX 1.x expectation needs a `type`", id="suite-gx0"),
    pytest.param(None, lambda f: _suite(f, FLEET, lambda s: s["expectations"][1].update(
        type="expect_table_columns_to_match_sets")), "sources.fleet.suite",
        "expectations[1] (expect_table_columns_to_match_sets): GX refuses it", id="suite-type"),
    pytest.param(None, lambda f: _suite(f, "aircraft_utilisation_training_set", lambda s: s[
        "expectations"].append({"type": "expect_column_to_exist", "kwargs": {"colum": "x"}})),
        "training_suite", "GX refuses it", id="suite-kwargs"),
    pytest.param(lambda d: d["evaluation"]["criteria"].update(min={"roc_auc": 0.6}), None,
                 "evaluation.criteria.min", "are not regression metrics", id="criteria"),
    pytest.param(lambda d: d["model"]["features"].append("aircraft_week__legs_flew"), None,
                 "model.features", "['aircraft_week__legs_flew'] are not columns of feature "
                 "view 'aircraft_week'", id="feature-declared"),
    pytest.param(_estimator("xgboost.XGBRegressor"), None, "model.estimator",
                 "module 'xgboost', which is not installed; install it", id="not-installed"),
    pytest.param(_estimator("sklearn.ensemble.RandomForestRegresor"), None, "model.estimator",
                 "has no attribute 'RandomForestRegresor'", id="estimator-typo"),
    pytest.param(_estimator("sklearn.ensemble.RandomForestClassifier"), None,
                 "model.estimator", "needs a regressor", id="estimator-task"),
]


@pytest.mark.parametrize(("edit", "files", "field", "words"), MISTAKES)
def test_validate_names_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       edit: Edit | None, files: Callable[[Path], Any] | None,
                                       field: str, words: str) -> None:
    path = copy_example(tmp_path, edit=edit)
    if files is not None:
        files(tmp_path)
    assert cli.main(["validate", str(path)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}: error: {field}: ")
    assert words in errors[0]


def test_the_examples_have_no_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """With nothing landed, only the label's columns (which it cannot declare) go unchecked.
    (An empty home of its own: the session's home holds what the e2e tests landed.)"""
    monkeypatch.setenv("PITSTOP_HOME", str(tmp_path))
    specs = [str(ROOT / "dags" / f"{name}.yaml") for name in ("flights_delay",
                                                               "aircraft_utilisation")]
    assert cli.main(["validate", *specs]) == 0
    out, err = capsys.readouterr()
    assert out.count(": ok (") == 2 and ": error: " not in err
    assert [line.split(": warning: ")[1][:15] for line in err.splitlines()] == [
        "model.features:"] * 2


def test_every_mistake_is_reported_at_once(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["sources"]["observations"].update(timezone="Europe/Londn")
        data["label"].update(function="labels:nope")
        data["model"]["features"].append("airframe__wings")
        data["model"].update(estimator="sklearn.linear_model.LogisticRegression")

    path = copy_example(tmp_path, edit=edit)
    assert cli.main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    fields = [line.split(": error: ")[1].split(":")[0] for line in err.splitlines()
              if ": error: " in line]
    assert fields == ["sources.observations.timezone", "label.function", "model.estimator",
                      "model.features"]
    assert f"{path}: INVALID (4 error(s), 1 warning(s))" in err  # the label's columns: unknown


def test_load_errors_are_one_finding_per_field(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["split"]["eval_days"] = 0
        _views(data)["airframe"]["ttl"] = "soon"
        data["label"]["sources"] = ["nope"]  # a cross-field rule, reported once fields pass

    path = copy_example(tmp_path, edit=edit)
    findings = validation.validate(path)
    assert [f.field for f in findings] == ["feature_views.airframe.ttl", "split.eval_days"]
    assert all(f.file == path and f.severity == "error" for f in findings)
    fixed = copy_example(tmp_path / "b", edit=lambda d: d["label"].update(sources=["nope"]))
    [finding] = validation.validate(fixed)
    assert (finding.field, finding.message) == ("label.sources", "unknown sources ['nope']")


def test_a_missing_spec_is_one_finding(tmp_path: Path) -> None:
    [finding] = validation.validate(tmp_path / "absent.yaml")
    assert finding.message == "spec file not found" and finding.field == "(file)"


def test_hooks_are_read_not_run_in_the_cheap_part(tmp_path: Path) -> None:
    """Names bound under if/try, by assignment or import all count; a syntax error is named."""
    path = copy_example(tmp_path)
    (tmp_path / "aircraft_utilisation" / "features.py").write_text(
        "import pandas as aircraft_week\ntry:\n    origin_conditions = len\nexcept OSError:\n"
        "    pass\nif True:\n    def airframe(raw):\n        raise SystemExit('ran')\n")
    assert validation.check(load_spec(path, check=False), full=False) == []
    (tmp_path / "aircraft_utilisation" / "labels.py").write_text("def daily_air_minutes(:\n")
    [finding] = validation.check(load_spec(path, check=False), full=False)
    assert finding.field == "label.function" and "labels.py line 1" in finding.message


def test_the_cheap_part_imports_nothing_heavy(tmp_path: Path) -> None:
    """The dag-processor runs it on every parse: no pandas, scikit-learn or GX."""
    path = copy_example(tmp_path)
    code = ("import sys; from pipelines import validation; "
            f"assert validation.validate({str(path)!r}, full=False) == []; "
            "print(sorted(m for m in ('pandas', 'sklearn', 'great_expectations') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_refuse_errors_lists_every_error_and_passes_warnings(tmp_path: Path) -> None:
    spec = load_spec(copy_example(tmp_path), check=False)
    warning = validation.Finding(spec.path, "model.features", "not checked", "warning")
    validation.refuse_errors(spec, [warning])
    errors = [validation.Finding(spec.path, f"f{i}", f"wrong {i}") for i in range(2)]
    with pytest.raises(SpecError, match="2 error") as raised:
        validation.refuse_errors(spec, [warning, *errors])
    assert f"{spec.path}: error: f0: wrong 0" in str(raised.value)
    assert f"{spec.path}: error: f1: wrong 1" in str(raised.value)
    assert "not checked" not in str(raised.value)


def _undeclared(data: dict[str, Any]) -> None:
    for view in _views(data).values():
        view.pop("columns")


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's real files of two days, landed once for the module."""
    from tests.integration.examples import land

    folder = tmp_path_factory.mktemp("landed")
    land(copy_example(folder), dt.date(2013, 1, 1), dt.date(2013, 1, 3))
    return folder / "landing" / "aircraft_utilisation"


def _with_landing(landed: Path, edit: Edit) -> Edit:
    def both(data: dict[str, Any]) -> None:
        data["landing"] = str(landed)
        edit(data)
    return both


def test_undeclared_columns_are_learned_from_landed_rows(tmp_path: Path, landed: Path) -> None:
    assert validation.validate(copy_example(tmp_path, edit=_with_landing(landed, _undeclared))
                               ) == []


@pytest.mark.parametrize(("feature", "words"), [
    ("aircraft_week__legs_flew", "are not columns of feature view 'aircraft_week'"),
    ("first_departure_minute", "are not columns of the label"),
    ("airframe__as_of__x", "are not columns of feature view 'airframe'"),
])
def test_a_feature_no_sample_gives_is_an_error(tmp_path: Path, landed: Path, feature: str,
                                               words: str) -> None:
    def edit(data: dict[str, Any]) -> None:
        _undeclared(data)
        data["model"]["features"].append(feature)

    [finding] = validation.validate(copy_example(tmp_path, edit=_with_landing(landed, edit)))
    assert (finding.field, finding.severity) == ("model.features", "error")
    assert f"['{feature}'] {words}" in finding.message
    assert "run on 50 rows of" in finding.message and ".parquet" in finding.message


def test_without_landed_data_undeclared_features_are_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = copy_example(tmp_path, edit=_undeclared)
    assert cli.main(["validate", str(path)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if ": warning: " in line]
    assert len(warnings) == 4  # three views and the label
    assert all(line.startswith(f"{path}: warning: model.features: ") for line in warnings)
    assert any("'airframe__seats'" in line and "declare feature_views.airframe.columns" in line
               and "source 'fleet' has no landed file" in line for line in warnings)


def test_declared_label_columns_check_its_features_without_data(tmp_path: Path,
                                                                landed: Path) -> None:
    """A label whose source cannot be sampled (a database; here nothing is landed) declares
    its columns like a view: its features are then checked against them, and the last
    warning goes. A feature the declaration lacks is an error naming the declaration."""
    sampled = load_spec(copy_example(tmp_path / "sampled", edit=_with_landing(landed, _undeclared)),
                        check=False)
    label = sampled.pipeline.label
    columns, how = validation.sample_columns(sampled, label.function, label.sources)
    assert columns is not None, how

    def declare(names: list[str]) -> Edit:
        return lambda data: data["label"].update(columns=names)

    assert validation.validate(copy_example(tmp_path / "declared", edit=declare(columns))) == []
    finding, *suite = validation.validate(copy_example(
        tmp_path / "short", edit=declare([c for c in columns if c != "day_of_week"])))
    assert (finding.field, finding.severity) == ("model.features", "error")
    assert "['day_of_week'] are not columns of the label" in finding.message
    assert "declared in label.columns" in finding.message
    # every producer's columns known: the training suite is checked too
    assert suite and all(f.field == "training_suite" and "names ['day_of_week']" in f.message
                         for f in suite)


def test_a_hook_failing_on_the_sample_is_a_warning(tmp_path: Path, landed: Path) -> None:
    path = copy_example(tmp_path, edit=_with_landing(landed, _undeclared))
    (tmp_path / "aircraft_utilisation" / "features.py").write_text(
        (ROOT / "dags" / "aircraft_utilisation" / "features.py").read_text()
        + "\n\ndef airframe(raw):\n    raise KeyError('seat')\n")
    [finding] = validation.validate(path)
    assert finding.severity == "warning"
    assert "features:airframe failed on a sample" in finding.message
    assert "KeyError: 'seat'" in finding.message


TRAINING_SUITE = "aircraft_utilisation_training_set"


@pytest.mark.parametrize(("kind", "kwargs"), [
    ("expect_column_values_to_not_be_null", {"column": "airframe__wings"}),
    ("expect_column_pair_values_to_be_equal",
     {"column_A": "tailnum", "column_B": "airframe__wings"}),
    ("expect_compound_columns_to_be_unique", {"column_list": ["tailnum", "airframe__wings"]}),
], ids=["column", "column_B", "column_list"])
def test_a_training_suite_column_the_set_lacks_is_an_error(tmp_path: Path, landed: Path,
                                                           kind: str,
                                                           kwargs: dict[str, Any]) -> None:
    """Found by a stranger: a view column renamed in the hook but not in the training suite
    used to pass validate and fail at validate_training_set after the whole backfill."""
    path = copy_example(tmp_path, edit=_with_landing(landed, _undeclared))
    _suite(tmp_path, TRAINING_SUITE, lambda s: s["expectations"].append(
        {"type": kind, "kwargs": kwargs}))
    [finding] = validation.validate(path)
    assert (finding.field, finding.severity) == ("training_suite", "error")
    assert f"{TRAINING_SUITE}.json: expectations[" in finding.message
    assert "names ['airframe__wings'], which the training set will not have" in finding.message
    assert "'airframe__seats'" in finding.message  # what it has, to pick the right name


def test_training_suite_columns_are_unchecked_while_a_view_is_unknown(tmp_path: Path) -> None:
    """Nothing landed and nothing declared: the features warn, the suite is not judged."""
    path = copy_example(tmp_path, edit=_undeclared)
    _suite(tmp_path, TRAINING_SUITE, lambda s: s["expectations"].append(
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "nope"}}))
    assert {(f.field, f.severity) for f in validation.validate(path)} == {
        ("model.features", "warning")}


def test_declaring_columns_changes_no_dataset_id(tmp_path: Path) -> None:
    """`columns:` is left out of the feature-definition hash that every dataset_id holds."""
    from pipelines.lineage import feature_definitions_hash

    declared = load_spec(copy_example(tmp_path / "a"), check=False)
    undeclared = load_spec(copy_example(tmp_path / "b", edit=_undeclared), check=False)
    assert declared.pipeline.feature_views["airframe"].columns
    assert feature_definitions_hash(declared) == feature_definitions_hash(undeclared)


def test_specs_in_one_dags_folder_may_not_share_a_name_or_model(tmp_path: Path) -> None:
    """Two pipelines in one deployment with one `name` share DAG ids and a lake folder; with
    one `model_name` they register into one MLflow model: both specs say so, naming the
    other file. A YAML file there that is not a spec is ignored."""
    first = copy_example(tmp_path, name="alpha")
    second = copy_example(tmp_path, name="beta", edit=lambda d: d.update(model_name="alpha"))
    (tmp_path / "notes.yaml").write_text("just: notes\n")
    assert validation.sibling_findings(load_spec(first, check=False)) == [validation.Finding(
        first, "model_name", f"'alpha' is also the model_name of {second}: both would register "
        "versions of one MLflow model and move one champion alias; give each pipeline its own")]
    third = copy_example(tmp_path, name="gamma", edit=lambda d: d.update(name="beta"))
    found = {(f.field, f.message.split(": ")[0]) for f in validation.validate(third, full=False)}
    assert ("name", f"'beta' is also the name of {second}") in found
    assert validation.sibling_findings(load_spec(copy_example(tmp_path / "solo"), check=False)) == []
