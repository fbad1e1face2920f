"""`pitstop new NAME`: write a pipeline that loads, validates and runs before it is changed.

A data engineer starts from files that work together: the spec `dags/NAME.yaml`, its hooks
package `dags/NAME/` (a feature view, a label and `land.py`, which writes a few weeks of
generated daily files where the spec reads them), the source's and the training set's GX
suites, and the DAG file. The texts are the templates in `pipelines/templates/`, filled in
with `string.Template`; what differs between the three tasks is one `TaskTemplate`. Nothing
that exists is overwritten: every file is checked before the first is written.
"""

from __future__ import annotations

import importlib.util
import json
import keyword
import re
import string
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pipelines.errors import SpecError

EXPECTATIONS = "../expectations"
"""Where the written spec's `expectations` field points, relative to the dags folder."""


@dataclass(frozen=True)
class TaskTemplate:
    """What the written files say differently for one `model.task`."""

    estimator: str
    target: str
    """The label's target column."""
    target_doc: str
    """What the target is, to complete "predict at 01:00 UTC ..." in the spec and labels."""
    target_kind: str
    """What values the label hook must return for the task."""
    target_expr: str
    """Python expression over `daily["value"]` (the day's mean reading) giving the target."""
    constants: str
    """Module constants the expression uses, each line ending in a newline."""
    target_rule: dict[str, object]
    """The training suite's expectation on the target."""
    minimum: str
    maximum: str
    max_regression: str


TASKS = {
    "binary": TaskTemplate(
        estimator="sklearn.ensemble.RandomForestClassifier", target="high_day",
        target_doc="whether the mean of its readings that day is above 50",
        target_kind="0 or 1",
        target_expr='(daily["value"] > HIGH).astype("int64")',
        constants="HIGH = 50.0  # a day whose mean reading is above this is a high day (1)\n",
        target_rule={"type": "expect_column_values_to_be_in_set",
                     "kwargs": {"column": "high_day", "value_set": [0, 1]}},
        minimum="{roc_auc: 0.75}", maximum="{brier: 0.2}",
        max_regression="{roc_auc: 0.02, brier: 0.01}"),
    "multiclass": TaskTemplate(
        estimator="sklearn.ensemble.RandomForestClassifier", target="level",
        target_doc="whether the mean of its readings that day is low, medium or high",
        target_kind="three or more classes; strings are fine",
        target_expr='pd.cut(daily["value"], EDGES, labels=LEVELS).astype("str")',
        constants=('LEVELS = ["low", "medium", "high"]\n'
                   'EDGES = [-float("inf"), 45.0, 55.0, float("inf")]  # of the day\'s mean '
                   'reading\n'),
        target_rule={"type": "expect_column_values_to_be_in_set",
                     "kwargs": {"column": "level", "value_set": ["low", "medium", "high"]}},
        minimum="{balanced_accuracy: 0.5}", maximum="{log_loss: 1.0}",
        max_regression="{log_loss: 0.05, balanced_accuracy: 0.05}"),
    "regression": TaskTemplate(
        estimator="sklearn.ensemble.RandomForestRegressor", target="mean_value",
        target_doc="the mean of its readings that day", target_kind="finite numbers",
        target_expr='daily["value"].round(3)', constants="",
        target_rule={"type": "expect_column_values_to_be_between",
                     "kwargs": {"column": "mean_value", "min_value": 0, "max_value": 150}},
        minimum="{r2: 0.5}", maximum="{rmse: 10.0}",
        max_regression="{rmse: 1.0, mae: 1.0}   # in the target's units"),
}


@dataclass(frozen=True)
class Scaffold:
    """What `new` wrote, for the message that tells the engineer what to run next."""

    spec: Path
    land: Path
    written: tuple[Path, ...]
    ignore_file: Path
    ignore_line: str | None
    """The line appended to `.airflowignore`; None when it was there already."""


def check_name(name: str) -> None:
    """NAME becomes the spec's `name`, a Python package and DAG ids: refuse what cannot."""
    if not (re.fullmatch(r"[a-z][a-z0-9_]*", name) and name.isidentifier()
            and not keyword.iskeyword(name)):
        raise SpecError(f"pitstop new {name!r}: the pipeline name (the spec's `name` field) must "
                        "be a lowercase Python identifier that is not a keyword: a letter, then "
                        "letters, digits or underscores (e.g. demand_forecast)")
    if name in sys.stdlib_module_names or importlib.util.find_spec(name) is not None:
        raise SpecError(f"pitstop new {name!r}: the hooks folder dags/{name}/ would shadow the "
                        f"installed module {name!r} (Airflow puts the dags folder on sys.path); "
                        "choose another name")


def render(name: str, task: str) -> dict[str, str]:
    """Every written file's text, by its path relative to the dags folder."""
    values = {"name": name, "task": task, "source": "readings", "view": "recent",
              "raw_suite": f"{name}_raw_readings", "training_suite": f"{name}_training_set",
              "expectations": EXPECTATIONS, **vars(TASKS[task])}
    values["target_rule"] = json.dumps(TASKS[task].target_rule)
    texts = {
        f"{name}.yaml": "spec.yaml", f"{name}.py": "dag.py", f"{name}/__init__.py": "hooks_init.py",
        f"{name}/features.py": "features.py", f"{name}/labels.py": "labels.py",
        f"{name}/land.py": "land.py",
        f"{EXPECTATIONS}/{values['raw_suite']}.json": "raw_suite.json",
        f"{EXPECTATIONS}/{values['training_suite']}.json": "training_suite.json",
    }
    templates = resources.files("pipelines") / "templates"
    rendered = {path: string.Template((templates / f"{template}.tmpl").read_text())
                .substitute(values) for path, template in texts.items()}
    # suites are written as the examples' are: JSON with two-space indents
    return {path: json.dumps(json.loads(text), indent=2) + "\n" if path.endswith(".json")
            else text for path, text in rendered.items()}


def dag_file(name: str) -> str:
    """The text of a pipeline's DAG file, `dags/<name>.py`, as `pitstop new` writes it."""
    template = resources.files("pipelines") / "templates" / "dag.py.tmpl"
    return string.Template(template.read_text()).substitute(name=name)


def new(name: str, dags: Path, task: str) -> Scaffold:
    """Write the pipeline NAME into `dags` and its suites beside it; refuse to overwrite."""
    check_name(name)
    files = {(dags / path).resolve(): text for path, text in render(name, task).items()}
    hooks = (dags / name).resolve()
    for path in [hooks, *files]:
        if path.exists():
            raise SpecError(f"{path}: exists; pitstop new {name} writes only new files and "
                            "overwrites nothing (choose another name, or move it away)")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    ignore_file = dags.resolve() / ".airflowignore"
    return Scaffold(spec=hooks.with_suffix(".yaml"), land=hooks / "land.py",
                    written=tuple(files), ignore_file=ignore_file,
                    ignore_line=ignore_hooks(ignore_file, name))


def ignore_hooks(ignore_file: Path, name: str) -> str | None:
    """Append `NAME/` to `.airflowignore`, so the dag-processor never imports the hooks.

    Existing lines are kept; returns the line appended, or None when it was there already.
    """
    line = f"{name}/"
    existing = ignore_file.read_text() if ignore_file.exists() else ""
    if line in existing.splitlines():
        return None
    separator = "" if existing.endswith("\n") or not existing else "\n"
    ignore_file.write_text(f"{existing}{separator}{line}\n")
    return line


def report(scaffold: Scaffold) -> list[str]:
    """What was written, and the three commands that land, validate and run it."""
    python = _shown(Path(sys.executable))
    pitstop = _shown(Path(sys.executable).with_name("pitstop"))
    spec = _shown(scaffold.spec)
    lines = [f"wrote {_shown(path)}" for path in scaffold.written]
    if scaffold.ignore_line:
        lines.append(f"added {scaffold.ignore_line} to {_shown(scaffold.ignore_file)}")
    return [*lines, "", "next: land 28 days of generated readings, check the spec, run it",
            f"  {python} {_shown(scaffold.land)}",
            f"  {pitstop} validate {spec}",
            f"  {pitstop} run {spec}"]


def _shown(path: Path) -> str:
    """A path relative to the working directory when it lies below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def new_command(name: str, dags: Path, task: str) -> int:
    """`pitstop new NAME [--dags DIR] [--task TASK]`: exit 1, writing nothing, on a refusal."""
    try:
        scaffold = new(name, dags, task)
    except SpecError as exc:
        print(f"pitstop new: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report(scaffold)))
    return 0
