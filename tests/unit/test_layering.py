"""The library stays a library: Airflow only in orchestration/, no example domain inside,
imports pointing down the layers, and functions short enough to read at once."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pipelines"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_orchestration_imports_airflow(path: Path) -> None:
    if "orchestration" not in path.parts:
        assert "airflow" not in _imports(path), f"{path} imports Airflow"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_knows_nothing_of_the_example(path: Path) -> None:
    words = re.findall(r"flight|nycflights|weather|carrier|tailnum", path.read_text(), re.IGNORECASE)
    assert words == [], f"{path} mentions the example: {sorted(set(words))}"


LAYERS = ["errors", "settings", "provenance", "metrics", "lake_objects", "lake", "skipping",
          "chunking", "hook_imports",
          "spec", "monitoring", "spec_reference", "scaffold", "pit", "lineage", "quality",
          "sql_source", "ingest", "features",
          "training_set", "backfill", "train", "differential", "registry", "problems",
          "validation", "evaluate", "report", "monitoring_report", "champion", "steps", "scoring",
          "audit", "doctor", "cli"]
"""Library modules, lowest first: each may import only modules before it (orchestration/ may
import any). Type-only imports (`if TYPE_CHECKING:`) do not count: they run nothing."""


def _runtime_imports(tree: ast.AST) -> set[str]:
    """pitstop modules imported at run time, at the top or inside functions."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] == "pipelines":
                found.update(a.name for a in node.names) if len(parts) == 1 else found.add(
                    parts[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("pipelines."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_every_library_module_has_a_layer() -> None:
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == set(LAYERS), f"place these in LAYERS: {sorted(top ^ set(LAYERS))}"


@pytest.mark.parametrize("name", LAYERS)
def test_imports_point_down_the_layers(name: str) -> None:
    imported = _runtime_imports(ast.parse((PACKAGE / f"{name}.py").read_text()))
    allowed = set(LAYERS[:LAYERS.index(name)])
    if name == "cli":
        allowed.add("orchestration")
    assert imported <= allowed, (f"{name} imports {sorted(imported - allowed)}, which sit "
                                 "above it (tests/unit/test_layering.py LAYERS)")


MAX_FUNCTION_LINES = 39
"""From `def` to the function's last line, decorators left out (`ast`: end_lineno - lineno
+ 1): a function of 40 lines or more does more than one thing and wants named helpers."""


def _functions(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
    """(dotted name, lines) of every function under `node`, nested ones and methods too,
    each named after what encloses it (`orchestration.factory.backfill_dag.plan_backfill`)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = f"{prefix}.{child.name}"
            if not isinstance(child, ast.ClassDef):
                yield name, child.end_lineno - child.lineno + 1
            yield from _functions(child, name)
        else:
            yield from _functions(child, prefix)


def _function_lengths() -> dict[str, int]:
    """Every function of the library by dotted name, module path first."""
    return {name: lines for path in MODULES
            for name, lines in _functions(ast.parse(path.read_text()), ".".join(
                path.relative_to(PACKAGE).with_suffix("").parts))}


def test_functions_stay_short() -> None:
    long = {name: lines for name, lines in _function_lengths().items()
            if lines > MAX_FUNCTION_LINES}
    assert long == {}, (f"functions over {MAX_FUNCTION_LINES} lines: {long}; split them by "
                        "meaning into named helpers (tests/unit/test_layering.py)")

