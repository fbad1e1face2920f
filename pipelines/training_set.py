"""Training sets: the label spine as-of joined to every feature view, content-addressed.

`build_training_set` takes the label spine of a window and joins every view onto it with
`point_in_time_join`, so each row sees only feature rows that existed (were created) at its
cutoff and are younger than the view's TTL. The result is published once under its content
hash (`dataset_id`); the same content always gets the same ID. `split_window` and
`split_frame` cut it by time into the rows a model trains on and the rows it is judged on.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines import lake, lineage, skipping
from pipelines.errors import DataError
from pipelines.features import (
    CREATED_TIME,
    EVENT_TIME,
    feature_partitions,
    input_record,
    raw_partitions,
    read_features,
    read_raw_inputs,
)
from pipelines.lineage import (
    feature_definitions_hash,
    frame_content_hash,
    stored_content_hash,
)
from pipelines.pit import point_in_time_join
from pipelines.provenance import ProducedBy
from pipelines.spec import LoadedSpec

log = logging.getLogger(__name__)

REBUILT = "it is published again from the inputs it was just built from"


@dataclass(frozen=True)
class TrainingSet:
    """A published training set: content-addressed by `dataset_id`."""

    dataset_id: str
    path: str
    rows: int
    start: dt.date
    end: dt.date


def label_spine(store: lake.Lake, spec: LoadedSpec, start: dt.date, end: dt.date,
                partitions: dict[str, list[lake.Partition]] | None = None
                ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The label function's rows of `[start, end)` (one per entity) and the raw inputs read:
    `partitions` (the label sources' raw partitions of the window) unless listed here."""
    label = spec.pipeline.label
    raw, spine_inputs = read_raw_inputs(store, spec, partitions if partitions is not None
                                        else raw_partitions(store, spec, label.sources,
                                                            start, end))
    spine = spec.resolve(label.function)(raw)
    for column in (label.entity, label.prediction_time, label.target):
        if column not in spine.columns:
            raise DataError(f"label {label.function}: output lacks column {column!r}")
    if spine[label.entity].isna().any() or spine[label.entity].duplicated().any():
        raise DataError(f"label {label.function}: column {label.entity!r} must be unique, non-null")
    return spine, spine_inputs


def join_feature_views(store: lake.Lake, spec: LoadedSpec, spine: pd.DataFrame, start: dt.date,
                       end: dt.date, listed: dict[str, list[lake.Partition]] | None = None
                       ) -> tuple[pd.DataFrame, dict[str, list[dict[str, Any]]]]:
    """Every view as-of joined onto the spine at each row's prediction time, rows in entity
    order; also the feature partitions read (`listed` per view, unless listed here).
    Training sets and batch scoring both read features through here, so a scored row sees
    exactly what a training row would."""
    label = spec.pipeline.label
    feature_inputs: dict[str, list[dict[str, Any]]] = {}
    for view_name, view in spec.pipeline.feature_views.items():
        partitions = (listed[view_name] if listed is not None
                      else feature_partitions(store, spec, view_name, start, end))
        feature_inputs[view_name] = [input_record(store, p) for p in partitions]
        spine = point_in_time_join(
            spine, read_features(partitions), keys=view.keys,
            spine_time=label.prediction_time, feature_time=EVENT_TIME,
            created_time=CREATED_TIME, ttl=view.ttl, prefix=f"{view_name}__",
        )
    return spine.sort_values(label.entity, kind="stable").reset_index(drop=True), feature_inputs


@dataclass(frozen=True)
class Inputs:
    """The committed partitions a window's training set is made of: the label sources' raw
    partitions and each view's feature partitions (manifests only, nothing read yet)."""

    spine: dict[str, list[lake.Partition]]
    features: dict[str, list[lake.Partition]]

    def fingerprint(self, store: lake.Lake, definitions: str) -> skipping.Fingerprint:
        """`skipping.fingerprint` of every partition with the feature definitions hash and
        the library's code version: equal means the set would be built from equal bytes."""
        listed = [p for group in (self.spine, self.features) for ps in group.values() for p in ps]
        return skipping.fingerprint([(store.relative(p.path), p.sha256) for p in listed],
                                    definitions, lineage.library_version())


def list_inputs(store: lake.Lake, spec: LoadedSpec, start: dt.date, end: dt.date) -> Inputs:
    """The window's `Inputs`, with the checks of a build (raw days present, feature days
    present and of the current definitions)."""
    return Inputs(raw_partitions(store, spec, spec.pipeline.label.sources, start, end),
                  {name: feature_partitions(store, spec, name, start, end)
                   for name in spec.pipeline.feature_views})


def assemble_training_frame(
    store: lake.Lake, spec: LoadedSpec, start: dt.date, end: dt.date,
    inputs: Inputs | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Spine of `[start, end)` as-of joined to every view (from `inputs`, unless listed
    here); also returns the inputs used."""
    inputs = inputs or list_inputs(store, spec, start, end)
    spine, spine_inputs = label_spine(store, spec, start, end, inputs.spine)
    frame, feature_inputs = join_feature_views(store, spec, spine, start, end, inputs.features)
    check_target(spec, frame[spec.pipeline.label.target])
    return frame, {"spine": spine_inputs, "features": feature_inputs}


def build_record(store: lake.Lake, spec: LoadedSpec, start: dt.date, end: dt.date
                 ) -> lake.LakePath:
    """`<pipeline>/_builds/training_set/<start>_<end>`: the last build of a window, whose
    manifest maps its inputs' fingerprint to the `dataset_id` they gave."""
    return lake.pipeline_dir(store, spec.name, "_builds", "training_set", f"{start}_{end}")


def reused(store: lake.Lake, spec: LoadedSpec, start: dt.date, end: dt.date,
           fingerprint: skipping.Fingerprint, definitions: str, force: bool
           ) -> tuple[TrainingSet | None, skipping.Decision]:
    """The set the window's last build published, when it was built from inputs with this
    `fingerprint` and still holds the content its ID names (`_corruption`: one read of the
    set, so a re-run repairs a damaged one as before); else None, and the reason to build."""
    record = lake.read_manifest(build_record(store, spec, start, end))
    folder, manifest = None, None
    if record is not None:
        folder = lake.pipeline_dir(store, spec.name, "datasets", record["dataset_id"])
        manifest = lake.read_manifest(folder)
    decision = skipping.decide(
        record if manifest is not None else None, fingerprint, force,
        lambda: folder is not None and manifest is not None
        and _corruption(folder, manifest, manifest["dataset_id"], definitions) is None)
    log.info("training set %s..%s: %s", start, end, decision.label)
    if not decision.skip or folder is None or manifest is None:
        return None, decision
    return TrainingSet(manifest["dataset_id"], store.relative(folder), int(manifest["rows"]),
                       start, end), decision


def build_training_set(
    store: lake.Lake,
    spec: LoadedSpec,
    start: dt.date,
    end: dt.date,
    produced_by: ProducedBy | None = None,
    force: bool = False,
) -> TrainingSet:
    """Build, hash and publish the training set of `[start, end)`; same content, same ID.

    When the window's last build (`build_record`) had inputs of the same fingerprint, its
    set is returned without reading any partition, unless `force`. A set already published
    under its ID is reused only when it still holds that content (`_holds`); otherwise it is
    published again over the bad folder, so a re-run repairs it.
    """
    return build_or_reuse(store, spec, start, end, produced_by, force)[0]


def build_or_reuse(store: lake.Lake, spec: LoadedSpec, start: dt.date, end: dt.date,
                   produced_by: ProducedBy | None = None, force: bool = False
                   ) -> tuple[TrainingSet, skipping.Decision]:
    """`build_training_set`, and whether it was skipped and why."""
    listed = list_inputs(store, spec, start, end)
    definitions = feature_definitions_hash(spec)
    fingerprint = listed.fingerprint(store, definitions)
    found, decision = reused(store, spec, start, end, fingerprint, definitions, force)
    if found is not None:
        return found, decision
    frame, inputs = assemble_training_frame(store, spec, start, end, listed)
    dataset_id = frame_content_hash(frame, definitions)
    folder = lake.pipeline_dir(store, spec.name, "datasets", dataset_id)
    if not _holds(folder, dataset_id, definitions):

        def write(tmp: Path) -> dict[str, Any]:
            lake.write_parquet(pa.Table.from_pandas(frame, preserve_index=False),
                               tmp / lake.DATA_FILE)
            return {"pipeline": spec.name, "dataset": "datasets", "dataset_id": dataset_id,
                    "window": {"start": start.isoformat(), "end": end.isoformat()},
                    "rows": len(frame), "columns": {c: str(t) for c, t in frame.dtypes.items()},
                    "definitions_hash": definitions, "inputs": inputs,
                    "produced_by": (produced_by or ProducedBy()).to_json()}

        lake.publish_dir(folder, write)
    lake.publish_dir(build_record(store, spec, start, end), lambda _: {
        "pipeline": spec.name, "dataset": "_builds/training_set", **fingerprint.record(),
        "dataset_id": dataset_id,
        "window": {"start": start.isoformat(), "end": end.isoformat()}})
    return TrainingSet(dataset_id, store.relative(folder), len(frame), start, end), decision


def _holds(folder: lake.LakePath, dataset_id: str, definitions: str) -> bool:
    """Whether a published training set still holds the content its `dataset_id` names
    (`_corruption`). A folder that does not is logged and not trusted; the caller
    republishes it from the frame just built."""
    if (manifest := lake.read_manifest(folder)) is None:
        return False
    if (problem := _corruption(folder, manifest, dataset_id, definitions)) is not None:
        log.warning("training set %s is corrupt: %s", dataset_id, problem)
        return False
    return True


def _corruption(folder: lake.LakePath, manifest: dict[str, Any], dataset_id: str,
                definitions: str) -> str | None:
    """What is wrong with a published set, or None when its data file hashes to its
    manifest's sha256 and its rows to `dataset_id` (a manifest rehashed over changed rows
    passes the first check, never the second)."""
    try:
        data_file = lake.committed_file(folder, manifest=manifest)
        lake.verify_file(data_file, lake.data_sha256(manifest), REBUILT)
    except DataError as exc:
        return str(exc)
    if (content := stored_content_hash(data_file, definitions)) != dataset_id:
        return (f"{data_file} holds content {content}, not {dataset_id} (rule: a set holds "
                f"the content its ID names); {REBUILT}")
    return None


@dataclass(frozen=True)
class Split:
    """Rows by cutoff date: train on `[train_start, eval_start)`, evaluate on the rest."""

    train_start: dt.date
    eval_start: dt.date
    end: dt.date


@dataclass(frozen=True)
class TrainingInput:
    """What the train DAG's tasks share: the published training set and how it splits."""

    training_set: TrainingSet
    split: Split
    tally: dict[str, int] = field(default_factory=dict)
    """Whether the set was built or its last build reused, and why (`skipping.tally`)."""


def split_window(spec: LoadedSpec, start: dt.date, end: dt.date,
                 eval_start: dt.date | None = None) -> Split:
    """The last `eval_days` of the window evaluate, unless `eval_start` says otherwise."""
    cut = eval_start or end - dt.timedelta(days=spec.pipeline.split.eval_days)
    if not start < cut < end:
        raise DataError(f"split: evaluation start {cut} must fall inside the window "
                        f"{start}..{end} (rule: both train and evaluation sets are non-empty)")
    return Split(start, cut, end)


def prepare(store: lake.Lake, spec: LoadedSpec, start: dt.date, end: dt.date,
            eval_start: dt.date | None = None,
            produced_by: ProducedBy | None = None, force: bool = False) -> TrainingInput:
    """The train DAG's first step: check the split, then build and publish the set (or find
    it already built from the same inputs, `build_training_set`)."""
    split = split_window(spec, start, end, eval_start)
    built, decision = build_or_reuse(store, spec, start, end, produced_by, force)
    return TrainingInput(built, split, skipping.tally([decision]))


def check_target(spec: LoadedSpec, target: pd.Series) -> None:
    """The label fits `model.task`: 0/1 for binary, three or more classes for multiclass,
    finite numbers for regression. Checked when the set is built, before any fit."""
    task, name = spec.pipeline.model.task, target.name
    where = f"{spec.path}: label.target {name!r} (model.task {task!r})"
    if target.isna().any():
        raise DataError(f"{where}: {int(target.isna().sum())} rows have no target; drop them "
                        "in the label hook")
    values = target.drop_duplicates()
    if task == "binary" and not set(values.tolist()) <= {0, 1}:
        raise DataError(f"{where}: a binary target holds 0 and 1, found {len(values)} values "
                        f"such as {values.head(3).tolist()}; map them to 0/1 in the label hook, "
                        "or set model.task to multiclass or regression")
    if task == "multiclass" and len(values) < 3:
        raise DataError(f"{where}: a multiclass target has three or more classes, found "
                        f"{values.tolist()}; use model.task: binary for two")
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
            raise DataError(f"{where}: a regression target is numeric, found dtype "
                            f"{target.dtype}; use model.task: multiclass for classes")
        if not np.isfinite(target.to_numpy(dtype="float64")).all():
            raise DataError(f"{where}: a regression target must be finite (found inf)")


def split_frame(frame: pd.DataFrame, spec: LoadedSpec, split: Split
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and evaluation rows by cutoff; each non-empty, and for classification each with
    at least two classes (no classifier learns, and no AUC is defined, from one)."""
    label = spec.pipeline.label
    cutoff = frame[label.prediction_time]
    boundary = pd.Timestamp(split.eval_start, tz="UTC")
    train, evaluation = frame[cutoff < boundary], frame[cutoff >= boundary]
    classify = spec.pipeline.model.task != "regression"
    for name, part in (("train", train), ("evaluation", evaluation)):
        if part.empty or (classify and part[label.target].nunique() < 2):
            raise DataError(f"split: the {name} set of {split} has "
                            + ("no rows" if part.empty else "rows of one class only")
                            + "; widen the window or move eval_start")
    return train, evaluation


def read_training_set(store: lake.Lake, training_set: TrainingSet) -> pd.DataFrame:
    """The published set's rows, its data file re-hashed against its manifest first: a set
    corrupted after it was built fails here, before anything is fitted on it."""
    return lake.read_frame(lake.verified_training_file(
        store.root / training_set.path, training_set.start, training_set.end))
