"""README's table of fault cases, generated from the cases themselves.

Each test of `tests/faults/test_*.py` names its invariant in its docstring (`Invariant: …`)
and what the user sees (`Sees: …`, or per case the `sees` of its `Case`); a strict xfail
names its defect. `python -m tests.faults.table` rewrites the table between the README's
markers; `test_table.py` fails when the README and the cases drift apart.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.faults.invariants import Case

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BEGIN, END = "<!-- fault-cases:begin -->", "<!-- fault-cases:end -->"
MODULES = sorted(p.stem for p in Path(__file__).parent.glob("test_*.py")
                 if p.stem not in ("test_table", "test_invariants"))


def _paragraph(doc: str, label: str) -> str | None:
    """The paragraph of a docstring that starts with `label:`, on one line."""
    for block in re.split(r"\n\s*\n", inspect.cleandoc(doc)):
        if block.startswith(f"{label}:"):
            return " ".join(block.removeprefix(f"{label}:").split())
    return None


def _xfail(marks: list[Any]) -> str | None:
    return next((m.kwargs["reason"] for m in marks if m.name == "xfail"), None)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def rows() -> Iterator[tuple[str, str, str, str, str]]:
    """(module, case, invariant, what the user sees, status) for every fault case."""
    for name in MODULES:
        module = importlib.import_module(f"tests.faults.{name}")
        tests = [f for n, f in vars(module).items() if n.startswith("test_") and callable(f)]
        for test in sorted(tests, key=lambda f: inspect.getsourcelines(f)[1]):
            doc = test.__doc__ or ""
            invariant = _paragraph(doc, "Invariant")
            assert invariant, f"{name}.{test.__name__}: its docstring names no `Invariant:`"
            marks = list(getattr(test, "pytestmark", []))
            status = _xfail(marks)
            sees = _paragraph(doc, "Sees")
            grid = next((m for m in marks if m.name == "parametrize"), None)
            if grid is None:
                assert sees, f"{name}.{test.__name__}: its docstring says nothing under `Sees:`"
                yield name, test.__name__, invariant, sees, status or "passes"
                continue
            for value in grid.args[1]:
                param = value.values[0] if hasattr(value, "values") else value
                case_marks = list(getattr(value, "marks", []))
                if isinstance(param, Case):
                    case_id, case_sees = param.id, param.sees
                else:
                    case_id, case_sees = str(param), sees
                    assert case_sees, f"{name}.{test.__name__}: no `Sees:` for {param!r}"
                yield (name, f"{test.__name__}[{case_id}]", invariant, case_sees,
                       _xfail(case_marks) or status or "passes")


def render() -> str:
    """The table, one row per case; a test's invariant is shown on its first row."""
    lines = ["| # | test (in `tests/faults/`) | case | invariant | what the user sees | status |",
             "| --- | --- | --- | --- | --- | --- |"]
    last = None
    for number, (module, case, invariant, sees, status) in enumerate(rows(), start=1):
        test, _, param = case.partition("[")
        first = (module, test) != last
        last = (module, test)
        where = f"`{module}.py::{test}`" if first else ""
        shown = _cell(invariant) if first else ""
        param = f"`{param.removesuffix(']')}`" if param else ""
        status = "passes" if status == "passes" else f"strict xfail: {_cell(status)}"
        lines.append(f"| {number} | {where} | {param} | {shown} | {_cell(sees)} | {status} |")
    return "\n".join(lines)


def readme_table(text: str) -> str:
    """What the README holds between the markers."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip()


def write_readme() -> None:
    text = README.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    README.write_text(f"{text[:start]}\n{render()}\n{text[end:]}")


if __name__ == "__main__":
    write_readme()
    sys.stdout.write(f"{README}: {len(list(rows()))} fault cases\n")
