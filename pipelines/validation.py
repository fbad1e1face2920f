"""Spec checks before anything runs: every mistake at once, each a typed finding.

A spec can load and still be wrong in ways that fail deep inside a task after a long run: a
hook that does not exist, a time zone DuckDB does not know, a suite GX cannot read, a feature
no view produces, an estimator whose package is not installed. `validate` finds them all and
says, for each, the file, the field and the fix.

The checks come in two parts. The *cheap* part reads only the spec, its hooks' source text
(parsed, never run) and its suite files, and imports nothing heavy (no pandas, no
scikit-learn, no GX): the DAG factory runs it each time a DAG file is parsed. The *full*
part, which `pitstop validate` adds, imports the hooks, GX and the estimator, loads the
known problems, and learns the feature columns of views that do not declare them by running
their functions on a few landed rows.
"""

from __future__ import annotations

import ast
import difflib
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from pipelines.errors import DataError, SpecError
from pipelines.spec import (
    PARTITION_DAY,
    LoadedSpec,
    error_message,
    load_spec,
    load_suite,
)

if TYPE_CHECKING:
    import pandas as pd

SAMPLE_ROWS = 50
"""Rows of one landed file a hook runs on to show its columns: enough for any grouping to
yield a row, few enough to take no time."""
LABEL = "label"


@dataclass(frozen=True)
class Finding:
    """One mistake (`error`) or one thing that could not be checked (`warning`).

    `file` is the spec checked, `field` the spec field at fault; the message names any other
    file involved (a hook module, a suite, the problems file) and what to do.
    """

    file: Path
    field: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.file}: {self.severity}: {self.field}: {self.message}"


def validate(path: str | Path, full: bool = True) -> list[Finding]:
    """Every finding for the spec at `path`; a spec that does not load gives only why."""
    try:
        spec = load_spec(path, check=False)
    except SpecError as exc:
        return load_findings(Path(path), exc)
    return check(spec, full)


def check(spec: LoadedSpec, full: bool) -> list[Finding]:
    """The cheap checks of a loaded spec and, with `full`, the rest (see the module doc)."""
    findings = [*source_findings(spec), *sibling_findings(spec), *hook_findings(spec, full),
                *suite_findings(spec, full)]
    broken = {finding.field for finding in findings}
    if full:
        findings += problem_findings(spec)
        if "model.build" not in broken:
            findings += model_findings(spec)
        columns = {producer: training_columns(spec, producer, broken)
                   for producer in [LABEL, *spec.pipeline.feature_views]}
        findings += feature_findings(spec, columns)
        if "training_suite" not in broken:
            findings += training_suite_findings(spec, columns)
    return findings


def refuse_errors(spec: LoadedSpec, findings: list[Finding]) -> None:
    """Raise one SpecError listing every error finding; warnings pass."""
    if errors := [str(f) for f in findings if f.severity == "error"]:
        raise SpecError(f"{spec.path}: {len(errors)} error(s); `pitstop validate` lists "
                        "them all:\n  " + "\n  ".join(errors))


def load_findings(path: Path, exc: SpecError) -> list[Finding]:
    """A load failure as findings: one per field pydantic refused, else the error itself."""
    cause = exc.__cause__
    if not isinstance(cause, ValidationError):
        return [Finding(path, "(file)", str(exc).removeprefix(f"{path}: "))]
    findings = []
    for error in cause.errors():
        field = ".".join(str(part) for part in error["loc"])
        message = error_message(error).removeprefix("Value error, ")
        # the spec's cross-field rules say which field they are about: `field: why`
        if not field and (named := re.match(r"([\w.]+): (.*)", message, re.DOTALL)):
            field, message = named.groups()
        findings.append(Finding(path, field or "(top level)", message))
    return findings


def _error(spec: LoadedSpec, field: str, exc: Exception) -> Finding:
    return Finding(spec.path, field, str(exc).removeprefix(f"{spec.path}: "))


def source_findings(spec: LoadedSpec) -> list[Finding]:
    """Time zones DuckDB knows (a path's placeholders are checked when the spec loads)."""
    findings = []
    for name, source in spec.pipeline.sources.items():
        if problem := timezone_problem(source.timezone):
            findings.append(Finding(spec.path, f"sources.{name}.timezone", problem))
    return findings


def sibling_findings(spec: LoadedSpec) -> list[Finding]:
    """Names another spec in the same DAGs folder already uses: one `name` means one set of
    DAG ids and one lake folder, one `model_name` one registered model, so two pipelines
    would overwrite each other's partitions or versions. Other YAML files there that are not
    specs are none of this check's business."""
    findings = []
    for other in sorted(spec.path.parent.glob("*.yaml")):
        if other.resolve() == spec.path.resolve():
            continue
        try:
            sibling = load_spec(other, check=False).pipeline
        except SpecError:
            continue
        for field in ("name", "model_name"):
            if getattr(sibling, field) == getattr(spec.pipeline, field):
                findings.append(Finding(spec.path, field, (
                    f"{getattr(sibling, field)!r} is also the {field} of {other}: "
                    f"{SHARED[field]}; give each pipeline its own")))
    return findings


SHARED = {"name": "both would have the same DAG ids and write the same lake folder",
          "model_name": "both would register versions of one MLflow model and move one "
                        "champion alias"}


@functools.cache
def timezone_problem(timezone: str) -> str | None:
    """Why DuckDB refuses `timezone` (ingest reads naive times in it), or None. Cached: a
    DuckDB connection per source per DAG-file parse took half a second of every parse."""
    import duckdb

    try:
        duckdb.connect().execute(f"SET TimeZone = '{timezone.replace(chr(39), chr(39) * 2)}'")
    except duckdb.Error as exc:
        said = " ".join(str(exc).split()).removeprefix("Not implemented Error: ")
        return f"{said}; use an IANA time zone name such as America/New_York"
    return None


def hook_findings(spec: LoadedSpec, full: bool) -> list[Finding]:
    """Every hook the spec names is defined (read from source); with `full`, it imports."""
    findings = []
    for field, ref in spec.pipeline.hook_refs().items():
        if problem := undefined_hook(spec, ref):
            findings.append(Finding(spec.path, field, problem))
            continue
        if full:
            try:
                spec.resolve(ref)
            except SpecError as exc:
                findings.append(_error(spec, field, exc))
    return findings


def undefined_hook(spec: LoadedSpec, ref: str) -> str | None:
    """Why `module:function` is not defined in the hooks folder, read without importing it."""
    module_file, function = spec.hook_file(ref), ref.partition(":")[2]
    if not (spec.hooks_dir / "__init__.py").is_file():
        return f"{ref!r}: the hooks folder {spec.hooks_dir} is missing or has no __init__.py"
    if not module_file.is_file():
        return f"{ref!r}: hook module {module_file} not found"
    try:
        names = top_level_names(ast.parse(module_file.read_text(), str(module_file)))
    except SyntaxError as exc:
        return f"{ref!r}: {module_file} line {exc.lineno}: {exc.msg}"
    if names is None or function in names:
        return None
    close = difflib.get_close_matches(function, sorted(names), n=1)
    hint = f"did you mean {close[0]!r}?" if close else "add it or fix the name"
    return f"{ref!r}: {module_file} defines no {function!r}; {hint}"


def top_level_names(tree: ast.Module) -> set[str] | None:
    """Names a module binds at top level (also inside if/try); None after `import *`."""
    names: set[str] = set()
    nodes = list(tree.body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any(alias.name == "*" for alias in node.names):
                return None
            names.update((a.asname or a.name).partition(".")[0] for a in node.names)
        elif isinstance(node, ast.If | ast.Try | ast.With):
            nodes += [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", []),
                      *(n for h in getattr(node, "handlers", []) for n in h.body)]
    return names


def suite_findings(spec: LoadedSpec, full: bool) -> list[Finding]:
    """Every suite the spec names reads as GX 1.x JSON; with `full`, GX knows each entry."""
    findings = []
    for field, suite in spec.pipeline.suite_refs().items():
        path = spec.suite_path(suite)
        try:
            content = load_suite(path)
        except SpecError as exc:
            findings.append(Finding(spec.path, field, str(exc)))
            continue
        if full:
            findings += [Finding(spec.path, field, problem) for problem in gx_problems(path, content)]
    return findings


def gx_problems(path: Path, suite: dict) -> list[str]:
    """Expectations GX refuses. Built one by one: a suite built whole silently drops an
    expectation whose type GX does not know, so the check would pass with fewer rules."""
    from pipelines.quality import import_gx

    import_gx()
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    problems = []
    for index, item in enumerate(suite["expectations"]):
        try:
            ExpectationConfiguration(**{k: v for k, v in item.items() if k != "id"}
                                     ).to_domain_obj()
        except Exception as exc:  # GX raises pydantic, TypeError and its own types alike
            said = " ".join(str(exc).split())
            problems.append(f"{path}: expectations[{index}] ({item['type']}): GX refuses it: "
                            f"{said[:300]}")
    return problems


def problem_findings(spec: LoadedSpec) -> list[Finding]:
    """The known problems load and fit the task (imports the scoring code)."""
    from pipelines import problems

    try:
        problems.load_problems(spec)
    except (SpecError, DataError) as exc:
        return [_error(spec, "evaluation.problems", exc)]
    return []


def model_findings(spec: LoadedSpec) -> list[Finding]:
    """The estimator imports, takes its params and fits `model.task` (imports scikit-learn)."""
    from pipelines.spec import check_model

    try:
        check_model(spec)
    except SpecError as exc:
        return [_error(spec, "model.build" if spec.pipeline.model.build else "model.estimator",
                       exc)]
    return []


Columns = dict[str, tuple[set[str] | None, str]]
"""Each producer's (the label's, every view's) training-set columns and how they are known,
or None and why not (`training_columns`)."""


def feature_findings(spec: LoadedSpec, columns: Columns) -> list[Finding]:
    """Each of `model.features` is a column the training set will have.

    A view's columns are `<view>__<column>` and `<view>__as_of`; any other feature must be a
    column of the label's output. Columns come from a view's `columns:` declaration, else
    from running its function (or the label's) on a few landed rows; with neither, the
    features are reported as not checked.
    """
    groups: dict[str, list[str]] = {}
    for feature in spec.pipeline.model.features:
        groups.setdefault(owner(spec, feature), []).append(feature)
    findings = []
    for producer, features in groups.items():
        given, how = columns[producer]
        what = f"feature view {producer!r}" if producer != LABEL else "the label"
        if given is None:
            findings.append(Finding(spec.path, "model.features", (
                f"{features} could not be checked: {how}"), "warning"))
        elif missing := [f for f in features if f not in given]:
            findings.append(Finding(spec.path, "model.features", (
                f"{missing} are not columns of {what}, which gives {sorted(given)} ({how}); "
                "a view's columns are named `<view>__<column>`")))
    return findings


COLUMN_KWARGS = ("column", "column_A", "column_B")
"""The kwargs by which a GX expectation names one column."""


def training_suite_findings(spec: LoadedSpec, columns: Columns) -> list[Finding]:
    """Each column the training suite names is one the training set will have.

    Without this a renamed view column passes validation and fails at `validate_training_set`,
    after the whole backfill, as an expectation on a column GX reports nothing about. Checked
    only when every producer's columns are known.
    """
    if any(given is None for given, _ in columns.values()):
        return []
    present = set().union(*(given for given, _ in columns.values() if given is not None))
    path = spec.suite_path(spec.pipeline.training_suite)
    findings = []
    for index, item in enumerate(load_suite(path)["expectations"]):
        named = [item["kwargs"][k] for k in COLUMN_KWARGS if k in item["kwargs"]]
        named += list(item["kwargs"].get("column_list") or [])
        if missing := [c for c in named if c not in present]:
            findings.append(Finding(spec.path, "training_suite", (
                f"{path}: expectations[{index}] ({item['type']}) names {missing}, which the "
                f"training set will not have; it has {sorted(present)}: rename the column in "
                "the suite, or the view column it meant")))
    return findings


def owner(spec: LoadedSpec, feature: str) -> str:
    """The view whose prefix `feature` carries (the longest), else the label."""
    views = [v for v in spec.pipeline.feature_views if feature.startswith(f"{v}__")]
    return max(views, key=len) if views else LABEL


def training_columns(spec: LoadedSpec, producer: str,
                     broken: set[str]) -> tuple[set[str] | None, str]:
    """The training-set columns `producer` (a view or the label) gives, and how they are
    known; None and why when they are not."""
    from pipelines.features import AS_OF, CREATED_TIME, EVENT_TIME

    if producer == LABEL:
        declaring = spec.pipeline.label
        field, columns = "label", declaring.columns
    else:
        declaring = view = spec.pipeline.feature_views[producer]
        field, columns = f"feature_views.{producer}", view.columns
    how = f"declared in {field}.columns"
    if columns is None:
        if refused := [f for f in [f"{field}.function", *(f"sources.{s}.{part}" for s in
                                   declaring.sources for part in ("path", "timezone"))]
                       if f in broken]:
            return None, f"{', '.join(refused)} must be fixed first"
        columns, how = sample_columns(spec, declaring.function, declaring.sources)
        if columns is None:
            return None, (f"{how}; declare {field}.columns (or, for a source of landing "
                          "files, land one) to check them")
    if producer == LABEL:
        return set(columns), how
    times = {*view.keys, EVENT_TIME, CREATED_TIME}
    return {f"{producer}__{c}" for c in [*columns, AS_OF] if c not in times}, how


def sample_columns(spec: LoadedSpec, function: str,
                   sources: list[str]) -> tuple[list[str] | None, str]:
    """Output columns of a hook run on the first `SAMPLE_ROWS` rows of one landed file of
    each of its sources, as the hook sees them (typed, with `_partition_day`)."""
    frames, files = {}, []
    for name in sources:
        sample = landed_sample(spec, name)
        if isinstance(sample, str):
            return None, sample
        frames[name], path = sample
        files.append(str(path))
    try:
        output = spec.resolve(function)(frames)
        columns = [str(c) for c in output.columns]
    except Exception as exc:  # a hook may raise anything; on a sample it is not conclusive
        return None, f"{function} failed on a sample of {files}: {type(exc).__name__}: {exc}"
    return columns, f"{function} run on {SAMPLE_ROWS} rows of {', '.join(files)}"


def landed_sample(spec: LoadedSpec, source_name: str) -> tuple[pd.DataFrame, Path] | str:
    """The first rows of the earliest landed file of a source, or why there is none.

    Periods are tried from the pipeline's start to today, the way ingest names the files;
    each row's `_partition_day` is the UTC day ingest would publish it under.
    """
    import datetime as dt

    import pandas as pd

    from pipelines.ingest import deliveries, landing_file, read_landing_file

    source = spec.pipeline.sources[source_name]
    if source.database is not None:
        return (f"source {source_name!r} is read from a database, which validate does not "
                "query")
    for delivery in deliveries(source, spec.pipeline.start_date,
                               dt.date.today() + dt.timedelta(days=1)):
        path = landing_file(spec, source, delivery)
        if path.is_file():
            try:
                table = read_landing_file(path, source).slice(0, SAMPLE_ROWS)
            except DataError as exc:
                return f"the sample of source {source_name!r} does not read: {exc}"
            frame = table.to_pandas()
            frame[PARTITION_DAY] = (frame[source.event_time].dt.floor("D") if source.event_time
                                    else pd.Timestamp(delivery.start))
            return frame, path
    return f"source {source_name!r} has no landed file under {spec.landing_dir()}"
