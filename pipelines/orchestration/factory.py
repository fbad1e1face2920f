"""DAG factory: five DAGs per pipeline spec, each task a single call into the library.

`<name>_ingest` and `<name>_features` take their range from the run's data interval (a
scheduled run is one day) or from the `start`/`end` params; a range is split into month
chunks mapped as parallel tasks, each one vectorized pass writing a partition per day.
Ingest ends by emitting one Asset event per source carrying the range it wrote; the features
DAG runs on its own daily interval or when all raw assets have new events, and then computes
exactly the days those events name (`triggering_asset_events`).
`<name>_train` builds, validates, trains, re-scores the registered versions on the known
problems, evaluates and registers, and skips training when the model/dataset pair is already
registered (`pipelines/steps.py` holds its task bodies). `<name>_backfill` recomputes
feature views over a range chosen in the trigger form. A features run ends with one
`<name>.features` Asset event naming its range; `<name>_score` runs on it or daily, and
scores and monitors each day with the version it pinned at its start (`pipelines/scoring.py`).

Tasks exchange IDs and paths as typed values (JSON in XCom, `xcom.py`), never frames. Heavy
imports happen inside tasks so parsing a DAG file stays cheap. The factory decides nothing:
ranges, plans and results come from the library, DAG settings from the spec's `airflow:`
section or `build_dags` arguments.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
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
    get_parsing_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException

from pipelines import validation
from pipelines.chunking import Chunk, StagePlan
from pipelines.errors import DataError, SpecError
from pipelines.lake import Lake, days
from pipelines.orchestration import stopping
from pipelines.orchestration.context import (
    connection_url,
    date_param,
    run_clock,
    run_context,
    triggering_spans,
    window,
)
from pipelines.orchestration.xcom import TALLY_KEY, dump, load
from pipelines.settings import MAX_BACKFILL_DAYS, MAX_REASON_LENGTH, tune_garbage_collector
from pipelines.spec import DagSettings, LoadedSpec, load_spec

F = TypeVar("F", bound=Callable[..., Any])

result_task = functools.partial(task, multiple_outputs=False)
"""`@task` for a task returning a dict: one XCom, its return value. Plain `@task` infers
`multiple_outputs` from a `dict` return annotation and pushes every key as an XCom of its own
too, one Execution API call each, which nothing here reads."""
OPTIONAL_DATE = ["null", "string"]
CHUNK_LABEL = "{{ chunk['unit'] }} {{ chunk['start'] }}..{{ chunk['end'] }}"
"""How the UI and `pitstop run` name a chunk task: its unit and its days, end exclusive like
every range pitstop prints (`orders 2024-03-01..2024-04-01`), so a failure's label says
which days the failing task held, not only the first."""


def task_lake() -> Lake:
    """The lake a task works on, built from `PITSTOP_LAKE` when the task runs, never when the
    DAG file is parsed (a worker on another host reaches the same bucket)."""
    from pipelines.lake import from_env

    return from_env()


@functools.cache
def freeze_startup_objects() -> None:
    """Put what is alive when a process's first task starts (Airflow, its Execution API app,
    the imported libraries) out of the cyclic garbage collector's reach, once per process,
    and raise its thresholds (`settings.tune_garbage_collector`).

    Its full passes otherwise walk those millions of long-lived objects again and again:
    3.1 s of an unchanged year's `pitstop run`, where every task shares one process, 0.7 s
    with both. Airflow's own executors `gc.freeze()` before forking workers for the same
    reason. Once, not per task: garbage of earlier tasks frozen with it would never be freed
    in a long backfill."""
    tune_garbage_collector()
    gc.freeze()


def fail_on_bad_data(func: F) -> F:
    """Bad data, spec and hook errors fail the task without retries; anything else (a
    service down, a full disk) may be retried. A local run asked to stop by a signal
    (`stopping`) fails the running task without retry, and every later one before it starts."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if signal_name := stopping.requested():
            raise AirflowFailException(f"not started: the run was stopped by {signal_name}")
        freeze_startup_objects()
        try:
            return func(*args, **kwargs)
        except (DataError, SpecError) as exc:
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
        except KeyboardInterrupt as exc:
            if signal_name := stopping.requested():
                raise AirflowFailException(f"stopped by {signal_name}") from exc
            raise

    return wrapper  # type: ignore[return-value]


def _dag_kwargs(spec: LoadedSpec, settings: DagSettings, stage: str, cron: str | None,
                doc: str) -> dict[str, Any]:
    return {
        "dag_id": f"{spec.name}_{stage}",
        "schedule": CronDataIntervalTimetable(cron, timezone="UTC") if cron else None,
        "start_date": dt.datetime.combine(spec.pipeline.start_date, dt.time(), dt.UTC),
        "catchup": settings.catchup,
        "max_active_runs": settings.max_active_runs,
        "tags": ["pitstop", spec.name, stage],
        "doc_md": f"{doc}\n\nSpec: `{spec.path.name}`. {spec.pipeline.description}",
        "default_args": {"owner": settings.owner, "retries": settings.retries,
                         "retry_delay": settings.retry_delay,
                         "execution_timeout": settings.execution_timeout},
    }


def _range_params() -> dict[str, Param]:
    return {
        "start": Param(None, type=OPTIONAL_DATE, format="date",
                       description="First day (UTC) to process; empty = the data interval"),
        "end": Param(None, type=OPTIONAL_DATE, format="date",
                     description="Day after the last one (exclusive); empty = the data interval"),
    }


def _force_param() -> dict[str, Param]:
    """Recompute every partition of the range even where its inputs, definition and code
    match its manifest (`pipelines/skipping.py`): after a change nothing fingerprints."""
    return {"force": Param(False, type="boolean", title="Force",
                           description="Recompute partitions whose inputs are unchanged "
                           "(otherwise they are skipped, and the task log says why)")}


def _force(context: Any) -> bool:
    return bool(context["params"].get("force"))


def _reason_param(description: str) -> Param:
    """Optional free text. Nullable: the UI form treats an empty non-null string as missing."""
    return Param(None, type=["null", "string"], maxLength=MAX_REASON_LENGTH, title="Reason",
                 description=description)


def _spans(context: Any) -> list[tuple[dt.date, dt.date]]:
    """The run's range: the days the triggering asset events wrote, else the params or the
    data interval."""
    return triggering_spans(context) or [window(context)]


def _plan_task(plan: Callable[[Any], StagePlan], task_id: str = "plan_chunks") -> Any:
    """The stage's first task: the chunks to map one task each over (`pipelines/chunking.py`),
    as `{unit, start, end}`; the tally of the days it left out goes to XCom key `plan_tally`, which
    `pitstop run` adds to the chunk tasks' own.

    A short circuit: with no chunk to compute it skips the mapped task itself, where an empty
    expansion would leave that to the next scheduling pass. `dag.test()` sleeps a second
    before a pass that finds nothing to run (a tenth of an unchanged year's `pitstop run`);
    the closing task's `none_failed` still runs after the skip."""

    @task.short_circuit(task_id=task_id, ignore_downstream_trigger_rules=False)
    @fail_on_bad_data
    def plan_chunks() -> list[dict[str, str]]:
        context = get_current_context()
        planned = plan(context)
        context["ti"].xcom_push(key=TALLY_KEY, value=planned.tally)
        return dump(planned.chunks)

    return plan_chunks


def _chunk(chunk: dict[str, str]) -> Chunk:
    return load(Chunk, chunk)


def _compute_chunk_task(spec: LoadedSpec) -> Any:
    """The mapped task of the features and backfill DAGs: one view's chunk, `compute_view`
    over its days (each decided again: nothing is skipped on the planner's word alone)."""

    @result_task(map_index_template=CHUNK_LABEL)
    @fail_on_bad_data
    def compute_chunk(chunk: dict[str, str]) -> dict[str, Any]:
        from pipelines.features import compute_view

        context, work = get_current_context(), _chunk(chunk)
        return dump(compute_view(task_lake(), spec, work.unit, work.start, work.end,
                                 produced_by=run_context(context), force=_force(context)))

    return compute_chunk


def raw_asset(spec: LoadedSpec, source: str) -> Asset:
    """The Asset of one source's raw partitions, named and addressed by pipeline and source.

    The URI is lake-relative (`pitstop://<pipeline>/raw/<source>`), not the lake's absolute
    path: a moved `PITSTOP_HOME` or a lake on another machine keeps the same Assets, and two
    pipelines with a source of the same name never share one.
    """
    return Asset(name=f"{spec.name}.raw.{source}", uri=f"pitstop://{spec.name}/raw/{source}",
                 group="pitstop")


def raw_assets(spec: LoadedSpec) -> list[Asset]:
    return [raw_asset(spec, source) for source in spec.pipeline.sources]


def features_asset(spec: LoadedSpec) -> Asset:
    """The Asset of all the pipeline's feature views: one event when a features run has
    published every view's days, which the score DAG runs on."""
    return Asset(name=f"{spec.name}.features", uri=f"pitstop://{spec.name}/features",
                 group="pitstop")


def _announce(task_id: str, assets: list[Asset]) -> Any:
    """A task emitting one event per asset, after every chunk, whose `extra` names the range
    the run wrote (`start`/`end`): the run it triggers then covers exactly those days."""

    @task(task_id=task_id, outlets=assets, trigger_rule="none_failed")
    def announce() -> Any:
        from pipelines.ingest import announcement

        context = get_current_context()
        extra = announcement(_spans(context), context["ti"].run_id)
        for asset in assets:
            yield Metadata(asset, extra=extra)
        return extra

    return announce


def ingest_dag(spec: LoadedSpec, settings: DagSettings) -> DAG:
    with DAG(**_dag_kwargs(spec, settings, "ingest", spec.pipeline.schedules.ingest,
                           "Land each source's files of the range into raw day partitions."),
             params={**_range_params(), **_force_param()}) as dag:
        def plan(context: Any) -> StagePlan:
            from pipelines.ingest import plan_chunks

            return plan_chunks(task_lake(), spec, _spans(context), now=run_clock(context),
                               force=_force(context))

        @result_task(map_index_template=CHUNK_LABEL)
        @fail_on_bad_data
        def ingest_chunk(chunk: dict[str, str]) -> dict[str, Any]:
            from pipelines.ingest import ingest

            context, work = get_current_context(), _chunk(chunk)
            source = spec.pipeline.sources[work.unit]
            return ingest(task_lake(), spec, work.unit, work.start, work.end,
                          produced_by=run_context(context), now=run_clock(context),
                          database_url=connection_url(source), force=_force(context)).summary()

        # one event per source, all at once, after every chunk of every source: a features
        # run triggered by them always sees all sources of the range
        ingest_chunk.expand(chunk=_plan_task(plan)()) >> _announce(
            "announce_raw_data", raw_assets(spec))()
    return dag


def features_dag(spec: LoadedSpec, settings: DagSettings) -> DAG:
    """Daily on its data interval (so Airflow's Backfill works), or when raw data lands."""
    kwargs = _dag_kwargs(spec, settings, "features", spec.pipeline.schedules.features,
                         "Compute each feature view's day partitions, point in time. Runs daily, "
                         "and whenever an ingest run lands raw data (then over exactly its days).")
    kwargs["schedule"] = AssetOrTimeSchedule(timetable=kwargs["schedule"], assets=raw_assets(spec))
    with DAG(**kwargs, params={**_range_params(), **_force_param()}) as dag:
        def plan(context: Any) -> StagePlan:
            from pipelines.features import plan_chunks

            return plan_chunks(task_lake(), spec, _spans(context), force=_force(context))

        _compute_chunk_task(spec).expand(chunk=_plan_task(plan)()) >> _announce(
            "announce_features", [features_asset(spec)])()
    return dag


def score_dag(spec: LoadedSpec, settings: DagSettings) -> DAG:
    """Daily on its data interval, or when a features run has published days (then over
    exactly those days): pin the alias's version once, then score and monitor each day."""
    kwargs = _dag_kwargs(spec, settings, "score", spec.pipeline.schedules.score,
                         f"Score each day's spine rows with the version holding "
                         f"`{spec.pipeline.score.alias}` and monitor them against its "
                         "registration reference; a breach of `monitoring:` fails the day.")
    kwargs["schedule"] = AssetOrTimeSchedule(timetable=kwargs["schedule"],
                                             assets=[features_asset(spec)])
    with DAG(**kwargs, params=_range_params()) as dag:

        @result_task
        @fail_on_bad_data
        def pin_model() -> dict[str, Any]:
            """Resolved once per run, so every day of it is scored by the same version."""
            from pipelines import scoring

            return dump(scoring.pin_model(spec))

        @task
        def plan_days() -> list[str]:
            context = get_current_context()
            return [day.isoformat() for span in _spans(context)
                    for day in days(*span)]

        @result_task(map_index_template="{{ day }}")
        @fail_on_bad_data
        def score_day(day: str, pinned: dict[str, Any]) -> dict[str, Any]:
            from pipelines import scoring

            return dump(scoring.score_day(task_lake(), spec, load(scoring.PinnedModel, pinned),
                                          dt.date.fromisoformat(day),
                                          run_context(get_current_context())))

        score_day.partial(pinned=pin_model()).expand(day=plan_days())
    return dag


def _training_set_tasks(spec: LoadedSpec) -> tuple[Any, Any, Any, Any]:
    """The train DAG's first tasks: build and validate the set, plan its pair, skip if known."""

    @result_task
    @fail_on_bad_data
    def build_training_set() -> dict[str, Any]:
        from pipelines import steps

        context = get_current_context()
        return dump(steps.build_training_set(
            task_lake(), spec, window(context, default_start=spec.pipeline.start_date),
            date_param(context, "eval_start"), run_context(context), _force(context)))

    @result_task
    @fail_on_bad_data
    def validate_training_set(built: dict[str, Any]) -> dict[str, Any]:
        from pipelines import steps
        from pipelines.training_set import TrainingInput

        return dump(steps.validate_training_set(task_lake(), spec, load(TrainingInput, built),
                                                _force(get_current_context())))

    @result_task
    def plan_pair(built: dict[str, Any]) -> dict[str, Any]:
        from pipelines import steps
        from pipelines.training_set import TrainingInput

        return dump(steps.plan_pair(spec, load(TrainingInput, built)))

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def is_new_pair(pair: dict[str, Any]) -> bool:
        """Skip training when this exact model/dataset pair is already registered: every task
        from training to registration is its direct downstream, so all are skipped at once and
        `summarize` runs in the next scheduling pass (a chain of skips would take one more pass,
        and a second of `dag.test()`'s sleep, per link)."""
        return pair["registered_version"] is None

    return build_training_set, validate_training_set, plan_pair, is_new_pair


def _model_tasks(spec: LoadedSpec) -> tuple[Any, Any, Any]:
    """Train the candidate, re-score every version on the known problems, evaluate."""

    @result_task
    @fail_on_bad_data
    def train_model(built: dict[str, Any], report: dict[str, Any],
                    pair: dict[str, Any]) -> dict[str, Any]:
        from pipelines import steps
        from pipelines.lineage import Pair
        from pipelines.quality import QualitySummary
        from pipelines.training_set import TrainingInput

        return dump(steps.train_model(task_lake(), spec, load(TrainingInput, built),
                                      load(QualitySummary, report), load(Pair, pair),
                                      run_context(get_current_context())))

    @task
    @fail_on_bad_data
    def rescore_known_problems() -> list[Any]:
        """Every registered version scored on every known problem it lacks a score for."""
        from pipelines import steps

        return [list(scored) for scored in steps.rescore_known_problems(spec)]

    @result_task
    @fail_on_bad_data
    def evaluate_model(built: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
        from pipelines import steps
        from pipelines.registry import TrainedRun
        from pipelines.training_set import TrainingInput

        return dump(steps.evaluate_model(task_lake(), spec, load(TrainingInput, built),
                                         load(TrainedRun, run)))

    return train_model, rescore_known_problems, evaluate_model


def _closing_tasks(spec: LoadedSpec) -> tuple[Any, Any]:
    """Register the evaluated candidate, then summarise what the run produced or found."""

    @result_task
    def register_model(pair: dict[str, Any], run: dict[str, Any],
                       evaluation: dict[str, Any]) -> dict[str, Any]:
        from pipelines import steps
        from pipelines.evaluate import EvaluationSummary
        from pipelines.lineage import Pair
        from pipelines.registry import TrainedRun

        return dump(steps.register_model(spec, load(Pair, pair), load(TrainedRun, run),
                                         load(EvaluationSummary, evaluation)))

    @result_task(trigger_rule="none_failed")
    def summarize(built: dict[str, Any], report: dict[str, Any],
                  pair: dict[str, Any]) -> dict[str, Any]:
        """What this run produced or found already registered: read back from MLflow."""
        from pipelines import steps
        from pipelines.lineage import Pair
        from pipelines.quality import QualitySummary
        from pipelines.training_set import TrainingInput

        return dump(steps.summarize(spec, load(TrainingInput, built),
                                    load(QualitySummary, report), load(Pair, pair)))

    return register_model, summarize


def train_dag(spec: LoadedSpec, settings: DagSettings) -> DAG:
    params = {
        **_range_params(),
        "eval_start": Param(None, type=OPTIONAL_DATE, format="date",
                            description="First day of the evaluation window; empty = the last "
                            f"{spec.pipeline.split.eval_days} days"),
        "reason": _reason_param("Why this model is being (re)trained; kept in MLflow"),
        **_force_param(),
    }
    build_training_set, validate_training_set, plan_pair, is_new_pair = _training_set_tasks(spec)
    train_model, rescore_known_problems, evaluate_model = _model_tasks(spec)
    register_model, summarize = _closing_tasks(spec)
    with DAG(**_dag_kwargs(spec, settings, "train", spec.pipeline.schedules.train,
                           "Build the training set, validate, train, evaluate, register."),
             params=params) as dag:
        built = build_training_set()
        report = validate_training_set(built)
        pair = plan_pair(built)
        report >> pair
        run = train_model(built, report, pair)
        rescored = rescore_known_problems()
        run >> rescored
        evaluation = evaluate_model(built, run)
        rescored >> evaluation
        registered = register_model(pair, run, evaluation)
        registered >> summarize(built, report, pair)
        is_new_pair(pair) >> [run, rescored, evaluation, registered]
    return dag


def _backfill_params(spec: LoadedSpec) -> dict[str, Param]:
    """The trigger form of a backfill: a range from the pipeline's first day (a week by
    default, at most MAX_BACKFILL_DAYS), the views to recompute (all by default, only
    declared ones accepted) and the reason kept in each partition's manifest."""
    views = list(spec.pipeline.feature_views)
    first = spec.pipeline.start_date
    return {
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
        **_force_param(),
    }


def backfill_dag(spec: LoadedSpec, settings: DagSettings) -> DAG:
    """Recompute feature views over a range chosen in the trigger form, in month chunks."""
    kwargs = _dag_kwargs(spec, settings, "backfill", None,
                         "Recompute feature partitions of a range (month-sized mapped chunks, "
                         "one partition per day, replaced whole).")
    kwargs["default_args"]["retries"] = 0
    with DAG(**kwargs, params=_backfill_params(spec)) as dag:
        def plan(context: Any) -> StagePlan:
            """Check the request (range, views, raw data present) before anything is written;
            map only the chunks holding a day to compute."""
            from pipelines.backfill import plan_backfill_chunks

            return plan_backfill_chunks(task_lake(), spec, date_param(context, "start"),
                                        date_param(context, "end"),
                                        list(context["params"]["views"]), force=_force(context))

        _compute_chunk_task(spec).expand(chunk=_plan_task(plan, "plan_backfill")())
    return dag


STAGE_DAGS: dict[str, Callable[[LoadedSpec, DagSettings], DAG]] = {
    "ingest": ingest_dag, "features": features_dag, "train": train_dag,
    "backfill": backfill_dag, "score": score_dag}


def build_dags(spec: LoadedSpec | str | Path, **settings: Any) -> dict[str, DAG]:
    """The DAGs of one pipeline, by dag_id; a DAG file puts them in its globals.

    All five, unless Airflow's parsing context names the one DAG it parses the file for (a
    worker running a task, or `pitstop run`'s `dag.test()`, which otherwise re-parses every
    DAG file of the folder per stage): then only that DAG, or none when it is another
    pipeline's. A deployment of many pipelines then pays for one DAG per task, not for all.

    `spec` is a loaded spec or its path (loaded without the estimator check, which imports
    scikit-learn; `pitstop validate` and the train tasks run it). The cheap checks of
    `pipelines.validation` run first, so a broken spec raises a SpecError naming every
    mistake: in the dag-processor, an import error of this pipeline's DAG file only.
    `settings` override the spec's `airflow:` section (retries, retry_delay,
    max_active_runs, catchup, owner, execution_timeout).
    """
    loaded = spec if isinstance(spec, LoadedSpec) else load_spec(spec, check=False)
    requested = get_parsing_context().dag_id
    stages = [stage for stage in STAGE_DAGS
              if requested is None or requested == f"{loaded.name}_{stage}"]
    if not stages:
        return {}
    validation.refuse_errors(loaded, validation.check(loaded, full=False))
    dag_settings = DagSettings.model_validate(
        {**loaded.pipeline.airflow.model_dump(), **settings})
    return {dag.dag_id: dag for dag in (STAGE_DAGS[stage](loaded, dag_settings)
                                        for stage in stages)}
