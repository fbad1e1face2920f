"""README's fault-case table is generated from the cases; it must not drift from them."""

from __future__ import annotations

from tests.faults import table


def test_the_readme_table_lists_every_case_as_the_cases_say() -> None:
    rendered = table.render()
    assert len(rendered.splitlines()) - 2 >= 40
    assert table.readme_table(table.README.read_text()) == rendered, (
        "README's fault-case table is out of date: run `.venv/bin/python -m tests.faults.table`")
