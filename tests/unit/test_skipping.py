"""Skipping by content (`pipelines/skipping.py`): the pure fingerprint and decision, then the
tiny pipeline on a real lake, re-run after each kind of change.

What is shown: a fingerprint changes with any input's hash or name, the definition or the
code, never with the inputs' order; `decide` skips only a committed, intact unit of the same
fingerprint and says why otherwise. On the lake: an unchanged re-run skips every raw day,
feature day and the training set, returns the same results, and writes nothing; a changed
landing file recomputes exactly its day and the feature days whose lookback reads it; a
changed hook recomputes that view (and the set), not the raw days; a changed suite recomputes
that source's days, whose identical bytes then leave the features skipped; a code change and
`force` recompute everything; a damaged or uncommitted partition is recomputed. Every case
ends byte for byte equal to a full recompute from scratch in a lake of its own.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipelines import features, ingest, lake, lineage, skipping, training_set
from pipelines.lake import from_env as env_lake
from pipelines.spec import LoadedSpec, load_spec
from pipelines.training_set import TrainingSet

from .conftest import D1, D2, D3, D4, between_suite, write_readings

SKIPPED = f"skipped ({skipping.UNCHANGED})"
CHANGED = f"computed ({skipping.CHANGED})"
INPUTS = "computed (inputs changed)"
DEFINITION = "computed (definition changed)"
CODE = "computed (pitstop's code changed)"


# --- the pure core -----------------------------------------------------------------------

BASE = ([("a", "1"), ("b", "2")], {"view": "v"}, "code-1")


@pytest.mark.parametrize(("inputs", "definition", "code"), [
    ([("a", "1"), ("b", "3")], {"view": "v"}, "code-1"),
    ([("a", "1"), ("c", "2")], {"view": "v"}, "code-1"),
    ([("a", "1")], {"view": "v"}, "code-1"),
    ([("a", "1"), ("b", "2")], {"view": "w"}, "code-1"),
    ([("a", "1"), ("b", "2")], {"view": "v"}, "code-2"),
], ids=["input-hash", "input-name", "input-gone", "definition", "code"])
def test_a_fingerprint_changes_with_what_the_unit_is_made_of(inputs, definition, code) -> None:
    assert skipping.fingerprint(inputs, definition, code) != skipping.fingerprint(*BASE)


def test_a_fingerprint_ignores_the_order_of_the_inputs() -> None:
    assert skipping.fingerprint([("b", "2"), ("a", "1")], {"view": "v"}, "code-1") == \
        skipping.fingerprint(*BASE)


def _never() -> bool:
    raise AssertionError("the data file is hashed only when the fingerprints match")


WANTED = skipping.fingerprint(*BASE)
RECORDED = WANTED.record()


@pytest.mark.parametrize(("manifest", "force", "intact", "expected"), [
    (RECORDED, False, lambda: True, skipping.Decision(True, skipping.UNCHANGED)),
    (RECORDED, True, _never, skipping.Decision(False, skipping.FORCED)),
    (None, False, _never, skipping.Decision(False, skipping.NEW)),
    ({"fingerprint": "g"}, False, _never, skipping.Decision(False, skipping.CHANGED)),
    ({}, False, _never, skipping.Decision(False, skipping.CHANGED)),
    (RECORDED, False, lambda: False, skipping.Decision(False, skipping.DAMAGED)),
], ids=["unchanged", "forced", "never-committed", "changed-before-parts", "before-fingerprints",
        "damaged"])
def test_decide_skips_only_a_committed_intact_unit_of_the_same_fingerprint(
        manifest, force, intact, expected) -> None:
    assert skipping.decide(manifest, WANTED, force, intact) == expected


@pytest.mark.parametrize(("base", "reason"), [
    (([("a", "1"), ("b", "3")], {"view": "v"}, "code-1"), "inputs changed"),
    (([("a", "1"), ("b", "2")], {"view": "w"}, "code-1"), "definition changed"),
    (([("a", "1"), ("b", "2")], {"view": "v"}, "code-2"), "pitstop's code changed"),
    (([("a", "1")], {"view": "w"}, "code-2"), "inputs, definition and pitstop's code changed"),
    (([("a", "1")], {"view": "v"}, "code-2"), "inputs and pitstop's code changed"),
], ids=["inputs", "definition", "code", "all", "two"])
def test_a_recompute_says_which_part_changed(base: tuple[Any, ...], reason: str) -> None:
    """The manifest keeps the fingerprint's parts: after a hook edit the tally says
    `definition changed`, after an upgrade `pitstop's code changed`."""
    decision = skipping.decide(skipping.fingerprint(*base).record(), WANTED, False, _never)
    assert decision == skipping.Decision(False, reason)


def test_tallies_count_and_sum_by_label() -> None:
    skip, new = skipping.Decision(True, skipping.UNCHANGED), skipping.Decision(False, skipping.NEW)
    one = skipping.tally([skip, new, skip])
    assert one == {"computed (not published yet)": 1, SKIPPED: 2}
    assert skipping.merge_tallies([one, {SKIPPED: 3}]) == {"computed (not published yet)": 1,
                                                           SKIPPED: 5}
    assert skipping.describe({SKIPPED: 2}) == f"2 {SKIPPED}"
    assert skipping.describe({}) == "no partitions"


# --- the tiny pipeline, re-run ------------------------------------------------------------

def run_all(spec: LoadedSpec, force: bool = False) -> dict[str, Any]:
    """Ingest, compute the view and build the set of D1..D4: each stage's result."""
    store = env_lake()
    raw = ingest.ingest(store, spec, "readings", D1, D4, force=force)
    view = features.compute_view(store, spec, "last", D1, D4, force=force)
    built = training_set.prepare(store, spec, D1, D4, force=force)
    return {"raw": raw, "view": view, "built": built}


def tallies(result: dict[str, Any]) -> tuple[dict[str, int], ...]:
    return result["raw"].tally, result["view"].tally, result["built"].tally


def lake_bytes(spec: LoadedSpec) -> dict[str, Any]:
    """Every raw and feature day's data sha256 by day, and the training set's ID and sha256:
    what a full recompute must equal byte for byte."""
    store = env_lake()
    found: dict[str, Any] = {
        f"{layer}/{name}/{p.day}": p.sha256
        for layer, name in (("raw", "readings"), ("features", "last"))
        for p in lake.list_partitions(store, spec.name, layer, name)}
    built = training_set.build_training_set(store, spec, D1, D4)
    found["dataset"] = (built.dataset_id,
                        lake.data_sha256(lake.read_manifest(store.root / built.path) or {}))
    return found


def from_scratch(spec: LoadedSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                 ) -> dict[str, Any]:
    """`lake_bytes` of a full recompute of the same landing files into a new lake."""
    monkeypatch.setenv("PITSTOP_LAKE", str(tmp_path / "scratch-lake"))
    first = run_all(spec)
    assert all(not any(k.startswith("skipped") for k in t) for t in tallies(first))
    return lake_bytes(spec)


def generations(spec: LoadedSpec) -> dict[str, str]:
    """The committed generation of every published folder: what a skip leaves untouched."""
    root = env_lake().root / spec.name
    return {str(m.parent.relative_to(root)): json.loads(m.read_text())["generation"]
            for m in sorted(root.rglob(lake.MANIFEST))}


def test_an_unchanged_rerun_skips_everything_and_returns_the_same(ingested: LoadedSpec,
                                                                   caplog) -> None:
    first = run_all(ingested)
    before = generations(ingested)
    with caplog.at_level("INFO", logger="pipelines.skipping"):
        again = run_all(ingested)
    assert tallies(again) == ({SKIPPED: 3}, {SKIPPED: 3}, {SKIPPED: 1})
    assert generations(ingested) == before
    assert again["raw"].partitions == first["raw"].partitions
    assert again["raw"].rows == first["raw"].rows == 216
    assert (again["view"].rows, again["view"].partitions) == (first["view"].rows, 3)
    assert (again["built"].training_set, again["built"].split) == (
        first["built"].training_set, first["built"].split)
    assert f"raw/readings date=2024-01-01..2024-01-03 (3 days): {SKIPPED}" in caplog.messages
    assert f"features/last date=2024-01-01..2024-01-03 (3 days): {SKIPPED}" in caplog.messages


def test_decisions_are_logged_a_line_per_run_of_days(caplog: pytest.LogCaptureFixture) -> None:
    """Consecutive days with one decision share a line; a gap or another decision starts
    the next, and a damaged day is a warning of its own."""
    skipped = skipping.Decision(True, skipping.UNCHANGED)
    damaged = skipping.Decision(False, skipping.DAMAGED)
    days = {D1 + dt.timedelta(days=n): skipped for n in (0, 1, 2, 5)}
    days[D4] = damaged
    with caplog.at_level("INFO", logger="pipelines.skipping"):
        skipping.log_decisions("raw/readings", days)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", f"raw/readings date=2024-01-01..2024-01-03 (3 days): {skipped.label}"),
        ("WARNING", f"raw/readings date=2024-01-04: {damaged.label}"),
        ("INFO", f"raw/readings date=2024-01-06: {skipped.label}")]


def test_a_changed_landing_file_recomputes_its_day_and_the_days_reading_it(
        ingested: LoadedSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_all(ingested)
    before = generations(ingested)
    write_readings(ingested.landing_dir(), D2, seed=99)
    again = run_all(ingested)
    assert again["raw"].tally == {INPUTS: 1, SKIPPED: 2}
    assert again["view"].tally == {INPUTS: 2, SKIPPED: 1}  # lookback 1d: D2 and D3 read D2
    assert again["built"].tally == {INPUTS: 1}
    after = generations(ingested)
    assert sorted(k for k in after if k.startswith(("raw/", "features/"))
                  and after[k] != before[k]) == [
        "features/last/date=2024-01-02", "features/last/date=2024-01-03",
        "raw/readings/date=2024-01-02"]
    assert lake_bytes(ingested) == from_scratch(ingested, tmp_path, monkeypatch)


def test_a_changed_hook_recomputes_its_view_not_the_raw_days(
        ingested: LoadedSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_all(ingested)
    hooks = ingested.path.parent / "sensors" / "hooks.py"
    hooks.write_text(hooks.read_text().replace('frame[["sensor", "ts", "value"]]',
                                               'frame[["sensor", "ts", "value"]].assign('
                                               'value=frame["value"] / 2)'))
    spec = load_spec(ingested.path)
    again = run_all(spec)
    # the set's definition holds every view's and the label's: changed with their module
    assert tallies(again) == ({SKIPPED: 3}, {DEFINITION: 3}, {DEFINITION: 1})
    assert lake_bytes(spec) == from_scratch(spec, tmp_path, monkeypatch)


def test_a_changed_helper_module_recomputes_the_view_importing_it_only(
        tiny: LoadedSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny.hooks_dir
    (folder / "scale.py").write_text("FACTOR = 1.0\n")
    (folder / "notes.py").write_text('"""Imported by no hook."""\n')
    hooks = folder / "hooks.py"
    hooks.write_text("from .scale import FACTOR\n" + hooks.read_text().replace(
        'frame[["sensor", "ts", "value"]]',
        'frame[["sensor", "ts", "value"]].assign(value=frame["value"] * FACTOR)'))
    spec = load_spec(tiny.path)
    first = run_all(spec)
    (folder / "notes.py").write_text('"""Still imported by no hook, edited."""\n')
    assert tallies(run_all(spec))[:2] == ({SKIPPED: 3}, {SKIPPED: 3})
    (folder / "scale.py").write_text("FACTOR = 2.0\n")
    again = run_all(spec)
    assert tallies(again) == ({SKIPPED: 3}, {DEFINITION: 3}, {DEFINITION: 1})
    assert again["built"].training_set.dataset_id != first["built"].training_set.dataset_id
    assert lake_bytes(spec) == from_scratch(spec, tmp_path, monkeypatch)


def _with_suite(spec: LoadedSpec, max_value: float) -> LoadedSpec:
    """The tiny spec whose source is validated by a suite of readings up to `max_value`."""
    between_suite(spec, "sensors_readings", "value", max_value)
    text = spec.path.read_text()
    if "suite: sensors_readings" not in text:
        spec.path.write_text(text.replace("    event_time: ts\n",
                                          "    event_time: ts\n    suite: sensors_readings\n"))
    return load_spec(spec.path)


def test_a_changed_suite_recomputes_its_sources_days_only(
        tiny: LoadedSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _with_suite(tiny, 1.0)
    run_all(spec)
    spec = _with_suite(spec, 2.0)
    again = run_all(spec)
    # the raw days are republished with the same bytes, so nothing downstream changes
    assert tallies(again) == ({DEFINITION: 3}, {SKIPPED: 3}, {SKIPPED: 1})
    assert lake_bytes(spec) == from_scratch(spec, tmp_path, monkeypatch)


def test_force_and_a_code_change_recompute_everything(
        ingested: LoadedSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = run_all(ingested)
    forced = run_all(ingested, force=True)
    assert tallies(forced) == ({"computed (forced)": 3}, {"computed (forced)": 3},
                               {"computed (forced)": 1})
    assert forced["built"].training_set == first["built"].training_set
    code = lineage.library_version()
    monkeypatch.setattr(lineage, "library_version", lambda: code + "-changed")
    assert tallies(run_all(ingested)) == ({CODE: 3}, {CODE: 3}, {CODE: 1})
    assert lake_bytes(ingested) == from_scratch(ingested, tmp_path, monkeypatch)


def test_a_damaged_or_uncommitted_partition_is_recomputed(
        ingested: LoadedSpec, caplog: pytest.LogCaptureFixture) -> None:
    run_all(ingested)
    store = env_lake()
    damaged = lake.list_partitions(store, "sensors", "features", "last")[0]
    data = damaged.data_path
    data.write_bytes(data.read_bytes()[:-1])
    # a killed writer's generation beside a folder whose manifest is gone: not committed
    folder = lake.partition_dir(store, "sensors", "raw", "readings", D3)
    (folder / lake.MANIFEST).unlink()
    again = run_all(ingested)
    assert again["raw"].tally == {"computed (not published yet)": 1, SKIPPED: 2}
    assert again["view"].tally == {f"computed ({skipping.DAMAGED})": 1, SKIPPED: 2}
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"
              and r.name == "pipelines.skipping"]
    assert warned == [f"features/last date={damaged.day}: computed ({skipping.DAMAGED})"]
    lake.verify(lake.list_partitions(store, "sensors", "features", "last")[0])


def test_a_training_set_rewritten_under_its_manifest_is_rebuilt(ingested: LoadedSpec) -> None:
    first = run_all(ingested)["built"].training_set
    folder = env_lake().root / first.path
    shutil.rmtree(folder)
    again = run_all(ingested)["built"]
    assert again.tally == {"computed (not published yet)": 1}
    assert again.training_set == TrainingSet(first.dataset_id, first.path, first.rows, D1, D4)
    assert lake.read_manifest(folder) is not None


def test_a_partial_recompute_keeps_the_quality_result_each_skipped_day_names(
        tiny: LoadedSpec) -> None:
    """A raw manifest names the GX result its day was validated in. Re-validating only D2,
    twice, must not remove the result D1 and D3 still name (it did: one result folder per
    run range, whose generation two publications back is deleted)."""
    spec = _with_suite(tiny, 1.0)

    def named() -> dict[dt.date, tuple[str, str]]:
        store = env_lake()
        results = {}
        for p in lake.list_partitions(store, spec.name, "raw", "readings"):
            result = (lake.read_manifest(p.path) or {})["quality"]["result"]
            results[p.day] = (result, lake.sha256_file(store.root / result))
        return results

    run_all(spec)
    before = named()
    for seed in (98, 99):  # a publication keeps the generation it replaced, not two back
        write_readings(spec.landing_dir(), D2, seed=seed)
        run_all(spec)
    after = named()
    assert (after[D1], after[D3]) == (before[D1], before[D3])
    assert after[D2][0] != before[D2][0]
