"""Spec and hook mistakes: each is refused with the spec file and the field named, by
`load_spec`, by `pitstop validate`'s checks (`pipelines.validation`) or by the stage that
runs the hook, before anything of that stage is published."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from pipelines import features, training_set, validation
from pipelines.errors import DataError, SpecError
from pipelines.lake import from_env as env_lake
from pipelines.spec import LoadedSpec, load_spec
from tests.faults.invariants import (
    D1,
    D4,
    Case,
    assert_clear_error,
    assert_nothing_published,
    params,
    run_clean,
)
from tests.unit.conftest import amend

SUITE = {"name": "sensors_training_set", "expectations": [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "reading_id"}}]}


def _edit(spec: LoadedSpec, old: str, new: str) -> Path:
    """The spec file with one text replaced (the hooks folder beside it is unchanged)."""
    text = spec.path.read_text()
    assert old in text, old
    spec.path.write_text(text.replace(old, new, 1))
    return spec.path


LOAD = [
    Case("unknown-estimator", "`sensors.yaml: model.estimator 'sklearn.linear_model.NoSuchModel' "
         "cannot be imported (...); use an import path such as "
         "sklearn.ensemble.RandomForestRegressor`",
         ("sklearn.linear_model.LogisticRegression", "sklearn.linear_model.NoSuchModel"),
         ("model.estimator 'sklearn.linear_model.NoSuchModel'", "cannot be imported")),
    Case("estimator-of-wrong-task", "`sensors.yaml: model.estimator: LinearRegression is a "
         "regressor, but model.task is 'binary', which needs a classifier; choose a classifier, or "
         "set model.task: regression`",
         ("sklearn.linear_model.LogisticRegression", "sklearn.linear_model.LinearRegression"),
         ("LinearRegression is a regressor, but model.task is 'binary'",)),
    Case("params-not-taken", "`sensors.yaml: model.params do not fit "
         "sklearn.linear_model.LogisticRegression: ... unexpected keyword argument 'depth'`",
         ("  seed: 7", "  seed: 7\n  params: {depth: 3}"),
         ("model.params do not fit", "'depth'")),
    Case("reserved-column", "`sensors.yaml: sources.readings: Value error, column '_partition_day' "
         "is reserved: pitstop adds it to every raw row (the delivery day); rename that column`",
         ("value: float}", "value: float, _partition_day: timestamp}"),
         ("sources.readings", "column '_partition_day' is reserved")),
    Case("misspelt-field", "`sensors.yaml: feature_views.last.lookbak: Extra inputs are not "
         "permitted; did you mean 'lookback'?`", ("    lookback: 1d", "    lookbak: 1d"),
         ("feature_views.last.lookbak", "Extra inputs are not permitted; did you mean "
          "'lookback'?")),
    Case("bad-duration", "`sensors.yaml: feature_views.last.ttl: Input should be a valid "
         "timedelta...`", ("    ttl: 2h", "    ttl: two hours"),
         ("feature_views.last.ttl", "valid timedelta")),
    Case("unknown-source", "`sensors.yaml: (top level): Value error, feature_views.last.sources: "
         "unknown sources ['reading']`",
         ("    sources: [readings]\n    keys", "    sources: [reading]\n    keys"),
         ("feature_views.last.sources: unknown sources ['reading']",)),
    Case("unknown-placeholder", "`sensors.yaml: sources.readings.path: Value error, "
         "'readings/{date}/{hour}.csv' names the placeholders ['date', 'hour'], but period: day "
         "needs ['date']: write {date} (...), or set `period` to the files' cadence (day, hour "
         "or month)`", ("readings/{date}.csv", "readings/{date}/{hour}.csv"),
         ("sources.readings.path", "names the placeholders ['date', 'hour']",
          "but period: day needs ['date']")),
]


@pytest.mark.parametrize("case", params(*LOAD))
def test_a_spec_mistake_fails_at_load_naming_file_and_field(tiny: LoadedSpec, case: Case) -> None:
    """Invariant: a spec that cannot run never loads: SpecError naming the spec file, the
    field and what to do, before any stage could publish."""
    path = _edit(tiny, *case.fault)
    with pytest.raises(SpecError) as error:
        load_spec(path)
    assert_clear_error(error, SpecError, str(path), *case.needles)


CHECKS = [
    Case("unknown-hook-function", "`sensors.yaml: error: feature_views.last.function: "
         "'hooks:last_valu': .../hooks.py defines no 'last_valu'; did you mean 'last_value'?`",
         ("hooks:last_value", "hooks:last_valu"),
         ("feature_views.last.function", "defines no 'last_valu'", "did you mean 'last_value'?")),
    Case("unknown-hook-module", "`sensors.yaml: error: label.function: 'labels:spine': hook module "
         ".../labels.py not found`", ("hooks:spine", "labels:spine"),
         ("label.function", "hook module", "labels.py not found")),
    Case("bad-time-zone", "`sensors.yaml: error: sources.readings.timezone: Unknown TimeZone "
         "'America/NewYork'! ...; use an IANA time zone name such as America/New_York`",
         ("    event_time: ts\n", "    event_time: ts\n    timezone: America/NewYork\n"),
         ("sources.readings.timezone", "America/NewYork", "America/New_York")),
    Case("missing-suite", "`sensors.yaml: error: training_suite: .../sensors_training_set.json: GX "
         "suite file not found`", None, ("training_suite", "GX suite file not found")),
]


@pytest.mark.parametrize("case", params(*CHECKS))
def test_a_spec_mistake_is_found_by_the_cheap_checks(tiny: LoadedSpec, case: Case) -> None:
    """Invariant: a spec that loads but cannot run is refused by the checks the DAG factory
    runs at every parse (`validation.check(full=False)`, then `refuse_errors`): one SpecError
    naming the spec file, the field and the fix, and exactly one finding, this one."""
    if case.id != "missing-suite":
        (tiny.expectations_dir / "sensors_training_set.json").write_text(json.dumps(SUITE))
    if case.fault:
        path = _edit(tiny, *(part.replace("{{", "{").replace("}}", "}") for part in case.fault))
    else:
        path = tiny.path
    spec = load_spec(path, check=False)
    findings = validation.check(spec, full=False)
    assert len(findings) == 1 and findings[0].field == case.needles[0], findings
    with pytest.raises(SpecError) as error:
        validation.refuse_errors(spec, findings)
    assert_clear_error(error, SpecError, str(path), "1 error(s)", *case.needles)


BROKEN_HOOKS = '''
import pandas as pd

def raises(raw):
    return 1 / 0

def no_event_time(raw):
    return raw["readings"][["sensor", "value"]]

def not_a_frame(raw):
    return raw["readings"].to_dict("records")

def naive_time(raw):
    frame = raw["readings"][["sensor", "ts", "value"]].rename(columns={"ts": "event_time"})
    return frame.assign(event_time=frame["event_time"].dt.tz_localize(None))

def spine_without_target(raw):
    frame = raw["readings"]
    return pd.DataFrame({"reading_id": frame["sensor"] + frame["ts"].astype(str),
                         "sensor": frame["sensor"], "cutoff": frame["ts"]})
'''

VIEW_HOOKS = [
    Case("hook-raising", "`<spec>: feature_views.last.function broken:raises raised "
         "ZeroDivisionError: division by zero; fix the hook` (SpecError, not retried)",
         "broken:raises", ("feature_views.last.function", "broken:raises")),
    Case("hook-without-event-time", "`feature view last: output lacks column 'event_time'`",
         "broken:no_event_time", ("feature view last", "output lacks column 'event_time'")),
    Case("hook-returning-non-frame", "`feature view last: broken:not_a_frame returned a list, "
         "not a pandas DataFrame of the keys, event_time and feature columns`",
         "broken:not_a_frame", ("feature view last", "DataFrame")),
    Case("hook-returning-naive-time", "`feature view last: column 'event_time' must be "
         "timezone-aware UTC, got datetime64[us]`", "broken:naive_time",
         ("feature view last", "'event_time' must be timezone-aware UTC")),
]


def _with_broken_hooks(spec: LoadedSpec) -> None:
    (Path(spec.hooks_dir) / "broken.py").write_text(textwrap.dedent(BROKEN_HOOKS))


@pytest.mark.parametrize("case", params(*VIEW_HOOKS))
def test_a_broken_view_hook_publishes_no_features(
        ingested: LoadedSpec, clean_dataset_id: str, case: Case) -> None:
    """Invariant: a view hook that raises or returns the wrong thing fails `compute_view`
    with a DataError/SpecError naming the view and what is wrong; no feature partition is
    published; with the spec's own hook the dataset_id is the clean one."""
    _with_broken_hooks(ingested)
    view = ingested.pipeline.feature_views["last"].model_copy(update={"function": case.fault})
    with pytest.raises(Exception) as error:  # noqa: PT011 - the type is what is checked
        features.compute_view(env_lake(), amend(ingested, feature_views={"last": view}), "last", D1, D4)
    assert isinstance(error.value, DataError | SpecError), repr(error.value)
    assert_clear_error(error, type(error.value), *case.needles)
    assert_nothing_published(ingested, "features", "last")
    assert run_clean(ingested) == clean_dataset_id


def test_a_label_hook_without_the_target_publishes_no_training_set(
        ingested: LoadedSpec, clean_dataset_id: str) -> None:
    """Invariant: a label hook whose output lacks the declared target fails the training
    set with a DataError naming the hook and the column; no training set is published.

    Sees: `label broken:spine_without_target: output lacks column 'high'`.
    """
    _with_broken_hooks(ingested)
    features.compute_view(env_lake(), ingested, "last", D1, D4)
    label = ingested.pipeline.label.model_copy(update={"function": "broken:spine_without_target"})
    with pytest.raises(DataError) as error:
        training_set.prepare(env_lake(), amend(ingested, label=label), D1, D4)
    assert_clear_error(error, DataError, "label broken:spine_without_target",
                       "output lacks column 'high'")
    assert_nothing_published(ingested, "datasets", "")
    assert run_clean(ingested) == clean_dataset_id


def test_an_unresolvable_hook_fails_the_stage_as_a_spec_error(ingested: LoadedSpec) -> None:
    """Invariant: a hook that the spec names but the hooks folder does not define fails the
    stage with a SpecError (never retried) naming the spec and the reference; nothing is
    published.

    Sees: `<spec>: cannot resolve hook 'hooks:nope': module ... has no attribute 'nope'`.
    """
    view = ingested.pipeline.feature_views["last"].model_copy(update={"function": "hooks:nope"})
    with pytest.raises(SpecError) as error:
        features.compute_view(env_lake(), amend(ingested, feature_views={"last": view}), "last", D1, D4)
    assert_clear_error(error, SpecError, str(ingested.path), "cannot resolve hook 'hooks:nope'")
    assert_nothing_published(ingested, "features", "last")
