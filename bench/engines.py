"""One point-in-time join engine, run as its own process by bench/run.py.

    python bench/engines.py ENGINE --spine S.parquet --features F.parquet --out O.parquet \
        --ttl-seconds 86400 --result R.json

Every engine reads the same Parquet files and writes its result as Parquet: the spine columns
(`row_id`, `entity_id`, `event_timestamp`) plus the feature values `f0`..`f4` of the feature
row with the greatest `event_timestamp <= spine event_timestamp`, ties broken by the greatest
`created`, null when that row is older than the TTL. The timed section runs from reading the
inputs to the written output; interpreter start, imports and (for Feast) `apply` of the feature
repo are outside it. Imports are lazy so the Feast engines can run from bench/.venv-feast,
which has no pitstop.

ENGINE is one of ENGINES below. The result JSON holds {"seconds": ..., "rows": ...}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

KEY, TIME, CREATED = "entity_id", "event_timestamp", "created"
VALUES = [f"f{i}" for i in range(5)]


def _shim_register(pit) -> None:
    """Work around pipelines/pit.py's `_register` on DuckDB >= 2.0: it passes the Parquet file
    list as a prepared parameter to CREATE VIEW, which DuckDB refuses ("Unexpected prepared
    parameter"), so Parquet-path inputs fail. Same SQL, with the list inlined as a literal."""
    original = pit._register

    def register(con, name, data, numbered):
        if not isinstance(data, (str, Path)):
            return original(con, name, data, numbered)
        files = "[" + ", ".join("'" + f.replace("'", "''") + "'"
                                for f in pit._parquet_files(data)) + "]"
        if numbered:
            con.execute(
                f"CREATE TEMP VIEW {name} AS SELECT * EXCLUDE (__pitstop_file, file_row_number), "
                f"row_number() OVER (ORDER BY __pitstop_file, file_row_number) - 1 AS {pit.ROW} "
                f"FROM read_parquet({files}, filename = '__pitstop_file', file_row_number = true)")
        else:
            con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM read_parquet({files})")

    pit._register = register


def preload(engine: str) -> None:
    """Import the engine's libraries before the clock starts, so that no engine is timed
    for its imports (pipelines.pit alone pulls in pandas and pyarrow: 1.2 s here)."""
    if engine.startswith("pitstop"):
        # PITSTOP_BENCH_PIT_DIR: a folder holding a `pipelines` package extracted from a git
        # revision (run.py --pit-rev); default: the working tree
        sys.path.insert(0, os.environ.get("PITSTOP_BENCH_PIT_DIR")
                        or str(Path(__file__).resolve().parents[1]))
        import pipelines.pit  # noqa: F401
    elif engine in {"duckdb", "pandas", "polars"}:
        __import__(engine)
    # Feast: its imports and `apply` run before run_feast restarts the clock


def run_pitstop(spine: str, features: str, out: str, ttl: int, known_at_time: bool,
                info: dict) -> None:
    import duckdb

    from pipelines import pit

    def join() -> None:
        pit.point_in_time_join(spine, features, [KEY], TIME, TIME, created_time=CREATED,
                               ttl=dt.timedelta(seconds=ttl), known_at_time=known_at_time,
                               output=out)

    try:
        join()
    except duckdb.BinderException as err:
        if "Unexpected prepared parameter" not in str(err):
            raise
        _shim_register(pit)
        info["shim"] = "pit._register: Parquet file list inlined (prepared parameter refused)"
        info["start"] = time.perf_counter()  # time only the working run
        join()


def run_duckdb(spine: str, features: str, out: str, ttl: int) -> None:
    """The ASOF JOIN a DuckDB user would write: keep the latest `created` per (key, time),
    ASOF LEFT JOIN, null out values older than the TTL. Output order is not the spine's."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    fresh = f"f.__ft >= s.{TIME} - INTERVAL '{ttl} seconds'"
    picked = ", ".join(f"CASE WHEN {fresh} THEN f.{v} END AS {v}" for v in VALUES)
    con.execute(f"""
        COPY (
            WITH f AS (
                SELECT {KEY}, {TIME} AS __ft, {', '.join(VALUES)}
                FROM read_parquet('{features}')
                QUALIFY row_number() OVER (PARTITION BY {KEY}, {TIME} ORDER BY {CREATED} DESC) = 1
            )
            SELECT s.*, {picked}
            FROM read_parquet('{spine}') s
            ASOF LEFT JOIN f ON s.{KEY} = f.{KEY} AND s.{TIME} >= f.__ft
        ) TO '{out}' (FORMAT parquet, COMPRESSION zstd)
    """)
    con.close()


def run_pandas(spine: str, features: str, out: str, ttl: int) -> None:
    """merge_asof takes the last right row among equal times, so sort by (time, created)."""
    import numpy as np
    import pandas as pd

    s = pd.read_parquet(spine)
    f = pd.read_parquet(features, columns=[KEY, TIME, CREATED, *VALUES])
    f = f.sort_values([TIME, CREATED], kind="stable").drop(columns=[CREATED])
    order = np.argsort(s[TIME].array.asi8, kind="stable")
    left = s.iloc[order].reset_index(drop=True)
    joined = pd.merge_asof(left, f, on=TIME, by=KEY, direction="backward",
                           allow_exact_matches=True, tolerance=pd.Timedelta(seconds=ttl))
    result = joined.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    result.to_parquet(out, index=False, compression="zstd")


def run_polars(spine: str, features: str, out: str, ttl: int) -> None:
    """join_asof takes the last right row among equal times, so sort by (time, created)."""
    import warnings

    import polars as pl

    warnings.filterwarnings("ignore", message="Sortedness of columns cannot be checked")
    s = pl.scan_parquet(spine).with_row_index("__pos").sort(TIME)
    f = pl.scan_parquet(features).select(KEY, TIME, CREATED, *VALUES).sort(TIME, CREATED)
    joined = s.join_asof(f.drop(CREATED), on=TIME, by=KEY, strategy="backward",
                         tolerance=f"{ttl}s")
    joined.sort("__pos").drop("__pos").collect().write_parquet(out, compression="zstd")


def _feast_store(repo: Path, features: str, ttl: int, offline: str):
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from feast.repo_config import RepoConfig
    from feast.types import Float64

    if offline == "duckdb":
        from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
        offline_cfg = DuckDBOfflineStoreConfig()
    else:
        from feast.infra.offline_stores.dask import DaskOfflineStoreConfig
        offline_cfg = DaskOfflineStoreConfig(type="file")
    config = RepoConfig(
        project="bench", provider="local", registry=str(repo / "registry.db"),
        offline_store=offline_cfg,
        online_store=SqliteOnlineStoreConfig(path=str(repo / "online.db")),
        entity_key_serialization_version=3, repo_path=str(repo),
    )
    store = FeatureStore(config=config)
    entity = Entity(name="entity", join_keys=[KEY], value_type=ValueType.INT64)
    source = FileSource(name="feats", path=str(Path(features).resolve()), timestamp_field=TIME,
                        created_timestamp_column=CREATED)
    view = FeatureView(name="fv", entities=[entity], ttl=dt.timedelta(seconds=ttl),
                       schema=[Field(name=v, dtype=Float64) for v in VALUES], source=source)
    store.apply([entity, view])
    return store


def run_feast(spine: str, features: str, out: str, ttl: int, offline: str,
              filter_created: bool, clock: dict) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="bench-feast-") as repo:
        store = _feast_store(Path(repo), features, ttl, offline)
        clock["start"] = time.perf_counter()  # feature-repo setup is not timed
        entity_df = pd.read_parquet(spine)  # Feast takes the spine as a DataFrame
        job = store.get_historical_features(
            entity_df=entity_df, features=[f"fv:{v}" for v in VALUES],
            filter_by_created_timestamp=filter_created)
        pq.write_table(job.to_arrow(), out, compression="zstd")


ENGINES = {
    # name: (venv, short description)
    "pitstop": ("main", "pitstop point_in_time_join, known_at_time=False (peer semantics)"),
    "pitstop-default": ("main", "pitstop point_in_time_join, known_at_time=True (its default)"),
    "duckdb": ("main", "raw DuckDB: QUALIFY latest created per (key,time) + ASOF LEFT JOIN"),
    "pandas": ("main", "pandas merge_asof(by=entity_id, tolerance=ttl)"),
    "polars": ("main", "polars join_asof(by=entity_id, tolerance=ttl)"),
    "feast-duckdb": ("feast", "Feast get_historical_features, DuckDB offline store"),
    "feast-file": ("feast", "Feast get_historical_features, file (Dask) offline store"),
    "feast-duckdb-created": ("feast", "Feast DuckDB store, filter_by_created_timestamp=True"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("engine", choices=sorted(ENGINES))
    ap.add_argument("--spine", required=True)
    ap.add_argument("--features", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ttl-seconds", type=int, default=86_400)
    ap.add_argument("--result", required=True)
    a = ap.parse_args()
    os.environ.setdefault("FEAST_USAGE", "False")
    preload(a.engine)
    clock = {"start": time.perf_counter()}
    args = (a.spine, a.features, a.out, a.ttl_seconds)
    if a.engine == "pitstop":
        run_pitstop(*args, known_at_time=False, info=clock)
    elif a.engine == "pitstop-default":
        run_pitstop(*args, known_at_time=True, info=clock)
    elif a.engine == "duckdb":
        run_duckdb(*args)
    elif a.engine == "pandas":
        run_pandas(*args)
    elif a.engine == "polars":
        run_polars(*args)
    elif a.engine.startswith("feast-"):
        offline = "file" if a.engine == "feast-file" else "duckdb"
        run_feast(*args, offline=offline, filter_created=a.engine.endswith("-created"),
                  clock=clock)
    seconds = time.perf_counter() - clock["start"]
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(a.out).metadata.num_rows
    result = {"seconds": seconds, "rows": rows}
    if "shim" in clock:
        result["shim"] = clock["shim"]
    Path(a.result).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
