"""Identity: the content hashes that name datasets, code and model/dataset pairs.

IDs are derived from content, never from clocks or counters, so the same inputs always get
the same ID: that is what lets a re-run recognise work already done and an auditor re-hash
what is stored to prove it has not changed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipelines.lake import sha256_file, sha256_json

if TYPE_CHECKING:
    from pipelines.spec import LoadedSpec

PACKAGE_DIR = Path(__file__).resolve().parent


def frame_content_hash(frame: pd.DataFrame, definitions_hash: str) -> str:
    """sha256 of every value (row order as given), the schema and the feature definitions.

    Callers pass rows in a canonical (key) order, so equal content gives an equal hash.
    """
    digest = hashlib.sha256()
    digest.update(sha256_json({c: str(t) for c, t in frame.dtypes.items()}).encode())
    digest.update(definitions_hash.encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def feature_definitions_hash(spec: LoadedSpec) -> str:
    """Hash of every view's and the label's declaration plus the source of its hook module."""
    pipeline = spec.pipeline
    parts: dict[str, Any] = {}
    for name, view in pipeline.feature_views.items():
        parts[f"view:{name}"] = {"spec": view.model_dump(mode="json"),
                                 "code": sha256_file(spec.hook_file(view.function))}
    parts["label"] = {"spec": pipeline.label.model_dump(mode="json"),
                      "code": sha256_file(spec.hook_file(pipeline.label.function))}
    parts["sources"] = {n: s.model_dump(mode="json") for n, s in pipeline.sources.items()}
    return sha256_json(parts)


def _tree_files(folder: Path, label: str) -> dict[str, Path]:
    return {f"{label}/{p.relative_to(folder)}": p for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def code_files(spec: LoadedSpec) -> dict[str, Path]:
    """The code a model depends on, by location-independent name: the library, the spec,
    its hooks and its GX suites."""
    suites = [s.suite for s in spec.pipeline.sources.values() if s.suite]
    if spec.pipeline.training_suite:
        suites.append(spec.pipeline.training_suite)
    return {
        **_tree_files(PACKAGE_DIR, "pipelines"),
        f"spec/{spec.path.name}": spec.path,
        **_tree_files(spec.hooks_dir, f"hooks/{spec.name}"),
        **{f"expectations/{s}.json": spec.suite_path(s) for s in suites},
    }


def code_version(spec: LoadedSpec) -> str:
    """Content hash of `code_files`: unlike a commit, it is exact even in a dirty checkout."""
    return sha256_json({name: sha256_file(path) for name, path in code_files(spec).items()})


def git_commit(path: Path) -> str | None:
    """The checkout's commit, with `-dirty` when it has uncommitted changes; None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=path, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def package_versions(names: tuple[str, ...] = (
    "pitstop", "apache-airflow", "mlflow", "great-expectations", "pandas", "scikit-learn",
    "duckdb", "pyarrow", "numpy",
)) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def training_config(spec: LoadedSpec) -> dict[str, Any]:
    """What decides the model given the data: estimator, params, seed, features, split."""
    return {"model": spec.pipeline.model.model_dump(mode="json"),
            "split": spec.pipeline.split.model_dump(mode="json")}


def pair_id(dataset_id: str, config: dict[str, Any], code: str) -> str:
    """The model/dataset pair: same data, config and code give the same pair, hence no duplicate."""
    return sha256_json({"dataset_id": dataset_id, "config": config, "code": code})
