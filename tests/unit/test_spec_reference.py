"""docs/spec.md is what the spec models say, and the JSON Schema accepts the example spec."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from pipelines import spec, spec_reference
from pipelines.metrics import METRICS, TASKS

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "spec.md"
EXAMPLE = ROOT / "dags" / "flights_delay.yaml"
MODELS = list(spec_reference.models())


def test_committed_reference_is_current() -> None:
    """Fails when a model changes and docs/spec.md is not regenerated."""
    assert REFERENCE.read_text() == spec_reference.render(), (
        f"docs/spec.md is out of date: run `{spec_reference.COMMAND}` and commit it")


def test_every_spec_model_is_reached() -> None:
    defined = {cls for cls in vars(spec).values() if isinstance(cls, type)
               and issubclass(cls, spec._Strict) and cls is not spec._Strict}
    assert defined == set(MODELS)


def _section(text: str, model: type[BaseModel]) -> str:
    found = re.search(rf"^## {model.__name__}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert found, f"no section for {model.__name__}"
    return found.group(1)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_has_a_row_in_its_section(model: type[BaseModel]) -> None:
    rows = re.findall(r"^\| `(\w+)` \|", _section(spec_reference.render(), model), re.M)
    assert rows == list(model.model_fields)


@pytest.mark.parametrize(("model", "field", "cells"), [
    (spec.ModelSpec, "task", r'`"binary" \| "multiclass" \| "regression"` | required'),
    (spec.Criteria, "max_regression", "`dict[str, float]` | `{}`"),
    (spec.FeatureView, "ttl", r"`duration \| null` | `null`"),
    (spec.DagSettings, "retry_delay", "`duration` | `30s`"),
    (spec.Pipeline, "sources", "`dict[str, Source]` → [Source](#source) | required | "
                               "at least 1 entry"),
    (spec.Evaluation, "threshold", "`float` | `0.5` | > 0, < 1"),
    (spec.ModelSpec, "build", r"`str \| null` | `null` | matches `^[A-Za-z_][\w.]*:[A-Za-z_]\w*$`"),
    (spec.Evaluation, "criteria", "[Criteria](#criteria) | its defaults"),
])
def test_field_rows_read_as_the_yaml_is_written(model: type[BaseModel], field: str,
                                               cells: str) -> None:
    assert f"| `{field}` | {cells} |" in _section(spec_reference.render(), model)


def test_places_in_the_spec() -> None:
    places = spec_reference.models()
    assert places[spec.Source] == ["sources.<name>"]
    assert places[spec.SliceSpec] == ["evaluation.slices[]"]
    assert places[spec.Imputation] == ["model.preprocessing.impute"]


def test_a_new_field_changes_the_reference() -> None:
    """What the drift test relies on: the reference is derived from the fields."""

    class Wider(spec.Pipeline):
        retention_days: int = 30

    assert "| `retention_days` | `int` | `30` |" in spec_reference.render(Wider)
    assert "retention_days" not in spec_reference.render()


@pytest.mark.parametrize("task", TASKS)
def test_every_metric_of_every_task(task: str) -> None:
    text = spec_reference.render()
    section = text[text.index(f"### {task}\n"):]
    for name, metric in METRICS[task].items():
        better = "higher" if metric.higher_is_better else "lower"
        assert f"| `{name}` | {better} | {metric.description} |" in section


def _as_an_editor_reads(path: Path) -> object:
    """The spec as JSON: YAML's dates become the ISO strings a YAML editor validates."""
    return json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))


def test_schema_accepts_the_example_spec() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(
        spec_reference.schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert [e.message for e in validator.iter_errors(_as_an_editor_reads(EXAMPLE))] == []


@pytest.mark.parametrize(("path", "value", "message"), [
    (("modle",), {}, "Additional properties"),
    (("feature_views", "origin_weather", "ttl"), "3 hours", "not valid under any"),
    (("evaluation", "slices"), [7], "not valid under any"),
    (("model", "task"), "ranking", "is not one of"),
])
def test_schema_rejects_what_the_loader_rejects(path: tuple[str, ...], value: object,
                                                message: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    data = _as_an_editor_reads(EXAMPLE)
    *parents, last = path
    target = data
    for key in parents:
        target = target[key]
    target[last] = value
    validator = jsonschema.Draft202012Validator(
        spec_reference.schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = [e.message for e in validator.iter_errors(data)]
    assert any(message in e for e in errors), errors


def test_schema_is_the_models_schema() -> None:
    document = spec_reference.schema()
    assert document["title"] == "Pipeline"
    assert set(document["properties"]) == set(spec.Pipeline.model_fields)
    assert set(document["$defs"]) == set(spec.Pipeline.model_json_schema()["$defs"])


def test_main_prints_the_reference_or_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert spec_reference.main([]) == 0
    assert capsys.readouterr().out == spec_reference.render()
    assert spec_reference.main(["--schema"]) == 0
    assert json.loads(capsys.readouterr().out) == spec_reference.schema()
