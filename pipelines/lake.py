"""The lake: partition paths, atomic publication, manifests and content hashes.

Every pipeline owns `<lake>/<pipeline>/`. Every published unit (a raw or feature day
partition, a training set) is a folder under it holding its
data files and a `_manifest.json` with rows, bytes and sha256 of each file. A folder is built
under a hidden temporary name and renamed into place, so a reader sees the old version or the
new one, never half of either; a rerun replaces the folder whole. Readers only trust folders
that have a manifest, and hidden (`.`-prefixed) folders are leftovers of interrupted writers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.settings import lake_root

MANIFEST = "_manifest.json"
DATA_FILE = "data.parquet"


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


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish_dir(final: Path, write: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Build a folder with `write(tmp)` (which returns manifest fields), then swap it in.

    The manifest gets `files`: name, rows (Parquet), bytes and sha256 of every file written.
    Concurrent publishers of the same folder serialize on a lock; the last one wins whole.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        manifest = dict(write(tmp))
        files = []
        for path in sorted(p for p in tmp.rglob("*") if p.is_file() and p.name != MANIFEST):
            entry: dict[str, Any] = {
                "name": path.relative_to(tmp).as_posix(),
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
            }
            if path.suffix == ".parquet":
                entry["rows"] = pq.ParquetFile(path).metadata.num_rows
            files.append(entry)
        manifest["files"] = files
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        with _locked(final.parent):
            if final.exists():
                trash = final.parent / f".trash-{final.name}-{uuid.uuid4().hex}"
                os.rename(final, trash)
                os.rename(tmp, final)
                shutil.rmtree(trash)
            else:
                os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def write_parquet(table: pa.Table, path: Path) -> None:
    """Deterministic Parquet: same table, same bytes (no timestamps or random IDs inside)."""
    pq.write_table(table, path, compression="zstd", write_statistics=True)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class Partition:
    """A published day partition: its folder, day and manifest."""

    path: Path
    day: dt.date
    manifest: dict[str, Any]

    @property
    def data_path(self) -> Path:
        return self.path / DATA_FILE

    @property
    def sha256(self) -> str:
        return next(f["sha256"] for f in self.manifest["files"] if f["name"] == DATA_FILE)

    @property
    def rows(self) -> int:
        return int(next(f["rows"] for f in self.manifest["files"] if f["name"] == DATA_FILE))


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
