"""Content IDs: frame hashes see every row, pair IDs see every input, code versions ignore
where the code lives; a lineage record names every input of a training run by its hash."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import lake, lineage, quality
from pipelines.lake import from_env as env_lake
from pipelines.lineage import Pair
from pipelines.provenance import ProducedBy
from pipelines.spec import LoadedSpec, load_spec
from pipelines.training_set import TrainingInput

from .conftest import HOOKS, SPEC, amend

DEFINITIONS = "d" * 64


def _big_frame(rows: int = 30_000) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    return pd.DataFrame({
        "id": np.arange(rows, dtype="int64"),
        "sensor": rng.choice(["a", "b", "c"], rows),
        "value": rng.random(rows),
        "ts": pd.date_range("2024-01-01", periods=rows, freq="min", tz="UTC"),
    })


def test_frame_hash_is_stable_and_ignores_the_index() -> None:
    """Same content, same hash: across calls, copies and index labels."""
    frame = _big_frame()
    first = lineage.frame_content_hash(frame, DEFINITIONS)
    assert len(first) == 64
    assert lineage.frame_content_hash(frame, DEFINITIONS) == first
    assert lineage.frame_content_hash(frame.copy(), DEFINITIONS) == first
    relabelled = frame.set_axis(np.arange(len(frame)) * 7 + 3)
    assert lineage.frame_content_hash(relabelled, DEFINITIONS) == first


@pytest.mark.parametrize(("column", "new_value"), [
    ("id", -1), ("sensor", "z"), ("value", 0.123456789),
    ("ts", pd.Timestamp("1999-01-01", tz="UTC")),
])
def test_frame_hash_sees_one_value_past_row_10k(column: str, new_value: object) -> None:
    """One changed value at row 20,000 changes the hash (MLflow's digest reads 10k rows)."""
    frame = _big_frame()
    before = lineage.frame_content_hash(frame, DEFINITIONS)
    changed = frame.copy()
    changed.loc[20_000, column] = new_value
    assert not changed.equals(frame)
    assert lineage.frame_content_hash(changed, DEFINITIONS) != before


def test_frame_hash_depends_on_row_order() -> None:
    """Rows are hashed in the order given (callers sort by key first)."""
    frame = _big_frame(100)
    reversed_rows = frame.iloc[::-1].reset_index(drop=True)
    assert (lineage.frame_content_hash(reversed_rows, DEFINITIONS)
            != lineage.frame_content_hash(frame, DEFINITIONS))


def test_frame_hash_changes_with_the_definitions_hash() -> None:
    frame = _big_frame(100)
    assert (lineage.frame_content_hash(frame, "a" * 64)
            != lineage.frame_content_hash(frame, "b" * 64))


def _changed(spec: LoadedSpec, section: str, name: str | None = None, **fields: object
             ) -> LoadedSpec:
    """The spec with some fields of one section (or of one entry of a mapping) changed."""
    value = getattr(spec.pipeline, section)
    if name is None:
        return amend(spec, **{section: value.model_copy(update=fields)})
    return amend(spec, **{section: {**value, name: value[name].model_copy(update=fields)}})


@pytest.mark.parametrize(("change", "changes_view"), [
    (lambda s: _changed(s, "feature_views", "last", lookback=pd.Timedelta("2d")), True),
    (lambda s: _changed(s, "sources", "readings", timezone="Europe/Paris"), True),
    (lambda s: _changed(s, "sources", "readings", path="r/{date}.parquet", format="parquet"),
     False),
    (lambda s: _changed(s, "label", target="low"), False),
    (lambda s: amend(s, model={"seed": 8}), False),
], ids=["view", "its-source", "its-source-delivery", "label", "model"])
def test_a_view_definition_hash_sees_only_what_its_rows_depend_on(
        tiny: LoadedSpec, change: Callable[[LoadedSpec], LoadedSpec], changes_view: bool) -> None:
    before = lineage.view_definitions_hash(tiny, "last")
    assert (lineage.view_definitions_hash(change(tiny), "last") != before) is changes_view
    assert lineage.view_definitions_hash(tiny, "last") == before


@pytest.mark.parametrize(("column", "dtype"), [
    ("id", "float64"), ("id", "int32"), ("id", "Int64"), ("sensor", "category"),
    ("value", "float32"),
])
def test_frame_hash_changes_with_a_dtype(column: str, dtype: str) -> None:
    """Same values under another dtype are another schema, hence another hash."""
    frame = _big_frame(100)
    recast = frame.astype({column: dtype})
    assert str(recast[column].dtype) != str(frame[column].dtype)
    assert (lineage.frame_content_hash(recast, DEFINITIONS)
            != lineage.frame_content_hash(frame, DEFINITIONS))


def test_frame_hash_changes_with_a_column_name() -> None:
    frame = _big_frame(100)
    renamed = frame.rename(columns={"value": "reading"})
    assert (lineage.frame_content_hash(renamed, DEFINITIONS)
            != lineage.frame_content_hash(frame, DEFINITIONS))


CONFIG = {"model": {"estimator": "sklearn.linear_model.LogisticRegression", "seed": 7,
                    "params": {"C": 1.0}, "features": ["x", "y"], "categorical": []},
          "split": {"eval_days": 1}}


def test_pair_id_is_deterministic_and_key_order_free() -> None:
    first = lineage.pair_id("ds1", CONFIG, "code1")
    assert first == lineage.pair_id("ds1", json.loads(json.dumps(CONFIG)), "code1")
    reordered = {"split": CONFIG["split"], "model": dict(reversed(CONFIG["model"].items()))}
    assert lineage.pair_id("ds1", reordered, "code1") == first
    assert len(first) == 64


def _config_with(path: tuple[str, ...], value: object) -> dict:
    config = json.loads(json.dumps(CONFIG))
    target = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return config


@pytest.mark.parametrize(("dataset_id", "config", "code"), [
    ("ds2", CONFIG, "code1"),
    ("ds1", CONFIG, "code2"),
    ("ds1", _config_with(("model", "seed"), 8), "code1"),
    ("ds1", _config_with(("model", "params", "C"), 0.5), "code1"),
    ("ds1", _config_with(("model", "features"), ["y", "x"]), "code1"),
    ("ds1", _config_with(("split", "eval_days"), 2), "code1"),
], ids=["dataset", "code", "seed", "param", "feature-order", "split"])
def test_pair_id_changes_with_each_input(dataset_id: str, config: dict, code: str) -> None:
    assert lineage.pair_id(dataset_id, config, code) != lineage.pair_id("ds1", CONFIG, "code1")


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A frozen copy of pipelines/, so concurrent edits of the checkout cannot race the test."""
    copy = tmp_path / "lib" / "pipelines"
    shutil.copytree(lineage.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(lineage, "PACKAGE_DIR", copy)
    return copy


def _write_pipeline(folder: Path) -> LoadedSpec:
    """The tiny sensors pipeline with relative paths: spec, hooks and its training suite."""
    (folder / "sensors").mkdir(parents=True)
    (folder / "sensors" / "__init__.py").write_text("")
    (folder / "sensors" / "hooks.py").write_text(HOOKS)
    (folder / "expectations").mkdir()
    (folder / "expectations" / "sensors_training_set.json").write_text(json.dumps(
        {"name": "sensors_training_set", "expectations": []}))
    (folder / "sensors.yaml").write_text(SPEC.format(landing="landing",
                                                     expectations="expectations"))
    return load_spec(folder / "sensors.yaml")


def test_code_files_are_named_independently_of_location(library: Path, tmp_path: Path) -> None:
    """The names hashed are relative (pipelines/, spec/, hooks/, expectations/)."""
    spec = _write_pipeline(tmp_path / "a")
    names = set(lineage.code_files(spec))
    assert {"spec/sensors.yaml", "hooks/sensors/hooks.py", "hooks/sensors/__init__.py",
            "expectations/sensors_training_set.json", "pipelines/lineage.py"} <= names
    assert not any(str(tmp_path) in name for name in names)


def test_code_version_is_stable_and_location_independent(
        library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same content in two folders (and a moved library) gives the same code version."""
    first = _write_pipeline(tmp_path / "a")
    second = _write_pipeline(tmp_path / "elsewhere" / "b")
    version = lineage.code_version(first)
    assert len(version) == 64
    assert lineage.code_version(first) == version
    assert lineage.code_version(second) == version
    moved = tmp_path / "moved" / "pipelines"
    shutil.copytree(library, moved)
    monkeypatch.setattr(lineage, "PACKAGE_DIR", moved)
    assert lineage.code_version(first) == version


def test_code_version_ignores_bytecode_caches(library: Path, tmp_path: Path) -> None:
    spec = _write_pipeline(tmp_path / "a")
    version = lineage.code_version(spec)
    for folder in (library, spec.hooks_dir):
        (folder / "__pycache__").mkdir(exist_ok=True)
        (folder / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0junk")
    lineage._folder_digests.cache_clear()  # as a new process would read the library
    assert lineage.code_version(spec) == version


def test_a_process_keeps_the_library_version_it_first_read(library: Path, tmp_path: Path
                                                           ) -> None:
    """An edit of pipelines/ during a run must not mix two versions into one run's
    partitions and pair: the process keeps the digests it read first; a new one sees it."""
    spec = _write_pipeline(tmp_path / "a")
    code, version = lineage.library_version(), lineage.code_version(spec)
    (library / "lineage.py").write_text((library / "lineage.py").read_text() + "\n# edit\n")
    assert (lineage.library_version(), lineage.code_version(spec)) == (code, version)
    lineage._folder_digests.cache_clear()
    assert lineage.library_version() != code and lineage.code_version(spec) != version


@pytest.mark.parametrize("edit", [
    lambda text: text + "\n# a comment\n",
    lambda text: text.replace("split:", "evaluation: {problems: sensors/problems.yaml}\nsplit:"),
    lambda text: text.replace("name: sensors", "name: sensors\ndescription: Sensors, again"),
    lambda text: text + "airflow: {retries: 5}\n",
    lambda text: text + "monitoring: {max_feature_psi: 0.5, bins: 5}\nscore: {alias: challenger}\n",
], ids=["comment", "first-problems-line", "description", "airflow-settings", "monitoring-limits"])
def test_code_version_ignores_what_does_not_make_the_model(
        tmp_path: Path, edit: Callable[[str], str]) -> None:
    spec = _write_pipeline(tmp_path / "a")
    version = lineage.code_version(spec)
    spec.path.write_text(edit(spec.path.read_text()))
    changed = load_spec(spec.path)
    assert lineage.code_version(changed) == version


def _append(relative: str) -> Callable[[Path, Path], None]:
    def change(pipeline: Path, library: Path) -> None:
        base = library if relative.startswith("pipelines/") else pipeline
        path = base / relative.removeprefix("pipelines/")
        path.write_text(path.read_text() + "\n# changed\n")
    return change


def _edit_spec(pipeline: Path, library: Path) -> None:
    path = pipeline / "sensors.yaml"
    path.write_text(path.read_text().replace("lookback: 1d", "lookback: 2d"))


def _add_hook_module(pipeline: Path, library: Path) -> None:
    (pipeline / "sensors" / "extra.py").write_text("X = 1\n")


@pytest.mark.parametrize("change", [
    _edit_spec, _append("sensors/hooks.py"),
    _append("expectations/sensors_training_set.json"), _append("pipelines/train.py"),
    _add_hook_module,
], ids=["spec", "hook", "suite", "library", "new-hook-module"])
def test_code_version_changes_with_any_code_file(
        library: Path, tmp_path: Path, change: Callable[[Path, Path], None]) -> None:
    spec = _write_pipeline(tmp_path / "a")
    version = lineage.code_version(spec)
    change(tmp_path / "a", library)
    lineage._folder_digests.cache_clear()  # the next process: the library is read once per one
    assert lineage.code_version(load_spec(spec.path)) != version


# --- the pair and the lineage record of a training run ---------------------------------------


@pytest.fixture
def suited(ingested: LoadedSpec) -> LoadedSpec:
    """The tiny pipeline with its (empty) training-set suite, so its code version resolves."""
    ingested.suite_path("sensors_training_set").write_text(json.dumps(
        {"name": "sensors_training_set", "expectations": []}))
    return ingested


def test_plan_pair_names_the_dataset_config_and_code(suited: LoadedSpec) -> None:
    pair = lineage.plan_pair(suited, "d" * 64)
    code = lineage.code_version(suited)
    assert pair == Pair(lineage.pair_id("d" * 64, lineage.training_config(suited), code),
                        "d" * 64, code, registered_version=None)
    assert lineage.plan_pair(suited, "e" * 64).pair_id != pair.pair_id
    reseeded = lineage.plan_pair(amend(suited, model={"seed": 8}), "d" * 64)
    assert reseeded.code_version == code and reseeded.pair_id != pair.pair_id


def _raw_paths() -> list[str]:
    store = env_lake()
    return [store.relative(p.path) for p in lake.list_partitions(store, "sensors", "raw", "readings")]


def test_raw_partitions_used_are_the_spines_and_the_features(built: TrainingInput) -> None:
    """Each raw partition once, by path, with the hash and rows its manifest records."""
    used = lineage.raw_partitions_used(env_lake(), built.training_set)
    assert [p["path"] for p in used] == _raw_paths() == [
        f"sensors/raw/readings/date=2024-01-0{d}" for d in (1, 2, 3)]
    assert [(p["sha256"], p["rows"]) for p in used] == [
        (p.sha256, p.rows) for p in lake.list_partitions(env_lake(), "sensors", "raw", "readings")]


def test_lineage_record_names_every_input_of_the_run(suited: LoadedSpec,
                                                     built: TrainingInput) -> None:
    report = quality.validate_training_set(env_lake(), suited, built.training_set)
    pair = lineage.plan_pair(suited, built.training_set.dataset_id)
    context = ProducedBy(dag_id="sensors_train", run_id="manual__1", task_id="train_model",
                         try_number=2, triggered_by="alice", reason="new view")
    record = lineage.lineage_record(env_lake(), suited, built, report, pair, context)
    training_set = built.training_set
    assert (record["pipeline"], record["pair_id"], record["dataset_id"]) == (
        "sensors", pair.pair_id, training_set.dataset_id)
    data = lake.committed_file(env_lake().root / training_set.path)
    assert record["training_set"]["path"] == training_set.path
    assert record["training_set"]["sha256"] == lake.sha256_file(data)
    assert record["training_set"]["window"] == {"start": "2024-01-01", "end": "2024-01-04"}
    assert [p["path"] for p in record["raw_partitions"]] == _raw_paths()
    assert [[Path(f["path"]).name for f in p["source_files"]] for p in record["raw_partitions"]
            ] == [[f"2024-01-0{d}.csv"] for d in (1, 2, 3)]
    assert [(p["view"], p["path"][-10:]) for p in record["feature_partitions"]] == [
        ("last", f"2024-01-0{d}") for d in (1, 2, 3)]
    checked = record["checks"]["training_set"]
    assert (checked["suite"], checked["success"], checked["result"]) == (
        "sensors_training_set", True, report.result_path)
    assert checked["sha256"] == lake.sha256_file(env_lake().root / report.result_path)
    assert record["code"]["version"] == pair.code_version
    assert record["training"] == {
        "config": lineage.training_config(suited),
        "split": {"train_start": "2024-01-01", "eval_start": "2024-01-03", "end": "2024-01-04"}}
    assert record["airflow"] == {
        "train": {"dag_id": "sensors_train", "run_id": "manual__1", "task_id": "train_model",
                  "try": 2}, "triggered_by": "alice", "reason": "new view"}
