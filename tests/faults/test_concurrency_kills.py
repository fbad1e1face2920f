"""Publication under concurrency and kills: a partition is always the old version or the new
one, whole, never missing and never half of either.

A kill is simulated by raising `Killed` (a BaseException, as a signal handler's exit or
KeyboardInterrupt would be) at one step of `lake.publish_dir` (write, describe, manifest,
lock, replace, prune: docs/lineage.md "How a folder is published"), through monkeypatch.
tests/unit/test_publish.py stops the same steps (and kills real writer processes) to check
the partition; the cases here keep one per step to check the fault suite's invariants as
well: the old or new partition readable whole, the lake sound, exactly what `pitstop doctor`
should report left behind, and nothing once `doctor --fix` ran.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import doctor, ingest, lake
from pipelines.lake import from_env as env_lake
from pipelines.spec import LoadedSpec
from tests.faults.invariants import (
    D1,
    D4,
    Case,
    assert_lake_sound,
    leftovers,
    params,
    run_clean,
)


class Killed(BaseException):
    """The writer dies here."""


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PITSTOP_LAKE", str(tmp_path / "lake"))
    return tmp_path / "lake"


def _final(root: Path) -> Path:
    return lake.partition_dir(lake.open_lake(root), "sensors", "raw", "readings", D1)


def _writer(label: str, rows: int = 500) -> Any:
    """A `write` callback publishing a table whose every row says who wrote it."""
    def write(tmp: Path) -> dict[str, Any]:
        table = pa.table({"writer": [label] * rows, "i": list(range(rows))})
        lake.write_parquet(table, tmp / lake.DATA_FILE)
        return {"pipeline": "sensors", "writer": label}
    return write


def _state(final: Path) -> str | None:
    """Which writer's version is published at `final` (None: nothing), checked whole: the
    manifest matches the bytes and every row is that writer's."""
    manifest = lake.read_manifest(final)
    if manifest is None:
        assert not final.exists() or not any(final.iterdir()), f"{final}: data without manifest"
        return None
    assert_lake_sound(final.parents[3], allow_leftovers=True)
    data = lake.committed_file(final, lake.DATA_FILE, manifest)
    writers = set(pq.read_table(data).column("writer").to_pylist())
    assert writers == {manifest["writer"]}, (writers, manifest["writer"])
    return manifest["writer"]


def test_two_writers_of_one_partition_leave_one_whole_result(root: Path) -> None:
    """Invariant: two threads publishing the same partition at once both return, and leave
    exactly one of the two versions, whole (manifest matching its bytes, every row that
    writer's), and nothing `pitstop doctor` reports; repeated over 15 rounds.

    Sees: nothing: both publishes succeed; the last one wins whole.
    """
    final = _final(root)
    for round_ in range(15):
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def publish(label: str, barrier: threading.Barrier = barrier,
                    errors: list[BaseException] = errors) -> None:
            try:
                barrier.wait()
                lake.publish_dir(final, _writer(label))
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                errors.append(exc)

        threads = [threading.Thread(target=publish, args=(f"{w}{round_}",)) for w in "ab"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == [] and not any(t.is_alive() for t in threads)
        assert _state(final) in {f"a{round_}", f"b{round_}"}
        assert leftovers(root) == []
    assert_lake_sound(root)


def test_two_ingests_of_one_range_give_the_serial_result(
        tiny: LoadedSpec, clean_dataset_id: str) -> None:
    """Invariant: two ingest tasks of the same range running at once (a retry beside a slow
    first try) both succeed and leave the partitions a single ingest gives: every manifest
    matching its bytes, no leftovers, and the clean dataset_id.

    Sees: nothing: both succeed.
    """
    errors: list[BaseException] = []

    def run() -> None:
        try:
            ingest.ingest(env_lake(), tiny, "readings", D1, D4)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert_lake_sound()
    assert run_clean(tiny) == clean_dataset_id


def test_a_reader_never_sees_a_republished_partition_missing(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Invariant: a reader polling while a writer republishes a partition always finds it
    (old or new, whole). Checked two ways: right after every `os.replace` the writer does
    (the commit of each publication), and by a reader thread polling throughout 30
    republishes.

    Sees: nothing: the partition is there throughout (the manifest is replaced in one step).
    """
    final = _final(root)
    lake.publish_dir(final, _writer("first"))
    seen_missing: list[str] = []
    replace = os.replace

    def checked_replace(src: Any, dst: Any) -> None:
        replace(src, dst)
        if threading.current_thread() is writer_thread and lake.read_manifest(final) is None:
            seen_missing.append(f"after replace {Path(src).name} -> {Path(dst).name}")

    monkeypatch.setattr(lake.os, "replace", checked_replace)
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            if D1 not in {p.day for p in lake.list_partitions(env_lake(), "sensors", "raw", "readings")}:
                seen_missing.append("by the polling reader")

    def republish() -> None:
        for i in range(30):
            lake.publish_dir(final, _writer(f"v{i}", rows=50))

    reader = threading.Thread(target=poll)
    writer_thread = threading.Thread(target=republish)
    reader.start()
    writer_thread.start()
    writer_thread.join(timeout=120)
    done.set()
    reader.join(timeout=30)
    assert _state(final) == "v29"
    assert seen_missing == []


def _dying(what: str) -> Any:
    def die(*_args: Any, **_kwargs: Any) -> Any:
        raise Killed(what)
    return die


def _kill(step: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Arrange for the writer to die at `step`; returns the `write` callback to publish with."""
    write = _writer("new")
    if step == "write":
        def dying(folder: Path) -> dict[str, Any]:
            write(folder)
            raise Killed("after writing the data file")
        return dying
    if step == "describe":
        monkeypatch.setattr(lake, "sha256_file", _dying("hashing the data file"))
    elif step == "manifest":
        original = Path.write_text

        def dying_write(self: Path, *args: Any, **kwargs: Any) -> int:
            if self.name.startswith(lake.MANIFEST_TMP):
                original(self, "{\"files\": [", **kwargs)  # half a manifest, then death
                raise Killed("while writing the temp manifest")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", dying_write)
    elif step == "lock":
        monkeypatch.setattr(lake, "locked", _dying("waiting for the lock"))
    elif step == "replace":
        monkeypatch.setattr(lake.os, "replace", _dying("replacing the manifest"))
    elif step == "prune":
        # after the commit, rmtree is only called to remove the generation the replaced
        # manifest had replaced
        monkeypatch.setattr(lake.shutil, "rmtree", _dying("removing the superseded generation"))
    return write


KILLS = [
    Case("write", "the old version, whole; nothing left (the writer removes its generation)",
         "write"),
    Case("describe", "the old version, whole; nothing left", "describe"),
    Case("manifest", "the old version, whole; nothing left (the half-written temp manifest is "
         "removed)", "manifest"),
    Case("lock", "the old version, whole; nothing left", "lock"),
    Case("replace", "the old version, whole; nothing left", "replace"),
    Case("prune", "the new version, whole; `pitstop doctor` reports the superseded generation "
         "as `uncommitted` and `--fix` removes it", "prune"),
]
COMMITTED = {"prune"}
"""Steps after the commit: the new version is published, and the kill leaves work for doctor."""


@pytest.mark.parametrize("case", params(*KILLS))
def test_a_writer_killed_while_republishing_leaves_old_or_new(
        root: Path, monkeypatch: pytest.MonkeyPatch, case: Case) -> None:
    """Invariant: a writer killed at any step of `publish_dir` over a published partition
    (published twice, so the prune step has a generation to remove) leaves the old version or
    the new one, whole, never none; what it leaves behind is exactly what `pitstop doctor`
    reports, `--fix` clears it, and a clean republish afterwards gives the new one."""
    final = _final(root)
    lake.publish_dir(final, _writer("older"))
    lake.publish_dir(final, _writer("old"))
    with monkeypatch.context() as patch:
        write = _kill(case.fault, patch)
        with pytest.raises(Killed):
            lake.publish_dir(final, write)
    committed = case.fault in COMMITTED
    assert _state(final) == ("new" if committed else "old")
    found = doctor.lake_findings(root)
    assert [f.kind for f in found] == (["uncommitted"] if committed else []), found
    doctor.lake_findings(root, fix=True)
    assert leftovers(root) == []
    assert_lake_sound(root)
    lake.publish_dir(final, _writer("new"))
    assert _state(final) == "new"
    assert_lake_sound(root)


@pytest.mark.parametrize("step", ["write", "describe", "manifest", "lock", "replace"])
def test_a_writer_killed_on_first_publication_leaves_nothing(
        root: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """Invariant: a writer killed before its first commit leaves no partition (not half of
    one) and nothing `pitstop doctor` reports; the next publish commits it whole.

    Sees: nothing published; the kill's exception propagates.
    """
    final = _final(root)
    with monkeypatch.context() as patch:
        write = _kill(step, patch)
        with pytest.raises(Killed):
            lake.publish_dir(final, write)
    assert _state(final) is None
    assert lake.list_partitions(env_lake(), "sensors", "raw", "readings") == []
    assert leftovers(root) == []
    assert_lake_sound(root)
    lake.publish_dir(final, _writer("new"))
    assert _state(final) == "new"


def test_an_ingest_killed_mid_range_converges_on_rerun(
        tiny: LoadedSpec, clean_dataset_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Invariant: an ingest killed while publishing its second day leaves every day's
    partition whole or absent (the first published, the rest not), and the rerun gives the
    clean dataset_id.

    Sees: the kill's exception; a rerun finishes the range.
    """
    publish, calls = lake.publish_dir, []

    def dying(final: Path, write: Any) -> dict[str, Any]:
        calls.append(final)
        if len(calls) == 2:
            raise Killed(str(final))
        return publish(final, write)

    with monkeypatch.context() as patch:
        patch.setattr(lake, "publish_dir", dying)
        with pytest.raises(Killed):
            ingest.ingest(env_lake(), tiny, "readings", D1, D4)
    assert [p.day for p in lake.list_partitions(env_lake(), "sensors", "raw", "readings")] == [D1]
    assert_lake_sound()
    assert run_clean(tiny) == clean_dataset_id
