"""The spec reference, generated from the pydantic models of `pipelines/spec.py`.

`render()` is the Markdown committed as `docs/spec.md`: one section per model reachable from
`Pipeline`, a table of its fields, and the metrics of each task. A unit test compares the
committed file with `render()`, so a field added to a model without regenerating the
reference fails the tests instead of leaving the docs behind the code. `schema()` is the JSON
Schema of a spec file, for editors and linters.

    python -m pipelines.spec_reference > docs/spec.md     # regenerate the reference
    python -m pipelines.spec_reference --schema           # print the JSON Schema
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import inspect
import json
import sys
import types
import typing
from collections.abc import Iterator
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pipelines import spec
from pipelines.metrics import METRICS, TASKS
from pipelines.spec import Criteria, Pipeline, SliceSpec, parse_duration

COMMAND = "python -m pipelines.spec_reference > docs/spec.md"
_ANY_KEY = "<name>"
"""How a mapping's keys appear in a model's place in the spec (`sources.<name>`)."""


def _annotated(annotation: Any) -> tuple[Any, list[Any]]:
    """`Annotated[T, m, ...]` as (T, [m, ...]); anything else as (annotation, [])."""
    if typing.get_origin(annotation) is typing.Annotated:
        inner, *metadata = typing.get_args(annotation)
        return inner, metadata
    return annotation, []


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _inner_models(annotation: Any) -> Iterator[tuple[type[BaseModel], str]]:
    """Models inside an annotation, each with its path suffix (`.<name>` for mapping values,
    `[]` for list items)."""
    annotation, _ = _annotated(annotation)
    if _is_model(annotation):
        yield annotation, ""
        return
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict:
        yield from ((m, f".{_ANY_KEY}{rest}") for m, rest in _inner_models(args[1]))
    elif origin is list:
        yield from ((m, f"[]{rest}") for m, rest in _inner_models(args[0]))
    elif _is_union(annotation):
        for arg in args:
            yield from _inner_models(arg)


def models(root: type[BaseModel] = Pipeline) -> dict[type[BaseModel], list[str]]:
    """Every model reachable from `root`, in the order a reader of the file meets them
    (depth first, in field order), with the places in the spec where each one is written
    (`""` is the top level)."""
    places: dict[type[BaseModel], list[str]] = {}

    def visit(model: type[BaseModel], path: str) -> None:
        seen = model in places
        places.setdefault(model, []).append(path)
        if seen:
            return
        for name, field in model.model_fields.items():
            for inner, suffix in _inner_models(field.annotation):
                visit(inner, f"{path}.{name}{suffix}".lstrip("."))

    visit(root, "")
    return places


def _is_duration(metadata: list[Any]) -> bool:
    return any(getattr(m, "func", None) is parse_duration for m in metadata)


def type_name(annotation: Any, metadata: list[Any] | None = None) -> str:
    """A field's type as a reader of the YAML file thinks of it.

    `"a" | "b"` is one of these strings, `null` is YAML's empty value, `duration` is what
    `parse_duration` reads, a model's name is a nested mapping documented in its own section.
    """
    annotation, inner = _annotated(annotation)
    metadata = [*(metadata or []), *inner]
    if annotation is dt.timedelta:
        return "duration" if _is_duration(metadata) else "timedelta"
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if _is_model(annotation) or annotation in (str, int, float, bool):
        return annotation.__name__
    if annotation is dt.date:
        return "date"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if _is_union(annotation):
        return " | ".join(type_name(a) for a in args)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _metadata(field: FieldInfo) -> list[Any]:
    """The field's own constraints plus those inside its annotation (e.g. an optional
    `Annotated[str, Field(pattern=...)]`), with nested `FieldInfo`s unpacked."""
    found: list[Any] = []

    def collect(items: list[Any]) -> None:
        for item in items:
            found.extend(item.metadata if isinstance(item, FieldInfo) else [item])

    def walk(annotation: Any) -> None:
        annotation, inner = _annotated(annotation)
        collect(inner)
        if _is_union(annotation):
            for arg in typing.get_args(annotation):
                walk(arg)

    collect(field.metadata)
    walk(field.annotation)
    return found


def _base(annotation: Any) -> Any:
    """The one non-null type of an optional (`list[float] | None` gives `list[float]`)."""
    annotation, _ = _annotated(annotation)
    if _is_union(annotation):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base(rest[0]) if len(rest) == 1 else annotation
    return annotation


def constraints(field: FieldInfo) -> list[str]:
    """The rules pydantic checks on the value itself: bounds, lengths, patterns."""
    bounds = {annotated_types.Gt: (">", "gt"), annotated_types.Ge: ("≥", "ge"),
              annotated_types.Lt: ("<", "lt"), annotated_types.Le: ("≤", "le")}
    base = typing.get_origin(_base(field.annotation)) or _base(field.annotation)
    units = {list: ("item", "items"), dict: ("entry", "entries"), str: ("character", "characters")}
    one, many = units.get(base, ("", ""))
    rules = []
    for item in _metadata(field):
        for kind, (sign, attribute) in bounds.items():
            if isinstance(item, kind):
                rules.append(f"{sign} {_value(getattr(item, attribute))}")
        if isinstance(item, annotated_types.MinLen):
            count = item.min_length
            rules.append(f"at least {count} {one if count == 1 else many}".rstrip())
        if isinstance(item, annotated_types.MaxLen):
            count = item.max_length
            rules.append(f"at most {count} {one if count == 1 else many}".rstrip())
        if pattern := getattr(item, "pattern", None):
            rules.append(f"matches `{pattern}`")
    return rules


def _duration_text(value: dt.timedelta) -> str:
    """A timedelta as the spec writes it: `0s`, `30s`, `2h`, `1d` (largest exact unit)."""
    seconds = int(value.total_seconds())
    if seconds != value.total_seconds():
        return str(value)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _value(value: Any) -> str:
    """A value as YAML would show it: `null`, `false`, `"UTC"`, `[]`, `30s`."""
    if isinstance(value, dt.timedelta):
        return _duration_text(value)
    if isinstance(value, BaseModel):
        return json.dumps(value.model_dump(mode="json"))
    return json.dumps(value, default=str)


def default_text(field: FieldInfo) -> str:
    """`required`, or the default as YAML would show it; a nested model left at its own
    defaults says so (its section lists them)."""
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel) and value == type(value)():
        return "its defaults"
    return f"`{_cell(_value(value))}`"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: pipes escaped, one line."""
    return " ".join(text.replace("|", r"\|").split())


def _docstring(model: type[BaseModel]) -> str:
    """The model's own docstring (not one inherited from pydantic's BaseModel)."""
    doc = model.__dict__.get("__doc__")
    return inspect.cleandoc(doc) if doc else ""


def _link(model: type[BaseModel]) -> str:
    return f"[{model.__name__}](#{model.__name__.lower()})"


def _field_row(name: str, field: FieldInfo) -> str:
    if _is_model(field.annotation):
        kind = _link(field.annotation)
    else:
        linked = sorted({m for m, _ in _inner_models(field.annotation)}, key=lambda m: m.__name__)
        kind = (f"`{_cell(type_name(field.annotation, field.metadata))}`"
                + "".join(f" → {_link(m)}" for m in linked))
    cells = [f"`{name}`", kind,
             default_text(field), _cell(", ".join(constraints(field))),
             _cell(field.description or "")]
    return "| " + " | ".join(cells) + " |"


def _model_section(model: type[BaseModel], places: list[str]) -> list[str]:
    where = ", ".join(f"`{p}`" for p in places if p)
    lines = [f"## {model.__name__}", ""]
    lines += [f"Written at {where}." if where else "The top level of the spec file.", ""]
    if doc := _docstring(model):
        lines += [doc, ""]
    lines += ["| Field | Type | Default | Constraints | Description |",
              "| --- | --- | --- | --- | --- |"]
    lines += [_field_row(name, field) for name, field in model.model_fields.items()]
    return [*lines, ""]


def _metrics_section() -> list[str]:
    rules = ", ".join(f"`{name}`" for name in Criteria().metrics_named())
    lines = ["## Metrics by task", "",
             f"The rules of `evaluation.criteria` ({rules}) name metrics of the spec's "
             "`model.task`; any other name fails when the spec is loaded.", ""]
    for task in TASKS:
        lines += [f"### {task}", "", "| Metric | Better | Description |", "| --- | --- | --- |"]
        lines += [f"| `{name}` | {'higher' if metric.higher_is_better else 'lower'} | "
                  f"{_cell(metric.description)} |" for name, metric in METRICS[task].items()]
        lines.append("")
    return lines


def render(root: type[BaseModel] = Pipeline) -> str:
    """The spec reference as Markdown (the content of `docs/spec.md`)."""
    reachable = models(root)
    lines = ["# Spec reference", "",
             f"<!-- Generated from pipelines/spec.py by `{COMMAND}`; do not edit. -->", "",
             inspect.cleandoc(spec.__doc__ or ""), "",
             "Types are written as the YAML file holds them: `\"a\" | \"b\"` is one of those "
             "strings, `null` is an empty value, `date` is `YYYY-MM-DD`, and `duration` is a "
             "span of time written `90s`, `30m`, `3h` or `1d` (`parse_duration`), or anything "
             "pydantic reads as a timedelta (ISO 8601 such as `PT3H`, or seconds). A section "
             "whose default is `its defaults` can be left out whole.", "",
             "The JSON Schema of a spec file: `python -m pipelines.spec_reference --schema`.", "",
             "Sections:", ""]
    lines += [f"- {_link(m)}" for m in reachable]
    lines += ["- [Metrics by task](#metrics-by-task)", ""]
    for model, places in reachable.items():
        lines += _model_section(model, places)
    lines += _metrics_section()
    return "\n".join(lines).rstrip() + "\n"


def _widen_durations(node: Any) -> None:
    """Let every duration also be written as `parse_duration` reads it (`3h`), in place."""
    if isinstance(node, dict):
        if node.get("type") == "string" and node.get("format") == "duration":
            del node["type"], node["format"]
            node["anyOf"] = [{"type": "string", "pattern": spec._DURATION.pattern},
                             {"type": "string", "format": "duration"}]
            return
        for child in node.values():
            _widen_durations(child)
    elif isinstance(node, list):
        for child in node:
            _widen_durations(child)


def schema() -> dict[str, Any]:
    """The JSON Schema of a spec file: `Pipeline.model_json_schema()`, widened to the two
    shorthands that spec.py's before-validators accept and pydantic cannot describe.

    A duration may be written `90s`/`30m`/`3h`/`1d` (`parse_duration`; pydantic only knows
    ISO 8601 such as `PT3H`), and a slice may be a plain column name (`SliceSpec._from_name`).
    Without these, the schema would reject valid specs. If spec.py comes to declare them
    itself (e.g. `json_schema_input_type` on the validators), the widening is a no-op.
    """
    document = copy.deepcopy(Pipeline.model_json_schema())
    _widen_durations(document)
    slice_def = document["$defs"][SliceSpec.__name__]
    if "anyOf" not in slice_def:
        labels = {k: slice_def.pop(k) for k in ("title", "description") if k in slice_def}
        document["$defs"][SliceSpec.__name__] = {**labels, "anyOf": [
            {"type": "string", "description": "a column name: the same as {column: <name>}"},
            slice_def]}
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.spec_reference",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--schema", action="store_true",
                        help="print the JSON Schema of a spec file instead of the Markdown")
    args = parser.parse_args(argv)
    sys.stdout.write(json.dumps(schema(), indent=2) + "\n" if args.schema else render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
