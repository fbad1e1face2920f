"""The lake: partition paths, atomic publication, manifests and content hashes.

Every pipeline owns `<lake>/<pipeline>/`. Every published unit (a raw or feature day
partition, a training set, a quality result) is a folder under it that stays in place. Each
publication writes its files into a new generation `g-<uuid>/` inside the folder, then commits
by replacing `_manifest.json` in one atomic step; the manifest names its generation and lists
rows, bytes and sha256 of each file. A reader sees the old manifest or the new one, never none,
and reads only the files the manifest names. No folder is renamed, so the same protocol works
on an object store, where a PUT of the manifest is the commit. Anything in a folder that its
manifest does not name is uncommitted: a writer killed mid-way leaves it, `pitstop doctor`
lists and removes it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.errors import DataError, LineageError
from pipelines.settings import lake_root

MANIFEST = "_manifest.json"
DATA_FILE = "data.parquet"
LOCK = ".lock"
GENERATION = re.compile(r"g-[0-9a-f]{32}")
"""Name of one publication's subfolder: `g-` and a uuid4 in hex."""
MANIFEST_TMP = MANIFEST + ".tmp-"
"""Prefix of a manifest being committed; left behind only by a writer killed mid-commit."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    """Hash of a JSON-able value in canonical form (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def pipeline_dir(pipeline: str, *parts: str, root: Path | None = None) -> Path:
    """`<lake>/<pipeline>/<parts…>`: each pipeline owns one top-level folder of the lake.

    Raw, feature, training-set and quality folders all sit under it, so two pipelines that
    both have a source `orders` or a view `daily` never write into each other's partitions,
    and removing one pipeline's folder leaves the others whole.
    """
    return (root or lake_root()).joinpath(pipeline, *parts)


def partition_dir(
    pipeline: str, layer: str, dataset: str, day: dt.date, root: Path | None = None
) -> Path:
    """`<lake>/<pipeline>/<layer>/<dataset>/date=YYYY-MM-DD`, e.g. shop/raw/orders."""
    return pipeline_dir(pipeline, layer, dataset, f"date={day.isoformat()}", root=root)


def relative(path: Path, root: Path | None = None) -> str:
    """Lake-relative path as recorded in manifests, so a lake can move without re-hashing."""
    return str(Path(path).resolve().relative_to((root or lake_root()).resolve()))


def _same_file(handle: Any, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def locked(folder: Path, wait: bool = True) -> Iterator[bool]:
    """Hold `folder/.lock` exclusively; yields False when `wait` is off and another holds it.

    The holder deletes the file before it lets go, so a lock file on disk while no process
    holds it was left by a killed writer (`pitstop doctor` removes it). A waiter that gets
    the lock on a file that has since been deleted or replaced starts over on the current one,
    so deleting a lock file never lets two holders in at once.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    while True:
        handle = open(path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            yield False
            return
        if _same_file(handle, path):
            break
        handle.close()
    try:
        yield True
    finally:
        path.unlink(missing_ok=True)
        handle.close()


@contextlib.contextmanager
def _flocked(path: Path, mode: int) -> Iterator[None]:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)


def held(path: Path) -> bool:
    """Whether a live process holds a flock on `path` (a lock file or a generation being
    written); the kernel drops a killed process's locks, so False means nobody is working."""
    try:
        with _flocked(path, fcntl.LOCK_EX | fcntl.LOCK_NB):
            return False
    except BlockingIOError:
        return True


def _describe(folder: Path) -> list[dict[str, Any]]:
    """Name (relative to the generation), bytes, sha256 and Parquet rows of every file."""
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        entry: dict[str, Any] = {"name": path.relative_to(folder).as_posix(),
                                 "bytes": path.stat().st_size, "sha256": sha256_file(path)}
        if path.suffix == ".parquet":
            entry["rows"] = pq.ParquetFile(path).metadata.num_rows
        files.append(entry)
    return files


def _commit(final: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest beside the old one, then put it in the old one's place in one step
    (`os.replace` is atomic on POSIX: a reader opens the old file or the new one). This holds
    against a killed writer; durability across a power loss is left to the file system."""
    tmp = final / f"{MANIFEST_TMP}{uuid.uuid4().hex}"
    try:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        os.replace(tmp, final / MANIFEST)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def publish_dir(final: Path, write: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Write a new generation of `final` with `write(folder)` (which returns manifest
    fields), then commit it by replacing the manifest; returns the committed manifest.

    The manifest gets `generation`, `previous` (the generation it replaced) and `files`:
    name, rows (Parquet), bytes and sha256 of every file written. Concurrent publishers of
    one folder serialize their commits on its lock; the last one wins whole. The replaced
    generation stays until the next commit, so a reader that read the old manifest just
    before has one whole publication's time to finish; the one before it is removed. A
    failed write removes its own files and leaves the committed partition as it was.
    """
    final.mkdir(parents=True, exist_ok=True)
    generation = f"g-{uuid.uuid4().hex}"
    folder = final / generation
    folder.mkdir()
    committed = False
    try:
        # a shared flock on the generation until it is committed tells `pitstop doctor` a
        # live writer owns it (doctor removes only generations nobody holds)
        with _flocked(folder, fcntl.LOCK_SH):
            manifest = {**write(folder), "generation": generation, "files": _describe(folder)}
            with locked(final):
                replaced = read_manifest(final) or {}
                manifest["previous"] = replaced.get("generation")
                _commit(final, manifest)
                committed = True
    finally:
        if not committed:
            shutil.rmtree(folder, ignore_errors=True)
    if GENERATION.fullmatch(replaced.get("previous") or ""):
        shutil.rmtree(final / replaced["previous"], ignore_errors=True)
    return manifest


def write_parquet(table: pa.Table, path: Path) -> None:
    """Deterministic Parquet: same table, same bytes (no timestamps or random IDs inside)."""
    pq.write_table(table, path, compression="zstd", write_statistics=True)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The committed manifest of `folder`, or None when nothing was ever committed there."""
    try:
        return json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return None


def generation_dir(folder: Path, manifest: dict[str, Any]) -> Path:
    """Where the files of `folder`'s committed publication are. A manifest written before
    generations (no `generation`) names files in the folder itself, so an older lake reads."""
    return folder / manifest.get("generation", "")


def committed_file(folder: Path, name: str = DATA_FILE,
                   manifest: dict[str, Any] | None = None) -> Path:
    """The file `name` of the publication committed at `folder` (its manifest is read unless
    given): how every reader finds a file, since each publication writes new ones."""
    manifest = manifest if manifest is not None else read_manifest(folder)
    if manifest is None:
        raise DataError(f"{folder}: no {MANIFEST}, nothing was published here; publish it "
                        "(ingest, backfill or build the training set) first")
    if all(entry["name"] != name for entry in manifest["files"]):
        raise DataError(f"{folder / MANIFEST}: lists no file {name!r}; republish the folder")
    return generation_dir(folder, manifest) / name


def committed_parquet(folder: Path) -> list[Path]:
    """Every Parquet file a reader may read under `folder`: in a published folder those its
    manifest names, elsewhere each file found, never inside an uncommitted generation or a
    hidden folder (both are leftovers of writers)."""
    if (manifest := read_manifest(folder)) is not None:
        return [committed_file(folder, f["name"], manifest) for f in manifest["files"]
                if f["name"].endswith(".parquet")]
    found = []
    for child in sorted(folder.iterdir()):
        if child.is_dir() and not (child.name.startswith(".") or GENERATION.fullmatch(child.name)):
            found += committed_parquet(child)
        elif child.is_file() and child.suffix == ".parquet":
            found.append(child)
    return found


@dataclass(frozen=True)
class Partition:
    """A published day partition: its folder, day and manifest."""

    path: Path
    day: dt.date
    manifest: dict[str, Any]

    @property
    def data_path(self) -> Path:
        """The data file this partition's manifest names (in its committed generation)."""
        return committed_file(self.path, DATA_FILE, self.manifest)

    @property
    def sha256(self) -> str:
        return self._data_entry["sha256"]

    @property
    def rows(self) -> int:
        return int(self._data_entry["rows"])

    @property
    def _data_entry(self) -> dict[str, Any]:
        return next(f for f in self.manifest["files"] if f["name"] == DATA_FILE)


def list_partitions(
    pipeline: str,
    layer: str,
    dataset: str,
    start: dt.date | None = None,
    end: dt.date | None = None,
    root: Path | None = None,
) -> list[Partition]:
    """Published partitions with `start <= day < end`, in day order (unbounded when None)."""
    folder = pipeline_dir(pipeline, layer, dataset, root=root)
    found = []
    for path in sorted(folder.glob("date=*")) if folder.exists() else []:
        day = dt.date.fromisoformat(path.name.removeprefix("date="))
        if (start and day < start) or (end and day >= end):
            continue
        if (manifest := read_manifest(path)) is not None:
            found.append(Partition(path, day, manifest))
    return found


def data_sha256(manifest: dict[str, Any]) -> str | None:
    """The sha256 a published folder's manifest records for its data file (None: not listed)."""
    return next((f["sha256"] for f in manifest.get("files", []) if f["name"] == DATA_FILE), None)


def _identity(stat: os.stat_result) -> tuple[int, ...]:
    """What replacing or writing a file changes: device, inode, size, mtime and ctime (ns).

    ctime is part of it because `os.utime` can put mtime back after a write, never ctime.
    """
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def verify_file(path: Path, expected: str | None, repair: str) -> tuple[int, ...]:
    """Re-hash `path` against the sha256 its manifest records; DataError naming the file, both
    hashes and `repair` (what to run) when they differ. Returns the identity it was hashed at.

    The whole file is hashed on every call, on purpose without a cache of earlier results: a
    cache keyed on stat trusts a file written in place within the file system's timestamp
    granularity and one changed beneath it (a bit flipped on disk), and the hash costs little
    next to the parse that follows, which reads the same bytes again from the page cache
    (`make bench-verify`, bench/README.md).
    """
    try:
        with open(path, "rb") as handle:
            identity = _identity(os.fstat(handle.fileno()))
            found = hashlib.file_digest(handle, "sha256").hexdigest()
    except FileNotFoundError:
        identity, found = (), "missing"
    if found != expected:
        size = f"{identity[2]} bytes" if identity else "no file"
        raise DataError(
            f"{path}: sha256 {found} ({size}) is not {expected or 'none'}, the sha256 its "
            f"manifest records (rule: data is read only as published; this file was changed, "
            f"truncated or removed since, and nothing was read from it); {repair}")
    return identity


def _repair(partition: Partition) -> str:
    """What republishes a day partition from what it was made of, by its layer."""
    pipeline, layer, dataset = partition.path.parts[-4:-1]
    day, after = partition.day, partition.day + dt.timedelta(days=1)
    if layer == "features":
        return (f"recompute that day: `pitstop backfill <{pipeline} spec> --start {day} "
                f"--end {after} --views {dataset} --reason 'corrupt partition'`")
    return (f"re-ingest that day from its landing file: trigger {pipeline}_ingest with start "
            f"{day} and end {after}, then recompute the features that read it")


def verified_training_file(folder: Path, start: dt.date, end: dt.date) -> Path:
    """A published training set's data file, re-hashed against its manifest: what the GX gate,
    training and evaluation read, so a set corrupted after it was built is never used."""
    manifest = read_manifest(folder) or {}
    path = committed_file(folder, manifest=manifest)
    verify_file(path, data_sha256(manifest),
                f"rebuild it: run the train DAG over {start}..{end} again, whose "
                "build_training_set republishes a corrupt set")
    return path


def verify(partition: Partition) -> tuple[int, ...]:
    """`verify_file` for a day partition, saying how to republish it when it fails."""
    return verify_file(partition.data_path, partition.sha256, _repair(partition))


T = TypeVar("T")


def read_verified(partitions: Sequence[Partition], read: Callable[[list[str]], T]) -> T:
    """`read(paths)` of the partitions' data files, every file verified just before and found
    unchanged just after: what `read` parsed are the bytes the manifests name, so each
    partition's `sha256`, which lineage records, is the hash of the bytes actually read.

    Every reader of raw and feature partitions goes through here. A file replaced during the
    read (a concurrent backfill republished it) is a LineageError, which a retry resolves.
    """
    before = [verify(p) for p in partitions]
    result = read([str(p.data_path) for p in partitions])
    for partition, identity in zip(partitions, before, strict=True):
        try:
            after = _identity(os.stat(partition.data_path))
        except FileNotFoundError:
            after = ()
        if after != identity:
            raise LineageError(f"{partition.data_path}: replaced while it was read, so what "
                               "was read is not what its manifest names; run the task again")
    return result


def days(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day in the half-open range [start, end)."""
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


def month_chunks(start: dt.date, end: dt.date) -> list[tuple[dt.date, dt.date]]:
    """Split [start, end) at calendar-month boundaries: the unit of one mapped task."""
    chunks = []
    cursor = start
    while cursor < end:
        next_month = (cursor.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        chunk_end = min(next_month, end)
        chunks.append((cursor, chunk_end))
        cursor = chunk_end
    return chunks


def merge_spans(spans: list[tuple[dt.date, dt.date]]) -> list[tuple[dt.date, dt.date]]:
    """Sorted `[start, end)` spans with overlapping or touching ones merged; empty spans dropped.

    Several ingest runs may trigger one features run: their ranges become as few spans as
    cover exactly the days they wrote, never the gaps between them.
    """
    merged: list[tuple[dt.date, dt.date]] = []
    for lo, hi in sorted(span for span in spans if span[0] < span[1]):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged
