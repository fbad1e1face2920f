"""The commit protocol of `lake.publish_dir`: readers never see a partition missing or mixed,
and a writer stopped at any point leaves the old or the new partition whole."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import doctor, lake, pit
from pipelines.errors import DataError

DAY = dt.date(2013, 1, 1)

WRITER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import pyarrow as pa
    from pipelines import lake

    folder, count = Path(sys.argv[1]), int(sys.argv[2])

    def writer(rows):
        def write(tmp):
            lake.write_parquet(pa.table({"x": list(range(rows))}), tmp / lake.DATA_FILE)
            (tmp / "extra.json").write_text(json.dumps({"rows": rows}))
            return {"rows": rows}
        return write

    print("ready", flush=True)
    i = 0
    while count < 0 or i < count:
        lake.publish_dir(folder, writer(1 + i % 7))
        i += 1
""")
"""Re-publishes one partition with 1..7 rows, `count` times (forever when negative)."""


def _write(rows: int):
    def write(tmp: Path) -> dict:
        lake.write_parquet(pa.table({"x": list(range(rows))}), tmp / lake.DATA_FILE)
        (tmp / "extra.json").write_text(json.dumps({"rows": rows}))
        return {"rows": rows}
    return write


def _folder(root: Path) -> Path:
    return lake.partition_dir(lake.open_lake(root), "p", "raw", "t", DAY)


def _writer(folder: Path, count: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(count)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def _intact(folder: Path) -> int:
    """The committed partition's rows, after checking every file it names against its hash."""
    manifest = lake.read_manifest(folder)
    assert manifest is not None, f"{folder}: no committed partition"
    for entry in manifest["files"]:
        assert lake.sha256_file(lake.committed_file(folder, entry["name"], manifest)) == entry[
            "sha256"], f"{entry['name']} is not the file its manifest names"
    (partition,) = lake.list_partitions(lake.open_lake(folder.parents[3]), "p", "raw", "t")
    assert pq.read_metadata(partition.data_path).num_rows == partition.rows == manifest["rows"]
    return partition.rows


def test_a_reader_never_sees_the_partition_missing_or_mixed(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    lake.publish_dir(folder, _write(1))
    writer = _writer(folder, 300)
    seen, lapses = set(), 0
    while writer.poll() is None:
        partitions = lake.list_partitions(lake.open_lake(tmp_path), "p", "raw", "t")
        assert len(partitions) == 1, "the day went missing"
        (part,) = partitions
        try:
            data = part.data_path.read_bytes()
            extra = json.loads(lake.committed_file(part.path, "extra.json", part.manifest)
                               .read_text())
        except FileNotFoundError:
            # allowed only once two later commits have passed: the previous generation stays
            now = lake.read_manifest(folder)
            assert part.manifest["generation"] not in (now["generation"], now["previous"])
            lapses += 1
            continue
        assert hashlib.sha256(data).hexdigest() == part.sha256, "data of another commit"
        assert extra["rows"] == part.rows == part.manifest["rows"], "files of two commits"
        seen.add(part.manifest["generation"])
    assert writer.returncode == 0
    assert len(seen) > 2, "the reader never overlapped the writer"
    assert lapses <= len(seen)
    assert _intact(folder) == 1 + 299 % 7


@pytest.mark.parametrize("seed", range(6))
def test_a_writer_killed_anywhere_leaves_a_whole_partition(tmp_path: Path, seed: int) -> None:
    folder = _folder(tmp_path)
    lake.publish_dir(folder, _write(7))
    writer = _writer(folder, -1)
    time.sleep(random.Random(seed).uniform(0.0, 0.5))
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert _intact(folder) in range(1, 8)
    leftovers = doctor.lake_findings(tmp_path, fix=True)
    assert {f.kind for f in leftovers} <= {"uncommitted", "stale lock"}
    assert all(f.action == "removed" for f in leftovers)
    manifest = lake.read_manifest(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        {lake.MANIFEST, manifest["generation"], manifest["previous"]} - {None})
    assert doctor.lake_findings(tmp_path) == []
    _intact(folder)


class Stop(BaseException):
    """What a kill looks like from inside: not an Exception, nothing catches it by accident."""


def _stop(*_args: object, **_kwargs: object) -> None:
    raise Stop


def _failing_write(tmp: Path) -> dict:
    _write(3)(tmp)
    raise Stop


@pytest.mark.parametrize(("step", "committed"), [
    ("write", False), ("describe", False), ("lock", False), ("replace", False), ("prune", True)])
def test_a_writer_stopped_at_each_step_leaves_old_or_new_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, committed: bool) -> None:
    folder = _folder(tmp_path)
    for rows in (5, 6):
        lake.publish_dir(folder, _write(rows))
    patch = {"describe": (lake, "_describe"), "lock": (lake, "locked"),
             "replace": (os, "replace"), "prune": (lake.shutil, "rmtree")}
    with monkeypatch.context() as patched, pytest.raises(Stop):
        if step in patch:
            patched.setattr(*patch[step], _stop)
        lake.publish_dir(folder, _failing_write if step == "write" else _write(3))
    assert _intact(folder) == (3 if committed else 6)
    leftovers = doctor.lake_findings(tmp_path)
    # stopped before the commit, the writer cleans up after itself; after it, the generation
    # it should have removed is left for doctor
    assert [f.kind for f in leftovers] == (["uncommitted"] if committed else [])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(1, 9), st.booleans()), min_size=1, max_size=6))
def test_the_last_successful_publication_is_what_readers_get(
        tmp_path: Path, publications: list[tuple[int, bool]]) -> None:
    folder = _folder(tmp_path / uuid.uuid4().hex)
    last = None
    for rows, fails in publications:
        if fails:
            with pytest.raises(Stop):
                lake.publish_dir(folder, _failing_write)
        else:
            last = lake.publish_dir(folder, _write(rows))
    if last is None:
        assert lake.read_manifest(folder) is None
        assert [p.name for p in folder.iterdir()] == []
        return
    assert lake.read_manifest(folder) == json.loads(json.dumps(last))
    assert _intact(folder) == last["rows"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        {lake.MANIFEST, last["generation"], last["previous"]} - {None})


def test_a_deleted_lock_file_never_lets_two_holders_in(tmp_path: Path) -> None:
    """Holders delete the lock file as they let go, and doctor deletes stale ones: a waiter
    that then gets the old file's lock must start over, or two would hold it at once."""
    inside, overlaps = [0], []

    def hold() -> None:
        for _ in range(40):
            with lake.locked(tmp_path):
                inside[0] += 1
                overlaps.append(inside[0])
                time.sleep(0.0005)
                inside[0] -= 1

    def sweep() -> None:
        for _ in range(200):
            with lake.locked(tmp_path, wait=False):
                pass

    threads = [threading.Thread(target=hold) for _ in range(4)] + [threading.Thread(target=sweep)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(overlaps) == 160 and max(overlaps) == 1
    assert not (tmp_path / lake.LOCK).exists()


def test_a_held_lock_is_refused_without_waiting_and_seen_as_held(tmp_path: Path) -> None:
    with lake.locked(tmp_path) as got:
        assert got and lake.held(tmp_path / lake.LOCK)
        with lake.locked(tmp_path, wait=False) as second:
            assert second is False
        assert (tmp_path / lake.LOCK).exists()
    assert not (tmp_path / lake.LOCK).exists()


def test_readers_read_only_what_the_manifest_names(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    for rows in (2, 3, 4):
        lake.publish_dir(folder, _write(rows))
    stray = folder / f"g-{uuid.uuid4().hex}"  # a killed writer's generation
    stray.mkdir()
    lake.write_parquet(pa.table({"x": [9]}), stray / lake.DATA_FILE)
    manifest = lake.read_manifest(folder)
    assert lake.committed_parquet(folder) == [folder / manifest["generation"] / lake.DATA_FILE]
    assert lake.committed_parquet(tmp_path) == lake.committed_parquet(folder)
    plain = tmp_path / "plain"
    (plain / "sub").mkdir(parents=True)
    (plain / ".hidden").mkdir()
    for path in (plain / "a.parquet", plain / "sub" / "b.parquet", plain / ".hidden" / "c.parquet"):
        lake.write_parquet(pa.table({"x": [1]}), path)
    assert lake.committed_parquet(plain) == [plain / "a.parquet", plain / "sub" / "b.parquet"]
    assert pit._parquet_files(folder.parent) == [str(folder / manifest["generation"] / lake.DATA_FILE)]


def test_committed_file_says_what_is_missing(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    with pytest.raises(DataError, match=r"date=2013-01-01: no _manifest.json, nothing was pub"):
        lake.committed_file(folder)
    lake.publish_dir(folder, _write(2))
    with pytest.raises(DataError, match=r"_manifest.json: lists no file 'other.parquet'"):
        lake.committed_file(folder, "other.parquet")


def test_a_partition_of_the_layout_before_generations_reads_and_is_replaced(
        tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    folder.mkdir(parents=True)
    lake.write_parquet(pa.table({"x": [1, 2]}), folder / lake.DATA_FILE)
    entry = {"name": lake.DATA_FILE, "rows": 2, "sha256": lake.sha256_file(folder / lake.DATA_FILE)}
    (folder / lake.MANIFEST).write_text(json.dumps({"rows": 2, "files": [entry]}))
    (part,) = lake.list_partitions(lake.open_lake(tmp_path), "p", "raw", "t")
    assert part.data_path == folder / lake.DATA_FILE and part.rows == 2
    assert doctor.lake_findings(tmp_path) == []
    lake.publish_dir(folder, _write(4))
    assert _intact(folder) == 4
    (found,) = doctor.lake_findings(tmp_path, fix=True)
    assert (found.kind, found.where, found.action) == (
        "superseded", "p/raw/t/date=2013-01-01/data.parquet", "removed")
    assert _intact(folder) == 4


def test_a_pinned_generation_outlives_any_number_of_publications(tmp_path: Path) -> None:
    """A generation a model's lineage names is pinned with the manifest that committed it;
    `publish_dir` then never removes it, and `doctor` never takes it for a leftover."""
    folder = _folder(tmp_path)
    used = lake.publish_dir(folder, _write(5))
    assert lake.pin(folder, used["generation"]) and lake.pin(folder, used["generation"])
    for rows in (6, 7, 8):
        lake.publish_dir(folder, _write(rows))
    assert _intact(folder) == 8
    assert lake.pinned_generations(folder) == {used["generation"]}
    assert lake.pinned_manifest(folder, used["generation"]) == json.loads(json.dumps(used))
    assert pq.read_metadata(folder / used["generation"] / lake.DATA_FILE).num_rows == 5
    assert doctor.lake_findings(tmp_path) == []
    current = lake.read_manifest(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        {lake.MANIFEST, lake.PINS, used["generation"], current["generation"], current["previous"]})


def test_only_the_committed_generation_can_be_pinned(tmp_path: Path) -> None:
    """Its manifest is the one a pin keeps: a replaced generation's is gone, so pinning it
    says False and writes nothing."""
    folder = _folder(tmp_path)
    replaced = lake.publish_dir(folder, _write(5))
    lake.publish_dir(folder, _write(6))
    assert lake.pin(folder, replaced["generation"]) is False
    assert lake.pinned_generations(folder) == set()
    assert lake.pinned_manifest(folder, replaced["generation"]) is None
