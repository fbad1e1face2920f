"""Known problems: the file, the scores, the regressions, adding a problem, re-scoring.

What is shown: the problems file and its case files are validated on load with errors that
name the file and the problem (10 to 15 cases; unknown fields, bad values, missing files
refused) and case text such as "NA" stays text; a score is the share of cases decided as
expected per task (binary at the threshold, ties count as positive; multiclass by the most
probable class; regression within `max_error` of each case's own target or of a declared
value, bounds included); a declaration that does not fit the task is refused naming the file,
problem and field; a regression past its tolerance is named with both counts; `add_problem`
selects cases from a Parquet training set with DuckDB, writes CSV and YAML (query kept) and
refuses existing or bad names, declarations that do not fit the task, failing filters, too
few matches, without writing anything; adding a problem leaves `code_version` unchanged; on
the real MLflow store every registered version is scored once per version of each problem and
`history` reads the latest scores back.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines import champion, lineage, problems, registry, train
from pipelines.errors import DataError, SpecError
from pipelines.problems import Problem, ProblemScore, ProblemSpec
from pipelines.spec import LoadedSpec, load_spec

from .conftest import for_task

ROWS = 40


def _spec(tiny: LoadedSpec, problems_file: str | None = "sensors/problems.yaml",
          model_name: str | None = None, task: str = "binary") -> LoadedSpec:
    """The tiny spec, rewritten on disk with `evaluation.problems` (and a model name), for
    `task` with an estimator that fits it."""
    text = tiny.path.read_text()
    if model_name:
        text = text.replace("model_name: sensors", f"model_name: {model_name}")
    if problems_file:
        text += f"evaluation: {{problems: {problems_file}}}\n"
    tiny.path.write_text(text)
    spec = load_spec(tiny.path)
    return spec if task == "binary" else for_task(spec, task)


def _cases(values: list[float], note: list[str] | None = None) -> pd.DataFrame:
    """Case rows with the tiny model's feature `last__value`."""
    return pd.DataFrame({"reading_id": [f"case{i:02d}" for i in range(len(values))],
                         "last__value": values,
                         "note": note if note is not None else ["x"] * len(values)})


def _declare(spec: LoadedSpec, cases: dict[str, pd.DataFrame],
             **overrides: dict[str, Any]) -> Path:
    """Write the problems file and one CSV per problem (each declared as expecting 1);
    `overrides` replace declarations."""
    path = spec.problems_path
    assert path is not None
    (path.parent / "problems").mkdir(parents=True, exist_ok=True)
    declared = {}
    for name, frame in cases.items():
        frame.to_csv(path.parent / "problems" / f"{name}.csv", index=False)
        declared[name] = {"description": f"the {name} days", "expected": 1,
                          "cases": f"problems/{name}.csv"}
    for name, declaration in overrides.items():
        declared[name] = declaration
    path.write_text(yaml.safe_dump({"problems": declared}, sort_keys=False))
    return path


def _training_set(folder: Path) -> Path:
    """40 rows of the tiny pipeline's training set as Parquet: `idx` 0..39,
    `last__value` = idx / 40, and a text column with "NA" on even and null on odd rows."""
    idx = np.arange(ROWS)
    frame = pd.DataFrame({
        "reading_id": [f"r{i:02d}" for i in idx],
        "sensor": np.where(idx % 3 == 0, "a", "b"),
        "cutoff": pd.date_range("2024-01-02", periods=ROWS, freq="h", tz="UTC"),
        "idx": idx,
        "last__value": idx / ROWS,
        "high": (idx >= ROWS // 2).astype("int64"),
        "note": ["NA" if i % 2 == 0 else None for i in idx],
    })
    path = folder / "training_set.parquet"
    frame.to_parquet(path, index=False)
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- loading -------------------------------------------------------------------------------


def test_a_spec_without_problems_has_none(tiny: LoadedSpec) -> None:
    assert tiny.problems_path is None
    assert problems.load_problems(tiny) == []


def test_problems_path_is_relative_to_the_spec(tiny: LoadedSpec) -> None:
    spec = _spec(tiny)
    assert spec.problems_path == tiny.path.parent / "sensors" / "problems.yaml"


def test_missing_problems_file_is_named(tiny: LoadedSpec) -> None:
    spec = _spec(tiny)
    with pytest.raises(SpecError, match=re.escape(f"{spec.problems_path}: problems file not found")):
        problems.load_problems(spec)


def test_a_problem_loads_with_its_declaration(tiny: LoadedSpec) -> None:
    spec = _spec(tiny)
    path = _declare(spec, {"hot": _cases([0.9] * 12), "cold": _cases([0.1] * 10)},
                    cold={"description": "cold nights", "expected": 0, "tolerance": 0.1,
                          "cases": "problems/cold.csv", "query": "last__value < 0.2"})
    loaded = problems.load_problems(spec)
    assert [p.name for p in loaded] == ["hot", "cold"]
    hot, cold = loaded
    assert hot.cases_path == path.parent / "problems" / "hot.csv"
    assert (hot.spec.expected, hot.spec.tolerance, hot.spec.query) == (1, 0.0, None)
    assert (cold.spec.expected, cold.spec.tolerance, cold.spec.query) == (
        0, 0.1, "last__value < 0.2")
    assert hot.sha256 != cold.sha256


@pytest.mark.parametrize(("rows", "ok"), [(9, False), (10, True), (15, True), (16, False)])
def test_a_problem_has_10_to_15_cases(tiny: LoadedSpec, rows: int, ok: bool) -> None:
    spec = _spec(tiny)
    path = _declare(spec, {"hot": _cases([0.9] * rows)})
    if ok:
        assert [p.name for p in problems.load_problems(spec)] == ["hot"]
        return
    with pytest.raises(SpecError, match=re.escape(
            f"{path}: problems.hot: {rows} cases in hot.csv; a problem has 10 to 15")):
        problems.load_problems(spec)


@pytest.mark.parametrize(("declaration", "field"), [
    ({"tolerence": 0.1}, "problems.hot.tolerence"),          # a typo is an unknown field
    ({"expected": 2}, "problems.hot.expected"),
    ({"tolerance": -0.1}, "problems.hot.tolerance"),
    ({"tolerance": 1.5}, "problems.hot.tolerance"),
    ({"description": None}, "problems.hot.description"),
])
def test_bad_declarations_are_refused_naming_file_and_field(
        tiny: LoadedSpec, declaration: dict[str, Any], field: str) -> None:
    spec = _spec(tiny)
    good = {"description": "d", "expected": 1, "cases": "problems/hot.csv"}
    path = _declare(spec, {"hot": _cases([0.9] * 12)},
                    hot={k: v for k, v in {**good, **declaration}.items() if v is not None})
    with pytest.raises(SpecError, match=re.escape(str(path))) as raised:
        problems.load_problems(spec)
    assert field in str(raised.value)


@pytest.mark.parametrize(("text", "says"), [
    ("problem: {}\n", "problem"),           # unknown top-level field (typo of `problems`)
    ("problems: [unclosed\n", "problems"),  # not YAML
])
def test_a_malformed_problems_file_is_refused(tiny: LoadedSpec, text: str, says: str) -> None:
    spec = _spec(tiny)
    assert spec.problems_path is not None
    spec.problems_path.parent.mkdir(parents=True, exist_ok=True)
    spec.problems_path.write_text(text)
    with pytest.raises(SpecError, match=re.escape(f"{spec.problems_path}: ")) as raised:
        problems.load_problems(spec)
    assert says in str(raised.value)


def test_an_empty_problems_file_has_no_problems(tiny: LoadedSpec) -> None:
    spec = _spec(tiny)
    assert spec.problems_path is not None
    spec.problems_path.parent.mkdir(parents=True, exist_ok=True)
    spec.problems_path.write_text("# nothing yet\n")
    assert problems.load_problems(spec) == []


def test_a_missing_case_file_is_named(tiny: LoadedSpec) -> None:
    spec = _spec(tiny)
    path = _declare(spec, {"hot": _cases([0.9] * 12)})
    (path.parent / "problems" / "hot.csv").unlink()
    with pytest.raises(SpecError, match=re.escape(f"{path}: problems.hot.cases: file ")):
        problems.load_problems(spec)


def test_case_text_like_na_stays_text(tmp_path: Path) -> None:
    """Only an empty cell is missing; "NA", "N/A", "null", "nan" are values (e.g. a code)."""
    path = tmp_path / "cases.csv"
    path.write_text("code,value\nNA,1\nN/A,2\nnull,3\nnan,4\n,5\n")
    cases = problems.read_cases(path)
    assert cases["code"].iloc[:4].tolist() == ["NA", "N/A", "null", "nan"]
    assert pd.isna(cases["code"].iloc[4])
    assert cases["value"].tolist() == [1, 2, 3, 4, 5]


def test_a_problem_version_changes_with_its_cases_or_declaration(tiny: LoadedSpec) -> None:
    """sha256 is stable across loads and moves when the case rows or the declaration change,
    and only for that problem."""
    spec = _spec(tiny)
    path = _declare(spec, {"hot": _cases([0.9] * 12), "cold": _cases([0.1] * 12)})

    def shas() -> dict[str, str]:
        return {p.name: p.sha256 for p in problems.load_problems(spec)}

    first = shas()
    assert shas() == first
    _cases([0.9] * 11 + [0.8]).to_csv(path.parent / "problems" / "hot.csv", index=False)
    second = shas()
    assert second["hot"] != first["hot"] and second["cold"] == first["cold"]
    declared = yaml.safe_load(path.read_text())
    declared["problems"]["cold"]["tolerance"] = 0.2
    path.write_text(yaml.safe_dump(declared))
    third = shas()
    assert third["hot"] == second["hot"] and third["cold"] != second["cold"]


# --- declarations fit the task --------------------------------------------------------------


def _declared(**fields: Any) -> ProblemSpec:
    return ProblemSpec(description="d", cases="problems/hot.csv", **fields)


@pytest.mark.parametrize(("task", "fields", "field", "says"), [
    ("binary", {"expected": 2}, "expected", "a binary problem expects 0 or 1, got 2"),
    ("binary", {"expected": "yes"}, "expected", "a binary problem expects 0 or 1, got 'yes'"),
    ("binary", {}, "expected", "a binary problem expects 0 or 1, got None"),
    ("binary", {"expected": 1, "max_error": 0.5}, "max_error",
     "only regression problems have one"),
    ("multiclass", {}, "expected", "a multiclass problem names the expected class"),
    ("multiclass", {"expected": "hot", "max_error": 0.5}, "max_error",
     "only regression problems have one"),
    ("regression", {}, "max_error", "a regression problem says how far from the expected "
     "value a prediction may be and still count as solved"),
    ("regression", {"expected": 5.0}, "max_error", "a regression problem says how far"),
    ("regression", {"expected": "hot", "max_error": 0.5}, "expected",
     "a regression problem expects a number (or nothing: each case's own target)"),
], ids=["binary-2", "binary-text", "binary-none", "binary-max-error", "multiclass-none",
        "multiclass-max-error", "regression-no-max-error", "regression-value-no-max-error",
        "regression-text"])
def test_a_declaration_that_does_not_fit_the_task_is_refused(
        tmp_path: Path, task: str, fields: dict[str, Any], field: str, says: str) -> None:
    path = tmp_path / "problems.yaml"
    with pytest.raises(SpecError, match=re.escape(f"{path}: problems.hot.{field}: {says}")):
        problems.check_declaration(path, "hot", _declared(**fields), task)


@pytest.mark.parametrize(("task", "fields"), [
    ("binary", {"expected": 0}), ("binary", {"expected": 1}),
    ("multiclass", {"expected": "hot"}), ("multiclass", {"expected": 2}),
    ("regression", {"max_error": 0.5}), ("regression", {"expected": 5.0, "max_error": 0.5}),
    ("regression", {"expected": 0, "max_error": 2}),
])
def test_a_declaration_that_fits_the_task_is_accepted(tmp_path: Path, task: str,
                                                      fields: dict[str, Any]) -> None:
    problems.check_declaration(tmp_path / "problems.yaml", "hot", _declared(**fields), task)


@pytest.mark.parametrize(("task", "declaration", "field"), [
    ("regression", {"expected": 1}, "problems.hot.max_error"),
    ("binary", {"expected": "hot"}, "problems.hot.expected"),
    ("multiclass", {"expected": "hot", "max_error": 0.5}, "problems.hot.max_error"),
])
def test_loading_checks_each_declaration_against_the_specs_task(
        tiny: LoadedSpec, task: str, declaration: dict[str, Any], field: str) -> None:
    spec = _spec(tiny, task=task)
    path = _declare(spec, {"hot": _cases([0.9] * 12)},
                    hot={"description": "d", "cases": "problems/hot.csv", **declaration})
    with pytest.raises(SpecError, match=re.escape(f"{path}: {field}: ")):
        problems.load_problems(spec)


def test_a_regression_problem_loads_with_its_max_error(tiny: LoadedSpec) -> None:
    spec = _spec(tiny, task="regression")
    _declare(spec, {"hot": _cases([0.9] * 12), "any": _cases([0.5] * 10)},
             hot={"description": "d", "expected": 7.5, "max_error": 0.25,
                  "cases": "problems/hot.csv"},
             any={"description": "d", "max_error": 1, "cases": "problems/any.csv"})
    hot, any_ = problems.load_problems(spec)
    assert (hot.spec.expected, hot.spec.max_error) == (7.5, 0.25)
    assert (any_.spec.expected, any_.spec.max_error) == (None, 1.0)


# --- scoring and regressions ---------------------------------------------------------------

PROBABILITIES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.05]


@pytest.mark.parametrize(("expected", "threshold", "solved"), [
    (1, 0.5, 7),   # 0.5, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95: a tie with the threshold is positive
    (0, 0.5, 5),
    (1, 0.8, 3),
    (0, 0.95, 11),
])
def test_score_is_the_share_decided_as_expected(tiny: LoadedSpec, expected: int,
                                                threshold: float, solved: int) -> None:
    spec = _spec(tiny)
    frame = _cases(PROBABILITIES, note=["NA"] * 12).assign(p=PROBABILITIES)
    _declare(spec, {"hot": frame}, hot={"description": "d", "expected": expected,
                                        "cases": "problems/hot.csv"})
    (problem,) = problems.load_problems(spec)
    seen: list[pd.DataFrame] = []

    def predict(cases: pd.DataFrame) -> np.ndarray:
        seen.append(cases)
        return cases["p"].to_numpy()

    score = problems.score_problem(problem, predict, "binary", threshold, None, "high")
    assert score == ProblemScore("hot", solved / 12, solved, 12, expected, PROBABILITIES)
    assert list(seen[0].columns) == ["reading_id", "last__value", "note", "p"]
    assert seen[0]["note"].tolist() == ["NA"] * 12  # the model sees the text, not a null


def test_cases_without_the_models_columns_name_the_problem(tiny: LoadedSpec) -> None:
    spec = _spec(tiny)
    path = _declare(spec, {"hot": _cases([0.9] * 12)})
    (problem,) = problems.load_problems(spec)

    def predict(cases: pd.DataFrame) -> np.ndarray:
        return cases["plane__engines"].to_numpy()

    with pytest.raises(DataError, match=re.escape(
            f"problem hot: the cases in {path.parent / 'problems' / 'hot.csv'} lack columns")):
        problems.score_problem(problem, predict, "binary", 0.5, None, "high")


TARGETS = [float(i) for i in range(1, 13)]
OFFSETS = [0.0, 0.25, -0.5, 0.5, 0.75, -1.0, 2.0, 0.125, -0.25, 0.5, -0.625, 0.0]
"""Regression cases: predictions are the target plus these (all exact in binary)."""


@pytest.mark.parametrize(("declaration", "solved"), [
    ({"max_error": 0.5}, 8),    # within 0.5 of each case's own target, bounds included
    ({"max_error": 0.25}, 5),
    ({"max_error": 2}, 12),
    ({"expected": 5.0, "max_error": 0.5}, 2),   # 4.5 and 5.0 lie within 0.5 of 5
    ({"expected": 5.0, "max_error": 1}, 3),     # and 5.75 within 1
    ({"expected": 100, "max_error": 1}, 0),
])
def test_a_regression_case_is_solved_within_max_error(
        tiny: LoadedSpec, declaration: dict[str, Any], solved: int) -> None:
    spec = _spec(tiny, task="regression")
    predicted = [t + o for t, o in zip(TARGETS, OFFSETS, strict=True)]
    frame = _cases([0.5] * 12).assign(high=TARGETS, p=predicted)
    _declare(spec, {"hot": frame},
             hot={"description": "d", "cases": "problems/hot.csv", **declaration})
    (problem,) = problems.load_problems(spec)
    score = problems.score_problem(problem, lambda cases: cases["p"].to_numpy(), "regression",
                                   0.5, None, "high")
    assert score == ProblemScore("hot", solved / 12, solved, 12, declaration.get("expected"),
                                 predicted)


def test_a_regression_problem_reads_the_target_the_spec_names(tiny: LoadedSpec) -> None:
    """Each case's own target is the column `label.target`, not some other number."""
    spec = _spec(tiny, task="regression")
    frame = _cases([0.5] * 10).assign(high=[1.0] * 10, other=[9.0] * 10)
    _declare(spec, {"hot": frame},
             hot={"description": "d", "max_error": 0.5, "cases": "problems/hot.csv"})
    (problem,) = problems.load_problems(spec)

    def predict(cases: pd.DataFrame) -> np.ndarray:
        return np.full(len(cases), 1.25)

    assert problems.score_problem(problem, predict, "regression", 0.5, None, "high").solved == 10
    assert problems.score_problem(problem, predict, "regression", 0.5, None, "other").solved == 0


def _class_cases(rows: list[tuple[float, float, float]]) -> pd.DataFrame:
    return _cases([0.5] * len(rows)).assign(p_a=[r[0] for r in rows], p_b=[r[1] for r in rows],
                                            p_c=[r[2] for r in rows])


ROWS_BY_CLASS = [(0.7, 0.2, 0.1), (0.2, 0.5, 0.3), (0.1, 0.1, 0.8), (0.3, 0.3, 0.4),
                 (0.1, 0.6, 0.3), (0.5, 0.25, 0.25), (0.2, 0.2, 0.6), (0.3, 0.4, 0.3),
                 (0.05, 0.05, 0.9), (0.4, 0.35, 0.25)]
"""Most probable class per row: a b c c b a c b c a."""


@pytest.mark.parametrize(("classes", "expected", "solved"), [
    (["cold", "mild", "hot"], "hot", 4),
    (["cold", "mild", "hot"], "cold", 3),
    (["cold", "mild", "hot"], "mild", 3),
    ([0, 1, 2], 2, 4),          # numeric classes, declared as a number
    ([0, 1, 2], 0, 3),
    (["cold", "mild", "hot"], "warm", 0),
])
def test_a_multiclass_case_is_solved_when_the_expected_class_is_most_probable(
        tiny: LoadedSpec, classes: list[Any], expected: Any, solved: int) -> None:
    spec = _spec(tiny, task="multiclass")
    _declare(spec, {"hot": _class_cases(ROWS_BY_CLASS)},
             hot={"description": "d", "expected": expected, "cases": "problems/hot.csv"})
    (problem,) = problems.load_problems(spec)
    score = problems.score_problem(
        problem, lambda cases: cases[["p_a", "p_b", "p_c"]].to_numpy(), "multiclass", 0.5,
        np.array(classes), "high")
    decided = [str(classes[i]) for i in (0, 1, 2, 2, 1, 0, 2, 1, 2, 0)]
    assert score == ProblemScore("hot", solved / 10, solved, 10, expected, decided)


def _problem(name: str, tolerance: float) -> Problem:
    return Problem(name, ProblemSpec(description="d", expected=1, tolerance=tolerance,
                                     cases=f"problems/{name}.csv"), Path(f"{name}.csv"), "sha")


def _score(name: str, solved: int, cases: int = 12) -> ProblemScore:
    return ProblemScore(name, solved / cases, solved, cases, 1, [])


def test_no_champion_no_regressions() -> None:
    assert problems.regressions({"hot": _score("hot", 0)}, None, [_problem("hot", 0.0)]) == []


@pytest.mark.parametrize(("ours", "theirs", "tolerance", "refused"), [
    (12, 12, 0.0, False),
    (12, 10, 0.0, False),   # better than the champion
    (11, 12, 0.0, True),    # one case worse, nothing allowed
    (11, 12, 0.1, False),   # a drop of 1/12 = 0.083 is within 0.1
    (10, 12, 0.1, True),    # 2/12 = 0.167 is not
    (0, 12, 1.0, False),
])
def test_a_drop_past_the_tolerance_is_a_regression(ours: int, theirs: int, tolerance: float,
                                                    refused: bool) -> None:
    reasons = problems.regressions({"hot": _score("hot", ours)}, {"hot": _score("hot", theirs)},
                                   [_problem("hot", tolerance)])
    expected = (f"problem hot: solves {ours}/12 cases, the champion {theirs}/12 "
                f"(allowed drop {tolerance:.2f})")
    assert reasons == ([expected] if refused else [])


def test_only_the_regressed_problems_are_named_in_file_order() -> None:
    declared = [_problem("fog", 0.0), _problem("snow", 0.2), _problem("wind", 0.0)]
    candidate = {"fog": _score("fog", 9), "snow": _score("snow", 10), "wind": _score("wind", 3)}
    champion = {"fog": _score("fog", 10), "snow": _score("snow", 12), "wind": _score("wind", 3)}
    reasons = problems.regressions(candidate, champion, declared)
    assert [r.split(":")[0] for r in reasons] == ["problem fog"]
    assert "solves 9/12 cases, the champion 10/12" in reasons[0]


@pytest.mark.parametrize("theirs", range(1, 11))
def test_a_drop_of_exactly_the_tolerance_is_allowed(theirs: int) -> None:
    """One case of ten worse with tolerance 0.10 is within it, whatever the champion solved.
    Fails today for 4/10 → 3/10 and 8/10 → 7/10: `theirs.score - ours.score` is computed in
    floating point (0.8 - 0.7 = 0.10000000000000009 > 0.1)."""
    reasons = problems.regressions({"hot": _score("hot", theirs - 1, 10)},
                                   {"hot": _score("hot", theirs, 10)}, [_problem("hot", 0.1)])
    assert reasons == []


# --- adding a problem ----------------------------------------------------------------------


def test_add_problem_writes_cases_and_declaration(tiny: LoadedSpec) -> None:
    """The first 15 matches by entity, with every column; the filter kept as the query."""
    spec = _spec(tiny)
    parquet = _training_set(tiny.path.parent)
    added = problems.add_problem(spec, "hot", "values over a half", 1, "last__value >= 0.5",
                                 parquet)
    path = spec.problems_path
    assert path is not None
    assert added.cases_path == path.parent / "problems" / "hot.csv"
    assert problems.load_problems(spec) == [added]
    cases = problems.read_cases(added.cases_path)
    assert list(cases.columns) == list(pd.read_parquet(parquet).columns)
    assert cases["reading_id"].tolist() == [f"r{i}" for i in range(20, 35)]
    assert cases["last__value"].tolist() == [i / ROWS for i in range(20, 35)]
    # "NA" text survives the round trip through DuckDB and CSV; a null stays missing
    assert cases["note"].iloc[0::2].tolist() == ["NA"] * 8
    assert cases["note"].iloc[1::2].isna().all()
    text = path.read_text()
    assert text.startswith("# Known problems of the sensors pipeline")
    assert yaml.safe_load(text) == {"problems": {"hot": {
        "description": "values over a half", "expected": 1, "tolerance": 0.0,
        "cases": "problems/hot.csv", "query": "last__value >= 0.5"}}}


def test_add_problem_orders_and_limits_and_keeps_the_order_in_the_query(
        tiny: LoadedSpec) -> None:
    spec = _spec(tiny)
    added = problems.add_problem(spec, "hot", "d", 1, "idx >= 10", _training_set(tiny.path.parent),
                                 tolerance=0.1, limit=12, order_by="idx DESC")
    assert problems.read_cases(added.cases_path)["idx"].tolist() == list(range(39, 27, -1))
    assert added.spec.query == "idx >= 10 ORDER BY idx DESC"
    assert added.spec.tolerance == 0.1


def test_a_second_problem_keeps_the_first(tiny: LoadedSpec) -> None:
    spec = _spec(tiny)
    parquet = _training_set(tiny.path.parent)
    hot = problems.add_problem(spec, "hot", "d", 1, "idx >= 20", parquet)
    hot_cases = hot.cases_path.read_bytes()
    cold = problems.add_problem(spec, "cold", "nights", 0, "idx < 20", parquet, tolerance=0.05)
    assert problems.load_problems(spec) == [hot, cold]
    assert hot.cases_path.read_bytes() == hot_cases
    assert problems.read_cases(cold.cases_path)["idx"].tolist() == list(range(15))


def test_add_problem_refuses_an_existing_name(tiny: LoadedSpec) -> None:
    spec = _spec(tiny)
    parquet = _training_set(tiny.path.parent)
    problems.add_problem(spec, "hot", "d", 1, "idx >= 20", parquet)
    folder = tiny.path.parent / "sensors"
    before = _files(folder)
    with pytest.raises(SpecError, match=re.escape(
            f"{spec.problems_path}: problem 'hot' exists already")):
        problems.add_problem(spec, "hot", "other", 0, "idx < 20", parquet)
    assert _files(folder) == before


@pytest.mark.parametrize("name", ["Hot", "1hot", "_hot", "hot-spot", "hot spot", "", "../hot"])
def test_add_problem_refuses_a_bad_name(tiny: LoadedSpec, name: str) -> None:
    spec = _spec(tiny)
    parquet = _training_set(tiny.path.parent)
    before = _files(tiny.path.parent / "sensors")
    with pytest.raises(SpecError, match=re.escape(f"problem name {name!r}")):
        problems.add_problem(spec, name, "d", 1, "idx >= 20", parquet)
    assert _files(tiny.path.parent / "sensors") == before


@pytest.mark.parametrize("where", [
    "no_such_column > 1",
    "idx >>> 1",
    "CAST(sensor AS INTEGER) > 0",   # fails while reading rows, not while parsing
])
def test_a_failing_filter_names_filter_and_file(tiny: LoadedSpec, where: str) -> None:
    spec = _spec(tiny)
    parquet = _training_set(tiny.path.parent)
    before = _files(tiny.path.parent / "sensors")
    with pytest.raises(DataError, match=re.escape(
            f"problem hot: the filter {where!r} failed on {parquet}")):
        problems.add_problem(spec, "hot", "d", 1, where, parquet)
    assert _files(tiny.path.parent / "sensors") == before


@pytest.mark.parametrize(("where", "matches"), [("idx > 100", 0), ("idx >= 31", 9)])
def test_fewer_than_10_matches_are_refused(tiny: LoadedSpec, where: str, matches: int) -> None:
    spec = _spec(tiny)
    parquet = _training_set(tiny.path.parent)
    before = _files(tiny.path.parent / "sensors")
    with pytest.raises(DataError, match=re.escape(
            f"the filter {where!r} matches {matches} rows of {parquet}; a problem needs at "
            "least 10")):
        problems.add_problem(spec, "hot", "d", 1, where, parquet)
    assert _files(tiny.path.parent / "sensors") == before


@pytest.mark.parametrize("limit", [5, 20])
def test_a_limit_outside_10_to_15_is_refused_and_writes_nothing(tiny: LoadedSpec,
                                                                limit: int) -> None:
    """`pitstop problems add --limit` says 10-15. Fails today for 20: the 20 cases and the
    declaration are written first, then the reload refuses them, leaving a problems file that
    no longer loads (every later evaluation of the pipeline fails on it)."""
    spec = _spec(tiny)
    parquet = _training_set(tiny.path.parent)
    problems.add_problem(spec, "cold", "d", 0, "idx < 20", parquet)
    before = _files(tiny.path.parent / "sensors")
    with pytest.raises((SpecError, DataError)):
        problems.add_problem(spec, "hot", "d", 1, "idx >= 0", parquet, limit=limit)
    assert _files(tiny.path.parent / "sensors") == before
    assert [p.name for p in problems.load_problems(spec)] == ["cold"]


def test_add_problem_of_a_regression_keeps_its_max_error(tiny: LoadedSpec) -> None:
    spec = _spec(tiny, task="regression")
    added = problems.add_problem(spec, "hot", "d", None, "idx >= 20",
                                 _training_set(tiny.path.parent), max_error=0.1)
    assert (added.spec.expected, added.spec.max_error) == (None, 0.1)
    assert spec.problems_path is not None
    assert yaml.safe_load(spec.problems_path.read_text())["problems"]["hot"] == {
        "description": "d", "max_error": 0.1, "tolerance": 0.0, "cases": "problems/hot.csv",
        "query": "idx >= 20"}


@pytest.mark.parametrize(("task", "expected", "max_error", "field"), [
    ("binary", 2, None, "problems.hot.expected"),
    ("binary", 1, 0.5, "problems.hot.max_error"),
    ("multiclass", None, None, "problems.hot.expected"),
    ("regression", 0.5, None, "problems.hot.max_error"),
])
def test_add_problem_refuses_a_declaration_unfit_for_the_task_and_writes_nothing(
        tiny: LoadedSpec, task: str, expected: Any, max_error: float | None,
        field: str) -> None:
    spec = _spec(tiny, task=task)
    parquet = _training_set(tiny.path.parent)
    before = _files(tiny.path.parent / "sensors")
    with pytest.raises(SpecError, match=re.escape(f"{spec.problems_path}: {field}: ")):
        problems.add_problem(spec, "hot", "d", expected, "idx >= 20", parquet,
                             max_error=max_error)
    assert _files(tiny.path.parent / "sensors") == before


def test_add_problem_needs_a_problems_file_in_the_spec(tiny: LoadedSpec) -> None:
    with pytest.raises(SpecError, match=re.escape(
            f"{tiny.path}: evaluation.problems names no problems file")):
        problems.add_problem(tiny, "hot", "d", 1, "idx >= 20", _training_set(tiny.path.parent))


@pytest.mark.parametrize("problems_file", [
    "sensors/problems.yaml",        # inside the hooks folder, as in the example pipeline
    "sensors/known/problems.yaml",
    "problems.yaml",                # beside the spec
])
def test_adding_a_problem_does_not_change_the_code_version(tiny: LoadedSpec,
                                                           problems_file: str) -> None:
    """Problems are data about models, not code: the next model's pair_id must not move.
    (Any other new file in the hooks folder does change it, so the check can fail.)"""
    spec = _spec(tiny, problems_file)
    spec.suite_path("sensors_training_set").write_text('{"expectations": []}')
    parquet = _training_set(tiny.path.parent)
    before, names = lineage.code_version(spec), set(lineage.code_files(spec))
    problems.add_problem(spec, "hot", "d", 1, "idx >= 20", parquet)
    problems.add_problem(spec, "cold", "d", 0, "idx < 20", parquet)
    assert spec.problems_path is not None and spec.problems_path.is_file()
    assert lineage.code_version(spec) == before
    assert set(lineage.code_files(spec)) == names
    (spec.hooks_dir / "helpers.py").write_text("SCALE = 2\n")
    assert lineage.code_version(spec) != before


# --- re-scoring registered versions on the real MLflow store -------------------------------


def _register_model(spec: LoadedSpec, flip: bool) -> str:
    """The spec's model fitted on `last__value` (binary: above a half; regression: ten times
    it; flipped for a bad model), logged in a run of its own and registered as the next
    version of the spec's model."""
    import mlflow
    import mlflow.sklearn

    value = np.linspace(0, 1, 40)
    frame = pd.DataFrame({"last__value": value})
    if spec.pipeline.model.task == "regression":
        target = 10 * (1 - value if flip else value)
    else:
        target = ((value > 0.5) ^ flip).astype("int64")
    model = train.make_model(spec).fit(frame, target)
    experiment = registry.experiment_id(f"test-problems-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run(experiment_id=experiment) as run:
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=[],
                                        skops_trusted_types=registry.model_types(model))
    return champion.register(spec.pipeline.model_name, run.info.run_id, info.model_uri,
                             info.model_id, {}, "a test version", promote=not flip)


def _history(spec: LoadedSpec) -> list[tuple[int, str, float]]:
    return [(r.version, r.problem, r.score) for r in problems.history(spec).itertuples()]


def test_rescore_versions_scores_each_version_once_per_problem_version(
        tiny: LoadedSpec) -> None:
    """Two versions (a good model and one with flipped labels) on a problem of high values:
    both are scored, the score lands on each version's run and the problem's hash on the
    version; a second call scores nothing; new case rows re-score both; a new problem is
    scored on both without re-scoring the old one."""
    name = f"test-problems-{uuid.uuid4().hex[:12]}"
    spec = _spec(tiny, model_name=name)
    path = _declare(spec, {"hot": _cases(list(np.linspace(0.8, 0.99, 12)))})
    assert problems.rescore_versions(spec) == []  # no registered model yet
    assert _history(spec) == []
    assert [_register_model(spec, flip) for flip in (False, True)] == ["1", "2"]

    assert problems.rescore_versions(spec) == [("1", "hot", 1.0), ("2", "hot", 0.0)]
    (hot,) = problems.load_problems(spec)
    for version in registry.versions(name):
        assert version.tags["problem.hot.sha256"] == hot.sha256
        metrics = registry.client().get_run(version.run_id).data.metrics
        assert metrics["problem.hot.score"] == (1.0 if str(version.version) == "1" else 0.0)
    assert _history(spec) == [(1, "hot", 1.0), (2, "hot", 0.0)]
    assert problems.rescore_versions(spec) == []

    # the problem's cases change (now low values): both versions are scored again
    _cases(list(np.linspace(0.01, 0.2, 12))).to_csv(path.parent / "problems" / "hot.csv",
                                                     index=False)
    assert problems.rescore_versions(spec) == [("1", "hot", 0.0), ("2", "hot", 1.0)]
    assert _history(spec) == [(1, "hot", 0.0), (2, "hot", 1.0)]

    # a new problem: only it is scored
    _declare(spec, {"hot": _cases(list(np.linspace(0.01, 0.2, 12))),
                    "warm": _cases(list(np.linspace(0.6, 0.7, 10)))})
    assert problems.rescore_versions(spec) == [("1", "warm", 1.0), ("2", "warm", 0.0)]
    assert problems.rescore_versions(spec) == []
    assert _history(spec) == [(1, "hot", 0.0), (1, "warm", 1.0), (2, "hot", 1.0),
                              (2, "warm", 0.0)]


def test_rescore_versions_of_a_regression_scores_within_max_error(tiny: LoadedSpec) -> None:
    """The task and the target reach the scoring: a good regressor solves every case within
    0.5 of its own target, the flipped one none."""
    name = f"test-problems-{uuid.uuid4().hex[:12]}"
    spec = _spec(tiny, model_name=name, task="regression")
    value = np.linspace(0.8, 0.99, 12)
    _declare(spec, {"hot": _cases(list(value)).assign(high=10 * value)},
             hot={"description": "d", "max_error": 0.5, "cases": "problems/hot.csv"})
    assert [_register_model(spec, flip) for flip in (False, True)] == ["1", "2"]
    assert problems.rescore_versions(spec) == [("1", "hot", 1.0), ("2", "hot", 0.0)]
    assert _history(spec) == [(1, "hot", 1.0), (2, "hot", 0.0)]
