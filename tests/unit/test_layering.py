"""The library stays a library: Airflow only in orchestration/, no example domain inside."""

from __future__ import annotations

import ast
import re
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
