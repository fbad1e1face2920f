"""Many pipelines in one lake: each owns its folder, and the lake layout never changes data."""

from __future__ import annotations

import datetime as dt
import shutil
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from pipelines import features, ingest, lake, training_set
from pipelines.errors import SpecError
from pipelines.lake import from_env as env_lake
from pipelines.spec import LoadedSpec, load_spec
from tests.unit.conftest import D1, D4, HOOKS, SPEC, write_readings


def _pipeline(root: Path, name: str, seed: int) -> LoadedSpec:
    """The tiny sensors pipeline under another name, with its own landing and hooks."""
    landing = root / f"landing-{name}"
    (root / "expectations").mkdir(exist_ok=True)
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    (root / name / "hooks.py").write_text(textwrap.dedent(HOOKS))
    spec_file = root / f"{name}.yaml"
    spec_file.write_text(SPEC.format(landing=landing, expectations=root / "expectations")
                         .replace("name: sensors", f"name: {name}"))
    for day in lake.days(D1, D4):
        write_readings(landing, day, seed=seed)
    return load_spec(spec_file)


@pytest.fixture
def two(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[LoadedSpec, LoadedSpec]:
    """Two pipelines with the same source, view and label names, published into one lake."""
    monkeypatch.setenv("PITSTOP_LAKE", str(tmp_path / "lake"))
    specs = (_pipeline(tmp_path, "north", seed=1), _pipeline(tmp_path, "south", seed=2))
    for spec in specs:
        ingest.ingest(env_lake(), spec, "readings", D1, D4)
        features.compute_view(env_lake(), spec, "last", D1, D4)
    return specs


def test_same_source_and_view_names_never_share_a_partition(two: tuple[LoadedSpec, ...]) -> None:
    for layer, dataset in (("raw", "readings"), ("features", "last")):
        north, south = (lake.list_partitions(env_lake(), s.name, layer, dataset) for s in two)
        assert len(north) == len(south) == 3
        for n, s in zip(north, south, strict=True):
            assert n.path != s.path and n.sha256 != s.sha256, f"{layer}/{dataset} {n.day} shared"
            assert (n.manifest["pipeline"], s.manifest["pipeline"]) == ("north", "south")
            assert n.path.is_relative_to(lake.pipeline_dir(env_lake(), "north"))


def test_each_training_set_holds_only_its_own_pipelines_rows(two: tuple[LoadedSpec, ...]) -> None:
    built = [training_set.build_training_set(env_lake(), s, D1, D4) for s in two]
    assert built[0].dataset_id != built[1].dataset_id
    for spec, made in zip(two, built, strict=True):
        manifest = lake.read_manifest(env_lake().root / made.path)
        assert manifest is not None and manifest["pipeline"] == spec.name
        read = [p["path"] for p in manifest["inputs"]["spine"]]
        assert read and all(path.startswith(f"{spec.name}/raw/") for path in read)


def test_removing_one_pipelines_folder_leaves_the_other_whole(two: tuple[LoadedSpec, ...]) -> None:
    north, south = two
    before = training_set.build_training_set(env_lake(), south, D1, D4)
    shutil.rmtree(lake.pipeline_dir(env_lake(), north.name))
    assert lake.list_partitions(env_lake(), north.name, "raw", "readings") == []
    assert training_set.build_training_set(env_lake(), south, D1, D4) == before


def _with_date_column(tiny: LoadedSpec) -> LoadedSpec:
    """The tiny spec whose readings carry a string column literally called `date`."""
    text = tiny.path.read_text().replace("value: float}", "value: float, date: str}")
    tiny.path.write_text(text)
    for day in lake.days(D1, D4):
        file = tiny.landing_dir() / "readings" / f"{day.isoformat()}.csv"
        frame = pd.read_csv(file)
        frame.assign(date=[f"batch-{i % 5}" for i in range(len(frame))]).to_csv(file, index=False)
    return load_spec(tiny.path)


def test_a_source_column_named_date_reaches_hooks_unchanged(tiny: LoadedSpec) -> None:
    """DuckDB's hive partitioning would replace it with the `date=` folder's value."""
    spec = _with_date_column(tiny)
    ingest.ingest(env_lake(), spec, "readings", D1, D4)
    frames, _ = features.read_raw_inputs(env_lake(), spec, features.raw_partitions(
        env_lake(), spec, ["readings"], D1, D4))
    seen = frames["readings"]
    assert pd.api.types.is_string_dtype(seen["date"])
    assert sorted(seen["date"].unique()) == [f"batch-{i}" for i in range(5)]
    assert (seen[ingest.PARTITION_DAY].dt.date.astype(str) != seen["date"]).all()
    assert set(seen[ingest.PARTITION_DAY].dt.date) == set(lake.days(D1, D4))


@pytest.mark.parametrize("column", ["_partition_day", "__pitstop_file", "__pitstop_row"])
def test_reserved_column_names_are_refused_at_load(tiny: LoadedSpec, column: str) -> None:
    tiny.path.write_text(tiny.path.read_text().replace("value: float}", f"value: float, {column}: str}}"))
    with pytest.raises(SpecError) as error:
        load_spec(tiny.path)
    message = str(error.value)
    assert str(tiny.path) in message and column in message and "reserved" in message


def test_dates_in_the_lake_path_are_read_from_the_path_not_a_column(tiny: LoadedSpec) -> None:
    ingest.ingest(env_lake(), tiny, "readings", D1, D4)
    days = [p.day for p in lake.list_partitions(env_lake(), tiny.name, "raw", "readings")]
    assert days == [D1, D1 + dt.timedelta(days=1), D1 + dt.timedelta(days=2)]
