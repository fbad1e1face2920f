"""The pipeline spec: one YAML file per pipeline, typed and validated on load.

A data engineer declares sources, feature views, the label, the model and the gate once, in
`dags/<name>.yaml`; everything else (DAGs, lake paths, IDs) is derived from it. Unknown fields
are rejected and every error names the file and the field, because a typo in a spec should
fail at load, not three tasks later.
"""

from __future__ import annotations

import datetime as dt
import difflib
import importlib.util
import json
import os
import re
import string
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipelines import hook_imports
from pipelines.errors import SpecError
from pipelines.metrics import METRICS, Task

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(value: Any) -> Any:
    """Accept `90s`, `30m`, `3h`, `1d` (and whatever pydantic takes for a timedelta)."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    return value


Duration = Annotated[dt.timedelta, BeforeValidator(parse_duration)]
ColumnType = Literal["int", "float", "str", "bool", "timestamp"]
FunctionRef = Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")]
Period = Literal["day", "hour", "month"]

PATH_PLACEHOLDERS = {"date": "the file's day, YYYY-MM-DD", "hour": "the file's hour, 00-23",
                     "month": "the file's month, YYYY-MM"}
"""Every placeholder a source `path` may contain, with what it stands for: the one list,
quoted by the message that refuses a path at load."""
PERIOD_PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "day": ("date",), "hour": ("date", "hour"), "month": ("month",)}
"""The placeholders a path of each delivery `period` must name: exactly these, so every file
names one whole period."""


def path_placeholders(path: str) -> list[str]:
    """The placeholders `path` names, in order (`legs/{date}.parquet` gives `['date']`).

    Raises ValueError on an unbalanced brace, as `str.format` would at ingest.
    """
    return [name for _, name, _, _ in string.Formatter().parse(path) if name is not None]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


PARTITION_DAY = "_partition_day"
"""Column pitstop adds to raw rows it hands to hooks: UTC midnight of the row's raw partition
(the UTC day of its event time, or of its file for a source without `event_time`)."""
FILE_COLUMN = "__pitstop_file"
"""Column pitstop adds while reading files, to name the file each row came from."""
RESERVED_PREFIX = "__pitstop"


def _reserved(column: str) -> str | None:
    """Why a source may not declare `column`, or None when it may."""
    if column == PARTITION_DAY:
        return "pitstop adds it to every raw row (the delivery day)"
    if column.startswith(RESERVED_PREFIX):
        return f"names starting with {RESERVED_PREFIX!r} are pitstop's own bookkeeping"
    return None


class Database(_Strict):
    """Where a database source's rows live: a table or a query, on a server named by a
    SQLAlchemy URL or an Airflow connection id, with the column that dates each row.

    Each ingest run reads the rows of its interval with bound parameters (`WHERE time_column
    >= :start AND time_column < :end`, UTC instants), so a query must not end in ORDER BY or
    LIMIT: it is wrapped as a subquery. `url` may name environment variables (`${PGPASSWORD}`)
    so that no password sits in the spec; a `conn_id` is looked up in Airflow's connections by
    the ingest task, which hands the library the resolved URL.
    """

    url: str | None = None
    """A SQLAlchemy URL, e.g. `postgresql+psycopg2://reader:${PGPASSWORD}@db/warehouse`."""
    conn_id: str | None = None
    """An Airflow connection id, resolved by the ingest task (`airflow connections add`)."""
    table: str | None = Field(None, pattern=r"^[A-Za-z_][\w$]*(\.[A-Za-z_][\w$]*)?$")
    """A table or view, optionally schema-qualified (`public.readings`)."""
    query: str | None = None
    """A SELECT whose result the interval's rows are taken from, instead of `table`."""
    time_column: str
    """The timestamp column that dates each row; it must be the source's `event_time`."""

    @model_validator(mode="after")
    def _check(self) -> Database:
        if (self.url is None) == (self.conn_id is None):
            raise ValueError("give exactly one of `url` (a SQLAlchemy URL) or `conn_id` (an "
                             "Airflow connection id)")
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        return self

    def selection(self) -> str:
        """The SELECT of one interval's rows, with `:start` and `:end` bound at run time."""
        rows = self.table if self.table is not None else f"({self.query}) AS source_query"
        return (f'SELECT * FROM {rows} WHERE "{self.time_column}" >= :start '
                f'AND "{self.time_column}" < :end')


FILE_DELIVERY = ("path", "format", "delimiter", "period", "period_zone")
"""The fields that say how a file source's rows are delivered, not what they are."""
DELIVERY_FIELDS = frozenset({*FILE_DELIVERY, "database"})
"""Left out of the definition hashes, so the same rows from files or from a database
(or in other files) give the same feature partitions and `dataset_id`."""


class Source(_Strict):
    """Files an upstream system delivers into the landing folder, one file per period, or
    the rows of a database table (`database`).

    `path` is relative to the landing folder and names the file's period: `{date}`
    (YYYY-MM-DD) for `period: day`, `{date}` and `{hour}` (00-23) for `period: hour`, `{month}`
    (YYYY-MM) for `period: month`. These are UTC periods, or with `period_zone: local` periods
    of the source's `timezone` (a local day lasts 23 or 25 hours on daylight-saving days).
    Each row's `event_time` must fall in its file's period. `events` sources deliver a file
    every period; `snapshot` sources (dimension tables) deliver one only when the table
    changes. A source without `event_time` cannot be cut into UTC days, so it delivers one
    file per UTC day.

    The lake keeps one raw partition per UTC day whatever the period: ingesting a UTC day
    reads every file whose period overlaps it (its 24 hour files, the local days it overlaps,
    two unless the zone is at UTC+0, or its month's file), publishes the rows of that day, and
    lists each file read with its sha256 in the partition's manifest (`source_files`). So a
    UTC day is ingested once all those files have landed (for local days, after the later of
    the two has ended), and a missing one is named. A month file must hold the whole month:
    it is refused while its month has not ended (by the run's clock plus `future_tolerance`),
    and ingesting one day of the month reads the file whole, checks all its rows and
    publishes that day's.

    A local `{hour}` is the wall-clock hour the rows show, which every instant has exactly
    one of: the hour a 25-hour day repeats (01 on 2013-11-03 in America/New_York) is one file
    holding both real hours, and the hour a 23-hour day skips (02 on 2013-03-10) has no file.
    That is how a system cutting files by its own clock names them.

    A `database` source has no files: each ingest run reads the rows whose `time_column`
    falls in its UTC days and publishes them like a file source's, checked with the same
    rules and suite. Its values must already have the declared types (a `float` column may
    hold integers); anything else fails naming the table, column and type.
    """

    period: Period = "day"
    """How much time one landing file holds: a `day`, an `hour` or a `month`."""
    period_zone: Literal["utc", "local"] = "utc"
    """Whether the path names UTC periods or periods of the source's `timezone` (`local`)."""
    path: str | None = None
    """Relative to the landing folder, naming exactly the placeholders of `period`."""
    database: Database | None = None
    """Read the rows from a database instead of files; see `Database`."""
    format: Literal["csv", "parquet"] = "csv"
    kind: Literal["events", "snapshot"] = "events"
    """`events`: a file every period, and ingesting a day whose file is missing fails naming
    it. `snapshot`: the state of a table, a file only when it changes; a period without one
    is no error and reports nothing, since the last earlier file stays in effect (how long a
    view may use it is the view's `ttl`). A snapshot expected every week is still a
    `snapshot`: check its cadence upstream, or with the view's `ttl`, which nulls features
    once the last file is older."""
    event_time: str | None = None
    """The column of when each row happened; it must fall in its file's period, and cuts
    the rows into UTC days. Without one, each file is one UTC day's rows."""
    timezone: str = "UTC"
    """The zone naive timestamps in the files are read in, and that of `period_zone: local`."""
    keys: list[str] = Field(min_length=1)
    columns: dict[str, ColumnType] = Field(min_length=1)
    suite: str | None = None
    delimiter: str = Field(",", min_length=1, max_length=1)
    """CSV only: the character between fields. Never guessed from the file, so a truncated
    or ragged file fails as what it is instead of being read with another delimiter."""
    min_rows: int = Field(1, ge=0)
    """Fewest rows one landing file may hold; a file with fewer fails ingest. Set 0 for a
    source whose periods may legitimately be empty, such as quiet hours (a header-only file
    then passes)."""
    allow_infinite: bool = False
    """Let `float` columns hold the non-finite values `inf`, `-inf` and `NaN`. Off by default:
    such a value fails ingest (it breaks means, scalers and most estimators, and a NaN passes
    for a missing value no check counted), with or without a GX suite. A missing value is an
    empty field (CSV) or a null (Parquet), which this rule never refuses."""
    future_tolerance: Duration = dt.timedelta(days=1)
    """How far past the run's clock an event time, or the start of the period a landing file
    is named for, may be; anything later fails ingest (an upstream clock or time-zone
    mistake). A month file's month must also have ended by then."""

    @field_validator("period", mode="before")
    @classmethod
    def _known_period(cls, period: Any) -> Any:
        """Another cadence is refused with what to do instead, not only the allowed values."""
        if isinstance(period, str) and period not in PERIOD_PLACEHOLDERS:
            raise ValueError(
                f"{period!r} is not a delivery period; use day, hour or month. Files of another "
                "cadence (one per week, say) are a `kind: snapshot` source whose `{date}` is "
                "the day each file is delivered (its rows hold until the next file), or are "
                "split into day files upstream")
        return period

    @field_validator("path")
    @classmethod
    def _check_placeholders(cls, path: str | None, info: ValidationInfo) -> str | None:
        """The path names exactly its period's placeholders, so each file is one period."""
        if path is None:
            return path
        try:
            found = path_placeholders(path)
        except ValueError as exc:
            raise ValueError(f"{path!r} is not a path template ({exc})") from exc
        period = info.data.get("period")
        if period is None:  # `period` itself is invalid, and its own error says so
            return path
        wanted = PERIOD_PLACEHOLDERS[period]
        if sorted(set(found)) != sorted(wanted):
            spelled = " and ".join(f"{{{name}}} ({PATH_PLACEHOLDERS[name]})" for name in wanted)
            raise ValueError(f"{path!r} names the placeholders {found}, but period: {period} "
                             f"needs {list(wanted)}: write {spelled}, or set `period` to the "
                             "files' cadence (day, hour or month)")
        return path

    @model_validator(mode="before")
    @classmethod
    def _dated_by_time_column(cls, data: Any) -> Any:
        """A database source's `event_time` is its `time_column` unless the spec names one."""
        database = data.get("database") if isinstance(data, dict) else None
        if isinstance(database, dict) and "event_time" not in data and database.get("time_column"):
            return {**data, "event_time": database["time_column"]}
        return data

    @model_validator(mode="after")
    def _check_origin(self) -> Source:
        if self.database is None:
            if self.path is None:
                raise ValueError("give `path` (landing files) or `database` (a table or query)")
            return self
        if given := [f for f in FILE_DELIVERY if f in self.model_fields_set]:
            raise ValueError(f"{given} describe landing files, which a `database` source has "
                             "none of; remove them")
        if self.event_time != self.database.time_column:
            raise ValueError(f"event_time {self.event_time!r} and database.time_column "
                             f"{self.database.time_column!r} differ: a database source's rows "
                             "are read and published by the day of one column; name it once, "
                             "as database.time_column")
        return self

    def definition(self) -> dict[str, Any]:
        """What the source's rows are, without how they are delivered (`DELIVERY_FIELDS`)."""
        return self.model_dump(mode="json", exclude=set(DELIVERY_FIELDS))

    @model_validator(mode="after")
    def _check_period_zone(self) -> Source:
        if self.event_time is None and (self.period, self.period_zone) != ("day", "utc"):
            raise ValueError("a source without `event_time` is published under the UTC day its "
                             "file names, so it needs period: day and period_zone: utc; declare "
                             "`event_time` to have its rows cut into UTC days")
        if self.period_zone == "utc":
            return self
        if "timezone" not in self.model_fields_set:
            raise ValueError("period_zone: local names periods of the source's `timezone`, "
                             "which is not set; set `timezone` (e.g. America/New_York)")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"timezone {self.timezone!r} is not a time zone pitstop knows "
                             "(period_zone: local needs one); use an IANA name such as "
                             "America/New_York") from exc
        return self

    @model_validator(mode="after")
    def _check(self) -> Source:
        if self.delimiter in ('"', "\n", "\r"):
            raise ValueError(f"delimiter {self.delimiter!r} cannot separate fields; use , ; | "
                             "or a tab")
        if self.format != "csv" and "delimiter" in self.model_fields_set:
            raise ValueError("`delimiter` applies to csv sources only; remove it")
        if self.kind == "events" and not self.event_time:
            raise ValueError("an events source needs `event_time` (the column that dates each row)")
        if self.event_time and self.columns.get(self.event_time) != "timestamp":
            raise ValueError(f"event_time {self.event_time!r} must be a `timestamp` column")
        if missing := [k for k in self.keys if k not in self.columns]:
            raise ValueError(f"keys {missing} are not declared in `columns`")
        for column in self.columns:
            if why := _reserved(column):
                raise ValueError(f"column {column!r} is reserved: {why}; rename that column in the "
                                 f"landing files")
        return self


class FeatureView(_Strict):
    """A function of raw rows that yields feature rows keyed by entity and event time.

    The function receives `{source: DataFrame}` holding the raw rows of the chunk plus
    `lookback` of history, and returns keys, `event_time`, optionally `created_time`, and
    feature columns. A row becomes usable `availability_lag` after its event time unless the
    function says when it was created; a training row only sees rows usable at its cutoff.
    """

    function: FunctionRef
    sources: list[str] = Field(min_length=1)
    keys: list[str] = Field(min_length=1)
    availability_lag: Duration = dt.timedelta(0)
    """How long after its `event_time` a row the function returns without `created_time`
    becomes known (`created_time = event_time + availability_lag`); a training row at cutoff
    t sees it only when `created_time <= t`. Set it to the upstream's real delivery delay."""
    lookback: Duration = dt.timedelta(0)
    """History the function needs before each chunk, e.g. `7d` for a 7-day rolling mean:
    computing days `[start, end)` hands the function the raw rows of `[start - lookback,
    end)`, the lookback rounded up to whole UTC days, and keeps only the rows it returns
    with `event_time` in `[start, end)`. So any chunking of a backfill gives the same rows, as
    long as a row depends on at most `lookback` of earlier raw rows."""
    ttl: Duration | None = None
    """How old a feature row may be and still be joined: a training row at cutoff t takes
    the latest row with `event_time` in `[t - ttl, t]`, else nulls. Without a ttl any earlier
    row qualifies."""
    description: str = ""
    columns: list[str] | None = Field(None, min_length=1, exclude=True)
    """The feature columns the function returns besides keys, `event_time` and
    `created_time`; the training set names them `<view>__<column>`. Optional: `pitstop
    validate` checks `model.features` against them, and without them runs the function on a
    few landed rows to learn them. A declaration, not a definition: it is left out of the
    feature-definition hash (the function's code is in it), so declaring changes no
    `dataset_id`."""


class Label(_Strict):
    """The label spine: one row per prediction with its cutoff (`prediction_time`)."""

    function: FunctionRef
    sources: list[str] = Field(min_length=1)
    entity: str
    prediction_time: str
    target: str
    columns: list[str] | None = Field(None, min_length=1, exclude=True)
    """The columns the function returns: `entity`, `prediction_time`, `target` and any
    context column a feature of `model.features` names. Optional, as for a view: `pitstop
    validate` checks `model.features` and the training suite against them, and without them
    runs the function on a few landed rows. Declare them when a label source is read from a
    database, which validate does not query. A declaration, not a definition: left out of
    the definition hashes."""


class Imputation(_Strict):
    """How missing values are filled before the estimator sees them.

    As-of joins leave nulls where no feature row was fresh enough; estimators that do not
    accept NaN (most of scikit-learn's) need them filled. `none` passes them through (fine
    for histogram gradient boosting).
    """

    numeric: Literal["none", "mean", "median", "zero"] = "none"
    categorical: Literal["none", "most_frequent", "constant"] = "none"


class Preprocessing(_Strict):
    """The column transformer in front of the estimator, part of what `pair_id` hashes.

    `encode` turns categoricals into numbers: `ordinal` (one column each, unknown and missing
    categories become NaN unless imputed) or `onehot` (one column per category, unknown ones
    all zero). `scale: standard` centres and scales the numeric columns.
    """

    impute: Imputation = Imputation()
    encode: Literal["ordinal", "onehot"] = "ordinal"
    scale: Literal["none", "standard"] = "none"


class ModelSpec(_Strict):
    """The model: its task, a scikit-learn estimator, params, seed, inputs and preprocessing.

    `estimator` names a class by import path (`sklearn.ensemble.RandomForestRegressor`) and
    `params` its arguments; or `build` names a hook (`module:function` in the pipeline's hooks
    folder) that returns an unfitted estimator, for anything params cannot express. Either
    way the estimator must fit `task`: a classifier for `binary` and `multiclass`, a regressor
    for `regression`. `random_state` is set from `seed` when the estimator takes one.
    """

    task: Task
    estimator: str | None = Field(None, pattern=r"^[\w.]+\.[A-Za-z_]\w*$")
    build: FunctionRef | None = None
    params: dict[str, Any] = {}
    seed: int
    features: list[str] = Field(min_length=1)
    categorical: list[str] = []
    preprocessing: Preprocessing = Preprocessing()

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if extra := [c for c in self.categorical if c not in self.features]:
            raise ValueError(f"categorical columns {extra} are not in `features`")
        if (self.estimator is None) == (self.build is None):
            raise ValueError("give exactly one of `estimator` (an import path) or `build` "
                             "(a hook `module:function` returning an unfitted estimator)")
        if self.build is not None and self.params:
            raise ValueError("`params` go with `estimator`; a `build` hook sets its own")
        return self


class Split(_Strict):
    """Time-based split: the last `eval_days` of the window evaluate, the rest train."""

    eval_days: int = Field(ge=1)


class Criteria(_Strict):
    """The registration gate, all declarative; metric names are the task's (see `docs/spec.md`).

    `min`/`max` are absolute floors and ceilings; `max_regression` is the change against the
    champion allowed on the bootstrap interval (a candidate is refused when it may be worse
    by more than that, at `confidence`); `slice_min` floors and `slice_max` ceilings apply to
    every slice with at least `slice_min_rows` rows. Known-problem tolerances live with the
    problems.
    """

    min: dict[str, float] = {}
    max: dict[str, float] = {}
    max_regression: dict[str, float] = {}
    confidence: float = Field(0.95, gt=0.5, lt=1)
    slice_min: dict[str, float] = {}
    slice_max: dict[str, float] = {}
    slice_min_rows: int = Field(200, ge=1)

    def metrics_named(self) -> dict[str, list[str]]:
        """Every metric a rule names, by field."""
        return {field: list(getattr(self, field)) for field in
                ("min", "max", "max_regression", "slice_min", "slice_max")}


class SliceSpec(_Strict):
    """A column to compute every metric per value of; numeric columns can be bucketed.

    `bins` are right-open edges: `[0, 6, 12]` gives the buckets `[0, 6)` and `[6, 12)`.
    Written in the spec as a plain column name or as `{column, bins}`.
    """

    column: str
    bins: list[float] | None = Field(None, min_length=2)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"column": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> SliceSpec:
        if self.bins is not None and sorted(set(self.bins)) != self.bins:
            raise ValueError(f"bins of {self.column!r} must be strictly increasing")
        return self

    @property
    def name(self) -> str:
        return f"{self.column}_bucket" if self.bins else self.column


def mean_shift_limit(limit: float | None, task: str) -> float:
    """A mean-shift limit as set, else the task's default: 0.5 standard deviations for
    regression, 0.1 (probability or share) otherwise."""
    if limit is not None:
        return limit
    return 0.5 if task == "regression" else 0.1


class Guardrails(_Strict):
    """Sanity checks on a candidate's predictions; any failure stops registration.

    Every task: predictions finite and not constant (`min_std`). The mean is compared with a
    reference: the champion's predictions on the same rows when there is a champion, else the
    training labels (so a seasonal evaluation window does not refuse a good model, while a
    shifted prediction scale is caught). `max_mean_shift` is in probability units for
    `binary` (default 0.1), in standard deviations of the training target for `regression`
    (default 0.5), and the largest change of a class's mean probability (against its share
    of the training labels, or the champion's mean probability) for `multiclass` (default
    0.1). `regression` also keeps the predicted range within `max_range_excess`
    standard deviations of the reference's range; `multiclass` checks that every row's
    probabilities sum to 1.
    """

    min_std: float = Field(1e-4, ge=0)
    max_mean_shift: float | None = Field(None, gt=0)
    max_range_excess: float = Field(1.0, ge=0)

    def mean_shift(self, task: str) -> float:
        return mean_shift_limit(self.max_mean_shift, task)


class Evaluation(_Strict):
    """How candidates are judged: slices, the threshold, the champion comparison, the gate.

    `problems` is a file beside the spec listing known problems and their case rows (see
    `pipelines/problems.py`); `bootstrap` resamples drawn for the metric-delta intervals.
    """

    slices: list[SliceSpec] = []
    threshold: float = Field(0.5, gt=0, lt=1)
    """Binary tasks: decide the positive class at this probability."""
    bootstrap: int = Field(200, ge=20, le=10_000)
    worst_slices: int = Field(5, ge=1)
    disagreements: int = Field(20, ge=1)
    problems: str | None = None
    criteria: Criteria = Criteria()
    guardrails: Guardrails = Guardrails()


class Schedules(_Strict):
    """Cron expressions (UTC); each run's data interval is [previous tick, this tick)."""

    ingest: str = "0 1 * * *"
    features: str = "0 2 * * *"
    train: str | None = "0 6 1 * *"
    score: str = "0 3 * * *"
    """The score DAG's daily tick; it also runs whenever a features run publishes days."""


class Score(_Strict):
    """Batch scoring: which registered version scores each day's spine rows.

    The version holding `alias` is pinned when a score run starts, so every day of one run
    is scored by the same version even if the alias moves meanwhile.
    """

    alias: str = Field("champion", pattern=r"^[A-Za-z0-9_-]+$")


class FeatureLimits(_Strict):
    """One feature's own limits, in place of the pipeline-wide ones."""

    max_psi: float | None = Field(None, gt=0)
    max_null_rate: float | None = Field(None, ge=0, le=1)
    limit_psi: bool = True
    """False for a feature that one day cannot spread like the reference by construction
    (a weekday, a date part): its PSI is still logged every day, but never breaches."""


class Monitoring(_Strict):
    """Limits on each scored day, against the reference kept when the version was registered
    (its evaluation rows' predictions and feature distributions). A breach fails that day's
    score run, without retry, naming the metric, the feature, the value and the limit; its
    predictions are kept but marked `usable: false` in their manifest.

    `max_mean_shift` is the largest change of the mean prediction from the reference's: in
    probability units for `binary` and `multiclass` (the top class's probability; default
    0.1), in standard deviations of the reference predictions for `regression` (default 0.5).
    PSI is computed on `bins` quantile bins of the reference (0.1 is a small shift, 0.25 a
    large one); `max_null_rate` bounds each feature's share of nulls after the as-of join.
    """

    max_mean_shift: float | None = Field(None, gt=0)
    max_prediction_psi: float = Field(0.25, gt=0)
    max_feature_psi: float = Field(0.25, gt=0)
    max_null_rate: float = Field(0.5, ge=0, le=1)
    features: dict[str, FeatureLimits] = {}
    """Per-feature limits by name in `model.features`, overriding the two above."""
    bins: int = Field(10, ge=2, le=100)

    def mean_shift(self, task: str) -> float:
        return mean_shift_limit(self.max_mean_shift, task)

    def feature_psi(self, feature: str) -> float | None:
        """The feature's PSI limit; None when it has none (`limit_psi: false`)."""
        own = self.features.get(feature)
        if own is not None and not own.limit_psi:
            return None
        return self.max_feature_psi if own is None or own.max_psi is None else own.max_psi

    def null_rate(self, feature: str) -> float:
        own = self.features.get(feature)
        return (self.max_null_rate if own is None or own.max_null_rate is None
                else own.max_null_rate)


class DagSettings(_Strict):
    """How Airflow runs this pipeline's tasks; today's defaults suit a daily pipeline.

    Bad data, spec and hook errors never retry whatever `retries` says: only infrastructure
    faults do. `execution_timeout` bounds every task, so nothing hangs forever.
    """

    owner: str = "pitstop"
    retries: int = Field(2, ge=0)
    retry_delay: Duration = dt.timedelta(seconds=30)
    max_active_runs: int = Field(4, ge=1)
    catchup: bool = False
    execution_timeout: Duration = dt.timedelta(hours=2)


class Pipeline(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    start_date: dt.date
    landing: str
    expectations: str = "../expectations"
    schedules: Schedules = Schedules()
    airflow: DagSettings = DagSettings()
    sources: dict[str, Source] = Field(min_length=1)
    feature_views: dict[str, FeatureView] = {}
    label: Label
    training_suite: str
    split: Split
    model: ModelSpec
    evaluation: Evaluation = Evaluation()
    score: Score = Score()
    monitoring: Monitoring = Monitoring()
    model_name: str

    @model_validator(mode="after")
    def _check_refs(self) -> Pipeline:
        for view_name, view in self.feature_views.items():
            if unknown := [s for s in view.sources if s not in self.sources]:
                raise ValueError(f"feature_views.{view_name}.sources: unknown sources {unknown}")
        if unknown := [s for s in self.label.sources if s not in self.sources]:
            raise ValueError(f"label.sources: unknown sources {unknown}")
        if unknown := [f for f in self.monitoring.features if f not in self.model.features]:
            raise ValueError(f"monitoring.features: {unknown} are not in model.features "
                             f"{self.model.features}")
        known = METRICS[self.model.task]
        for field, names in self.evaluation.criteria.metrics_named().items():
            if unknown := [n for n in names if n not in known]:
                raise ValueError(
                    f"evaluation.criteria.{field}: {unknown} are not {self.model.task} metrics; "
                    f"use {sorted(known)} (model.task is {self.model.task!r})")
        return self

    def hook_refs(self) -> dict[str, str]:
        """Every function the spec names in the hooks package, by the field naming it."""
        refs = {f"feature_views.{name}.function": view.function
                for name, view in self.feature_views.items()}
        refs["label.function"] = self.label.function
        if self.model.build is not None:
            refs["model.build"] = self.model.build
        return refs

    def suite_refs(self) -> dict[str, str]:
        """Every GX suite the spec names, by the field naming it."""
        refs = {f"sources.{name}.suite": source.suite
                for name, source in self.sources.items() if source.suite}
        refs["training_suite"] = self.training_suite
        return refs


class LoadedSpec:
    """A validated spec plus where it came from, so paths and hooks resolve next to it."""

    def __init__(self, pipeline: Pipeline, path: Path) -> None:
        self.pipeline = pipeline
        self.path = path.resolve()

    @property
    def name(self) -> str:
        return self.pipeline.name

    @property
    def hooks_dir(self) -> Path:
        """The pipeline's own Python hooks: `dags/<name>/` beside the spec."""
        return self.path.parent / self.pipeline.name

    @property
    def expectations_dir(self) -> Path:
        return (self.path.parent / self.pipeline.expectations).resolve()

    @property
    def problems_path(self) -> Path | None:
        """The known-problems file, relative to the spec; None when the spec names none."""
        problems = self.pipeline.evaluation.problems
        return (self.path.parent / problems).resolve() if problems else None

    def suite_path(self, suite: str) -> Path:
        return self.expectations_dir / f"{suite}.json"

    def landing_dir(self) -> Path:
        """`PITSTOP_LANDING` overrides the spec, so one pipeline can run on another copy."""
        raw = os.environ.get("PITSTOP_LANDING") or self.pipeline.landing
        from pipelines.settings import home

        expanded = raw.replace("${PITSTOP_HOME}", str(home()))
        return (self.path.parent / os.path.expandvars(expanded)).resolve()

    def resolve(self, ref: str) -> Callable[..., Any]:
        """Import `module:function` from the hooks folder; errors name the spec and the ref."""
        module_name, _, func_name = ref.partition(":")
        package = self.hooks_package
        loaded = sys.modules.get(package)
        if loaded is not None and list(getattr(loaded, "__path__", [])) != [str(self.hooks_dir)]:
            # the same pipeline name from another folder (a copy, a test): import afresh
            for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
                del sys.modules[name]
        if package not in sys.modules:
            init = self.hooks_dir / "__init__.py"
            if not init.exists():
                raise SpecError(f"{self.path}: hooks package {self.hooks_dir} has no __init__.py")
            spec = importlib.util.spec_from_file_location(
                package, init, submodule_search_locations=[str(self.hooks_dir)]
            )
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[package] = module
            spec.loader.exec_module(module)
        try:
            module = importlib.import_module(f"{package}.{module_name}")
            return getattr(module, func_name)
        except (ImportError, AttributeError) as exc:
            raise SpecError(f"{self.path}: cannot resolve hook {ref!r}: {exc}") from exc

    @property
    def hooks_package(self) -> str:
        """The module name the hooks folder is imported under, unique per pipeline."""
        return f"pitstop_hooks_{self.name}"

    def hook_file(self, ref: str) -> Path:
        """The file that defines a hook."""
        return self.hooks_dir / (ref.partition(":")[0].replace(".", "/") + ".py")

    def hook_files(self, ref: str) -> list[Path]:
        """The files of the hooks folder a hook's code is made of: its module, the folder's
        `__init__.py` and the helper modules it imports, transitively (`hook_imports`).
        Hashed into the view's or label's definition, so editing a helper recomputes the
        partitions of exactly the hooks that import it."""
        return hook_imports.local_modules(self.hooks_dir, ref.partition(":")[0],
                                          {self.hooks_package, self.hooks_dir.name})


def _parsed(path: Path, parse: Callable[[str], Any], malformed: type[Exception], what: str,
            form: str) -> Any:
    """The content of a spec or suite file; missing or malformed is a SpecError naming it."""
    try:
        return parse(path.read_text())
    except FileNotFoundError as exc:
        raise SpecError(f"{path}: {what} file not found") from exc
    except malformed as exc:
        raise SpecError(f"{path}: not valid {form}: {exc}") from exc


def load_suite(path: Path) -> dict[str, Any]:
    """A GX 1.x suite file as a dict; a missing or malformed file is a spec error naming it.

    Read without GX, whose import takes seconds, so that the DAG factory can check every
    suite a spec names each time it parses the DAG file; whether GX knows each expectation
    is left to the full check of `pitstop validate` (`pipelines/validation.py`).
    """
    suite = _parsed(path, json.loads, json.JSONDecodeError, "GX suite", "JSON")
    if (not isinstance(suite, dict) or suite.get("name") != path.stem
            or not isinstance(suite.get("expectations"), list)):
        old = isinstance(suite, dict) and "expectation_suite_name" in suite
        raise SpecError(f"{path}: a suite needs `name` equal to the file stem "
                        f"({path.stem!r}) and a list of `expectations`"
                        + (" (this is GX 0.x's `expectation_suite_name`)" if old else ""))
    for index, item in enumerate(suite["expectations"]):
        if (not isinstance(item, dict) or not isinstance(item.get("type"), str)
                or not isinstance(item.get("kwargs"), dict)):
            old = isinstance(item, dict) and "expectation_type" in item
            raise SpecError(f"{path}: expectations[{index}]: a GX 1.x expectation needs a "
                            "`type` string and a `kwargs` mapping"
                            + (" (GX 0.x's `expectation_type` is `type`)" if old else ""))
    return suite


def estimator_class(ref: str) -> type:
    """The class an import path names; ImportError/AttributeError say what is missing."""
    module_name, _, class_name = ref.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def _import_problem(exc: ImportError | AttributeError) -> str:
    """Why an estimator path does not import: a package that is not installed (say which,
    and to install it) or a path that names nothing in an installed one."""
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    top = (missing or "").partition(".")[0]
    if top and importlib.util.find_spec(top) is None:
        return (f"needs the package that provides module {top!r}, which is not installed; "
                f"install it into this environment (e.g. `uv pip install {top}`; the "
                "distribution name can differ from the module's) or choose an installed "
                "estimator")
    return (f"cannot be imported ({exc}); use an import path such as "
            "sklearn.ensemble.RandomForestRegressor")


def make_estimator(spec: LoadedSpec) -> Any:
    """An unfitted estimator as the spec declares it: class and params, or the `build` hook.

    `random_state` is set from the spec's seed whenever the estimator has one, so every
    random operation is seeded from the spec. Errors name the file and the field.
    """
    model = spec.pipeline.model
    if model.build is not None:
        estimator = spec.resolve(model.build)()
        where = f"model.build {model.build!r}"
    else:
        assert model.estimator is not None
        where = f"model.estimator {model.estimator!r}"
        try:
            cls = estimator_class(model.estimator)
        except (ImportError, AttributeError) as exc:
            raise SpecError(f"{spec.path}: {where} {_import_problem(exc)}") from exc
        try:
            estimator = cls(**model.params)
        except TypeError as exc:
            raise SpecError(f"{spec.path}: model.params do not fit {model.estimator}: {exc}"
                            ) from exc
    if not hasattr(estimator, "fit") or not hasattr(estimator, "get_params"):
        raise SpecError(f"{spec.path}: {where} is not a scikit-learn estimator (needs fit and "
                        "get_params)")
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=model.seed)
    return estimator


def check_model(spec: LoadedSpec) -> None:
    """The estimator imports, takes its params and fits `model.task`; else SpecError."""
    from sklearn.base import is_classifier, is_regressor

    model = spec.pipeline.model
    estimator = make_estimator(spec)
    where = f"model.{'build' if model.build else 'estimator'}"
    kind = ("classifier" if is_classifier(estimator)
            else "regressor" if is_regressor(estimator) else "neither classifier nor regressor")
    wanted = "regressor" if model.task == "regression" else "classifier"
    if kind != wanted:
        other = "regression" if kind == "regressor" else "binary or multiclass"
        raise SpecError(
            f"{spec.path}: {where}: {type(estimator).__name__} is a {kind}, but model.task is "
            f"{model.task!r}, which needs a {wanted}; choose a {wanted}"
            + (f", or set model.task: {other}" if kind in ("classifier", "regressor") else ""))
    if model.task != "regression" and not hasattr(estimator, "predict_proba"):
        raise SpecError(f"{spec.path}: {where}: {type(estimator).__name__} has no predict_proba; "
                        "the gate scores class probabilities (e.g. SVC needs probability=True)")


def _field_names(model: type[BaseModel]) -> set[str]:
    names = set(model.model_fields)
    for sub in model.__subclasses__():
        names |= _field_names(sub)
    return names


def error_message(error: Any) -> str:
    """pydantic's message for one refused field, with the closest field name any spec
    section has when the field is unknown (a misspelling): `lookbak` → `lookback`."""
    message = str(error["msg"])
    if error.get("type") == "extra_forbidden" and error.get("loc"):
        close = difflib.get_close_matches(str(error["loc"][-1]), sorted(_field_names(_Strict)),
                                          n=1, cutoff=0.75)
        if close:
            message += f"; did you mean {close[0]!r}?"
    return message


def load_yaml(text: str | bytes) -> Any:
    """YAML's safe subset, parsed by libyaml when PyYAML has it (a tenth of the pure-Python
    parser's time: the spec and its siblings are parsed at every DAG-file parse)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_spec(path: str | Path, check: bool = True) -> LoadedSpec:
    """Load and validate a spec; any problem raises SpecError naming the file and field.

    `check` also imports the estimator and checks it against the task (a second or so of
    scikit-learn imports the first time).
    """
    path = Path(path)
    data = _parsed(path, load_yaml, yaml.YAMLError, "spec", "YAML")
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec is a mapping of fields, got {type(data).__name__}")
    try:
        pipeline = Pipeline.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {error_message(err)}"
            for err in exc.errors()
        )
        raise SpecError(f"{path}: {problems}") from exc
    loaded = LoadedSpec(pipeline, path)
    if check:
        check_model(loaded)
    return loaded
