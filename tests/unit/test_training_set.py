"""Training sets: the as-of join respects lag and TTL, the past never changes, content IDs,
targets that fit the task, and a split checked before anything is built."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pandas as pd
import pytest

from pipelines import features, ingest, lake, training_set
from pipelines.errors import DataError
from pipelines.lake import from_env as env_lake
from pipelines.provenance import ProducedBy
from pipelines.spec import LoadedSpec
from pipelines.training_set import Split, TrainingInput, TrainingSet

from .conftest import D1, D2, D3, D4, amend, for_task, write_readings


def test_training_set_respects_lag_and_ttl(ingested: LoadedSpec) -> None:
    features.compute_view(env_lake(), ingested, "last", D1, D4)
    frame, inputs = training_set.assemble_training_frame(env_lake(), ingested, D1, D4)
    assert len(frame) == 3 * 72 and frame["reading_id"].is_unique
    seen = frame.dropna(subset=["last__as_of"])
    # visible = created (event + 10 min) at or before the cutoff (reading time - 30 min)
    assert (seen["last__as_of"] + pd.Timedelta(minutes=10) <= seen["cutoff"]).all()
    # hourly readings, cutoff 30 min before the hour: the winner is the reading one hour back
    assert (seen["cutoff"] - seen["last__as_of"] == pd.Timedelta(minutes=30)).all()
    first = frame[frame["cutoff"] < pd.Timestamp("2024-01-01T00:10Z")]
    assert first["last__value"].isna().all()  # nothing known yet at the very start
    assert len(inputs["features"]["last"]) == 3


@pytest.mark.parametrize(("lag", "age"), [
    (dt.timedelta(minutes=10), dt.timedelta(minutes=30)),   # the reading one hour back
    (dt.timedelta(minutes=40), dt.timedelta(minutes=90)),   # not yet created: two hours back
    (dt.timedelta(minutes=100), None),                      # three hours back: past the 2h TTL
], ids=["lag-10m", "lag-40m", "lag-100m-past-ttl"])
def test_a_longer_availability_lag_sees_older_rows_until_the_ttl(
        ingested: LoadedSpec, lag: dt.timedelta, age: dt.timedelta | None) -> None:
    view = ingested.pipeline.feature_views["last"]
    spec = amend(ingested, feature_views={"last": view.model_copy(
        update={"availability_lag": lag})})
    features.compute_view(env_lake(), spec, "last", D1, D4)
    frame, _ = training_set.assemble_training_frame(env_lake(), spec, D1, D4)
    later = frame[frame["cutoff"] >= pd.Timestamp("2024-01-01T04:00Z")]
    if age is None:
        assert later["last__value"].isna().all()
    else:
        assert (later["cutoff"] - later["last__as_of"] == age).all()


@pytest.mark.parametrize(("recomputed", "stale", "commands"), [
    ((D3, D4), "2 of 3 day partitions were computed with another definition of the view than "
     "sensors.yaml declares now (2024-01-01..2024-01-02)",
     [("2024-01-01", "2024-01-03")]),
    ((D2, D3), "2 of 3 day partitions were computed with another definition of the view than "
     "sensors.yaml declares now (2024-01-01, 2024-01-03)",
     [("2024-01-01", "2024-01-02"), ("2024-01-03", "2024-01-04")]),
], ids=["one-range", "two-ranges"])
def test_a_training_set_never_mixes_definitions_of_a_view(
        ingested: LoadedSpec, recomputed: tuple[dt.date, dt.date], stale: str,
        commands: list[tuple[str, str]]) -> None:
    """Days computed before the view changed are named as ranges, each with its backfill."""
    features.compute_view(env_lake(), ingested, "last", D1, D4)
    view = ingested.pipeline.feature_views["last"]
    changed = amend(ingested, feature_views={"last": view.model_copy(
        update={"availability_lag": dt.timedelta(minutes=20)})})
    features.compute_view(env_lake(), changed, "last", *recomputed)
    with pytest.raises(DataError) as error:
        training_set.assemble_training_frame(env_lake(), changed, D1, D4)
    message = str(error.value)
    assert message.startswith(f"features/last: {stale} (rule: a training set never mixes")
    for lo, hi in commands:
        assert (f"`pitstop backfill {changed.path} --start {lo} --end {hi} --views last "
                f"--reason 'view definition changed'`"
                in message)
    assert message.count("pitstop backfill") == len(commands)
    features.compute_view(env_lake(), changed, "last", D1, D4)  # what the commands do
    assert len(training_set.assemble_training_frame(env_lake(), changed, D1, D4)[0]) == 3 * 72


def test_future_data_never_changes_past_rows(ingested: LoadedSpec) -> None:
    """Rewrite the whole last day: rows whose cutoff precedes it must not change."""
    features.compute_view(env_lake(), ingested, "last", D1, D4)
    before, _ = training_set.assemble_training_frame(env_lake(), ingested, D1, D4)
    write_readings(ingested.landing_dir(), D3, seed=99)
    ingest.ingest(env_lake(), ingested, "readings", D3, D4)
    features.compute_view(env_lake(), ingested, "last", D3, D4)
    after, _ = training_set.assemble_training_frame(env_lake(), ingested, D1, D4)
    past = before["cutoff"] < pd.Timestamp(D3, tz="UTC")
    seen = ["last__value", "last__as_of"]
    pd.testing.assert_frame_equal(before.loc[past, seen], after.loc[past, seen])
    assert not before[~past]["last__value"].equals(after[~past]["last__value"])


def test_dataset_id_is_content_addressed(ingested: LoadedSpec) -> None:
    """Same content, same ID; the set's window is dates and its rows read back as built."""
    features.compute_view(env_lake(), ingested, "last", D1, D4)
    first = training_set.build_training_set(env_lake(), ingested, D1, D4)
    again = training_set.build_training_set(env_lake(), ingested, D1, D4)
    assert first == again and len(first.dataset_id) == 64
    assert (first.rows, first.start, first.end) == (216, D1, D4)
    assert first.path == f"sensors/datasets/{first.dataset_id}"
    shorter = training_set.build_training_set(env_lake(), ingested, D1, D3)
    assert shorter.dataset_id != first.dataset_id and shorter.end == D3
    manifest = lake.read_manifest(env_lake().root / first.path)
    assert manifest["dataset_id"] == first.dataset_id and manifest["rows"] == 216
    assert manifest["window"] == {"start": "2024-01-01", "end": "2024-01-04"}
    frame, _ = training_set.assemble_training_frame(env_lake(), ingested, D1, D4)
    pd.testing.assert_frame_equal(training_set.read_training_set(env_lake(), first), frame)


# --- the target fits model.task ------------------------------------------------------------


@pytest.mark.parametrize(("task", "values", "rule", "fix"), [
    ("binary", [0, 1, 2], "a binary target holds 0 and 1, found 3 values",
     "map them to 0/1 in the label hook, or set model.task to multiclass or regression"),
    ("binary", ["no", "yes"], "a binary target holds 0 and 1", "map them to 0/1"),
    ("binary", [-1, 1], "a binary target holds 0 and 1", "map them to 0/1"),
    ("multiclass", ["a", "b", "a"], "a multiclass target has three or more classes",
     "use model.task: binary for two"),
    ("multiclass", [0, 1], "a multiclass target has three or more classes",
     "use model.task: binary for two"),
    ("regression", ["1.5", "2", "3"], "a regression target is numeric, found dtype ",
     "use model.task: multiclass for classes"),
    ("regression", [True, False], "a regression target is numeric, found dtype bool",
     "use model.task: multiclass for classes"),
    ("regression", [1.0, float("inf")], "a regression target must be finite", "found inf"),
    ("binary", [0, 1, None], "1 rows have no target", "drop them in the label hook"),
    ("multiclass", ["a", "b", "c", None, None], "2 rows have no target",
     "drop them in the label hook"),
    ("regression", [1.5, None], "1 rows have no target", "drop them in the label hook"),
], ids=["binary-012", "binary-text", "binary-minus-one", "multiclass-two-text",
        "multiclass-two-numbers", "regression-text", "regression-bool", "regression-inf",
        "binary-null", "multiclass-null", "regression-null"])
def test_a_target_that_does_not_fit_the_task_is_refused(
        tiny: LoadedSpec, task: str, values: list[Any], rule: str, fix: str) -> None:
    """The error names the spec file, the field (label.target and model.task), the rule and
    the fix."""
    with pytest.raises(DataError) as raised:
        training_set.check_target(for_task(tiny, task), pd.Series(values, name="high"))
    message = str(raised.value)
    assert message.startswith(f"{tiny.path}: label.target 'high' (model.task {task!r}): ")
    assert rule in message and fix in message


@pytest.mark.parametrize(("task", "values"), [
    ("binary", [0, 1, 1]),
    ("binary", [0.0, 1.0]),
    ("multiclass", ["a", "b", "c"]),
    ("multiclass", [0, 1, 2, 2]),
    ("regression", [0.5, -3.0, 2.0]),
    ("regression", [1, 2, 3]),
])
def test_a_target_that_fits_the_task_passes(tiny: LoadedSpec, task: str,
                                            values: list[Any]) -> None:
    training_set.check_target(for_task(tiny, task), pd.Series(values, name="high"))


def test_the_target_is_checked_when_the_set_is_built(ingested: LoadedSpec) -> None:
    """The tiny label is 0/1: a multiclass spec refuses it and publishes nothing; regression
    takes it (numeric)."""
    features.compute_view(env_lake(), ingested, "last", D1, D4)
    with pytest.raises(DataError, match=re.escape("use model.task: binary for two")):
        training_set.build_training_set(env_lake(), for_task(ingested, "multiclass"), D1, D4)
    assert not lake.pipeline_dir(env_lake(), "sensors", "datasets").exists()
    assert training_set.build_training_set(env_lake(), for_task(ingested, "regression"), D1, D4).rows == 216


# --- prepare: the split first, then the set -------------------------------------------------


def test_prepare_builds_the_set_and_its_split(ingested: LoadedSpec) -> None:
    features.compute_view(env_lake(), ingested, "last", D1, D4)
    built = training_set.prepare(env_lake(), ingested, D1, D4,
                                 produced_by=ProducedBy(dag_id="sensors_train"))
    assert built == TrainingInput(training_set.build_training_set(env_lake(), ingested, D1, D4),
                                  Split(D1, D3, D4), {"computed (not published yet)": 1})
    assert isinstance(built.training_set, TrainingSet)
    manifest = lake.read_manifest(env_lake().root / built.training_set.path)
    assert manifest["produced_by"] == {"dag_id": "sensors_train"}
    assert training_set.prepare(env_lake(), ingested, D1, D4, eval_start=D2).split == Split(D1, D2, D4)


@pytest.mark.parametrize(("end", "eval_start"), [
    (D2, None),  # one day, one eval day: nothing to train on
    (D4, D4),    # evaluation starts at the end: nothing to evaluate
    (D4, D1),    # evaluation starts at the start: nothing to train on
], ids=["no-train-days", "at-end", "at-start"])
def test_prepare_refuses_a_bad_split_before_building_anything(
        ingested: LoadedSpec, end: Any, eval_start: Any) -> None:
    features.compute_view(env_lake(), ingested, "last", D1, D4)  # a set could be built
    with pytest.raises(DataError, match=r"split: evaluation start .* must fall inside the "
                                        r"window 2024-01-01\.\.2024-01-0\d"):
        training_set.prepare(env_lake(), ingested, D1, end, eval_start=eval_start)
    assert not lake.pipeline_dir(env_lake(), "sensors", "datasets").exists()
