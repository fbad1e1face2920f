"""Airflow dag runs a killed `pitstop run` left `running`, for `pitstop doctor`.

`pitstop run` executes each DAG in its own process with `dag.test()` (runs triggered by
`test`), so no scheduler ever looks at those runs again: when the process is killed, the
run and its running task instances stay `running` in the local metadata DB for good.
"""

from __future__ import annotations

import datetime as dt

from pipelines import settings
from pipelines.doctor import Finding


def dag_run_findings(started_before: dt.datetime, fix: bool = False) -> list[Finding]:
    """Runs made by `dag.test()` still running that started before `started_before`; --fix
    marks them and their unfinished task instances failed. No local metadata DB, no runs
    (none is created here)."""
    if not (settings.airflow_home() / "airflow.db").exists():
        return []
    from pipelines.orchestration.runner import configure_airflow

    configure_airflow()
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, State, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType

    found = []
    with create_session() as session:
        runs = session.query(DagRun).filter(
            DagRun.state == DagRunState.RUNNING, DagRun.start_date < started_before,
            DagRun.triggered_by == DagRunTriggeredByType.TEST).order_by(DagRun.start_date)
        for run in runs:
            if fix:
                for ti in run.get_task_instances(state=list(State.unfinished), session=session):
                    ti.set_state(TaskInstanceState.FAILED, session=session)
                run.set_state(DagRunState.FAILED)
            found.append(Finding(
                "airflow dag run", f"{run.dag_id} {run.run_id}",
                f"running since {run.start_date:%Y-%m-%d %H:%M} UTC, started by `pitstop run` "
                "(dag.test), whose process is gone; --fix marks it failed",
                "marked failed" if fix else ""))
    return found
