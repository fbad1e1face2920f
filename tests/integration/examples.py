"""Landing an example pipeline's real data, as its `land.py` does for `make run`."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

from pipelines.spec import load_spec


def land(spec_path: Path, start: dt.date, end: dt.date) -> None:
    """Run `dags/<name>/land.py`'s `land()` into the spec's landing folder for `[start, end)`."""
    spec = load_spec(spec_path, check=False)
    loader = importlib.util.spec_from_file_location(f"land_{spec.name}",
                                                    spec.hooks_dir / "land.py")
    assert loader and loader.loader
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    module.land(spec.landing_dir(), start, end)
