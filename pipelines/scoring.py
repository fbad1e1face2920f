"""Batch scoring: each day's spine rows scored by the version holding the alias, monitored.

The version is pinned once when a score run starts (`pin_model`), so every day of one run
is scored by the same version even if `champion` moves meanwhile. A day's rows are the
label function's spine of that day, as-of joined to the feature views through the very
code that builds training sets (`training_set.join_feature_views`): a scored row sees
exactly the features a training row with the same prediction time would. Predictions are
published as an immutable day partition, `<lake>/<name>/scores/<model>/date=…`, whose
manifest names the version, its `pair_id` and every feature partition read with its
sha256; a re-run replaces the day whole.

Every day is then monitored against the version's reference (`monitoring.py`): all values
go to a day partition of `<lake>/<name>/monitoring/<model>/` and to an MLflow run of that
version and day. A breach of a `monitoring:` limit keeps the predictions but marks them
`usable: false`, tags the version and fails the day (`MonitoringBreach`, a DataError: bad
data is not retried).
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines import lake, monitoring, monitoring_report, registry, train
from pipelines.errors import DataError
from pipelines.evaluate import metric_key
from pipelines.metrics import decide
from pipelines.monitoring import DayMonitoring, Reference
from pipelines.provenance import ProducedBy
from pipelines.spec import LoadedSpec
from pipelines.training_set import join_feature_views, label_spine

SCORES, MONITORING = "scores", "monitoring"
BREACH_TAG = "monitoring_breach"
"""Version tags `monitoring_breach.<day>`: what breached that day; removed when it passes."""


class MonitoringBreach(DataError):
    """A scored day is beyond a `monitoring:` limit: its predictions must not be used."""


@dataclass(frozen=True)
class PinnedModel:
    """The version a score run uses for all its days, resolved once when the run starts."""

    model_name: str
    alias: str
    version: str
    run_id: str
    pair_id: str
    reference_uri: str

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}/{self.version}"


def pin_model(spec: LoadedSpec) -> PinnedModel:
    """The version holding `score.alias` now, with the reference it was registered with."""
    name, alias = spec.pipeline.model_name, spec.pipeline.score.alias
    holder = registry.alias_version(name, alias)
    if holder is None:
        raise DataError(f"score: {name} has no version with alias {alias!r}; train and "
                        "register one first (`pitstop run`), or set score.alias")
    reference = holder.tags.get(registry.REFERENCE_TAG)
    if not reference:
        raise DataError(f"score: {name} version {holder.version} was registered without a "
                        f"monitoring reference (tag {registry.REFERENCE_TAG}); retrain it "
                        "with this pitstop so each scored day can be compared with it")
    return PinnedModel(name, alias, str(holder.version), holder.run_id,
                       holder.tags.get("pair_id", ""), reference)


def scoring_rows(store: lake.Lake, spec: LoadedSpec, day: dt.date) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The day's spine rows with their features at each row's prediction time, and the
    partitions read. The target is dropped: it is what the model is there to predict."""
    end = day + dt.timedelta(days=1)
    spine, spine_inputs = label_spine(store, spec, day, end)
    spine = spine.drop(columns=[spec.pipeline.label.target])
    if spine.empty:
        raise DataError(f"score {day}: the label function gave no spine rows for the day "
                        "(rule: a scored day has rows); check that day's raw data")
    frame, feature_inputs = join_feature_views(store, spec, spine, day, end)
    return frame, {"spine": spine_inputs, "features": feature_inputs}


def predictions(spec: LoadedSpec, model: Any, frame: pd.DataFrame) -> tuple[pd.DataFrame,
                                                                            np.ndarray]:
    """The rows' keys with `prediction` (the monitored value: P(class 1), the top class's
    probability, or the value), `decision` and, for multiclass, one `proba.<class>` each."""
    label, task = spec.pipeline.label, spec.pipeline.model.task
    pred = train.predict(model, frame)
    classes = train.classes(model)
    out = frame[[label.entity, label.prediction_time]].copy()
    out["prediction"] = monitoring.monitored_prediction(task, pred)
    out["decision"] = decide(task, pred, spec.pipeline.evaluation.threshold, classes)
    if task == "multiclass" and classes is not None:
        for index, name in enumerate(classes):
            out[f"proba.{name}"] = pred[:, index]
    return out, pred


@dataclass(frozen=True)
class ScoredDay:
    """One scored day: where its predictions are and what monitoring found."""

    day: dt.date
    model_name: str
    version: str
    rows: int
    path: str
    """The predictions' partition, lake-relative."""
    usable: bool
    breaches: list[str] = field(default_factory=list)
    monitoring_run_id: str = ""
    seconds: float = 0.0


def score_day(store: lake.Lake, spec: LoadedSpec, pinned: PinnedModel, day: dt.date,
              produced_by: ProducedBy | None = None) -> ScoredDay:
    """Score one day with the pinned version, publish, monitor; raise on a breach (after
    the predictions, marked not to use, and every monitored value are recorded)."""
    began = time.perf_counter()
    frame, inputs = scoring_rows(store, spec, day)
    scored, pred = predictions(spec, registry.load_model(pinned.model_uri), frame)
    seconds = time.perf_counter() - began
    reference = Reference.from_json(registry.load_json(pinned.reference_uri))
    found = monitoring.monitor_day(reference, frame, pred, spec.pipeline.monitoring)
    breaches = [b.message() for b in found.breaches]
    folder = publish_scores(store, spec, pinned, day, scored, inputs, breaches,
                            produced_by or ProducedBy())
    publish_monitoring(store, spec, pinned, day, found)
    run_id = log_monitoring(spec, pinned, day, found, seconds)
    record_breaches(pinned, day, breaches)
    log_report(store, spec, pinned)
    result = ScoredDay(day, pinned.model_name, pinned.version, len(scored),
                       store.relative(folder), not breaches, breaches, run_id, round(seconds, 3))
    if breaches:
        raise MonitoringBreach(f"score {day}: {pinned.model_name} version {pinned.version}: "
                               + "; ".join(breaches) + f" (predictions kept in {folder}, "
                               "marked usable: false; spec monitoring:)")
    return result


def _publish_day(folder: lake.LakePath, frame: pd.DataFrame, manifest: dict[str, Any]
                 ) -> lake.LakePath:
    """One day's frame as the partition's data file, committed with these manifest fields."""

    def write(tmp: Path) -> dict[str, Any]:
        lake.write_parquet(pa.Table.from_pandas(frame, preserve_index=False),
                           tmp / lake.DATA_FILE)
        return manifest

    lake.publish_dir(folder, write)
    return folder


def publish_scores(store: lake.Lake, spec: LoadedSpec, pinned: PinnedModel, day: dt.date,
                   scored: pd.DataFrame, inputs: dict[str, Any], breaches: list[str],
                   produced_by: ProducedBy) -> lake.LakePath:
    """The day's predictions as a partition whose manifest says which version made them
    from which inputs, and whether they may be used."""
    return _publish_day(
        lake.partition_dir(store, spec.name, SCORES, pinned.model_name, day), scored,
        {"pipeline": spec.name, "dataset": SCORES, "day": day.isoformat(),
         "model_name": pinned.model_name, "alias": pinned.alias,
         "model_version": pinned.version, "pair_id": pinned.pair_id,
         "run_id": pinned.run_id, "rows": len(scored), "usable": not breaches,
         "breaches": breaches, "inputs": inputs, "produced_by": produced_by.to_json()})


def publish_monitoring(store: lake.Lake, spec: LoadedSpec, pinned: PinnedModel, day: dt.date,
                       found: DayMonitoring) -> lake.LakePath:
    """Every monitored value of the day as rows of the lake's monitoring table."""
    return _publish_day(
        lake.partition_dir(store, spec.name, MONITORING, pinned.model_name, day),
        monitoring.table(found).assign(day=day.isoformat(), model_version=pinned.version),
        {"pipeline": spec.name, "dataset": MONITORING, "day": day.isoformat(),
         "model_name": pinned.model_name, "model_version": pinned.version,
         "rows": found.rows, "breaches": len(found.breaches)})


def log_monitoring(spec: LoadedSpec, pinned: PinnedModel, day: dt.date, found: DayMonitoring,
                   seconds: float) -> str:
    """The day's values as metrics of the monitoring run of this version and day (the same
    run again when the day is re-scored), with the scoring time and throughput."""
    tags = {"pipeline": spec.name, "monitoring": "true", "model_name": pinned.model_name,
            "model_version": pinned.version, "pair_id": pinned.pair_id,
            "monitoring_day": day.isoformat(),
            "verdict": "breached" if found.breaches else "passed",
            "breaches": "; ".join(b.message() for b in found.breaches)}
    run_id = registry.monitoring_run(registry.experiment_id(spec.name),
                                     f"monitor-v{pinned.version}-{day.isoformat()}", tags)
    values = {metric_key(*key.split(".")): value for key, value in found.values.items()}
    values.update({"rows": float(found.rows), "scoring_seconds": seconds,
                   "rows_per_second": found.rows / seconds if seconds > 0 else float("nan")})
    registry.log_metrics(run_id, values)
    registry.end_run(run_id, "FAILED" if found.breaches else "FINISHED")
    return run_id


def record_breaches(pinned: PinnedModel, day: dt.date, breaches: list[str]) -> None:
    """Tag the version with the day's breaches, or clear the day's tag when it passes."""
    key = f"{BREACH_TAG}.{day.isoformat()}"
    if breaches:
        registry.set_version_tags(pinned.model_name, pinned.version,
                                  {key: "; ".join(breaches)})
    else:
        registry.delete_version_tag(pinned.model_name, pinned.version, key)


def log_report(store: lake.Lake, spec: LoadedSpec, pinned: PinnedModel) -> None:
    """The version's monitoring report over every day scored so far, logged to its training
    run as `monitoring/report.html` (replacing the last one), next to its evaluation report."""
    table = read_monitoring(store, spec)
    page = monitoring_report.html_page(pinned.model_name, pinned.version,
                                       table[table["model_version"] == pinned.version])
    with tempfile.TemporaryDirectory(prefix="pitstop-monitoring-") as tmp:
        (Path(tmp) / "report.html").write_text(page)
        registry.log_directory(pinned.run_id, Path(tmp), "monitoring")


@dataclass(frozen=True)
class DayVerdict:
    """What the lake says of one day: scored or not, by which version, usable or why not."""

    day: dt.date
    scored: bool
    version: str | None = None
    rows: int = 0
    usable: bool = False
    breaches: list[str] = field(default_factory=list)

    def line(self) -> str:
        if not self.scored:
            return f"{self.day}  not scored"
        if self.usable:
            return f"{self.day}  passed   version {self.version}, {self.rows} rows"
        return (f"{self.day}  BREACHED version {self.version}, {self.rows} rows: "
                + "; ".join(self.breaches))


def day_verdicts(store: lake.Lake, spec: LoadedSpec, start: dt.date, end: dt.date) -> list[DayVerdict]:
    """Each day of `[start, end)` as its committed prediction manifest records it."""
    published = {p.day: p.manifest for p in
                 lake.list_partitions(store, spec.name, SCORES, spec.pipeline.model_name, start, end)}
    verdicts = []
    for day in lake.days(start, end):
        if (manifest := published.get(day)) is None:
            verdicts.append(DayVerdict(day, scored=False))
            continue
        verdicts.append(DayVerdict(day, True, manifest["model_version"], manifest["rows"],
                                   manifest["usable"], list(manifest["breaches"])))
    return verdicts


def days_without_features(store: lake.Lake, spec: LoadedSpec, start: dt.date, end: dt.date) -> list[dt.date]:
    """Days of `[start, end)` some feature view has no committed partition for."""
    have = [{p.day for p in lake.list_partitions(store, spec.name, "features", view, start, end)}
            for view in spec.pipeline.feature_views]
    return [day for day in lake.days(start, end) if any(day not in h for h in have)]


def read_monitoring(store: lake.Lake, spec: LoadedSpec, start: dt.date | None = None,
                    end: dt.date | None = None) -> pd.DataFrame:
    """The lake's monitoring table over `[start, end)`: one row per day, metric, feature."""
    partitions = lake.list_partitions(store, spec.name, MONITORING, spec.pipeline.model_name,
                                      start, end)
    if not partitions:
        return pd.DataFrame(columns=["metric", "feature", "value", "limit", "breached", "day",
                                     "model_version"])
    return lake.read_verified(partitions, lambda _: pd.concat(
        [lake.read_frame(p.data_path) for p in partitions], ignore_index=True))
