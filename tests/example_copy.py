"""A copy of an example (aircraft_utilisation unless named) in a test's own folder, to break
on purpose or to change where its data comes from."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = "aircraft_utilisation"


def copy_example(folder: Path, name: str = EXAMPLE,
                 edit: Callable[[dict[str, Any]], Any] | None = None,
                 example: str = EXAMPLE) -> Path:
    """`folder/<name>.yaml` with its hooks folder `folder/<name>/` and the suites in
    `folder/expectations/`, renamed to `name` and landing under `folder/landing/<name>`;
    `edit` changes the spec's data before it is written. Returns the spec's path."""
    folder.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((ROOT / "dags" / f"{example}.yaml").read_text())
    data.update(name=name, model_name=name, landing=str(folder / "landing" / name),
                expectations="expectations")
    data["evaluation"]["problems"] = f"{name}/problems.yaml"
    shutil.copytree(ROOT / "dags" / example, folder / name,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "expectations", folder / "expectations", dirs_exist_ok=True)
    if edit is not None:
        edit(data)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
