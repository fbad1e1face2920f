"""`pitstop run` refuses bad arguments before anything runs, and a failed stage is reported
by its first failure, briefly, with every failure listed in the log."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipelines import cli
from pipelines.errors import DataError
from pipelines.orchestration import runner
from pipelines.spec import LoadedSpec

from .conftest import D1, D4

LOG = """\
2026-12-02T01:26:45.77Z [info] [DAG TEST] starting task_id=plan_chunks map_index=-1 [dag]
2026-12-02T01:26:45.78Z [info] [DAG TEST] starting task_id=ingest_readings map_index=0 [dag]
2026-12-02T01:26:46.09Z [error    ] Task failed with exception     [task] loc=task_runner.py:1639
Traceback (most recent call last):
  File "/work/pipelines/ingest.py", line 118, in read_landing_files
_duckdb.InvalidInputException: Invalid Input Error: Error when sniffing file "a.csv".
It was not possible to automatically detect the CSV parsing dialect
pipelines.errors.DataError: a.csv: line 6 has 2 fields, the header has 3
    raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
airflow.sdk.exceptions.AirflowFailException: DataError: a.csv: line 6 has 2 fields, the header has 3
2026-12-02T01:26:46.12Z [info] [DAG TEST] starting task_id=ingest_readings map_index=1 [dag]
2026-12-02T01:26:46.37Z [error    ] Task failed with exception     [task] loc=task_runner.py:1639
ValueError: something else
2026-12-02T01:26:46.40Z [info] [DAG TEST] starting task_id=announce_raw_data map_index=-1 [dag]
"""


def test_each_task_is_given_the_exception_it_failed_with() -> None:
    assert runner.task_errors(LOG) == {
        "ingest_readings[0]": "AirflowFailException: DataError: a.csv: line 6 has 2 fields, "
                              "the header has 3",
        "ingest_readings[1]": "ValueError: something else"}


def test_a_log_without_task_markers_still_gives_the_error(tmp_path: Path) -> None:
    """Under a host that keeps Airflow's own log records (pytest), only the tracebacks reach
    the file: the report then names the first failed task with the error it found."""
    bare = "\n".join(line for line in LOG.splitlines() if "[DAG TEST]" not in line)
    errors = runner.task_errors(bare)
    assert errors == {"": "ValueError: something else"}
    message, _ = runner.failure_report("sensors_ingest", ["ingest_readings[0]"], errors, 1.0,
                                       tmp_path / "run.log")
    assert message.splitlines()[:2] == ["sensors_ingest failed at ingest_readings[0] after 1s:",
                                        "  ValueError: something else"]


def test_a_stage_with_many_failures_is_summed_up_by_its_first(tmp_path: Path) -> None:
    failed = [f"ingest_flights[{i}]" for i in range(12)]
    errors = {name: f"DataError: {name}: " + "x" * 400 for name in reversed(failed)}
    errors["ingest_flights[0]"] = "DataError: flights/2013-01-05.csv: " + "y" * 5000
    message, listing = runner.failure_report("flights_delay_ingest", failed, errors, 61.2,
                                             tmp_path / "run.log")
    first, error, note, log = message.splitlines()
    assert first == "flights_delay_ingest failed at ingest_flights[0] and 11 more after 61s:"
    assert error.startswith("  DataError: flights/2013-01-05.csv: yyy")
    assert error.endswith(" … (see the log)") and len(error) < runner.ERROR_CHARS + 100
    assert note == "  every failed task and its error are listed at the end of the log"
    assert log == f"full log: {tmp_path / 'run.log'}"
    assert listing[0] == "pitstop: flights_delay_ingest: 12 failed tasks, first failure first:"
    assert [line.split(":")[0].strip() for line in listing[1:]] == failed
    assert listing[1].endswith("y" * 100)  # the log keeps the whole error


def test_one_failure_needs_no_note(tmp_path: Path) -> None:
    message, _ = runner.failure_report("d", ["t"], {"t": "DataError: bad"}, 3, tmp_path / "l")
    assert message.splitlines() == ["d failed at t after 3s:", "  DataError: bad",
                                    f"full log: {tmp_path / 'l'}"]


def test_failed_tasks_come_first_failure_first() -> None:
    from airflow.utils.state import TaskInstanceState as State

    def ti(task_id: str, map_index: int, state: State, minute: int | None) -> SimpleNamespace:
        end = None if minute is None else dt.datetime(2024, 1, 1, 0, minute, tzinfo=dt.UTC)
        return SimpleNamespace(task_id=task_id, map_index=map_index, state=state, end_date=end)

    instances = [ti("ingest_a", 10, State.FAILED, 3), ti("ingest_a", 2, State.FAILED, 1),
                 ti("ingest_b", 0, State.FAILED, 2), ti("announce", -1, State.UPSTREAM_FAILED, 4),
                 ti("ingest_b", 1, State.SUCCESS, 0)]
    run = SimpleNamespace(get_task_instances=lambda session: instances)
    assert runner.failed_tasks(run) == ["ingest_a[2]", "ingest_b[0]", "ingest_a[10]"]
    only_upstream = SimpleNamespace(get_task_instances=lambda session: instances[3:])
    assert runner.failed_tasks(only_upstream) == ["announce"]


@pytest.mark.parametrize(("start", "end", "eval_start", "reason", "message"), [
    (D4, D1, None, "why", "run: --end 2024-01-01 must be after --start 2024-01-04"),
    (D1, D4, D4, "why", "split: evaluation start 2024-01-04 must fall inside the window"),
    (D1, D4, None, "w" * 501, "run: --reason is 501 characters, longer than the 500"),
])
def test_a_request_that_cannot_succeed_is_refused(tiny: LoadedSpec, start: dt.date,
                                                  end: dt.date, eval_start: dt.date | None,
                                                  reason: str, message: str) -> None:
    with pytest.raises(DataError) as error:
        runner.check_request(tiny, start, end, eval_start, reason)
    assert str(error.value).startswith(message)


def test_a_good_request_passes(tiny: LoadedSpec) -> None:
    runner.check_request(tiny, D1, D4, None, "w" * 500)


@pytest.fixture
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a run gets as far as setting up Airflow."""
    def configure() -> None:
        raise AssertionError("the run started")
    monkeypatch.setattr(runner, "configure_airflow", configure)


def test_a_long_reason_fails_before_anything_runs(tiny: LoadedSpec, nothing_runs: None,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["run", str(tiny.path), "--start", "2024-01-01", "--end", "2024-01-04",
                     "--reason", "r" * 600])
    assert code == 1
    assert ("pitstop: run: --reason is 600 characters, longer than the 500 the train DAG's "
            "`reason` param takes") in capsys.readouterr().err


def test_every_stage_params_are_checked_before_the_first_runs(tiny: LoadedSpec) -> None:
    from pipelines.orchestration.factory import build_dags

    # the factory refuses a spec whose suites are missing (pipelines/validation.py)
    tiny.suite_path("sensors_training_set").write_text(
        '{"name": "sensors_training_set", "expectations": []}')
    dags = build_dags(tiny)
    good = {"start": "2024-01-01", "end": "2024-01-04"}
    runner._check_params(dags, [("ingest", good), ("train", {**good, "reason": "why"})],
                         "sensors")
    with pytest.raises(DataError, match="run: sensors_train refuses its params: Invalid input "
                       "for param reason"):
        runner._check_params(dags, [("ingest", good), ("train", {**good, "reason": 5})],
                             "sensors")


@pytest.mark.parametrize(("results", "running", "expected"), [
    ({}, "ingest", "no earlier stage published anything"),
    ({"ingest": {}}, "features",
     "ingest of 2024-01-01..2024-01-04 are published (re-running redoes them safely)"),
    ({"ingest": {}, "features": {}}, "score", "every day scored is published with its verdict; "
     "ingest and features of 2024-01-01..2024-01-04 are published (re-running redoes them "
     "safely)"),
])
def test_a_failure_says_what_the_run_left_published(results: dict, running: str,
                                                    expected: str) -> None:
    assert runner._published(results, running, D1, D4) == expected


def test_mapped_tasks_are_named_with_their_rendered_map_index() -> None:
    """`ingest_chunk[3]` alone does not say which source and chunk failed."""
    def ti(task_id: str, map_index: int, rendered: str | None) -> SimpleNamespace:
        return SimpleNamespace(task_id=task_id, map_index=map_index, rendered_map_index=rendered)

    run = SimpleNamespace(get_task_instances=lambda session: [
        ti("ingest_chunk", 3, "orders 2024-03-01..2024-04-01"), ti("ingest_chunk", 4, None),
        ti("score_day", 0, "0"), ti("plan_chunks", -1, None)])
    assert runner.labelled(run) == {
        "ingest_chunk[3]": "ingest_chunk[3] (orders 2024-03-01..2024-04-01)"}


def test_a_process_first_task_freezes_its_startup_objects_once() -> None:
    """Every task body starts through `freeze_startup_objects`: the collector's thresholds
    are raised and what is alive is frozen, in the first task only (later garbage stays
    collectable)."""
    import gc

    from pipelines.orchestration import factory
    from pipelines.settings import GC_THRESHOLDS

    before = gc.get_threshold()
    factory.freeze_startup_objects.cache_clear()
    try:
        factory.fail_on_bad_data(lambda: None)()
        assert gc.get_threshold() == GC_THRESHOLDS
        frozen = gc.get_freeze_count()
        assert frozen > 0
        later = [[] for _ in range(100)]  # tracked objects made after the freeze
        factory.fail_on_bad_data(lambda: None)()
        # not frozen again (that would add `later`); frozen objects may still be freed
        assert gc.get_freeze_count() <= frozen, later
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_dag_test_runs_under_the_parsing_context_of_its_dag(tiny: LoadedSpec) -> None:
    """`dag.test()` re-parses the DAGs folder; the context makes each DAG file build only the
    DAG under test (`build_dags`), and it is gone after the run."""
    from airflow.sdk import get_parsing_context

    seen: list[str | None] = []
    dag = SimpleNamespace(dag_id="sensors_train",
                          test=lambda run_conf: seen.append(get_parsing_context().dag_id))
    runner.run_dag_test(tiny, dag, {})
    assert seen == ["sensors_train"]
    assert get_parsing_context().dag_id is None
