"""Seeded synthetic data for the point-in-time join benchmark, cached as Parquet in bench/.data/.

Features (`features_<n>.parquet`): `entity_id` int64 over 100k entities, `event_timestamp` and
`created` (TIMESTAMP WITH TIME ZONE, UTC), five float64 value columns `f0`..`f4`.
About 10% of the rows are corrections: they repeat an earlier row's (entity_id,
event_timestamp) with a later `created` and other values. `created >= event_timestamp`
always; most rows are written minutes after the event, some hours or days later (backfills).
(entity_id, event_timestamp, created) is unique, so every engine has one right answer.

Spine (`spine_<n>_f<m>.parquet`): `row_id` (0..n-1, the spine order, used only to compare
outputs), `entity_id`, `event_timestamp`, in random order. 2% of rows sit exactly on a feature
row's event time (tests `<=`), 1% repeat another spine row's (entity, time), 0.5% name an entity
that has no features at all.

A file is rebuilt only when it is missing or its `.json` sidecar holds other parameters.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

DATA = Path(__file__).resolve().parent / ".data"
VERSION = 1  # bump when the generating code changes, to invalidate the cache
START = pd.Timestamp("2024-01-01", tz="UTC")
N_VALUES = 5
CHUNK = 10_000_000


@dataclass(frozen=True)
class Params:
    seed: int = 42
    entities: int = 100_000
    days: int = 14  # feature event times spread over this many days
    correction_share: float = 0.10
    late_share: float = 0.05


def _human(n: int) -> str:
    for unit, size in (("B", 1_000_000_000), ("M", 1_000_000), ("k", 1_000)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def _fresh(path: Path, meta: dict) -> bool:
    side = path.with_suffix(".json")
    return path.exists() and side.exists() and json.loads(side.read_text()) == meta


def _seal(path: Path, meta: dict) -> None:
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1, sort_keys=True))


def _us(seconds: np.ndarray) -> np.ndarray:
    return seconds.astype(np.int64) * 1_000_000


def _ts(us_since_start: np.ndarray) -> pa.Array:
    base = START.value // 1000  # ns -> us
    return pa.array(us_since_start + base, type=pa.timestamp("us", tz="UTC"))


def _feature_arrays(n: int, p: Params) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([p.seed, 1, n])
    n_base = n - int(n * p.correction_share)
    entity = rng.integers(0, p.entities, n_base, dtype=np.int64)
    event = _us(rng.integers(0, p.days * 86_400, n_base))
    # time written: minutes after the event for most rows, hours to days for a few (backfills)
    lag = rng.exponential(600e6, n_base).astype(np.int64)
    late = rng.random(n_base) < p.late_share
    lag[late] = rng.integers(3_600_000_000, 3 * 86_400_000_000, late.sum())
    # corrections: same entity and event time as an existing row, written later
    n_fix = n - n_base
    src = rng.integers(0, n_base, n_fix)
    fix_lag = lag[src] + rng.exponential(6 * 3600e6, n_fix).astype(np.int64) + 1
    far = rng.random(n_fix) < 0.2
    fix_lag[far] += rng.integers(0, 7 * 86_400_000_000, far.sum())
    entity = np.concatenate([entity, entity[src]])
    event = np.concatenate([event, event[src]])
    created = event + np.concatenate([lag, fix_lag])
    order = rng.permutation(n)
    entity, event, created = entity[order], event[order], created[order]
    # make (entity, event, created) unique (collisions are astronomically rare; be sure)
    key = np.lexsort((created, event, entity))
    dup = np.zeros(n, dtype=bool)
    ks = key[1:]
    kp = key[:-1]
    dup[ks] = (entity[ks] == entity[kp]) & (event[ks] == event[kp]) & (created[ks] == created[kp])
    keep = ~dup
    values = rng.standard_normal((n, N_VALUES))[keep]
    return {"entity_id": entity[keep], "event": event[keep], "created": created[keep],
            "values": values}


def features(n: int, p: Params = Params()) -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"features_{_human(n)}.parquet"
    meta = {"kind": "features", "rows": n, "version": VERSION, **asdict(p)}
    if _fresh(path, meta):
        return path
    t0 = time.perf_counter()
    a = _feature_arrays(n, p)
    cols = {"entity_id": pa.array(a["entity_id"]), "event_timestamp": _ts(a["event"]),
            "created": _ts(a["created"])}
    for i in range(N_VALUES):
        cols[f"f{i}"] = pa.array(a["values"][:, i])
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.table(cols), tmp, row_group_size=1_000_000, compression="zstd")
    tmp.rename(path)
    _seal(path, meta)
    print(f"generated {path.name}: {len(a['entity_id']):,} rows in "
          f"{time.perf_counter() - t0:.1f}s", flush=True)
    return path


def spine(n: int, n_features: int, p: Params = Params()) -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"spine_{_human(n)}_f{_human(n_features)}.parquet"
    meta = {"kind": "spine", "rows": n, "feature_rows": n_features, "version": VERSION,
            **asdict(p)}
    if _fresh(path, meta):
        return path
    feats = features(n_features, p)
    t0 = time.perf_counter()
    ft = pq.read_table(feats, columns=["entity_id", "event_timestamp"])
    f_entity = ft["entity_id"].to_numpy()
    f_event = ft["event_timestamp"].cast(pa.int64()).to_numpy() - START.value // 1000
    del ft
    rng = np.random.default_rng([p.seed, 2, n, n_features])
    schema = pa.schema([("row_id", pa.int64()), ("entity_id", pa.int64()),
                        ("event_timestamp", pa.timestamp("us", tz="UTC"))])
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema, compression="zstd") as out:
        for lo in range(0, n, CHUNK):
            m = min(CHUNK, n - lo)
            entity = rng.integers(0, p.entities, m, dtype=np.int64)
            event = _us(rng.integers(0, (p.days + 1) * 86_400, m))
            u = rng.random(m)
            on_feature = u < 0.02
            pick = rng.integers(0, len(f_entity), on_feature.sum())
            entity[on_feature] = f_entity[pick]
            event[on_feature] = f_event[pick]
            repeat = (u >= 0.02) & (u < 0.03)
            src = rng.integers(0, m, repeat.sum())
            entity[repeat] = entity[src]
            event[repeat] = event[src]
            unknown = (u >= 0.03) & (u < 0.035)
            entity[unknown] = p.entities + rng.integers(0, p.entities, unknown.sum())
            table = pa.table({"row_id": pa.array(np.arange(lo, lo + m, dtype=np.int64)),
                              "entity_id": pa.array(entity), "event_timestamp": _ts(event)},
                             schema=schema)
            out.write_table(table, row_group_size=1_000_000)
    tmp.rename(path)
    _seal(path, meta)
    print(f"generated {path.name}: {n:,} rows in {time.perf_counter() - t0:.1f}s", flush=True)
    return path


def case_files(spine_rows: int, feature_rows: int, p: Params = Params()) -> tuple[Path, Path]:
    """(spine path, features path) for a case, generating them if not cached."""
    f = features(feature_rows, p)
    return spine(spine_rows, feature_rows, p), f


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spine", type=float, required=True, help="spine rows, e.g. 1e6")
    ap.add_argument("--features", type=float, required=True, help="feature rows, e.g. 1e7")
    ap.add_argument("--seed", type=int, default=Params.seed)
    args = ap.parse_args()
    s, f = case_files(int(args.spine), int(args.features), Params(seed=args.seed))
    print(s, f, sep="\n")


if __name__ == "__main__":
    main()
