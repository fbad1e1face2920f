"""Bad values inside well-formed files and hooks: each fails its stage naming the file or
view, the column and the rule; nothing of that stage is published; fixed, the run gives the
clean dataset_id."""

from __future__ import annotations

import datetime as dt
import re
import textwrap
from pathlib import Path

import pytest

from pipelines import features, ingest, training_set
from pipelines.errors import DataError
from pipelines.lake import from_env as env_lake
from pipelines.spec import LoadedSpec
from tests.faults.invariants import (
    D1,
    D2,
    D3,
    D4,
    Case,
    assert_clear_error,
    assert_lake_sound,
    assert_nothing_published,
    landing,
    params,
    reland,
    run_clean,
)
from tests.unit.conftest import amend


def _value(text: str) -> callable:
    """Replace the first row's `value` with `text`."""
    return lambda p: p.write_text(re.sub(r"Z,0\.\d+\n", f"Z,{text}\n", p.read_text(), count=1))


def _first(old: str, new: str) -> callable:
    return lambda p: p.write_text(p.read_text().replace(old, new, 1))


VALUES = [
    Case("inf", "`<file>: values that are not finite (NaN, inf or -inf): column 'value' has 1 "
         "(rule: numbers are finite; ...); ... or set sensors.yaml: "
         "sources.readings.allow_infinite: true`",
         _value("inf"), ("column 'value' has 1 (rule: numbers are finite",
                         "sources.readings.allow_infinite")),
    Case("minus-inf", "`<file>: values that are not finite (NaN, inf or -inf): column 'value' "
         "has 1`", _value("-inf"), ("column 'value' has 1 (rule: numbers are finite",)),
    Case("nan", "`<file>: values that are not finite (NaN, inf or -inf): column 'value' has 1`",
         _value("NaN"), ("column 'value' has 1 (rule: numbers are finite",)),
    Case("null-key", "`<file>: column 'sensor' has 1 nulls (rule: keys are never null)`",
         _first("\na,", "\n,"), ("column 'sensor' has 1 nulls (rule: keys are never null)",)),
    Case("nan-in-time-key", "`<file>: column 'ts' has 1 values that are not timestamp`",
         _first("2024-01-02T03:00:00Z", "NaN"), ("column 'ts' has 1 values that are not timestamp",)),
    Case("null-event-time", "`<file>: column 'ts' has 1 nulls (rule: keys are never null)`",
         _first("2024-01-02T03:00:00Z", ""), ("column 'ts' has 1 nulls",)),
    Case("unparsable-timestamp", "`<file>: column 'ts' has 1 values that are not timestamp`",
         _first("2024-01-02T03:00:00Z", "2024-01-02T25:00:00Z"),
         ("column 'ts' has 1 values that are not timestamp",)),
    Case("wrong-type", "`<file>: column 'value' has 1 values that are not float`",
         _value("high"), ("column 'value' has 1 values that are not float",)),
    Case("future-timestamps", "`<file>: column 'ts' has N rows later than the run's clock ... plus "
         "sensors.yaml: sources.readings.future_tolerance (1 day, 0:00:00) (rule: no events from "
         "the future)`", None, ("rows later than the run's clock", "future_tolerance",
                                "no events from the future"),
         options={"now": dt.datetime(2024, 1, 2, tzinfo=dt.UTC), "day": D3}),
]


@pytest.mark.parametrize("case", params(*VALUES))
def test_a_bad_value_fails_ingest_and_publishes_nothing(
        tiny: LoadedSpec, clean_dataset_id: str, case: Case) -> None:
    """Invariant: a value that breaks a source rule fails ingest with a DataError naming the
    file, the column and the rule; nothing is published; fixed, the dataset_id is the clean
    one."""
    day = case.options.get("day", D2)
    path = landing(tiny, day)
    if case.fault:
        case.fault(path)
    with pytest.raises(DataError) as error:
        ingest.ingest(env_lake(), tiny, "readings", D1, D4, now=case.options.get("now"))
    assert_clear_error(error, DataError, str(path), *case.needles)
    assert_nothing_published(tiny, "raw", "readings")
    reland(tiny, day)
    assert run_clean(tiny) == clean_dataset_id


BAD_HOOKS = '''
import pandas as pd

def early_created(raw):
    frame = raw["readings"][["sensor", "ts", "value"]].rename(columns={"ts": "event_time"})
    return frame.assign(created_time=frame["event_time"] - pd.Timedelta(minutes=5))

def _spine(raw, **change):
    frame = raw["readings"]
    spine = pd.DataFrame({
        "reading_id": frame["sensor"] + "-" + frame["ts"].dt.strftime("%Y%m%dT%H%M"),
        "sensor": frame["sensor"],
        "cutoff": frame["ts"] - pd.Timedelta(minutes=30),
        "high": (frame["value"] > 0.5).astype("int64"),
    })
    return spine.assign(**change)

def one_class(raw):
    return _spine(raw, high=0)

def no_target(raw):
    spine = _spine(raw)
    return spine.assign(high=spine["high"].where(spine.index % 7 != 0))

def not_binary(raw):
    spine = _spine(raw)
    return spine.assign(high=spine["high"] * 2 + 1)

def duplicate_entity(raw):
    return _spine(raw, reading_id="same")
'''


def _with_bad_hooks(spec: LoadedSpec) -> None:
    (Path(spec.hooks_dir) / "bad.py").write_text(textwrap.dedent(BAD_HOOKS))


def test_a_hook_creating_rows_before_their_event_is_refused(
        ingested: LoadedSpec, clean_dataset_id: str) -> None:
    """Invariant: a view whose hook sets created_time before event_time (rows that would be
    seen before availability_lag) fails with a DataError naming the view, both columns and
    the rule; no feature partition is published; the fixed view gives the clean dataset_id.

    Sees: `feature view last: 216 rows have created_time before event_time (or none), e.g.
    {...} (rule: a row is created no earlier than its event, else it bypasses
    availability_lag)`.
    """
    _with_bad_hooks(ingested)
    view = ingested.pipeline.feature_views["last"].model_copy(update={"function": "bad:early_created"})
    bad = amend(ingested, feature_views={"last": view})
    with pytest.raises(DataError) as error:
        features.compute_view(env_lake(), bad, "last", D1, D4)
    assert_clear_error(error, DataError, "feature view last", "created_time before event_time",
                       "availability_lag")
    assert_nothing_published(ingested, "features", "last")
    assert run_clean(ingested) == clean_dataset_id


LABELS = [
    Case("no-target", "`<spec>: label.target 'high' (model.task 'binary'): N rows have no target; "
         "drop them in the label hook`", options={"hook": "bad:no_target"},
         needles=("label.target 'high'", "rows have no target")),
    Case("not-binary", "`<spec>: label.target 'high' (model.task 'binary'): a binary target holds 0 "
         "and 1, found 2 values such as [3, 1]`", options={"hook": "bad:not_binary"},
         needles=("label.target 'high'", "a binary target holds 0 and 1")),
    Case("duplicate-entity", "`label bad:duplicate_entity: column 'reading_id' must be unique, "
         "non-null`", options={"hook": "bad:duplicate_entity"},
         needles=("label bad:duplicate_entity", "'reading_id' must be unique, non-null")),
]


@pytest.mark.parametrize("case", params(*LABELS))
def test_a_bad_label_publishes_no_training_set(
        ingested: LoadedSpec, clean_dataset_id: str, case: Case) -> None:
    """Invariant: a label hook whose target or entity breaks a rule fails the training set
    with a DataError naming the field and the rule, before anything is published; with the
    spec's own label the dataset_id is the clean one."""
    _with_bad_hooks(ingested)
    features.compute_view(env_lake(), ingested, "last", D1, D4)
    bad = amend(ingested, label=ingested.pipeline.label.model_copy(
        update={"function": case.options["hook"]}))
    with pytest.raises(DataError) as error:
        training_set.prepare(env_lake(), bad, D1, D4)
    assert_clear_error(error, DataError, *case.needles)
    assert_nothing_published(ingested, "datasets", "")
    assert run_clean(ingested) == clean_dataset_id


def test_a_label_of_one_class_is_never_trained_on(ingested: LoadedSpec) -> None:
    """Invariant: a binary label of one class is refused before any fit: `split_frame`, the
    step that hands rows to the estimator, raises a DataError naming the split and the rule.

    Sees: `split: the train set of Split(...) has rows of one class only; widen the window or
    move eval_start`.
    """
    _with_bad_hooks(ingested)
    features.compute_view(env_lake(), ingested, "last", D1, D4)
    bad = amend(ingested, label=ingested.pipeline.label.model_copy(
        update={"function": "bad:one_class"}))
    built = training_set.prepare(env_lake(), bad, D1, D4)
    frame = training_set.read_training_set(env_lake(), built.training_set)
    assert frame["high"].nunique() == 1
    with pytest.raises(DataError) as error:
        training_set.split_frame(frame, bad, built.split)
    assert_clear_error(error, DataError, "split: the train set", "rows of one class only")
    assert_lake_sound()


def test_a_value_fixed_upstream_republishes_to_the_clean_id(
        tiny: LoadedSpec, clean_dataset_id: str) -> None:
    """Invariant: a day ingested with a wrong (but valid) value and then delivered again
    fixed is replaced whole: the partition's manifest matches its new bytes and the
    training set's dataset_id returns to the clean one (content, not history, decides it).

    Sees: nothing: the first dataset_id differs from the clean one, the second equals it.
    """
    path = landing(tiny, D3)
    _value("0.999")(path)
    assert run_clean(tiny) != clean_dataset_id
    reland(tiny, D3)
    assert run_clean(tiny) == clean_dataset_id
    assert_lake_sound()
