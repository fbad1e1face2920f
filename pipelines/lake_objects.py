"""Publication on an object store (S3 API), where nothing can be renamed or locked.

The layout is the local one (`lake.py`): each publication's files go under a new generation
prefix `g-<uuid>/`, and `_manifest.json`, written last, is the commit record that names it.
Data objects are never overwritten, so a reader that read a manifest reads exactly the bytes
it names. What differs is the commit, which is one conditional PUT of the manifest:

- `If-None-Match: *` when the folder has no manifest yet, `If-Match: <ETag>` of the manifest
  the writer read otherwise. Of two writers that read the same manifest, the store accepts
  one PUT and answers 412 Precondition Failed to the other, which re-reads the manifest and
  commits again on top of it (its files are complete, so the retry is a PUT and nothing
  more). Each commit names exactly one whole generation, and `previous` always names the one
  it replaced, so superseded generations are removed by the writer that superseded them.
- A writer killed before its PUT leaves objects under a generation no manifest names;
  readers never list generations, they follow the manifest. With no flock on an object
  store, `pitstop doctor` tells a dead writer's leftovers from a live one's by age.

SeaweedFS (4.48, what the tests run) honours both conditions on PutObject, as AWS S3 does
since 2024. A store that ignored them would still never show a reader a partial partition
(the manifest PUT is atomic), but two racing writers could then both commit, the later PUT
winning and the other's generation left for `pitstop doctor`.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fsspec.asyn import sync

from pipelines.errors import LineageError

COMMIT_TRIES = 20
"""Conditional PUTs a writer tries before it gives up: each lost race means another writer
committed meanwhile, so 20 in a row is contention no retry will clear soon."""


def _bucket_key(path: Any) -> tuple[str, str]:
    bucket, key, _ = path.fs.split_path(path.path)
    return bucket, key


async def _get(fs: Any, bucket: str, key: str) -> tuple[bytes, str]:
    response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
    async with response["Body"] as body:
        return await body.read(), response["ETag"]


def read_tagged(path: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest at `path` and its ETag from one GET (so the tag is that content's), or
    (None, None) when there is none."""
    try:
        data, etag = sync(path.fs.loop, _get, path.fs, *_bucket_key(path))
    except FileNotFoundError:
        return None, None
    return json.loads(data), etag


def _lost_race(exc: OSError) -> bool:
    """Whether a PUT failed on its condition (HTTP 412), which s3fs raises as an OSError."""
    cause = getattr(exc.__cause__, "response", {}) or {}
    return cause.get("Error", {}).get("Code") == "PreconditionFailed"


def commit(final: Any, manifest: dict[str, Any], manifest_name: str) -> dict[str, Any]:
    """PUT `manifest` as `final/<manifest_name>` on condition that the manifest is still the
    one just read; on a lost race re-read and try again. Returns the manifest it replaced.

    A 412 may also answer a retried PUT whose first try landed but whose answer was lost:
    then the manifest read next is this one, and the commit is done, on top of the one read
    before it.
    """
    target = final / manifest_name
    bucket, key = _bucket_key(target)
    replaced: dict[str, Any] | None = None
    for _ in range(COMMIT_TRIES):
        current, etag = read_tagged(target)
        if replaced is not None and (current or {}).get("generation") == manifest["generation"]:
            return replaced
        replaced = current or {}
        manifest["previous"] = replaced.get("generation")
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        body = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
        try:
            final.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=body,
                             ContentType="application/json", **condition)
        except OSError as exc:
            if _lost_race(exc):
                continue
            raise
        return replaced
    raise LineageError(f"{target}: {COMMIT_TRIES} other writers committed this folder while "
                       "this one tried to; its files were removed, run the task again")


def publish(final: Any, write: Callable[[Path], dict[str, Any]],
            describe: Callable[[Path], list[dict[str, Any]]], manifest_name: str
            ) -> tuple[dict[str, Any], dict[str, Any]]:
    """`write` into a local scratch folder, upload its files under a new generation of
    `final`, then `commit`. Returns (committed manifest, the manifest it replaced).

    Writing locally first keeps every writer (Parquet, GX Data Docs) unaware of the store,
    and lets the manifest describe the exact bytes that are uploaded. A failure before the
    commit removes what it uploaded; a kill leaves it for `pitstop doctor`.
    """
    generation = f"g-{uuid.uuid4().hex}"
    folder = final / generation
    with tempfile.TemporaryDirectory(prefix="pitstop-publish-") as scratch:
        local = Path(scratch)
        manifest = {**write(local), "generation": generation, "files": describe(local)}
        try:
            _upload(local, manifest["files"], folder)
            replaced = commit(final, manifest, manifest_name)
        except BaseException:
            remove(folder)
            raise
    return manifest, replaced


def _upload(local: Path, files: list[dict[str, Any]], folder: Any) -> None:
    """Put each file under the generation `folder`. A refusal (S3 stores answer Access Denied
    for a bucket that does not exist, too) is re-raised naming the object and what to check;
    it stays an OSError, which a task may retry."""
    for entry in files:
        target = folder / entry["name"]
        try:
            folder.fs.put_file(str(local / entry["name"]), target.path)
        except OSError as exc:
            bucket, _ = _bucket_key(target)
            raise type(exc)(f"{target}: cannot be written ({exc}); check that bucket {bucket!r} "
                            "exists and that AWS_ACCESS_KEY_ID may write to it at "
                            "AWS_ENDPOINT_URL, or point PITSTOP_LAKE elsewhere") from exc


def remove(folder: Any) -> None:
    """Remove every object under `folder` (a generation); nothing there is not an error."""
    try:
        folder.fs.rm(folder.path, recursive=True)
    except FileNotFoundError:
        pass
