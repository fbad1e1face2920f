"""Database sources against a real PostgreSQL: one interval's rows, typed, hashed and
published exactly as the same rows from landing files are."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from pipelines import ingest, lake, lineage, sql_source
from pipelines.errors import DataError, SpecError
from pipelines.spec import LoadedSpec, Source
from tests.unit.conftest import D1, D2, D4, amend, write_readings


@pytest.fixture(scope="module")
def readings_db(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny pipeline's three days of readings in table `readings` (a row of a fourth day
    too, which no read of the first three may return), and look-alike tables with a wrong
    type and a missing column. The URL carries a password, which the socket's trust
    authentication ignores, so redaction can be seen."""
    landing = tmp_path_factory.mktemp("readings")
    frame = pd.concat([write_readings(landing, D1 + dt.timedelta(days=offset))
                       for offset in range(4)])
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as con:
        frame.to_sql("readings", con, index=False)
        frame.astype({"value": str}).to_sql("readings_text", con, index=False)
        frame.drop(columns="value").to_sql("readings_short", con, index=False)
    engine.dispose()
    return make_url(postgres_url).set(password="s3cret").render_as_string(hide_password=False)


def _from_db(spec: LoadedSpec, url: str | None = None, **database: str | None) -> LoadedSpec:
    """The tiny spec with `readings` read from the database (`database` fields; None drops one)."""
    file_source = spec.pipeline.sources["readings"]
    fields = file_source.model_dump(exclude={"path", "event_time"}, exclude_unset=True)
    wanted: dict[str, str | None] = {"table": "readings", "time_column": "ts", **database}
    if url is not None:
        wanted["url"] = url
    source = Source.model_validate({**fields, "database": wanted})
    return amend(spec, sources={"readings": source})


def test_same_rows_as_the_files_give_the_same_partitions(
        tiny: LoadedSpec, readings_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_files = ingest.ingest(lake.from_env(), tiny, "readings", D1, D4)
    monkeypatch.setenv("PITSTOP_LAKE", str(tmp_path / "db_lake"))
    spec = _from_db(tiny, readings_db)
    from_db = ingest.ingest(lake.from_env(), spec, "readings", D1, D4)
    assert from_db.rows == 3 * 72
    assert [p["sha256"] for p in from_db.partitions] == [p["sha256"] for p in from_files.partitions]
    assert lineage.feature_definitions_hash(spec) == lineage.feature_definitions_hash(tiny)

    manifest = lake.list_partitions(lake.from_env(), "sensors", "raw", "readings")[0].manifest
    record = manifest["source_query"]
    assert "s3cret" not in str(manifest)
    assert record["connection"].startswith("postgresql+psycopg2://postgres@/postgres?host=")
    assert record["query"].startswith(
        'SELECT * FROM readings WHERE "ts" >= :start AND "ts" < :end [start=2024-01-01T00:00')
    assert record["rows"] == 72
    day_rows = pq.read_table(next((tmp_path / "db_lake").rglob(f"date=2024-01-01/**/{lake.DATA_FILE}")))
    assert record["sha256"] == sql_source.rows_sha256(day_rows, ["sensor", "ts"])
    assert "source_files" not in manifest


def test_a_read_returns_only_its_interval(tiny: LoadedSpec, readings_db: str) -> None:
    source = _from_db(tiny, readings_db).pipeline.sources["readings"]
    start = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    read = sql_source.read_interval(readings_db, source, "sensors.yaml: sources.readings",
                                    start, start + dt.timedelta(days=1))
    times = read.table.column("ts").to_pylist()
    assert read.table.num_rows == 72
    assert min(times) == start and max(times) == start + dt.timedelta(hours=23)


def test_a_query_source_reads_like_its_table(tiny: LoadedSpec, readings_db: str) -> None:
    query = "SELECT sensor, ts, value * 1 AS value FROM readings WHERE sensor <> 'c'"
    spec = _from_db(tiny, readings_db, table=None, query=query)
    result = ingest.ingest(lake.from_env(), spec, "readings", D1, D2)
    assert result.rows == 2 * 24


def test_the_row_hash_ignores_order_and_sees_values() -> None:
    table = pa.table({"k": [2, 1, 3], "v": [0.5, 0.25, 1.0]})
    digest = sql_source.rows_sha256(table, ["k"])
    assert sql_source.rows_sha256(table.take([2, 0, 1]), ["k"]) == digest
    assert sql_source.rows_sha256(table.set_column(1, "v", pa.array([0.5, 0.25, 2.0])),
                                  ["k"]) != digest


@pytest.mark.parametrize(("table", "message"), [
    ("readings_text", "readings_text: column 'value' holds str values (e.g. '0."),
    ("readings_short", "readings_short: columns ['value'] declared in the spec are missing"),
    ("no_such_table", 'no_such_table: the database refused sensors.yaml: sources.readings'
                      ".database's rows: relation \"no_such_table\" does not exist"),
])
def test_a_table_that_does_not_fit_the_spec_fails_naming_it(
        tiny: LoadedSpec, readings_db: str, table: str, message: str) -> None:
    spec = _from_db(tiny, readings_db, table=table)
    with pytest.raises(DataError) as error:
        ingest.ingest(lake.from_env(), spec, "readings", D1, D2)
    assert message in str(error.value)
    assert "s3cret" not in str(error.value)
    if table == "readings_text":
        assert "declares it float" in str(error.value)


def test_a_connection_id_needs_airflow_to_resolve_it(tiny: LoadedSpec) -> None:
    spec = _from_db(tiny, conn_id="readings_db")
    with pytest.raises(SpecError, match="conn_id 'readings_db' is an Airflow connection"):
        ingest.ingest(lake.from_env(), spec, "readings", D1, D2)


def test_an_unchanged_day_of_a_table_is_skipped_and_a_changed_row_recomputes_its_day(
        tiny: LoadedSpec, readings_db: str) -> None:
    """A database day's fingerprint is the hash of its rows: the rows are read again (there
    is no file to hash), and only a day whose rows changed is validated and published again."""
    from tests.unit.test_skipping import INPUTS, SKIPPED

    engine = sqlalchemy.create_engine(readings_db)
    with engine.begin() as con:
        con.execute(sqlalchemy.text("CREATE TABLE readings_edit AS SELECT * FROM readings"))
    spec = _from_db(tiny, readings_db, table="readings_edit")
    first = ingest.ingest(lake.from_env(), spec, "readings", D1, D4)
    again = ingest.ingest(lake.from_env(), spec, "readings", D1, D4)
    assert again.tally == {SKIPPED: 3} and again.partitions == first.partitions
    with engine.begin() as con:
        con.execute(sqlalchemy.text(
            "UPDATE readings_edit SET value = value + 1 WHERE sensor = 'a' AND ts = :at"),
            {"at": dt.datetime(2024, 1, 2, 5, tzinfo=dt.UTC)})
    engine.dispose()
    changed = ingest.ingest(lake.from_env(), spec, "readings", D1, D4)
    assert changed.tally == {INPUTS: 1, SKIPPED: 2}
    assert [p["sha256"] == q["sha256"] for p, q in zip(changed.partitions, first.partitions,
                                                       strict=True)] == [True, False, True]


def test_a_sqlite_table_whose_times_are_text_gives_the_files_partitions(
        tiny: LoadedSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by a stranger: SQLite has no timestamp type, so a table pandas wrote returns its
    times as ISO-8601 text. Such text is read as times (as in a CSV); other text is refused."""
    from_files = ingest.ingest(lake.from_env(), tiny, "readings", D1, D4)
    frame = pd.concat([pd.read_csv(p, parse_dates=["ts"])
                       for p in sorted((tiny.landing_dir() / "readings").glob("*.csv"))])
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    engine = sqlalchemy.create_engine(url)
    frame.to_sql("readings", engine, index=False)
    frame.assign(ts=frame["ts"].dt.strftime("%Y-%m-%dT%H:%M UTC")).to_sql("readings_utc",
                                                                           engine, index=False)
    engine.dispose()
    monkeypatch.setenv("PITSTOP_LAKE", str(tmp_path / "sqlite_lake"))
    from_db = ingest.ingest(lake.from_env(), _from_db(tiny, url), "readings", D1, D4)
    assert [p["sha256"] for p in from_db.partitions] == [p["sha256"] for p in from_files.partitions]
    with pytest.raises(DataError, match=r"column 'ts' holds str values \(e.g. '2024-01-01T00:00 UTC'"):
        ingest.ingest(lake.from_env(), _from_db(tiny, url, table="readings_utc"), "readings",
                      D1, D4)


def test_a_suite_failure_in_a_table_names_the_table_and_the_rows_keys(
        tiny: LoadedSpec, readings_db: str) -> None:
    """A table has no file to fix: the message names the table and the failing rows by the
    source's keys, so the row can be found and corrected upstream."""
    from pipelines.quality import ValidationFailed
    from tests.unit.conftest import between_suite

    between_suite(tiny, "sensors_readings", "value", 1.0)
    engine = sqlalchemy.create_engine(readings_db)
    with engine.begin() as con:
        con.execute(sqlalchemy.text("CREATE TABLE readings_bad AS SELECT * FROM readings"))
        con.execute(sqlalchemy.text(
            "UPDATE readings_bad SET value = 7.5 WHERE sensor = 'b' AND ts = :at"),
            {"at": dt.datetime(2024, 1, 2, 5, tzinfo=dt.UTC)})
    engine.dispose()
    spec = _from_db(tiny, readings_db, table="readings_bad")
    source = spec.pipeline.sources["readings"].model_copy(update={"suite": "sensors_readings"})
    spec = amend(spec, sources={"readings": source})
    with pytest.raises(ValidationFailed) as error:
        ingest.ingest(lake.from_env(), spec, "readings", D1, D4)
    message = str(error.value)
    assert "expect_column_values_to_be_between on column 'value': 1 rows break it" in message
    assert ": readings_bad (rows sensor=b ts=2024-01-02 05:00:00+00:00); rule " in message
    assert "s3cret" not in message
    assert lake.list_partitions(lake.from_env(), "sensors", "raw", "readings") == []
