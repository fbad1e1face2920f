"""`pitstop new`: the written pipeline loads and its hooks fit the task; nothing is overwritten."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from pipelines import cli, quality, scaffold
from pipelines.errors import SpecError
from pipelines.spec import LoadedSpec, load_spec
from pipelines.training_set import check_target
from tests.integration import examples


def _written(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("task", sorted(scaffold.TASKS))
def test_written_spec_loads_with_its_hooks_and_suites(tmp_path: Path, task: str) -> None:
    made = scaffold.new("demand", tmp_path / "dags", task)
    spec = load_spec(made.spec)  # with the estimator check against the task
    assert spec.pipeline.model.task == task
    assert spec.pipeline.label.target == scaffold.TASKS[task].target
    assert spec.expectations_dir == (tmp_path / "expectations").resolve()
    for suite in (spec.pipeline.sources["readings"].suite, spec.pipeline.training_suite):
        assert suite is not None and quality.load_suite(spec.suite_path(suite))["expectations"]
    assert made.spec.with_suffix(".py").read_text().endswith(
        "globals().update(build_dags(Path(__file__).with_suffix(\".yaml\")))\n")


def _land(spec: LoadedSpec, landing: Path, first: int, days: int) -> list[Path]:
    """land.py's files of `days` days from start_date + `first` into `landing`."""
    start = spec.pipeline.start_date + dt.timedelta(days=first)
    examples.land(spec.path, start, start + dt.timedelta(days=days))
    return sorted(landing.glob("readings/*.csv"))


def _typed(files: list[Path]) -> dict[str, pd.DataFrame]:
    """The files as ingestion hands them to the hooks: typed, with `_partition_day`."""
    frame = pd.concat(pd.read_csv(p) for p in files)
    frame["reading_time"] = pd.to_datetime(frame["reading_time"], utc=True)
    frame["_partition_day"] = frame["reading_time"].dt.floor("D")
    return {"readings": frame}


@pytest.mark.parametrize("task", sorted(scaffold.TASKS))
def test_generated_rows_feed_the_hooks(tmp_path: Path, task: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PITSTOP_LANDING", str(tmp_path / "landing"))
    spec = load_spec(scaffold.new("demand", tmp_path / "dags", task).spec, check=False)
    raw = _typed(_land(spec, tmp_path / "landing", 0, 7))
    assert len(raw["readings"]) == 7 * 24 * 8  # a week of 24 entities, every 3 hours
    spine = spec.resolve(spec.pipeline.label.function)(raw)
    assert len(spine) == 7 * 24 and spine["entity_day"].is_unique
    check_target(spec, spine[spec.pipeline.label.target])  # raises when it does not fit the task
    assert spine[spec.pipeline.label.target].nunique() >= 2
    view = spec.resolve(spec.pipeline.feature_views["recent"].function)(raw)
    assert isinstance(view["event_time"].dtype, pd.DatetimeTZDtype)
    features = {c.removeprefix("recent__") for c in spec.pipeline.model.features}
    assert features - {"segment", "day_of_week"} <= set(view.columns)
    assert view["readings_3d"].max() == 3 * 8 and view["readings_3d"].min() >= 8


def test_land_writes_the_same_file_whatever_the_range(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Each day is drawn from its own generator: a day landed alone has the same bytes."""
    spec = load_spec(scaffold.new("demand", tmp_path / "dags", "binary").spec, check=False)
    monkeypatch.setenv("PITSTOP_LANDING", str(tmp_path / "all"))
    five = _land(spec, tmp_path / "all", 0, 5)
    monkeypatch.setenv("PITSTOP_LANDING", str(tmp_path / "one"))
    (last,) = _land(spec, tmp_path / "one", 4, 1)
    assert len(five) == 5 and five[-1].name == last.name
    assert last.read_bytes() == five[-1].read_bytes()
    assert five[0].read_bytes() != five[1].read_bytes()


@pytest.mark.parametrize("name", ["Demand", "1demand", "demand-forecast", "demand.v2", "", "class"])
def test_refuses_a_name_that_is_no_lowercase_identifier(tmp_path: Path, name: str) -> None:
    with pytest.raises(SpecError, match="lowercase Python identifier"):
        scaffold.new(name, tmp_path / "dags", "binary")
    assert _written(tmp_path) == []


@pytest.mark.parametrize("name", ["json", "pandas"])
def test_refuses_a_name_that_shadows_a_module(tmp_path: Path, name: str) -> None:
    with pytest.raises(SpecError, match=f"shadow the installed module '{name}'"):
        scaffold.new(name, tmp_path / "dags", "binary")
    assert _written(tmp_path) == []


@pytest.mark.parametrize("existing", ["dags/demand.yaml", "dags/demand.py", "dags/demand",
                                      "expectations/demand_training_set.json"])
def test_refuses_to_overwrite_and_writes_nothing(tmp_path: Path, existing: str) -> None:
    path = tmp_path / existing
    if path.suffix:
        path.parent.mkdir(parents=True)
        path.write_text("mine\n")
    else:
        path.mkdir(parents=True)
    before = _written(tmp_path)
    with pytest.raises(SpecError, match="overwrites nothing") as refused:
        scaffold.new("demand", tmp_path / "dags", "regression")
    assert str(path.resolve()) in str(refused.value)
    assert _written(tmp_path) == before
    assert not path.suffix or path.read_text() == "mine\n"


def test_airflowignore_gains_one_line_and_keeps_the_others(tmp_path: Path) -> None:
    ignore = tmp_path / "dags" / ".airflowignore"
    ignore.parent.mkdir()
    ignore.write_text("flights_delay/\ndemand/")  # no newline at the end
    assert scaffold.new("alerts", tmp_path / "dags", "binary").ignore_line == "alerts/"
    assert ignore.read_text() == "flights_delay/\ndemand/\nalerts/\n"
    assert scaffold.ignore_hooks(ignore, "demand") is None  # there already: not added twice
    assert ignore.read_text().splitlines() == ["flights_delay/", "demand/", "alerts/"]


def test_cli_prints_what_it_wrote_and_what_to_run(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    dags = tmp_path / "dags"
    assert cli.main(["new", "demand", "--dags", str(dags), "--task", "multiclass"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {(dags / 'demand.yaml').resolve()}" in out
    assert "added demand/ to" in out
    assert "land.py" in out.split("next:")[1]
    assert f"validate {(dags / 'demand.yaml').resolve()}" in out
    assert out.rstrip().endswith(f"run {(dags / 'demand.yaml').resolve()}")
    assert cli.main(["new", "demand", "--dags", str(dags)]) == 1
    assert "pitstop new: " in capsys.readouterr().err
