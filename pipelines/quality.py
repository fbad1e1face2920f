"""The validation gate: Great Expectations suites kept as JSON in `expectations/`.

Suites are plain files so they are reviewed, versioned and hashed with the code (a model's
lineage names the exact suite). Each validation runs in an ephemeral GX context, keeps the
full result as JSON and builds the Data Docs next to it, both published atomically under the
lake so a model's run can carry them to MLflow. `require_valid` turns a failed suite into an
error that names the suite, every failing expectation and its column.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipelines import lake, lineage, skipping
from pipelines.errors import SpecError, ValidationFailed
from pipelines.spec import load_suite

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipelines.spec import LoadedSpec
    from pipelines.training_set import TrainingSet

RESULT_FILE = "validation_result.json"
DOCS_DIR = "data_docs"
SITE = "pitstop"


@dataclass(frozen=True)
class Failure:
    """One expectation that did not hold."""

    expectation: str
    column: str | None
    kwargs: dict[str, Any]
    observed: dict[str, Any]
    error: str | None = None
    """Why GX could not evaluate it at all (a column the table lacks), else None."""

    def describe(self, located: str = "") -> str:
        """The expectation, its column, what GX observed (a value, or how many rows broke the
        rule and a few of their values), where those rows are (`located`, from the caller)
        and the rule, in words, whatever types GX used."""
        where = f" on column {self.column!r}" if self.column else ""
        if self.error:
            return (f"{self.expectation}{where} could not be evaluated: {self.error} "
                    f"(is the column named as the table names it?)")
        seen = {k: plain for k, v in self.observed.items()
                if k in ("observed_value", "unexpected_count", "unexpected_percent",
                         "partial_unexpected_list")
                and (plain := _plain(v)) is not None and plain != []}
        found = []
        if "observed_value" in seen:
            found.append(f"observed {seen['observed_value']}")
        if "unexpected_count" in seen:
            share = seen.get("unexpected_percent")
            found.append(f"{seen['unexpected_count']} rows break it"
                         + (f" ({share:.2f}% of those checked)" if share is not None else ""))
        if sample := seen.get("partial_unexpected_list"):
            found.append(f"such as {sample[:SAMPLE_VALUES]}")
        if located:
            found.append(located)
        rule = {k: _plain(v) for k, v in self.kwargs.items()
                if k not in ("column", "column_A", "column_B")}
        return (f"{self.expectation}{where}" + (f": {', '.join(found)}" if found else "")
                + (f"; rule {rule}" if rule else ""))


SAMPLE_VALUES = 5
"""Failing values a message shows; the full list is in the GX result it names."""


def _plain(value: Any) -> Any:
    """A GX observed value as plain Python: numpy scalars and arrays (which cannot be
    compared with `==` or printed briefly) become numbers and lists, inside lists and dicts."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value.tolist() if hasattr(value, "tolist") else value


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of one suite over one table."""

    suite: str
    data_name: str
    success: bool
    evaluated: int
    successful: int
    result_path: lake.LakePath
    """Full GX result (JSON) under the lake."""
    docs_path: lake.LakePath
    """Data Docs index page of this validation."""
    failures: list[Failure] = field(default_factory=list)

    def summary(self, store: lake.Lake) -> QualitySummary:
        """The small, lake-relative form that crosses task boundaries."""
        return QualitySummary(
            suite=self.suite, success=self.success, evaluated=self.evaluated,
            successful=self.successful, result_path=store.relative(self.result_path),
            docs_dir=store.relative(self.result_path.parent / DOCS_DIR),
            docs_path=store.relative(self.docs_path))


@dataclass(frozen=True)
class QualitySummary:
    """A validation as the train chain passes it on: paths are lake-relative."""

    suite: str
    success: bool
    evaluated: int
    successful: int
    result_path: str
    """The full GX result (JSON)."""
    docs_dir: str
    """The Data Docs site of this validation."""
    docs_path: str
    """Its page for this validation."""


def import_gx() -> Any:
    """GX, imported with its loggers at WARNING: its import alone logs some 200 info lines
    (`Skipping registering function …`) into the task log of every task that validates."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def _context(docs_dir: Path) -> Any:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = import_gx().get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False,
                                                          metric_calculations=False)
    context.add_data_docs_site(site_name=SITE, site_config={
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                          "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    return context


def _strip_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_ids(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        return [_strip_ids(v) for v in value]
    return value


def _failures(result: dict[str, Any]) -> list[Failure]:
    failures = []
    for item in result["results"]:
        if item["success"]:
            continue
        config = item["expectation_config"]
        kwargs = {k: v for k, v in config["kwargs"].items() if k != "batch_id"}
        column = kwargs.get("column") or (
            f"{kwargs['column_A']} vs {kwargs['column_B']}" if "column_A" in kwargs else None)
        failures.append(Failure(config["type"], column, kwargs, item.get("result") or {},
                                _raised(item.get("exception_info") or {})))
    return failures


def _raised(info: dict[str, Any]) -> str | None:
    """GX's message when evaluating an expectation raised. `exception_info` is one such record,
    or (when a metric failed) a record per metric; the messages are joined, each once."""
    records = [info] if "raised_exception" in info else list(info.values())
    messages = [r.get("exception_message") for r in records
                if isinstance(r, dict) and r.get("raised_exception")]
    return "; ".join(dict.fromkeys(str(m) for m in messages if m)) or None


def _run_checkpoint(frame: pd.DataFrame, suite_json: dict[str, Any], docs_dir: Path
                    ) -> dict[str, Any]:
    """One GX checkpoint of the suite over the frame, writing Data Docs into `docs_dir`; the
    validation result as JSON. An ephemeral context each time, so nothing GX keeps between
    runs can change a result."""
    gx = import_gx()
    context = _context(docs_dir)
    suite = context.suites.add(gx.ExpectationSuite(**suite_json))
    batch = (context.data_sources.add_pandas("frames")
             .add_dataframe_asset(suite.name)
             .add_batch_definition_whole_dataframe("whole"))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite.name, data=batch, suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=f"{suite.name}-gate", validation_definitions=[definition],
        actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=[SITE])],
        result_format={"result_format": "SUMMARY"}))
    run = checkpoint.run(batch_parameters={"dataframe": frame})
    return next(iter(run.run_results.values())).to_json_dict()


def validate(frame: pd.DataFrame, suite_path: Path, data_name: str,
             out_dir: lake.LakePath, pipeline: str | None = None,
             fingerprint: skipping.Fingerprint | None = None) -> ValidationReport:
    """Validate `frame` with the suite at `suite_path`; publish result and Data Docs at `out_dir`.

    Re-validating replaces `out_dir` whole. The report is returned whether or not the suite
    passed: callers decide with `require_valid`. `pipeline` and `fingerprint` (what
    `kept_report` compares) are recorded in the manifest.
    """
    suite_json = _strip_ids(load_suite(suite_path))
    outcome: dict[str, Any] = {}

    def write(tmp: Path) -> dict[str, Any]:
        result = outcome["result"] = _run_checkpoint(frame, suite_json, tmp / DOCS_DIR)
        (tmp / RESULT_FILE).write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
        return {"suite": suite_json["name"], "suite_sha256": lake.sha256_file(suite_path),
                "data_name": data_name, "success": bool(result["success"]),
                **({"pipeline": pipeline} if pipeline else {}),
                **(fingerprint.record() if fingerprint else {})}

    published = lake.generation_dir(out_dir, lake.publish_dir(out_dir, write))
    return _report(published, suite_json["name"], data_name, outcome["result"])


def _report(published: lake.LakePath, suite: str, data_name: str, result: dict[str, Any]
            ) -> ValidationReport:
    """The report of a published validation (its generation folder and GX result)."""
    stats = result["statistics"]
    pages = sorted((published / DOCS_DIR / "validations").rglob("*.html"), key=str)
    return ValidationReport(
        suite=suite, data_name=data_name, success=bool(result["success"]),
        evaluated=int(stats["evaluated_expectations"]),
        successful=int(stats["successful_expectations"]),
        result_path=published / RESULT_FILE,
        docs_path=pages[0] if pages else published / DOCS_DIR / "index.html",
        failures=_failures(result),
    )


def require_valid(report: ValidationReport, remedy: str,
                  locate: Callable[[Failure], str] | None = None) -> None:
    """Raise ValidationFailed naming the suite, the data, each failing expectation with where
    its rows are (what `locate` says of it: ingest names the files and the rows' keys), and
    `remedy`, what to do."""
    if report.success:
        return
    lines = "; ".join(f.describe(locate(f) if locate else "") for f in report.failures)
    raise ValidationFailed(
        f"GX suite {report.suite!r} failed on {report.data_name}: "
        f"{report.evaluated - report.successful} of {report.evaluated} expectations failed: "
        f"{lines}. {remedy} (full result: {report.result_path}; Data Docs: {report.docs_path})"
    )


def validate_training_set(store: lake.Lake, spec: LoadedSpec, training_set: TrainingSet,
                          force: bool = False) -> QualitySummary:
    """The gate before training: the pipeline's training-set suite over the published set.

    A set validated before with the same bytes, suite and code keeps its committed result
    (`kept_report`) unless `force`: re-running GX on unchanged inputs finds the same."""
    suite = spec.pipeline.training_suite
    if suite is None:
        raise SpecError(f"{spec.path}: training_suite: required (no model is trained on "
                        f"unvalidated data)")
    folder = store.root / training_set.path
    data_file = lake.verified_training_file(folder, training_set.start, training_set.end)
    out_dir = lake.pipeline_dir(store, spec.name, "_quality", "datasets", training_set.dataset_id)
    data_name = f"training set {training_set.dataset_id[:12]} ({training_set.path})"
    wanted = skipping.fingerprint(
        [("training_set", lake.data_sha256(lake.read_manifest(folder) or {}))],
        {"suite": lake.sha256_file(spec.suite_path(suite))}, lineage.library_version())
    report = None if force else kept_report(out_dir, wanted, data_name)
    if report is None:
        report = validate(lake.read_frame(data_file), spec.suite_path(suite), data_name=data_name,
                          out_dir=out_dir, pipeline=spec.name, fingerprint=wanted)
    require_valid(report, f"Nothing is trained on it. Fix the data upstream (deliver the "
                  f"files again: the next run recomputes exactly what they feed) or the feature "
                  f"hooks; or, if the rule is wrong, change {spec.suite_path(suite)}. Then run "
                  f"the train DAG again.")
    return report.summary(store)


def kept_report(out_dir: lake.LakePath, wanted: skipping.Fingerprint, data_name: str
                ) -> ValidationReport | None:
    """The committed validation at `out_dir` when its manifest records the `wanted`
    fingerprint and its GX result still hashes to what the manifest lists, else None."""
    manifest = lake.read_manifest(out_dir)
    entry = next((f for f in (manifest or {}).get("files", []) if f["name"] == RESULT_FILE), None)
    if manifest is None or entry is None:
        return None
    result_path = lake.committed_file(out_dir, RESULT_FILE, manifest)
    decision = skipping.decide(manifest, wanted, False,
                               lambda: lake.sha256_file(result_path) == entry["sha256"])
    log.info("quality %s: %s", data_name, decision.label)
    if not decision.skip:
        return None
    return _report(result_path.parent, manifest["suite"], data_name,
                   json.loads(result_path.read_text()))
