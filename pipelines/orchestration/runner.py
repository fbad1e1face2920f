"""Run a pipeline's DAGs in-process with Airflow's `dag.test()`, as `pitstop run` does.

The DAGs execute against the SQLite metadata DB under `$PITSTOP_HOME/airflow`, so a
laptop runs exactly the tasks the scheduler would. Airflow's task logs go to a file; the
caller gets one line per stage and, on failure, the failed tasks and their error lines.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines import scaffold, settings, skipping
from pipelines.errors import DataError
from pipelines.orchestration import stopping
from pipelines.orchestration.xcom import TALLY_KEY
from pipelines.settings import MAX_REASON_LENGTH
from pipelines.spec import LoadedSpec, load_spec
from pipelines.training_set import split_window

if TYPE_CHECKING:
    from pipelines.lake import Lake


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


def task_results(dag_run: Any, key: str = "return_value") -> dict[str, list[Any]]:
    """XCom values of a finished run under `key` (return values by default), by task_id
    (mapped tasks give lists)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    results: dict[str, list[Any]] = {}
    with create_session() as session:
        rows = session.query(XComModel).filter(
            XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id,
            XComModel.key == key).order_by(XComModel.task_id, XComModel.map_index)
        for row in rows:
            results.setdefault(row.task_id, []).append(XComModel.deserialize_value(row))
    return results


def _task_name(task_id: str, map_index: int) -> str:
    return f"{task_id}[{map_index}]" if map_index >= 0 else task_id


def failed_tasks(dag_run: Any) -> list[str]:
    """The tasks that failed, first failure first; those that only did not run because of
    them (upstream_failed, e.g. ingest's closing *announce_raw_data*) are named only when
    nothing else failed."""
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    with create_session() as session:
        instances = dag_run.get_task_instances(session=session)
    ended = sorted(instances, key=lambda ti: (ti.end_date is None, ti.end_date or 0,
                                              ti.task_id, ti.map_index))
    names = {state: [_task_name(ti.task_id, ti.map_index) for ti in ended if ti.state == state]
             for state in (TaskInstanceState.FAILED, TaskInstanceState.UPSTREAM_FAILED)}
    return names[TaskInstanceState.FAILED] or names[TaskInstanceState.UPSTREAM_FAILED]


def labelled(dag_run: Any) -> dict[str, str]:
    """Each mapped task instance's name with its rendered map index (`ingest_chunk[3]` ->
    `ingest_chunk[3] (orders 2024-03-01)`): the number alone does not say which chunk."""
    from airflow.utils.session import create_session

    with create_session() as session:
        instances = dag_run.get_task_instances(session=session)
    return {_task_name(ti.task_id, ti.map_index):
            f"{_task_name(ti.task_id, ti.map_index)} ({ti.rendered_map_index})"
            for ti in instances if ti.map_index >= 0 and ti.rendered_map_index
            and ti.rendered_map_index != str(ti.map_index)}


_TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")
_EXCEPTION = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Z]\w*(?:Error|Exception|Failed|Timeout): .+)$")


def task_errors(log_text: str) -> dict[str, str]:
    """The exception each task failed with (the last one its section of the log shows, i.e.
    the outermost), by task name. `dag.test()` runs one task at a time, so the sections
    that its "starting task_id=" lines open never interleave. Where the log has no such
    lines (a host such as pytest keeps Airflow's own log records), errors are filed under
    "" and the report names the first failed task with the last of them."""
    errors: dict[str, str] = {}
    task = ""
    for line in log_text.splitlines():
        if start := _TASK_START.search(line):
            task = _task_name(start.group(1), int(start.group(2)))
        elif error := _EXCEPTION.match(line):
            errors[task] = error.group(1)
    return errors


def failure_report(dag_id: str, failed: list[str], errors: dict[str, str], seconds: float,
                   log_file: Path) -> tuple[str, list[str]]:
    """A short message naming the first failure and its error ("and N more"), and the full
    list of failed tasks with their errors, which goes to the end of the log."""
    first = failed[0] if failed else next(iter(errors), "unknown task")
    error = errors.get(first) or next(iter(errors.values()), "no error in the log")
    clipped = error if len(error) <= ERROR_CHARS else error[:ERROR_CHARS] + " … (see the log)"
    more = f" and {len(failed) - 1} more" if len(failed) > 1 else ""
    message = (f"{dag_id} failed at {first}{more} after {seconds:.0f}s:\n  {clipped}\n"
               + ("  every failed task and its error are listed at the end of the log\n"
                  if more else "") + f"full log: {log_file}")
    listing = [f"pitstop: {dag_id}: {len(failed)} failed tasks, first failure first:",
               *(f"  {name}: {errors.get(name, 'no error logged')}" for name in failed)]
    return message, listing


ERROR_CHARS = 900
"""The first failure's error is clipped to this in the summary; the log has all of it. Long
enough for a suite failure's first rule, where its rows are and what to do."""


def check_request(spec: LoadedSpec, start: dt.date, end: dt.date, eval_start: dt.date | None,
                  reason: str) -> None:
    """Refuse a run whose arguments cannot succeed before anything runs: a stage that
    fails on them (the train DAG's split or its `reason` param) would otherwise fail only
    after ingest and features had run."""
    if not start < end:
        raise DataError(f"run: --end {end} must be after --start {start} (end is exclusive)")
    split_window(spec, start, end, eval_start)
    if len(reason) > MAX_REASON_LENGTH:
        raise DataError(f"run: --reason is {len(reason)} characters, longer than the "
                        f"{MAX_REASON_LENGTH} the train DAG's `reason` param takes (it is kept "
                        "in the MLflow run's tags); shorten it")


def _check_params(dags: dict[str, Any], stages: list[tuple[str, dict[str, Any]]],
                  name: str) -> None:
    """Each stage's conf against its DAG's params, as `dag.test()` would check it later."""
    from airflow.sdk.exceptions import ParamValidationError

    for stage, run_conf in stages:
        params = copy.deepcopy(dags[f"{name}_{stage}"].params)
        try:
            params.update(run_conf)
        except ParamValidationError as exc:
            raise DataError(f"run: {name}_{stage} refuses its params: {str(exc)[:300]}") from exc


def _published(results: dict[str, Any], running: str, start: dt.date, end: dt.date) -> str:
    """What the run has left in the lake should the `running` stage fail, for its message:
    the finished stages' output, and a score stage's days scored before the failure."""
    done = [stage for stage in ("ingest", "features") if stage in results]
    text = ("no earlier stage published anything" if not done else f"{' and '.join(done)} of {start}..{end} "
            "are published (re-running redoes them safely)")
    if running == "score":  # a failed day does not unpublish the days scored before it
        return f"every day scored is published with its verdict; {text}"
    return text


def _published_before_failing(dag_run: Any) -> str:
    """What the failed run's own tasks that succeeded published (chunks publish each day
    whole as they finish), so the message never says nothing was published when some was."""
    computed = skipping.computed(stage_tally(dag_run))
    return (f"; before failing, {dag_run.dag_id}'s tasks that succeeded published {computed} "
            "partition(s), each whole (re-running skips them)" if computed else "")


def fail_running(dag_id: str, since: dt.datetime) -> int:
    """Mark this process's runs of `dag_id` still `running` (started at `since` or later),
    and their unfinished tasks, failed: what a stopped `dag.test()` leaves behind."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, State, TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        # the same thread-local session the stopped dag.test() used: a signal landing inside
        # one of its statements leaves a transaction that must be rolled back before any other
        session.rollback()
        runs = session.scalars(select(DagRun).where(
            DagRun.dag_id == dag_id, DagRun.state == DagRunState.RUNNING,
            DagRun.start_date >= since)).all()
        for run in runs:
            for ti in run.get_task_instances(session=session):
                if ti.state not in State.finished:
                    ti.state = TaskInstanceState.FAILED
            run.state = DagRunState.FAILED
    return len(runs)


def _run_stage(spec: LoadedSpec, dag: Any, run_conf: dict[str, Any], log_file: Path,
               published: str) -> tuple[dict[str, list[Any]], dict[str, int]]:
    """One DAG through `dag.test()`; its task results and tally (`stage_tally`), or an
    error saying what failed first, or that a signal stopped it, and in both cases what
    earlier stages published."""
    began, since = time.perf_counter(), log_file.stat().st_size if log_file.exists() else 0
    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    try:
        with output_to(log_file):
            dag_run = run_dag_test(spec, dag, run_conf)
    except KeyboardInterrupt:
        dag_run = None
    if signal_name := stopping.requested():
        fail_running(dag.dag_id, started)
        raise RuntimeError(f"{dag.dag_id} stopped by {signal_name} after "
                           f"{time.perf_counter() - began:.0f}s; {published}; full log: {log_file}")
    if dag_run is None:
        raise KeyboardInterrupt
    if str(dag_run.state) != "success":
        shown = labelled(dag_run)
        errors = {shown.get(name, name): error for name, error in task_errors(
            log_file.read_bytes()[since:].decode(errors="replace")).items()}
        failed = [shown.get(name, name) for name in failed_tasks(dag_run)]
        message, listing = failure_report(dag.dag_id, failed, errors,
                                          time.perf_counter() - began, log_file)
        with open(log_file, "a") as handle:
            handle.write("\n".join(listing) + "\n")
        raise RuntimeError(f"{message}\n{published}{_published_before_failing(dag_run)}")
    results = task_results(dag_run)
    return results, stage_tally(dag_run, results)


def run_dag_test(spec: LoadedSpec, dag: Any, run_conf: dict[str, Any]) -> Any:
    """`dag.test()`, which runs only DAGs Airflow found in its DAGs folder: when this one is
    not there, say which file to create instead of Airflow's "dag is not serialized".

    `dag.test()` re-parses every DAG file of the folder to sync them; under the parsing
    context Airflow's task runner sets for a worker (this DAG's id), a pitstop DAG file
    builds only that DAG and another pipeline's file builds none (`build_dags`), so a stage
    costs the same beside ten other pipelines as alone.
    """
    from airflow.exceptions import AirflowException
    from airflow.models.dag_version import DagVersion

    from pipelines.orchestration.context import parsing_context

    try:
        with parsing_context(dag.dag_id):
            return dag.test(run_conf=run_conf)
    except AirflowException as exc:
        if DagVersion.get_latest_version(dag.dag_id) is not None:
            raise
        raise RuntimeError(missing_dag(spec, dag.dag_id)) from exc


def missing_dag(spec: LoadedSpec, dag_id: str) -> str:
    """What to do when Airflow's DAGs folder did not yield `dag_id`."""
    from airflow.configuration import conf

    folder = Path(conf.get("core", "dags_folder")).resolve()
    dag_file = folder / f"{spec.name}.py"
    if dag_file.exists():
        return (f"{dag_id}: Airflow found no such DAG although {dag_file} exists; its import "
                f"error is in `airflow dags list-import-errors`, or run `pitstop validate "
                f"{spec.path}`")
    move = ("" if spec.path.parent == folder else f", and move {spec.path.name} and its hooks "
            f"folder {spec.name}/ there (the DAG file reads the spec beside it)")
    return (f"{dag_id}: Airflow found no such DAG in its DAGs folder {folder}: the pipeline's "
            f"DAG file {dag_file} does not exist. Create it with these lines{move}:\n\n"
            f"{scaffold.dag_file(spec.name)}\nand add the line `{spec.name}/` to "
            f"{folder / '.airflowignore'} so the dag-processor never imports the hooks.")


def _log_file() -> Path:
    log_dir = settings.home() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    return log_dir / f"run-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.log"


def _run_stages(spec: LoadedSpec, dags: dict[str, Any], stages: list[tuple[str, dict[str, Any]]],
                log_file: Path, echo: Any) -> dict[str, Any]:
    """Each stage's DAG through `dag.test()` in order, one line each; stops at a failure."""
    results: dict[str, Any] = {}
    with stopping.stop_on_signals():
        for number, (stage, run_conf) in enumerate(stages, start=1):
            dag = dags[f"{spec.name}_{stage}"]
            echo(f"[{number}/{len(stages)}] {dag.dag_id} {run_conf['start']}..{run_conf['end']} ...")
            began = time.perf_counter()
            published = _published(results, stage, *(dt.date.fromisoformat(run_conf[k])
                                                      for k in ("start", "end")))
            results[stage], counts = _run_stage(spec, dag, run_conf, log_file, published)
            tasks = sum(len(v) for v in results[stage].values())
            echo(f"      done in {time.perf_counter() - began:.1f}s ({tasks} task results)")
            if counts:
                echo(f"      {COUNTED[stage]}: {skipping.describe(counts)}")
    return results


COUNTED = {"ingest": "raw partitions (one per source and day)",
           "features": "feature partitions (one per view and day)",
           "train": "training set"}
"""What a stage's tally line counts: partitions, not days (three sources over a year are
about a thousand, fewer when a snapshot source has files only on the days it changed)."""


def stage_tally(dag_run: Any, results: dict[str, list[Any]] | None = None) -> dict[str, int]:
    """The partitions a stage skipped and computed, by reason: the `tally` of every task
    result that has one (ingest and feature chunks, the training set) plus the tally of the
    days its planning task mapped no chunk to (XCom key `plan_tally`; not `tally`, which
    every task returning a dict pushes as a key of its own). `results` are the run's
    `task_results` when the caller has read them already."""
    results = task_results(dag_run) if results is None else results
    planned = [t for values in task_results(dag_run, TALLY_KEY).values() for t in values]
    return skipping.merge_tallies([*planned, *(result["tally"] for values in results.values()
                                               for result in values
                                               if isinstance(result, dict) and "tally" in result)])


def run_pipeline(spec: LoadedSpec | Path, start: dt.date, end: dt.date, reason: str,
                 echo: Any, eval_start: dt.date | None = None,
                 force: bool = False) -> dict[str, Any]:
    """Ingest, compute features and train for `[start, end)` through `dag.test()`; each
    stage skips the partitions whose inputs are unchanged unless `force`, and its line says
    how many it skipped and computed, and why.

    The arguments are checked first (`check_request`, then every stage's params), so a bad
    one fails before any stage runs. Returns the train run's summary (`steps.RunSummary` as
    JSON) plus the log file.
    """
    spec = spec if isinstance(spec, LoadedSpec) else load_spec(spec)
    check_request(spec, start, end, eval_start, reason)
    configure_airflow()
    from pipelines.orchestration.factory import build_dags

    dags = build_dags(spec)
    log_file = _log_file()
    conf = {"start": start.isoformat(), "end": end.isoformat(), "force": force}
    train_conf = {**conf, "reason": reason,
                  "eval_start": eval_start.isoformat() if eval_start else None}
    stages = [("ingest", conf), ("features", conf), ("train", train_conf)]
    _check_params(dags, stages, spec.name)
    results = _run_stages(spec, dags, stages, log_file, echo)
    summary = results["train"]["summarize"][0]
    summary["log"] = str(log_file)
    return summary


def score_pipeline(store: Lake, spec: LoadedSpec | Path, start: dt.date, end: dt.date,
                   echo: Any) -> tuple[list[Any], str | None, Path]:
    """Score `[start, end)` through the score DAG's `dag.test()`; days without features in
    the lake first get that range's ingest and features, as the scheduled chain would.

    Returns each day's verdict as the lake records it, the failure (a breach or another
    error, None when every day passed) and the log file. A failed day never hides the
    verdicts of the others.
    """
    from pipelines import scoring

    spec = spec if isinstance(spec, LoadedSpec) else load_spec(spec)
    if not start < end:
        raise DataError(f"score: --end {end} must be after --start {start} (end is exclusive)")
    configure_airflow()
    from pipelines.orchestration.factory import build_dags

    dags = build_dags(spec)
    log_file = _log_file()
    stages = [("score", {"start": start.isoformat(), "end": end.isoformat()})]
    if missing := scoring.days_without_features(store, spec, start, end):
        span = {"start": missing[0].isoformat(),
                "end": (missing[-1] + dt.timedelta(days=1)).isoformat()}
        stages = [("ingest", span), ("features", span), *stages]
    _check_params(dags, stages, spec.name)
    failure = None
    try:
        _run_stages(spec, dags, stages, log_file, echo)
    except RuntimeError as exc:
        failure = str(exc)
    return scoring.day_verdicts(store, spec, start, end), failure, log_file
