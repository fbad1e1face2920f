"""Known problems: named sets of real cases every candidate is scored on.

Users remember the days a model failed them (a blizzard, a ground stop) better than any AUC.
A pipeline keeps those cases in a versioned file beside its spec: each problem names 10–15
rows of a training set (stored with every column, so any later model can score them), the
outcome expected for them and how much worse than the champion a candidate may do on them.
A problem's score is the share of its cases solved: decided as the expected class (binary at
the spec's threshold, multiclass by the most probable class), or for regression predicted
within `max_error` of the expected value (each case's own target unless one is declared).
Scores go to MLflow per version, so every registered version is comparable on every problem;
adding a problem re-scores the versions registered before it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines import registry, train
from pipelines.errors import DataError, SpecError
from pipelines.lake import sha256_file, sha256_json
from pipelines.metrics import decide
from pipelines.spec import load_yaml

if TYPE_CHECKING:
    from pipelines.spec import LoadedSpec

MIN_CASES, MAX_CASES = 10, 15
SCORE_METRIC = "problem.{name}.score"
SCORED_TAG = "problem.{name}.sha256"
"""Model-version tag: which version of the problem the version's score belongs to."""


class ProblemSpec(BaseModel):
    """One known problem as declared in the problems file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    expected: int | float | str | None = None
    """The right outcome: 0 or 1 (binary), a class (multiclass), a value (regression;
    default: each case's own target)."""
    max_error: float | None = Field(None, gt=0)
    """Regression: a case is solved when its prediction is within this of the expected value."""
    tolerance: float = Field(0.0, ge=0, le=1)
    """Allowed drop in score against the champion."""
    cases: str
    """CSV of the case rows, relative to the problems file."""
    query: str | None = None
    """The SQL filter the cases were selected with, kept for provenance."""


class ProblemsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    problems: dict[str, ProblemSpec] = {}


@dataclass(frozen=True)
class Problem:
    name: str
    spec: ProblemSpec
    cases_path: Path
    sha256: str
    """Hash of the declaration and the case rows: a new version of the problem re-scores."""


@dataclass(frozen=True)
class ProblemScore:
    """One model on one problem."""

    problem: str
    score: float
    solved: int
    cases: int
    expected: int | float | str | None
    predictions: list[float | str]
    """What the model said per case: a probability or value, or the decided class."""


def _read_file(path: Path) -> ProblemsFile:
    try:
        return ProblemsFile.model_validate(load_yaml(path.read_text()) or {})
    except FileNotFoundError as exc:
        raise SpecError(f"{path}: problems file not found") from exc
    except (yaml.YAMLError, ValidationError) as exc:
        raise SpecError(f"{path}: {exc}") from exc


def check_declaration(path: Path, name: str, declared: ProblemSpec, task: str) -> None:
    """A problem's outcome fits the task: 0/1, a class, or a value with its `max_error`."""
    where = f"{path}: problems.{name}"
    if task == "binary" and declared.expected not in (0, 1):
        raise SpecError(f"{where}.expected: a binary problem expects 0 or 1, got "
                        f"{declared.expected!r}")
    if task == "multiclass" and declared.expected is None:
        raise SpecError(f"{where}.expected: a multiclass problem names the expected class")
    if task == "regression":
        if declared.max_error is None:
            raise SpecError(f"{where}.max_error: a regression problem says how far from the "
                            "expected value a prediction may be and still count as solved")
        if isinstance(declared.expected, str):
            raise SpecError(f"{where}.expected: a regression problem expects a number (or "
                            "nothing: each case's own target)")
    elif declared.max_error is not None:
        raise SpecError(f"{where}.max_error: only regression problems have one")


def load_problems(spec: LoadedSpec) -> list[Problem]:
    """The spec's problems, each checked to fit the task and have its 10–15 cases."""
    path = spec.problems_path
    if path is None:
        return []
    problems = []
    for name, declared in _read_file(path).problems.items():
        check_declaration(path, name, declared, spec.pipeline.model.task)
        cases = (path.parent / declared.cases).resolve()
        if not cases.is_file():
            raise SpecError(f"{path}: problems.{name}.cases: file {cases} not found")
        rows = len(read_cases(cases))
        if not MIN_CASES <= rows <= MAX_CASES:
            raise SpecError(f"{path}: problems.{name}: {rows} cases in {cases.name}; "
                            f"a problem has {MIN_CASES} to {MAX_CASES}")
        problems.append(Problem(name, declared, cases, sha256_json(
            {"declaration": declared.model_dump(mode="json"), "cases": sha256_file(cases)})))
    return problems


def read_cases(path: Path) -> pd.DataFrame:
    """Case rows as written: empty cells are missing, every other text (e.g. "NA") is text."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def score_problem(problem: Problem, predict: Callable[[pd.DataFrame], np.ndarray], task: str,
                  threshold: float, classes: np.ndarray | None, target: str) -> ProblemScore:
    """Share of the problem's cases solved (see the module docstring)."""
    cases = read_cases(problem.cases_path)
    try:
        pred = predict(cases)
    except KeyError as exc:
        raise DataError(f"problem {problem.name}: the cases in {problem.cases_path} lack "
                        f"columns the model needs: {exc} (re-select them with "
                        "`pitstop problems add`)") from exc
    expected = problem.spec.expected
    if task == "regression":
        wanted = cases[target].to_numpy(dtype="float64") if expected is None else float(expected)
        hits = np.abs(pred - wanted) <= problem.spec.max_error
        said: list[float | str] = [round(float(p), 6) for p in pred]
    elif task == "multiclass":
        decided = decide(task, pred, threshold, classes)
        hits = decided.astype(str) == str(expected)
        said = [str(d) for d in decided]
    else:
        hits = decide(task, pred, threshold, classes) == expected
        said = [round(float(p), 6) for p in pred]
    solved = int(hits.sum())
    return ProblemScore(problem.name, solved / len(cases), solved, len(cases), expected, said)


def regressions(candidate: dict[str, ProblemScore], champion: dict[str, ProblemScore] | None,
                problems: list[Problem]) -> list[str]:
    """A reason for every problem on which the candidate drops past its tolerance."""
    if champion is None:
        return []
    reasons = []
    for problem in problems:
        ours, theirs = candidate[problem.name], champion[problem.name]
        # rounded: 0.8 - 0.7 is 0.10000000000000009 in floating point, not above 0.1
        if round(theirs.score - ours.score, 9) > problem.spec.tolerance:
            reasons.append(
                f"problem {problem.name}: solves {ours.solved}/{ours.cases} cases, the "
                f"champion {theirs.solved}/{theirs.cases} (allowed drop "
                f"{problem.spec.tolerance:.2f})")
    return reasons


_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def add_problem(spec: LoadedSpec, name: str, description: str,
                expected: int | float | str | None, where: str, training_set: Path,
                tolerance: float = 0.0, limit: int = MAX_CASES, order_by: str | None = None,
                max_error: float | None = None) -> Problem:
    """Select cases from a training set with a SQL filter and add them as a new problem.

    The cases are the first `limit` matching rows by `order_by` (default: the entity; use
    e.g. `md5(<entity column>)` for a spread that is still deterministic), written with every
    column of the training set; the problems file keeps the filter as provenance.
    """
    path, current = _open_for(spec, name, limit)
    declared = ProblemSpec(description=description, expected=expected, max_error=max_error,
                           tolerance=tolerance, cases=f"problems/{name}.csv",
                           query=where + (f" ORDER BY {order_by}" if order_by else ""))
    check_declaration(path, name, declared, spec.pipeline.model.task)
    cases = _select_cases(name, where, order_by or f'"{spec.pipeline.label.entity}"', limit,
                          training_set)
    target = path.parent / declared.cases
    target.parent.mkdir(parents=True, exist_ok=True)
    cases.to_csv(target, index=False)
    problems = {k: v.model_dump(mode="json", exclude_none=True)
                for k, v in current.problems.items()}
    problems[name] = declared.model_dump(mode="json", exclude_none=True)
    path.write_text(f"# Known problems of the {spec.name} pipeline: every candidate is scored on "
                    "them (pipelines/problems.py).\n# Add one with `pitstop problems add`.\n"
                    + yaml.safe_dump({"problems": problems}, sort_keys=False, width=100))
    return next(p for p in load_problems(spec) if p.name == name)


def _open_for(spec: LoadedSpec, name: str, limit: int) -> tuple[Path, ProblemsFile]:
    """The problems file and what it holds, once the new problem's name and size are known
    to fit: checked before any query runs, so a refused problem writes nothing."""
    path = spec.problems_path
    if path is None:
        raise SpecError(f"{spec.path}: evaluation.problems names no problems file")
    if not _NAME.match(name):
        raise SpecError(f"problem name {name!r}: use lowercase letters, digits and _")
    current = _read_file(path) if path.exists() else ProblemsFile()
    if name in current.problems:
        raise SpecError(f"{path}: problem {name!r} exists already")
    if not MIN_CASES <= limit <= MAX_CASES:
        raise SpecError(f"problem {name}: limit {limit}; a problem has {MIN_CASES} to "
                        f"{MAX_CASES} cases")
    return path, current


def _select_cases(name: str, where: str, order: str, limit: int, training_set: Path
                  ) -> pd.DataFrame:
    """The first `limit` rows of the training set that match the filter, in a fixed order
    so the same command picks the same cases; a filter DuckDB refuses, or one that matches
    too few rows, is bad data naming the filter."""
    import duckdb

    try:
        cases = duckdb.sql(
            f"SELECT * FROM read_parquet(?, hive_partitioning = false) WHERE {where} "
            f"ORDER BY {order} LIMIT {int(limit)}",
            params=[str(training_set)]).df()
    except duckdb.Error as exc:
        raise DataError(f"problem {name}: the filter {where!r} failed on {training_set}: {exc}"
                        ) from exc
    if len(cases) < MIN_CASES:
        raise DataError(f"problem {name}: the filter {where!r} matches {len(cases)} rows of "
                        f"{training_set}; a problem needs at least {MIN_CASES}")
    return cases


def rescore_versions(spec: LoadedSpec) -> list[tuple[str, str, float]]:
    """Score every registered version on every problem it has no current score for.

    A version's score is its run's metric `problem.<name>.score`; the version's tag
    `problem.<name>.sha256` says which version of the problem it was scored on, so a changed
    problem is re-scored too. Returns (version, problem, score) for what was scored now.
    """
    problems = load_problems(spec)
    name, threshold = spec.pipeline.model_name, spec.pipeline.evaluation.threshold
    task, target = spec.pipeline.model.task, spec.pipeline.label.target
    scored = []
    for version in registry.versions(name):
        stale = [p for p in problems
                 if version.tags.get(SCORED_TAG.format(name=p.name)) != p.sha256]
        if not stale:
            continue
        model = registry.load_model(f"models:/{name}/{version.version}")
        for problem in stale:
            result = score_problem(problem, functools.partial(train.predict, model), task,
                                   threshold, train.classes(model), target)
            registry.log_metrics(version.run_id,
                                 {SCORE_METRIC.format(name=problem.name): result.score})
            registry.set_version_tags(name, str(version.version),
                                      {SCORED_TAG.format(name=problem.name): problem.sha256})
            scored.append((str(version.version), problem.name, result.score))
    return scored


def history(spec: LoadedSpec) -> pd.DataFrame:
    """Every registered version's score on every current problem, oldest version first."""
    rows = []
    problems = load_problems(spec)
    for version in registry.versions(spec.pipeline.model_name):
        run_metrics = registry.client().get_run(version.run_id).data.metrics
        for problem in problems:
            score = run_metrics.get(SCORE_METRIC.format(name=problem.name))
            if score is not None:
                rows.append({"version": int(version.version), "problem": problem.name,
                             "score": score})
    return pd.DataFrame(rows, columns=["version", "problem", "score"])
