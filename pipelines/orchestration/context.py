"""What a task learns from its Airflow context: its range, its triggering events, who ran it.

These are plain functions of the context mapping (`get_current_context()` in a task), so
they are tested without a scheduler; the factory passes the context in.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import os
from collections.abc import Iterator, Mapping
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from pipelines.lake import merge_spans
from pipelines.provenance import ProducedBy
from pipelines.spec import Source

DAG_TEST_USER = "dag_test"
"""The `triggering_user_name` that `dag.test()` gives every run it makes (Airflow 3.3)."""


def run_context(context: Mapping[str, Any]) -> ProducedBy:
    """Who and what produced an output: recorded in manifests and MLflow tags."""
    ti, dag_run = context["ti"], context["dag_run"]
    return ProducedBy(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
                      map_index=ti.map_index, try_number=ti.try_number,
                      triggered_by=_triggered_by(dag_run), reason=context["params"].get("reason"))


def _triggered_by(dag_run: Any) -> str:
    """The user who triggered the run, else its run type (a scheduled run has no user).

    `dag.test()` (`pitstop run`, `backfill`, `score`) names every run's user "dag_test" and
    runs its tasks in the calling process, so the person is the process's own OS user."""
    user = getattr(dag_run, "triggering_user_name", None)
    if user == DAG_TEST_USER:
        return getpass.getuser()
    run_type = getattr(dag_run, "run_type", "")  # an enum in the task runner: keep its value
    return user or str(getattr(run_type, "value", run_type))


def run_clock(context: Mapping[str, Any]) -> dt.datetime:
    """The run's "now": when the run started (the same for every task and retry of it), else
    when it was due. Ingest refuses data later than this plus a source's tolerance."""
    dag_run = context["dag_run"]
    return dag_run.start_date or dag_run.run_after


def window(context: Mapping[str, Any], default_start: dt.date | None = None
           ) -> tuple[dt.date, dt.date]:
    """The run's `[start, end)`: the `start`/`end` params if given, else the data interval.

    A manual run has no data interval; it then covers the day before it was triggered.
    `default_start` (the train DAG's pipeline start) replaces the interval's start when no
    `start` param is given.
    """
    params = context["params"]
    interval_end = context.get("data_interval_end") or context["dag_run"].run_after
    interval_start = context.get("data_interval_start") or interval_end - dt.timedelta(days=1)
    start = params.get("start") or (default_start or interval_start.date()).isoformat()
    end = params.get("end") or interval_end.date().isoformat()
    lo, hi = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    if not lo < hi:
        raise AirflowFailException(f"params: start {lo} must be before end {hi}")
    return lo, hi


def date_param(context: Mapping[str, Any], name: str) -> dt.date | None:
    """A `format: date` Param as a date; None when it is empty."""
    value = context["params"].get(name)
    return dt.date.fromisoformat(value) if value else None


def triggering_spans(context: Mapping[str, Any]) -> list[tuple[dt.date, dt.date]]:
    """The `[start, end)` ranges named by the asset events that triggered this run, merged.

    Empty for a scheduled, manual or backfill run. An asset-triggered run whose events carry
    no range (e.g. an event posted by hand without `extra`) fails, saying what to add.
    """
    events = [event for batch in (context.get("triggering_asset_events") or {}).values()
              for event in batch]
    if not events:
        return []
    try:
        spans = [(dt.date.fromisoformat(e.extra["start"]), dt.date.fromisoformat(e.extra["end"]))
                 for e in events]
    except (KeyError, TypeError, ValueError) as exc:
        raise AirflowFailException(
            "asset event without a valid range: each raw asset event needs "
            f"extra={{'start': 'YYYY-MM-DD', 'end': 'YYYY-MM-DD'}} ({exc!r})") from exc
    return merge_spans(spans)


def connection_url(source: Source) -> str | None:
    """The SQLAlchemy URL of a database source's Airflow connection (`database.conn_id`),
    password included, for the ingest task to hand the library; None for any other source.

    The connection's provider hook builds the URL (`sqlalchemy_url`, e.g. the Postgres
    provider's `postgresql+psycopg2://…`): `Connection.get_uri()` gives Airflow's own scheme
    (`postgres://`), which SQLAlchemy does not know.
    """
    if source.database is None or source.database.conn_id is None:
        return None
    from airflow.sdk import BaseHook

    hook = BaseHook.get_connection(source.database.conn_id).get_hook()
    return hook.sqlalchemy_url.render_as_string(hide_password=False)


@contextlib.contextmanager
def parsing_context(dag_id: str) -> Iterator[None]:
    """Airflow's DAG parsing context naming `dag_id` for the block (what its task runner sets
    before a worker parses a DAG file; `get_parsing_context()` reads it), then as before.
    Airflow's own helper never unsets it, which would narrow every later parse here."""
    from airflow.sdk.definitions.context import _AIRFLOW_PARSING_CONTEXT_DAG_ID as KEY

    before = os.environ.get(KEY)
    os.environ[KEY] = dag_id
    try:
        yield
    finally:
        if before is None:
            del os.environ[KEY]
        else:
            os.environ[KEY] = before
