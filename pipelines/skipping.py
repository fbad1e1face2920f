"""Skip what is already done, by content: a partition's fingerprint and the decision it makes.

A published unit's fingerprint hashes everything its bytes are made from: the content hashes
of its inputs (landing files for a raw day, raw partitions for a feature day, every input
partition for a training set), the definition that turns them into rows (the source's spec
section and GX suite, the view's definitions hash, the feature definitions) and the library's
code version. It is stored in the unit's manifest, so deciding whether to recompute is one
manifest read and one comparison. Timestamps are never consulted: a file touched but unchanged
is skipped, a file changed within the clock's granularity is recomputed.

The functions here are pure but `decide_days`, which reads each day's committed manifest.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pipelines import lake
from pipelines.lake import sha256_json

log = logging.getLogger(__name__)

FINGERPRINT = "fingerprint"
"""The manifest field holding a unit's fingerprint (`Fingerprint.digest`)."""
PARTS = "fingerprint_parts"
"""The manifest field holding what the fingerprint hashes, part by part, so a recompute can
say which part changed."""

UNCHANGED = "unchanged: inputs, definition and code match the committed manifest"
FORCED = "forced"
NEW = "not published yet"
CHANGED = "inputs, definition or code changed"
"""The reason when the committed manifest does not record its fingerprint's parts."""
DAMAGED = "its data file no longer matches its manifest"
PART_NAMES = {"inputs": "inputs", "definition": "definition", "code": "pitstop's code"}
"""How a changed part is named: the inputs' bytes, the unit's definition (spec section,
hooks, suite), the library version."""


@dataclass(frozen=True)
class Decision:
    """Whether one unit is skipped, and why (one of the reasons above)."""

    skip: bool
    reason: str

    @property
    def label(self) -> str:
        """How the task log and `pitstop run` show it: `skipped (unchanged: …)`."""
        return f"{'skipped' if self.skip else 'computed'} ({self.reason})"


@dataclass(frozen=True)
class Fingerprint:
    """What a unit's bytes are made from, part by part: the hash of its inputs, the hash of
    its definition and the code version. The manifest keeps the digest and the parts."""

    inputs: str
    definition: str
    code: str

    @property
    def digest(self) -> str:
        return sha256_json(asdict(self))

    def record(self) -> dict[str, Any]:
        """The manifest fields: the digest a skip compares, and the parts."""
        return {FINGERPRINT: self.digest, PARTS: asdict(self)}

    def changed(self, recorded: Any) -> str:
        """The reason to recompute against a manifest's recorded `PARTS`: which parts differ
        (`inputs changed`, `definition and pitstop's code changed`), or `CHANGED` when the
        manifest predates the parts."""
        if not isinstance(recorded, Mapping):
            return CHANGED
        which = [label for part, label in PART_NAMES.items()
                 if recorded.get(part) != getattr(self, part)]
        if not which:
            return CHANGED
        return f"{', '.join(which[:-1])} and {which[-1]} changed" if len(which) > 1 else (
            f"{which[0]} changed")


def fingerprint(inputs: Iterable[tuple[str, str]], definition: Any, code: str) -> Fingerprint:
    """A unit's fingerprint from its inputs as (name, sha256) pairs in any order, its
    definition (any JSON-able value) and the code version. Names are part of it: two days
    whose partitions hold equal bytes (both empty) are still different inputs."""
    return Fingerprint(sha256_json(sorted(inputs)), sha256_json(definition), code)


def decide(manifest: Mapping[str, Any] | None, wanted: Fingerprint, force: bool,
           intact: Callable[[], bool]) -> Decision:
    """Skip a unit only when its committed manifest records the `wanted` fingerprint and its
    data file still hashes to what that manifest records (`intact()`, called only then: it
    hashes the file), unless `force`d. A damaged file is recomputed, so re-running the stage
    repairs it.

    `manifest` must be the committed one (`lake.read_manifest`): files no manifest names are
    a killed writer's leftovers and never make a unit look done.
    """
    if force:
        return Decision(False, FORCED)
    if manifest is None:
        return Decision(False, NEW)
    if manifest.get(FINGERPRINT) != wanted.digest:
        return Decision(False, wanted.changed(manifest.get(PARTS)))
    if not intact():
        return Decision(False, DAMAGED)
    return Decision(True, UNCHANGED)


@dataclass(frozen=True)
class DayDecision:
    """What `decide_days` found for one day partition: the decision and, when it is skipped,
    the committed partition it keeps."""

    decision: Decision
    kept: lake.Partition | None


def decide_days(store: lake.Lake, pipeline: str, layer: str, dataset: str,
                wanted: Mapping[dt.date, Fingerprint], force: bool
                ) -> dict[dt.date, DayDecision]:
    """Each day partition's decision against its `wanted` fingerprint, logged for the task
    log (`log_decisions`)."""
    found = {}
    for day, fingerprint in wanted.items():
        folder = lake.partition_dir(store, pipeline, layer, dataset, day)
        manifest = lake.read_manifest(folder)
        decision = decide(manifest, fingerprint, force,
                          lambda f=folder, m=manifest: lake.intact(f, m))
        kept = lake.Partition(folder, day, manifest) if decision.skip and manifest else None
        found[day] = DayDecision(decision, kept)
    log_decisions(f"{layer}/{dataset}", {day: d.decision for day, d in found.items()})
    return found


def log_decisions(name: str, decisions: Mapping[dt.date, Decision]) -> None:
    """One line per run of consecutive days with the same decision: `raw/orders
    date=2024-01-01..2024-01-31 (31 days): skipped (unchanged: …)`, or `date=2024-01-02: …`
    for a day alone. Every day is named, and a year's unchanged re-run logs one line per
    source or view instead of 365. A damaged partition is republished from its inputs: that is
    a warning, since the changed bytes (evidence for an auditor's `verify`) are gone after."""
    runs: list[tuple[dt.date, dt.date, Decision]] = []
    for day, decision in sorted(decisions.items()):
        if runs and runs[-1][2] == decision and runs[-1][1] + dt.timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day, decision)
        else:
            runs.append((day, day, decision))
    for first, last, decision in runs:
        span = (f"{first}" if first == last
                else f"{first}..{last} ({(last - first).days + 1} days)")
        log.log(logging.WARNING if decision.reason == DAMAGED else logging.INFO,
                "%s date=%s: %s", name, span, decision.label)


def tally(decisions: Iterable[Decision]) -> dict[str, int]:
    """How many units got each decision, by label: what a task returns and the run prints."""
    return dict(sorted(Counter(d.label for d in decisions).items()))


def merge_tallies(tallies: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """The sum of several tasks' tallies (a run's chunks and sources)."""
    total: Counter[str] = Counter()
    for counts in tallies:
        total.update(counts)
    return dict(sorted(total.items()))


def computed(counts: Mapping[str, int]) -> int:
    """How many units of a tally were computed (and so published), whatever the reason."""
    return sum(n for label, n in counts.items() if label.startswith("computed ("))


def describe(counts: Mapping[str, int]) -> str:
    """A tally as one line: `31 skipped (unchanged: …), 1 computed (forced)`."""
    return ", ".join(f"{n} {label}" for label, n in counts.items()) or "no partitions"
