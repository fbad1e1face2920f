"""DAG factory: three DAGs per pipeline spec, each task a single call into the library.

`<name>_ingest` and `<name>_features` take their range from the run's data interval (a
scheduled run is one day) or from the `start`/`end` params; a range is split into month
chunks mapped as parallel tasks, each one vectorized pass writing a partition per day.
Ingest ends by emitting one Asset event per source carrying the range it wrote; the features
DAG runs on its own daily interval or when all raw assets have new events, and then computes
exactly the days those events name (`triggering_asset_events`).
`<name>_train` builds, validates, trains, evaluates and registers, and skips training when
the model/dataset pair is already registered. Tasks exchange IDs and paths, never frames.
Heavy imports happen inside tasks so parsing a DAG file stays cheap.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from airflow.sdk import (
    DAG,
    Asset,
    AssetOrTimeSchedule,
    CronDataIntervalTimetable,
    Metadata,
    Param,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException

from pipelines.errors import DataError
from pipelines.orchestration.context import run_context, triggering_spans, window
from pipelines.settings import lake_root
from pipelines.spec import LoadedSpec, load_spec

F = TypeVar("F", bound=Callable[..., Any])
OPTIONAL_DATE = ["null", "string"]


def fail_on_bad_data(func: F) -> F:
    """Bad data fails the task without retries; anything else may be retried."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DataError as exc:
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc

    return wrapper  # type: ignore[return-value]


def _dag_kwargs(spec: LoadedSpec, stage: str, cron: str | None, doc: str) -> dict[str, Any]:
    return {
        "dag_id": f"{spec.name}_{stage}",
        "schedule": CronDataIntervalTimetable(cron, timezone="UTC") if cron else None,
        "start_date": dt.datetime.combine(spec.pipeline.start_date, dt.time(), dt.UTC),
        "catchup": False,
        "max_active_runs": 4,
        "tags": ["pitstop", spec.name, stage],
        "doc_md": f"{doc}\n\nSpec: `{spec.path.name}`. {spec.pipeline.description}",
        "default_args": {"retries": 2, "retry_delay": dt.timedelta(seconds=30)},
    }


def _range_params() -> dict[str, Param]:
    return {
        "start": Param(None, type=OPTIONAL_DATE, format="date",
                       description="First day (UTC) to process; empty = the data interval"),
        "end": Param(None, type=OPTIONAL_DATE, format="date",
                     description="Day after the last one (exclusive); empty = the data interval"),
    }


def _reason_param(description: str) -> Param:
    """Optional free text. Nullable: the UI form treats an empty non-null string as missing."""
    return Param(None, type=["null", "string"], maxLength=500, title="Reason",
                 description=description)


@task
def plan_chunks() -> list[dict[str, str]]:
    """Month-sized chunks of the run's range: one mapped task each.

    The range is the days the triggering asset events wrote, else the params or data interval.
    """
    from pipelines.lake import month_chunks

    context = get_current_context()
    spans = triggering_spans(context) or [window(context)]
    return [{"start": lo.isoformat(), "end": hi.isoformat()}
            for span in spans for lo, hi in month_chunks(*span)]


def _span(chunk: dict[str, str]) -> tuple[dt.date, dt.date]:
    return dt.date.fromisoformat(chunk["start"]), dt.date.fromisoformat(chunk["end"])


def raw_asset(spec: LoadedSpec, source: str) -> Asset:
    return Asset(name=f"{spec.name}.raw.{source}",
                 uri=(lake_root() / "raw" / source).as_uri(), group="pitstop")


def raw_assets(spec: LoadedSpec) -> list[Asset]:
    return [raw_asset(spec, source) for source in spec.pipeline.sources]


def ingest_dag(spec: LoadedSpec) -> DAG:
    with DAG(**_dag_kwargs(spec, "ingest", spec.pipeline.schedules.ingest,
                           "Land each source's files of the range into raw day partitions."),
             params=_range_params()) as dag:
        chunks = plan_chunks()
        ingested = []
        for source in spec.pipeline.sources:

            @task(task_id=f"ingest_{source}", map_index_template="{{ chunk['start'] }}")
            @fail_on_bad_data
            def ingest_source(chunk: dict[str, str], source: str = source) -> dict[str, Any]:
                from pipelines.ingest import ingest

                result = ingest(spec, source, *_span(chunk), produced_by=run_context(get_current_context()))
                return {k: v for k, v in result.to_dict().items() if k != "partitions"} | {
                    "partitions": len(result.partitions)}

            ingested.append(ingest_source.expand(chunk=chunks))

        assets = raw_assets(spec)

        @task(outlets=assets)
        def announce_raw_data(chunks: list[dict[str, str]]) -> Any:
            """One Asset event per source, all at once, after every chunk of every source.

            Emitted together so a features run triggered by them always sees all sources of
            the range; `extra` names the range, which that run then computes.
            """
            extra = {"start": min(c["start"] for c in chunks),
                     "end": max(c["end"] for c in chunks),
                     "run_id": get_current_context()["ti"].run_id}
            for asset in assets:
                yield Metadata(asset, extra=extra)
            return extra

        ingested >> announce_raw_data(chunks)
    return dag


def features_dag(spec: LoadedSpec) -> DAG:
    """Daily on its data interval (so Airflow's Backfill works), or when raw data lands."""
    kwargs = _dag_kwargs(spec, "features", spec.pipeline.schedules.features,
                         "Compute each feature view's day partitions, point in time. Runs daily, "
                         "and whenever an ingest run lands raw data (then over exactly its days).")
    kwargs["schedule"] = AssetOrTimeSchedule(timetable=kwargs["schedule"], assets=raw_assets(spec))
    with DAG(**kwargs, params=_range_params()) as dag:
        chunks = plan_chunks()
        for view in spec.pipeline.feature_views:

            @task(task_id=f"compute_{view}", map_index_template="{{ chunk['start'] }}")
            @fail_on_bad_data
            def compute(chunk: dict[str, str], view: str = view) -> dict[str, Any]:
                from pipelines.features import compute_view

                return compute_view(spec, view, *_span(chunk), produced_by=run_context(get_current_context())).to_dict()

            compute.expand(chunk=chunks)
    return dag


def train_dag(spec: LoadedSpec) -> DAG:
    params = {
        **_range_params(),
        "eval_start": Param(None, type=OPTIONAL_DATE, format="date",
                            description="First day of the evaluation window; empty = the last "
                            f"{spec.pipeline.split.eval_days} days"),
        "reason": _reason_param("Why this model is being (re)trained; kept in MLflow"),
    }
    with DAG(**_dag_kwargs(spec, "train", spec.pipeline.schedules.train,
                           "Build the training set, validate, train, evaluate, register."),
             params=params) as dag:

        @task
        @fail_on_bad_data
        def build_training_set() -> dict[str, Any]:
            from pipelines.features import build_training_set as build
            from pipelines.train import split_window

            start, end = window(get_current_context(), default_start=spec.pipeline.start_date)
            eval_start = get_current_context()["params"].get("eval_start")
            split = split_window(spec, start, end,
                                 dt.date.fromisoformat(eval_start) if eval_start else None)
            training_set = build(spec, start, end, produced_by=run_context(get_current_context()))
            return {"training_set": training_set.to_dict(),
                    "split": {k: v.isoformat() for k, v in vars(split).items()}}

        @task
        @fail_on_bad_data
        def validate_training_set(built: dict[str, Any]) -> dict[str, Any]:
            from pipelines.quality import validate_training_set as validate

            return validate(spec, built["training_set"])

        @task
        def plan_pair(built: dict[str, Any]) -> dict[str, Any]:
            from pipelines.registry import plan_pair as plan

            return plan(spec, built["training_set"]["dataset_id"])

        @task.short_circuit(ignore_downstream_trigger_rules=False)
        def is_new_pair(pair: dict[str, Any]) -> bool:
            """Skip training when this exact model/dataset pair is already registered."""
            return pair["registered_version"] is None

        @task
        @fail_on_bad_data
        def train_model(built: dict[str, Any], report: dict[str, Any],
                        pair: dict[str, Any]) -> dict[str, str]:
            from pipelines.train import Split, train_and_log

            return train_and_log(spec, built["training_set"], _split(built, Split), report,
                                 pair, run_context(get_current_context()))

        @task
        @fail_on_bad_data
        def evaluate_model(built: dict[str, Any], run: dict[str, str]) -> dict[str, Any]:
            from pipelines.evaluate import evaluate_candidate
            from pipelines.train import Split

            return evaluate_candidate(spec, built["training_set"], _split(built, Split), run)

        @task
        def register_model(pair: dict[str, Any], run: dict[str, str],
                           evaluation: dict[str, Any]) -> dict[str, Any]:
            from pipelines.registry import register_pair

            return register_pair(spec, pair, run, evaluation)

        @task(trigger_rule="none_failed")
        def summarize(built: dict[str, Any], report: dict[str, Any],
                      pair: dict[str, Any]) -> dict[str, Any]:
            """What this run produced or found already registered: read back from MLflow."""
            from pipelines.registry import describe_pair

            return describe_pair(spec, pair, built, report)

        built = build_training_set()
        report = validate_training_set(built)
        pair = plan_pair(built)
        report >> pair
        run = train_model(built, report, pair)
        is_new_pair(pair) >> run
        registered = register_model(pair, run, evaluate_model(built, run))
        registered >> summarize(built, report, pair)
    return dag


def _split(built: dict[str, Any], split_type: Any) -> Any:
    return split_type(**{k: dt.date.fromisoformat(v) for k, v in built["split"].items()})


def backfill_dag(spec: LoadedSpec) -> DAG:
    """Recompute feature views over a range chosen in the trigger form, in month chunks."""
    from pipelines.features import MAX_BACKFILL_DAYS

    views = list(spec.pipeline.feature_views)
    first = spec.pipeline.start_date
    params = {
        "start": Param(first.isoformat(), type="string", format="date", title="First day",
                       description=f"First day (UTC) to recompute; not before {first}"),
        "end": Param((first + dt.timedelta(days=7)).isoformat(), type="string", format="date",
                     title="End (exclusive)",
                     description=f"Day after the last one; at most {MAX_BACKFILL_DAYS} days "
                     "after the start"),
        "views": Param(views, type="array", title="Feature views", uniqueItems=True,
                       minItems=1, items={"type": "string", "enum": views}, examples=views,
                       description="Feature views to recompute"),
        "reason": _reason_param("Why this backfill runs; kept in each partition's manifest"),
    }
    kwargs = _dag_kwargs(spec, "backfill", None, "Recompute feature partitions of a range "
                         "(month-sized mapped chunks, one partition per day, replaced whole).")
    with DAG(**{**kwargs, "default_args": {"retries": 0}}, params=params) as dag:

        @task
        @fail_on_bad_data
        def plan_backfill() -> list[dict[str, str]]:
            """Check the request (range, views, raw data present) before anything is written."""
            from pipelines.features import plan_backfill as plan

            params = get_current_context()["params"]
            chunks = plan(spec, dt.date.fromisoformat(params["start"]),
                          dt.date.fromisoformat(params["end"]), list(params["views"]))
            return [{"view": view, "start": lo.isoformat(), "end": hi.isoformat()}
                    for view, (lo, hi) in chunks]

        @task(map_index_template="{{ chunk['view'] }} {{ chunk['start'] }}")
        @fail_on_bad_data
        def compute_chunk(chunk: dict[str, str]) -> dict[str, Any]:
            from pipelines.features import compute_view

            return compute_view(spec, chunk["view"], *_span(chunk),
                                produced_by=run_context(get_current_context())).to_dict()

        compute_chunk.expand(chunk=plan_backfill())
    return dag


def build_dags(spec_path: str | Path) -> dict[str, DAG]:
    """All DAGs of one pipeline, by dag_id; a DAG file puts them in its globals."""
    spec = load_spec(spec_path)
    return {dag.dag_id: dag for dag in (ingest_dag(spec), features_dag(spec), train_dag(spec),
                                        backfill_dag(spec))}
