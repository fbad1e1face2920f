"""Land the upstream files of airport_visibility: the flights example's own files, shared.

This pipeline reads the same upstream delivery as flights_delay (`weather/{date}.csv` and
`flights/{date}.csv` under `${PITSTOP_HOME}/landing/flights_delay`, the spec's `landing`), so
landing is the flights example's `land()`, loaded from its file rather than copied. It writes
only files that are missing, so landing for either pipeline, in any order, gives the same
folder. Like the flights example's, it also lands the planes snapshot on `start`, which this
pipeline does not read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
from pathlib import Path
from types import ModuleType

from pipelines.spec import load_spec

SPEC = Path(__file__).resolve().parent.parent / "airport_visibility.yaml"
FLIGHTS_LAND = Path(__file__).resolve().parent.parent / "flights_delay" / "land.py"


def _flights_land() -> ModuleType:
    loader = importlib.util.spec_from_file_location("flights_delay_land", FLIGHTS_LAND)
    assert loader and loader.loader, FLIGHTS_LAND
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


def land(landing: Path, start: dt.date, end: dt.date) -> int:
    """Write the missing daily files of [start, end); return how many were written."""
    return _flights_land().land(landing, start, end)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2013, 1, 1))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2014, 1, 2))
    args = parser.parse_args()
    landing = load_spec(SPEC, check=False).landing_dir()
    count = land(landing, args.start, args.end)
    print(f"landed {count} new files for {args.start}..{args.end} under {landing}")


if __name__ == "__main__":
    main()
