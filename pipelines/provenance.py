"""Who and what produced an output, as one typed value.

A task builds it from its Airflow context (`orchestration.context.run_context`), a command
from its arguments (`cli.command_context`); the library records it as `produced_by` in every
manifest it writes, and the train chain puts it in the run's tags and lineage. One frozen
value instead of a dict, so a misspelt key is an error where it is made, not a silent null
in an auditor's record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ProducedBy:
    """A task's run (dag, run, task, map index, try) or a command (its words, user, host),
    with who triggered it and why. Fields that do not apply stay None."""

    triggered_by: str | None = None
    reason: str | None = None
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    command: str | None = None
    user: str | None = None
    host: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The manifests' `produced_by`: the fields that apply, the try number as `try`."""
        return {("try" if key == "try_number" else key): value
                for key, value in asdict(self).items() if value is not None}
