"""Time reading feature partitions with and without re-hashing them against their manifests.

    make bench-verify                        # = .venv/bin/python bench/verify_reads.py
    .venv/bin/python bench/verify_reads.py --rows 420          # partitions the example's size
    .venv/bin/python bench/verify_reads.py --days 30 --views 1 --reps 1

Timed: `features.read_features`, the reader a training set uses, over every partition of a
view, as pitstop runs it (each data file re-hashed against its manifest just before DuckDB
reads it, its stat compared just after: `lake.read_verified`). The peer, "the same read
without verification", is the same call with `lake.read_verified` replaced by a plain
hand-over of the paths. Also shown: the hashing alone (`lake.sha256_file` of every file).

The lake: the flights example's features when `<lake>/flights_delay/features` exists (after
`make run`; `--lake` and `--pipeline` point elsewhere), else generated partitions published
with `lake.publish_dir` (real manifests): `--days` days × `--views` views × `--rows` rows,
seeded, cached in bench/.data/verify-*/ (rebuilt only when the parameters change). The page
cache is warm for both ways (one read before the clock), as for a lake just written; wall and
CPU seconds (DuckDB's threads included) of each read, the median of `--reps` runs, the two
ways alternating. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines import features, lake  # noqa: E402

PEER = "the same read without verification"
DATA = Path(__file__).resolve().parent / ".data"
PIPELINE = "bench"
START = dt.date(2013, 1, 1)
VERSION = 1  # bump when the generating code changes, to invalidate the cache


def _day_frame(rng: np.random.Generator, day: dt.date, rows: int) -> pd.DataFrame:
    """One day of a feature view: an entity key, event and created times, four numbers and a
    category, like the example's views (sorted by event time, as `compute_view` writes them)."""
    midnight = pd.Timestamp(day, tz="UTC")
    event = midnight + pd.to_timedelta(np.sort(rng.integers(0, 86_400, rows)), unit="s")
    return pd.DataFrame({
        "entity": rng.integers(0, 5_000, rows, dtype=np.int64),
        "event_time": event,
        "created_time": event + pd.Timedelta(minutes=10),
        **{f"f{i}": rng.normal(0, 1, rows) for i in range(4)},
        "category": rng.choice(["a", "b", "c", "d", "e"], rows),
    })


def generated_lake(days: int, views: int, rows: int, seed: int) -> Path:
    """A lake of `views` views × `days` day partitions of `rows` rows, made once and cached."""
    params = {"version": VERSION, "days": days, "views": views, "rows": rows, "seed": seed}
    root = DATA / f"verify-{days}x{views}x{rows}-s{seed}"
    sidecar = root / "params.json"
    if sidecar.exists() and json.loads(sidecar.read_text()) == params:
        return root
    rng = np.random.default_rng(seed)
    for view in (f"view{v}" for v in range(views)):
        for day in lake.days(START, START + dt.timedelta(days=days)):
            table = pa.Table.from_pandas(_day_frame(rng, day, rows), preserve_index=False)

            def write(tmp: Path, table: pa.Table = table, view: str = view) -> dict[str, Any]:
                lake.write_parquet(table, tmp / lake.DATA_FILE)
                return {"pipeline": PIPELINE, "dataset": f"features/{view}"}

            lake.publish_dir(lake.partition_dir(lake.open_lake(root), PIPELINE, "features", view,
                                                day), write)
    sidecar.write_text(json.dumps(params))
    return root


def _unverified(partitions: list[lake.Partition], read: Callable[[list[str]], Any]) -> Any:
    """The peer: `lake.read_verified` without the verification, paths handed straight on."""
    return read([str(p.data_path) for p in partitions])


def _timed(run: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def _median(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def bench_view(partitions: list[lake.Partition], reps: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds of each way of reading one view's partitions."""
    def plain() -> Any:
        with mock.patch.object(lake, "read_verified", _unverified):
            return features.read_features(partitions)

    def verified() -> Any:
        return features.read_features(partitions)

    def hashing() -> None:
        for partition in partitions:
            lake.sha256_file(partition.data_path)

    assert plain().num_rows == verified().num_rows == sum(p.rows for p in partitions)
    runs: dict[str, list[tuple[float, float]]] = {"plain": [], "verified": [], "hash": []}
    for _ in range(reps):
        for name, run in (("plain", plain), ("verified", verified), ("hash", hashing)):
            runs[name].append(_timed(run))
    return {name: _median(found) for name, found in runs.items()}


def bench_line(view: str, partitions: list[lake.Partition], reps: int) -> str:
    mb = sum(p.data_path.stat().st_size for p in partitions) / 1e6
    got = bench_view(partitions, reps)
    (pw, pc), (vw, vc), (hw, hc) = got["plain"], got["verified"], got["hash"]
    return (f"{view:<16} {len(partitions):>5} {sum(p.rows for p in partitions):>11,} "
            f"{mb:8.1f} {pw:7.3f} s ({pc:6.3f}) {vw:7.3f} s ({vc:6.3f}) "
            f"{hw:7.3f} s ({hc:6.3f})  {vw / pw:5.2f}x ({vc / pc:4.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, default=None,
                        help="a lake to read (default: $PITSTOP_LAKE or $PITSTOP_HOME/lake)")
    parser.add_argument("--pipeline", default="flights_delay",
                        help="whose features to read in --lake (default flights_delay)")
    parser.add_argument("--days", type=int, default=365, help="generated: days per view")
    parser.add_argument("--views", type=int, default=3, help="generated: views")
    parser.add_argument("--rows", type=int, default=30_000, help="generated: rows a partition")
    parser.add_argument("--reps", type=int, default=3, help="runs of each way (median shown)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    store, pipeline = lake.open_lake(args.lake) if args.lake else lake.from_env(), args.pipeline
    root = store.root
    if not lake.pipeline_dir(store, pipeline, "features").is_dir():
        print(f"no {pipeline} features in {root}: generating {args.views} views x {args.days} "
              f"days x {args.rows:,} rows", flush=True)
        root, pipeline = generated_lake(args.days, args.views, args.rows, args.seed), PIPELINE
        store = lake.open_lake(root)
    views = sorted(p.name for p in lake.pipeline_dir(store, pipeline, "features").iterdir()
                   if p.is_dir())
    print(f"reading feature partitions with features.read_features, verified vs {PEER!r}; "
          f"{root}/{pipeline}; python {platform.python_version()}, {os.cpu_count()} cpus, "
          "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    print(f"wall seconds (cpu seconds), median of {args.reps} runs; hash: sha256 of every file "
          "alone; ratio: verified / without")
    print(f"{'view':<16} {'parts':>5} {'rows':>11} {'MB':>8} {'without':>18} "
          f"{'verified':>18} {'hash':>18}  ratio")
    for view in views:
        partitions = lake.list_partitions(store, pipeline, "features", view)
        print(bench_line(view, partitions, args.reps), flush=True)


if __name__ == "__main__":
    main()
