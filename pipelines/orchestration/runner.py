"""Run a pipeline's DAGs in-process with Airflow's `dag.test()`, as `pitstop run` does.

The three DAGs execute against the SQLite metadata DB under `$PITSTOP_HOME/airflow`, so a
laptop runs exactly the tasks the scheduler would. Airflow's task logs go to a file; the
caller gets one line per stage and, on failure, the failed tasks and their error lines.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines import settings
from pipelines.spec import LoadedSpec, load_spec


def configure_airflow() -> Path:
    """Point Airflow at `$PITSTOP_HOME/airflow` (SQLite) and create its DB on first use."""
    home = settings.airflow_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(Path.cwd() / "dags"))
    os.environ.setdefault("PITSTOP_HOME", str(settings.home()))
    if not (home / "airflow.db").exists():
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return home


@contextlib.contextmanager
def output_to(log_file: Path) -> Iterator[None]:
    """Send everything written to fd 1 and 2 (Airflow's task logs) to `log_file`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_file, "ab") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            # The process's own streams write to fds 1 and 2; a host such as pytest may have
            # replaced sys.stdout/stderr with objects that do not (loggers keep references).
            with (contextlib.redirect_stdout(sys.__stdout__),
                  contextlib.redirect_stderr(sys.__stderr__)):
                yield
        finally:
            for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                if stream is not None:
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def task_results(dag_run: Any) -> dict[str, list[Any]]:
    """XCom return values of a finished run, by task_id (mapped tasks give lists)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    results: dict[str, list[Any]] = {}
    with create_session() as session:
        rows = session.query(XComModel).filter(
            XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id,
            XComModel.key == "return_value").order_by(XComModel.task_id, XComModel.map_index)
        for row in rows:
            results.setdefault(row.task_id, []).append(XComModel.deserialize_value(row))
    return results


def failed_tasks(dag_run: Any) -> list[str]:
    """The tasks that failed; those that only did not run because of them (upstream_failed,
    e.g. ingest's closing *announce_raw_data*) are named only when nothing else failed."""
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    with create_session() as session:
        instances = dag_run.get_task_instances(session=session)
    names = {state: sorted(f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id
                           for ti in instances if ti.state == state)
             for state in (TaskInstanceState.FAILED, TaskInstanceState.UPSTREAM_FAILED)}
    return names[TaskInstanceState.FAILED] or names[TaskInstanceState.UPSTREAM_FAILED]


def error_lines(log_file: Path, since: int) -> list[str]:
    """The bad-data and exception messages the failed tasks logged."""
    text = log_file.read_bytes()[since:].decode(errors="replace").splitlines()
    keys = ("DataError", "ValidationFailed", "AirflowFailException", "Error:", "Exception:")
    seen: list[str] = []
    for line in text:
        if any(k in line for k in keys) and line.strip() not in seen:
            seen.append(line.strip())
    return seen[-8:]


def run_pipeline(spec: LoadedSpec | Path, start: dt.date, end: dt.date, reason: str,
                 echo: Any, eval_start: dt.date | None = None) -> dict[str, Any]:
    """Ingest, compute features and train for `[start, end)` through `dag.test()`.

    Returns the train run's summary (`steps.RunSummary` as JSON) plus the log file.
    """
    configure_airflow()
    from pipelines.orchestration.factory import build_dags

    spec = spec if isinstance(spec, LoadedSpec) else load_spec(spec)
    dags = build_dags(spec)
    log_dir = settings.home() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"run-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.log"
    conf = {"start": start.isoformat(), "end": end.isoformat()}
    train_conf = {**conf, "reason": reason,
                  "eval_start": eval_start.isoformat() if eval_start else None}
    stages = [("ingest", conf), ("features", conf), ("train", train_conf)]
    results: dict[str, Any] = {}
    for number, (stage, run_conf) in enumerate(stages, start=1):
        dag = dags[f"{spec.name}_{stage}"]
        echo(f"[{number}/3] {dag.dag_id} {start}..{end} ...")
        began, since = time.perf_counter(), log_file.stat().st_size if log_file.exists() else 0
        with output_to(log_file):
            dag_run = dag.test(run_conf=run_conf)
        seconds = time.perf_counter() - began
        if str(dag_run.state) != "success":
            failed = failed_tasks(dag_run)
            details = "\n  ".join(error_lines(log_file, since))
            raise RuntimeError(f"{dag.dag_id} failed at {', '.join(failed) or 'unknown task'} "
                               f"after {seconds:.0f}s:\n  {details}\nfull log: {log_file}")
        results[stage] = task_results(dag_run)
        tasks = sum(len(v) for v in results[stage].values())
        echo(f"      done in {seconds:.1f}s ({tasks} task results)")
    summary = results["train"]["summarize"][0]
    summary["log"] = str(log_file)
    return summary
