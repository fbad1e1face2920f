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

A lake is a value, `Lake` (its root URL and filesystem), built at the edges from
`PITSTOP_LAKE` (`from_env()`) and passed in. On a local folder its paths are
`pathlib.Path`s and a commit is `os.replace` under a flock; on an object store they are
`upath.UPath`s and a commit is a conditional PUT (`lake_objects.py`).
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
from typing import TYPE_CHECKING, Any, TypeVar

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from upath import UPath

from pipelines import lake_objects, settings
from pipelines.errors import DataError, LineageError, SpecError

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

MANIFEST = "_manifest.json"
DATA_FILE = "data.parquet"
LOCK = ".lock"
GENERATION = re.compile(r"g-[0-9a-f]{32}")
"""Name of one publication's subfolder: `g-` and a uuid4 in hex."""
MANIFEST_TMP = MANIFEST + ".tmp-"
"""Prefix of a manifest being committed; left behind only by a writer killed mid-commit."""
PINS = ".pins"
"""Subfolder of a published folder holding `<generation>.json`, a copy of the manifest that
committed each generation a model's lineage names: such a generation is never removed."""

ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(), "bool": pa.bool_(),
               "timestamp": pa.timestamp("us", tz="UTC")}
"""The Arrow type raw partitions store each spec column type as (`pipelines.spec.ColumnType`),
whether the rows came from files or from a database: the same rows, the same Parquet bytes."""



LakePath = Path | UPath
"""A path in a lake: a `Path` on a local folder, a `UPath` on an object store."""


@dataclass(frozen=True)
class Lake:
    """Where a lake is and how to reach it: what every reader and writer is given.

    `url` is an absolute folder or `s3://bucket/prefix`; `fs` is its fsspec filesystem,
    built once with the endpoint and credentials (`from_env()`), so the library reads
    no environment and `reproduce` can work on a scratch lake beside the real one.
    """

    url: str
    fs: AbstractFileSystem

    @property
    def local(self) -> bool:
        return "file" in self.fs.protocol

    @property
    def root(self) -> LakePath:
        return Path(self.url) if self.local else UPath(self.url, **self.fs.storage_options)

    def relative(self, path: LakePath) -> str:
        """Lake-relative path as recorded in manifests, so a lake can move without re-hashing."""
        if self.local:
            return str(Path(path).resolve().relative_to(Path(self.url).resolve()))
        return str(path).removeprefix(self.url + "/")

    def uri(self, path: LakePath) -> str:
        """A URI for `path` that names its store (`file:///…` or `s3://…`), for MLflow."""
        return path.as_uri() if isinstance(path, Path) else str(path)

    def copy_to(self, path: LakePath, target: Path) -> Path:
        """Copy the file or folder `path` of this lake to the local `target` (made)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(path, Path):
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, target)
        elif path.is_dir():
            self.fs.get(path.path.rstrip("/") + "/", str(target), recursive=True)
        else:
            self.fs.get_file(path.path, str(target))
        return target

    def localized(self, path: LakePath, scratch: Path) -> Path:
        """`path` as a local file or folder: itself on a local lake, else a copy made in
        `scratch`, for what only reads local files (MLflow's artifact upload, DuckDB's
        module-level queries)."""
        if isinstance(path, Path):
            return path
        return self.copy_to(path, scratch / uuid.uuid4().hex / path.name)


def open_lake(url: str | Path, storage_options: dict[str, Any] | None = None) -> Lake:
    """The lake at `url`: a local folder (made absolute), or an fsspec URL such as
    `s3://bucket/prefix` reached with `storage_options`."""
    url = str(url)
    if "://" not in url:
        return Lake(str(Path(url).resolve()), fsspec.filesystem("file"))
    protocol = url.split("://", 1)[0]
    if protocol != "s3":
        raise SpecError(f"PITSTOP_LAKE={url}: a lake is a local folder or s3://bucket/prefix "
                        f"(publication needs the S3 API's conditional PUT), not {protocol}://")
    return Lake(url.rstrip("/"), fsspec.filesystem(protocol, **(storage_options or {})))


def from_env() -> Lake:
    """The lake the commands and tasks work on: `PITSTOP_LAKE` (a folder or
    `s3://bucket/prefix`), by default `$PITSTOP_HOME/lake`. The only reader of that variable:
    the CLI and the orchestration layer build the value here and pass it in."""
    url = os.environ.get("PITSTOP_LAKE") or str(settings.home() / "lake")
    return open_lake(url, s3_options() if url.startswith("s3://") else None)


def s3_options() -> dict[str, Any]:
    """s3fs settings from the standard AWS variables, as every S3 client reads them.

    They are passed explicitly (not left to botocore) because fsspec caches a filesystem by
    its arguments: two lakes on two endpoints must not share one. Listings are not cached,
    so a reader sees partitions other processes committed since its last listing.
    """
    env = os.environ
    options: dict[str, Any] = {"use_listings_cache": False}
    if endpoint := env.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3"):
        options["endpoint_url"] = endpoint
    if key := env.get("AWS_ACCESS_KEY_ID"):
        options.update(key=key, secret=env.get("AWS_SECRET_ACCESS_KEY"))
    if region := env.get("AWS_DEFAULT_REGION"):
        options["client_kwargs"] = {"region_name": region}
    return options


def connect(paths: Sequence[LakePath] = ()) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection in UTC that reads `paths`: the filesystem of those on an object
    store is registered with it, so DuckDB reads them through fsspec (its httpfs extension
    would be downloaded at run time). DuckDB is imported here, not with the module: the DAG
    factory imports this module when a DAG file is parsed."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for fs in {id(p.fs): p.fs for p in paths if not isinstance(p, Path)}.values():
        con.register_filesystem(fs)
    return con


def day_of(path: str | LakePath) -> dt.date:
    """The day of a day partition from its path (`…/date=YYYY-MM-DD[/…]`)."""
    return dt.date.fromisoformat(str(path).rsplit("date=", 1)[1][:10])


def dataset_of(path: str) -> str:
    """The dataset folder of a day partition's path (`<pipeline>/<layer>/<dataset>`)."""
    return path.rsplit("/date=", 1)[0]


def sha256_file(path: LakePath) -> str:
    digest = hashlib.sha256()
    with (open(path, "rb") if isinstance(path, str | Path) else path.open("rb")) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    """Hash of a JSON-able value in canonical form (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def pipeline_dir(store: Lake, pipeline: str, *parts: str) -> LakePath:
    """`<lake>/<pipeline>/<parts…>`: each pipeline owns one top-level folder of the lake.

    Raw, feature, training-set and quality folders all sit under it, so two pipelines that
    both have a source `orders` or a view `daily` never write into each other's partitions,
    and removing one pipeline's folder leaves the others whole.
    """
    return store.root.joinpath(pipeline, *parts)


def partition_dir(store: Lake, pipeline: str, layer: str, dataset: str, day: dt.date) -> LakePath:
    """`<lake>/<pipeline>/<layer>/<dataset>/date=YYYY-MM-DD`, e.g. shop/raw/orders."""
    return pipeline_dir(store, pipeline, layer, dataset, f"date={day.isoformat()}")


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


def manifest_text(manifest: dict[str, Any]) -> str:
    """A manifest as it is written: indented JSON with sorted keys, dates as text."""
    return json.dumps(manifest, indent=2, sort_keys=True, default=str)


def _commit(final: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest beside the old one, then put it in the old one's place in one step
    (`os.replace` is atomic on POSIX: a reader opens the old file or the new one). This holds
    against a killed writer; durability across a power loss is left to the file system."""
    tmp = final / f"{MANIFEST_TMP}{uuid.uuid4().hex}"
    try:
        tmp.write_text(manifest_text(manifest))
        os.replace(tmp, final / MANIFEST)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def publish_dir(final: LakePath, write: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Write a new generation of `final` with `write(folder)` (which returns manifest
    fields), then commit it by replacing the manifest; returns the committed manifest.

    The manifest gets `generation`, `previous` (the generation it replaced) and `files`:
    name, rows (Parquet), bytes and sha256 of every file written. Concurrent publishers of
    one folder serialize their commits on its lock; the last one wins whole. The replaced
    generation stays until the next commit (a reader of the old manifest has one whole
    publication's time to finish); the one before it is removed unless pinned (`pin`). A
    failed write removes its own files and leaves the committed partition as it was. On an
    object store `write` gets a local scratch folder and the commit is a conditional PUT
    (`lake_objects.publish`), with the same guarantees and no lock."""
    if not isinstance(final, Path):
        manifest, replaced = lake_objects.publish(final, write, _describe, MANIFEST)
        if superseded := _unpinned_previous(final, replaced):
            lake_objects.remove(final / superseded)
        return manifest
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
                # under the lock `pin` takes: a generation is pinned or removed, never both
                if superseded := _unpinned_previous(final, replaced):
                    shutil.rmtree(final / superseded, ignore_errors=True)
    finally:
        if not committed:
            shutil.rmtree(folder, ignore_errors=True)
    return manifest


def _unpinned_previous(final: LakePath, replaced: dict[str, Any]) -> str | None:
    """The generation a commit leaves to remove: the one the replaced manifest had replaced,
    unless a model's lineage pinned it (`pin`)."""
    previous = replaced.get("previous") or ""
    if GENERATION.fullmatch(previous) and not (final / PINS / f"{previous}.json").exists():
        return previous
    return None


def pin(folder: LakePath, generation: str) -> bool:
    """Keep `generation` of the published `folder` for good, with a copy of the manifest that
    committed it (`.pins/<generation>.json`): a model version's lineage names these bytes,
    and `pitstop verify` and `reproduce` must find them after the folder is republished (a
    re-delivered landing file, a changed hook). Only the committed generation can be pinned:
    its manifest is the one to keep. True when it is pinned (now or before); False when it
    is no longer committed and was never pinned, so its manifest is gone.

    On a local folder the pin is written under the folder's lock, which `publish_dir` holds
    while it removes a superseded generation. An object store has no lock: a pin loses only
    to two publications of the folder between its manifest read and its PUT, and then says
    False."""
    target = folder / PINS / f"{generation}.json"
    if target.exists():
        return True
    if not isinstance(folder, Path):
        manifest = read_manifest(folder)
        if (manifest or {}).get("generation") != generation:
            return False
        target.write_text(manifest_text(manifest))
        # a file, not the prefix: some stores keep listing a prefix whose objects are gone
        if (folder / generation / manifest["files"][0]["name"]).exists():
            return True
        target.unlink()
        return False
    if not (folder / MANIFEST).exists():  # nothing committed (and `locked` would make it)
        return False
    with locked(folder):
        manifest = read_manifest(folder)
        if (manifest or {}).get("generation") != generation:
            return False
        target.parent.mkdir(exist_ok=True)
        tmp = target.with_name(f".tmp-{uuid.uuid4().hex}")
        tmp.write_text(manifest_text(manifest))
        os.replace(tmp, target)
    return True


def pinned_manifest(folder: LakePath, generation: str) -> dict[str, Any] | None:
    """The manifest that committed a pinned `generation` of `folder`, or None if unpinned."""
    try:
        return json.loads((folder / PINS / f"{generation}.json").read_text())
    except FileNotFoundError:
        return None


def pinned_generations(folder: LakePath) -> set[str]:
    """The generations of `folder` that are pinned (`pin`): kept whatever is published."""
    pins = folder / PINS
    if not pins.exists():
        return set()
    return {p.name.removesuffix(".json") for p in pins.iterdir()
            if GENERATION.fullmatch(p.name.removesuffix(".json"))}


def write_parquet(table: pa.Table, path: Path) -> None:
    """Deterministic Parquet: same table, same bytes (no timestamps or random IDs inside)."""
    pq.write_table(table, path, compression="zstd", write_statistics=True)


def read_frame(path: LakePath) -> pd.DataFrame:
    """A Parquet file of the lake as a frame (a training set, known-problem cases), on a local
    folder or an object store alike."""
    import pandas as pd

    if isinstance(path, Path):
        return pd.read_parquet(path)
    with path.open("rb") as handle:
        return pd.read_parquet(handle)


def read_manifest(folder: LakePath) -> dict[str, Any] | None:
    """The committed manifest of `folder`, or None when nothing was ever committed there."""
    try:
        return json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return None


def generation_dir(folder: LakePath, manifest: dict[str, Any]) -> LakePath:
    """Where the files of `folder`'s committed publication are. A manifest written before
    generations (no `generation`) names files in the folder itself, so an older lake reads."""
    return folder / manifest.get("generation", "")


def committed_file(folder: LakePath, name: str = DATA_FILE,
                   manifest: dict[str, Any] | None = None) -> LakePath:
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

    path: LakePath
    day: dt.date
    manifest: dict[str, Any]

    @property
    def data_path(self) -> LakePath:
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
    store: Lake,
    pipeline: str,
    layer: str,
    dataset: str,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> list[Partition]:
    """Published partitions with `start <= day < end`, in day order (unbounded when None)."""
    folder = pipeline_dir(store, pipeline, layer, dataset)
    found = []
    for path in sorted(folder.glob("date=*"), key=str) if folder.exists() else []:
        day = day_of(path.name)
        if (start and day < start) or (end and day >= end):
            continue
        if (manifest := read_manifest(path)) is not None:
            found.append(Partition(path, day, manifest))
    return found


def data_sha256(manifest: dict[str, Any]) -> str | None:
    """The sha256 a published folder's manifest records for its data file (None: not listed)."""
    return next((f["sha256"] for f in manifest.get("files", []) if f["name"] == DATA_FILE), None)


def intact(folder: LakePath, manifest: dict[str, Any]) -> bool:
    """Whether the data file `folder`'s committed `manifest` names still hashes to the sha256
    it records: what a skipped partition must still hold (a skip never reads it otherwise)."""
    try:
        return sha256_file(committed_file(folder, DATA_FILE, manifest)) == data_sha256(manifest)
    except (FileNotFoundError, DataError):
        return False


def _identity(stat: os.stat_result) -> tuple[int, ...]:
    """What replacing or writing a file changes: device, inode, size, mtime and ctime (ns).

    ctime is part of it because `os.utime` can put mtime back after a write, never ctime.
    """
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _object_identity(path: UPath) -> tuple[Any, ...]:
    """What replacing an object changes: its ETag and size (objects are never appended to)."""
    info = path.fs.info(path.path)
    return (info.get("ETag"), info["size"])


def _current_identity(path: LakePath) -> tuple[Any, ...]:
    """`_identity` of the file at `path` now, or () when it is gone."""
    try:
        return _identity(os.stat(path)) if isinstance(path, Path) else _object_identity(path)
    except FileNotFoundError:
        return ()


def _hashed(path: LakePath) -> tuple[tuple[Any, ...], int, str]:
    """The identity `path` was hashed at, its size and its sha256 (raises
    FileNotFoundError)."""
    if not isinstance(path, Path):
        identity = _object_identity(path)
        with path.open("rb") as handle:
            return identity, identity[1], hashlib.file_digest(handle, "sha256").hexdigest()
    with open(path, "rb") as handle:
        stat = os.fstat(handle.fileno())
        return _identity(stat), stat.st_size, hashlib.file_digest(handle, "sha256").hexdigest()


def verify_file(path: LakePath, expected: str | None, repair: str) -> tuple[Any, ...]:
    """Re-hash `path` against the sha256 its manifest records; DataError naming the file, both
    hashes and `repair` (what to run) when they differ. Returns the identity it was hashed at.

    The whole file is hashed on every call, on purpose without a cache of earlier results: a
    cache keyed on stat trusts a file written in place within the file system's timestamp
    granularity and one changed beneath it (a bit flipped on disk), and the hash costs little
    next to the parse that follows, which reads the same bytes again from the page cache
    (`make bench-verify`, bench/README.md).
    """
    try:
        identity, size, found = _hashed(path)
    except FileNotFoundError:
        identity, size, found = (), -1, "missing"
    if found != expected:
        held = f"{size} bytes" if identity else "no file"
        raise DataError(
            f"{path}: sha256 {found} ({held}) is not {expected or 'none'}, the sha256 its "
            f"manifest records (rule: data is read only as published; this file was changed, "
            f"truncated or removed since, and nothing was read from it); {repair}")
    return identity


def _repair(partition: Partition) -> str:
    """What republishes a day partition from what it was made of, by its layer."""
    dataset_dir = partition.path.parent
    pipeline, layer, dataset = dataset_dir.parent.parent.name, dataset_dir.parent.name, \
        dataset_dir.name
    day, after = partition.day, partition.day + dt.timedelta(days=1)
    if layer == "features":
        return (f"recompute that day: `pitstop backfill <{pipeline} spec> --start {day} "
                f"--end {after} --views {dataset} --reason 'corrupt partition'`")
    return (f"re-ingest that day from its landing file: trigger {pipeline}_ingest with start "
            f"{day} and end {after}, then recompute the features that read it")


def verified_training_file(folder: LakePath, start: dt.date, end: dt.date) -> LakePath:
    """A published training set's data file, re-hashed against its manifest: what the GX gate,
    training and evaluation read, so a set corrupted after it was built is never used."""
    manifest = read_manifest(folder) or {}
    path = committed_file(folder, manifest=manifest)
    verify_file(path, data_sha256(manifest),
                f"rebuild it: run the train DAG over {start}..{end} again, whose "
                "build_training_set republishes a corrupt set")
    return path


def verify(partition: Partition) -> tuple[Any, ...]:
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
        if _current_identity(partition.data_path) != identity:
            raise LineageError(f"{partition.data_path}: replaced while it was read, so what "
                               "was read is not what its manifest names; run the task again")
    return result


def read_partitions(partitions: Sequence[Partition], day_column: str | None = None
                    ) -> pa.Table:
    """The rows of day partitions (raw or features) in one DuckDB read, verified
    (`read_verified`); with `day_column`, each row's partition day as UTC midnight.

    The one reader of both day layers. Hive partitioning is off: the `date=` folder name must
    never replace a column that happens to be called `date`. The day comes from each
    `Partition`, not from its path: DuckDB keeps file order (insertion order is preserved),
    so the days are each partition's day repeated over its manifest's row count.
    """
    con = connect([p.path for p in partitions])
    table = read_verified(partitions, lambda paths: con.sql(
        "SELECT * FROM read_parquet(?, hive_partitioning = false)", params=[paths],
    ).to_arrow_table())
    if day_column is None:
        return table
    counts = [p.rows for p in partitions]
    if sum(counts) != table.num_rows:
        raise LineageError(f"{partitions[0].path.parent}: read {table.num_rows} rows where the "
                           f"manifests list {sum(counts)}; run `pitstop verify`")
    midnights = [dt.datetime.combine(p.day, dt.time(), dt.UTC) for p in partitions]
    day_type = pa.timestamp("us", tz="UTC")
    which = pa.array(np.repeat(np.arange(len(counts)), counts))
    return table.append_column(pa.field(day_column, day_type),
                               pa.array(midnights, day_type).take(which))


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
