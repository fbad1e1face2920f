"""The lake as a value, and publication on a real S3 endpoint (SeaweedFS, never a mock).

On an object store a commit is a conditional PUT of the manifest: these tests check that a
reader only ever sees committed partitions, that two writers of one partition end with one
whole publication and no orphans, that a killed writer leaves nothing visible and only what
`pitstop doctor` removes by age, and that a changed object is named by verification.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipelines import doctor, lake, lake_objects
from pipelines.errors import DataError, SpecError

pytestmark = pytest.mark.integration  # the S3 tests start SeaweedFS

DAY = dt.date(2013, 1, 1)
LATER = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
"""An age rule that takes everything as old: what `doctor --older-than 0` does an hour on."""


def test_a_local_lake_is_an_absolute_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.chdir(tmp_path)
    store = lake.open_lake("lake")
    assert store.local and store.url == str(tmp_path / "lake")
    assert lake.partition_dir(store, "p", "raw", "t", DAY) == tmp_path / "lake/p/raw/t/date=2013-01-01"
    assert store.relative(tmp_path / "lake" / "p" / "raw") == "p/raw"


def test_an_s3_lake_takes_its_endpoint_from_the_aws_variables(monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    for name, value in {"PITSTOP_LAKE": "s3://bucket/prefix/", "AWS_ENDPOINT_URL": "http://h:1",
                        "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret",
                        "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    store = lake.from_env()
    assert not store.local and store.url == "s3://bucket/prefix"
    options = store.fs.storage_options
    assert (options["endpoint_url"], options["key"], options["secret"]) == ("http://h:1", "id",
                                                                           "secret")
    assert options["client_kwargs"] == {"region_name": "eu-west-1"}
    folder = lake.pipeline_dir(store, "p", "datasets", "x")
    assert str(folder) == "s3://bucket/prefix/p/datasets/x"
    assert store.relative(folder) == "p/datasets/x"


def test_an_unsupported_lake_url_is_a_clear_error() -> None:
    with pytest.raises(SpecError, match="PITSTOP_LAKE=gs://b/p: a lake is a local folder or s3"):
        lake.open_lake("gs://b/p")


def _write(value: int, gate: threading.Barrier | None = None) -> Any:
    def write(folder: Path) -> dict[str, Any]:
        lake.write_parquet(pa.table({"v": [value] * 3}), folder / lake.DATA_FILE)
        if gate is not None:
            gate.wait(timeout=60)  # every writer has its files before any commits
        return {"value": value}
    return write


def _generations(folder: Any) -> set[str]:
    """Generations holding objects: SeaweedFS still lists a prefix whose objects were all
    deleted (its filer keeps the empty folder), so listing folders would count removed ones."""
    return {part for key in folder.fs.find(folder.path) for part in key.split("/")
            if lake.GENERATION.fullmatch(part)}


def test_publish_then_read_through_duckdb_on_s3(s3_lake_url: str) -> None:
    store = lake.from_env()
    folder = lake.partition_dir(store, "p", "raw", "t", DAY)
    manifest = lake.publish_dir(folder, _write(7))
    (partition,) = lake.list_partitions(store, "p", "raw", "t")
    assert partition.manifest == manifest and partition.rows == 3
    assert str(partition.data_path).startswith(s3_lake_url + "/p/raw/t/date=2013-01-01/g-")
    con = lake.connect([partition.path])
    rows = lake.read_verified([partition], lambda paths: con.sql(
        "SELECT sum(v) FROM read_parquet(?)", params=[paths]).fetchall())
    assert rows == [(21,)]


def test_republishing_keeps_the_last_two_generations_only(s3_lake_url: str) -> None:
    folder = lake.partition_dir(lake.from_env(), "p", "raw", "t", DAY)
    manifests = [lake.publish_dir(folder, _write(i)) for i in range(3)]
    assert [m["previous"] for m in manifests] == [None] + [m["generation"] for m in manifests[:2]]
    assert _generations(folder) == {manifests[2]["generation"], manifests[1]["generation"]}
    assert lake.read_manifest(folder)["value"] == 2


def test_a_pinned_generation_is_never_removed_on_s3(s3_lake_url: str) -> None:
    folder = lake.partition_dir(lake.from_env(), "p", "raw", "t", DAY)
    used = lake.publish_dir(folder, _write(0))
    assert lake.pin(folder, used["generation"])
    manifests = [lake.publish_dir(folder, _write(i)) for i in range(1, 4)]
    assert _generations(folder) == {used["generation"], *(m["generation"] for m in manifests[1:])}
    assert lake.pinned_generations(folder) == {used["generation"]}
    assert lake.pinned_manifest(folder, used["generation"])["value"] == 0
    assert lake.pin(folder, manifests[0]["generation"]) is False  # replaced: no manifest left


def test_two_concurrent_writers_commit_one_after_the_other_whole(s3_lake_url: str) -> None:
    """Four writers of one partition reach the commit together; the conditional PUT lets one
    win each round and the others re-read and commit on top, so the chain of `previous`
    stays whole and every superseded generation is removed: exactly one remains committed
    and nothing is orphaned (with an unconditional PUT, racers' generations would be)."""
    folder = lake.partition_dir(lake.from_env(), "p", "raw", "t", DAY)
    gate = threading.Barrier(4)
    done: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda i=i: done.append(
        lake.publish_dir(folder, _write(i, gate)))) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(done) == 4
    final = lake.read_manifest(folder)
    chain = {m["generation"]: m["previous"] for m in done}
    assert sorted(chain.values(), key=str)[0] is None and len(set(chain.values())) == 4
    assert final["generation"] in chain and final["previous"] == chain[final["generation"]]
    assert _generations(folder) == {final["generation"], final["previous"]}
    (partition,) = lake.list_partitions(lake.from_env(), "p", "raw", "t")
    lake.verify(partition)


def test_a_lost_race_puts_again_on_top_of_the_winner(s3_lake_url: str) -> None:
    """The commit reads the manifest, then PUTs on condition that it is unchanged: a stale
    ETag is refused by the store, and `commit` re-reads instead of overwriting."""
    folder = lake.partition_dir(lake.from_env(), "p", "raw", "t", DAY)
    first = lake.publish_dir(folder, _write(1))
    _, etag = lake_objects.read_tagged(folder / lake.MANIFEST)
    lake.publish_dir(folder, _write(2))
    bucket, key, _ = folder.fs.split_path((folder / lake.MANIFEST).path)
    with pytest.raises(OSError) as refused:
        folder.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=b"{}", IfMatch=etag)
    assert lake_objects._lost_race(refused.value)
    assert lake.read_manifest(folder)["previous"] == first["generation"]


def test_a_put_that_landed_but_whose_answer_was_lost_is_not_put_again(
        s3_lake_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A retried PUT refused (412) because its first try landed: the writer finds its own
    manifest committed and stops, keeping `previous` on the generation it replaced (a
    second PUT would name itself as previous and orphan that one)."""
    from botocore.exceptions import ClientError

    folder = lake.partition_dir(lake.from_env(), "p", "raw", "t", DAY)
    first = lake.publish_dir(folder, _write(1))
    real, lost = folder.fs.call_s3, []

    def landed_then_lost(method: str, *args: Any, **kwargs: Any) -> Any:
        answer = real(method, *args, **kwargs)
        if method == "put_object" and kwargs["Key"].endswith(lake.MANIFEST) and not lost:
            lost.append(kwargs["Key"])
            raise OSError(22, "lost answer") from ClientError(
                {"Error": {"Code": "PreconditionFailed", "Message": "retried"}}, "PutObject")
        return answer

    monkeypatch.setattr(folder.fs, "call_s3", landed_then_lost)
    second = lake.publish_dir(folder, _write(2))
    assert lost and second["previous"] == first["generation"]
    assert lake.read_manifest(folder) == second
    assert _generations(folder) == {first["generation"], second["generation"]}


KILLER = """
import os, signal, sys
from pipelines import lake, lake_objects
def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
lake_objects.commit = killed
import pyarrow as pa
folder = lake.partition_dir(lake.from_env(), "p", "raw", "t", __import__("datetime").date(2013, 1, 1))
lake.publish_dir(folder, lambda f: lake.write_parquet(pa.table({"v": [9]}), f / lake.DATA_FILE) or {})
"""


def test_a_writer_killed_before_its_commit_leaves_nothing_visible(s3_lake_url: str) -> None:
    store = lake.from_env()
    folder = lake.partition_dir(store, "p", "raw", "t", DAY)
    committed = lake.publish_dir(folder, _write(1))
    killed = subprocess.run([sys.executable, "-c", KILLER], env=os.environ.copy(), check=False)
    assert killed.returncode == -9
    (partition,) = lake.list_partitions(store, "p", "raw", "t")
    assert partition.manifest == committed  # readers still see the committed one, whole
    (orphan,) = _generations(folder) - {committed["generation"]}
    young = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    assert doctor.object_findings(store, young) == []  # may be a live writer's: kept
    (found,) = doctor.object_findings(store, LATER, fix=True)
    assert (found.kind, found.where, found.action) == (
        "uncommitted", f"p/raw/t/date=2013-01-01/{orphan}", "removed")
    assert _generations(folder) == {committed["generation"]}
    assert lake.publish_dir(folder, _write(2))["previous"] == committed["generation"]


def test_a_partition_never_committed_is_not_listed(s3_lake_url: str) -> None:
    store = lake.from_env()
    folder = lake.partition_dir(store, "p", "raw", "t", DAY)
    (folder / "g-0123456789abcdef0123456789abcdef" / lake.DATA_FILE).write_bytes(b"partial")
    assert lake.list_partitions(store, "p", "raw", "t") == []
    assert [f.kind for f in doctor.examine(store, LATER)] == ["uncommitted"]


def test_a_changed_object_is_named_when_read(s3_lake_url: str) -> None:
    store = lake.from_env()
    lake.publish_dir(lake.partition_dir(store, "p", "raw", "t", DAY), _write(1))
    (partition,) = lake.list_partitions(store, "p", "raw", "t")
    data = bytearray(partition.data_path.read_bytes())
    data[len(data) // 2] ^= 0x01
    partition.data_path.write_bytes(bytes(data))
    with pytest.raises(DataError) as error:
        lake.verify(partition)
    assert str(partition.data_path) in str(error.value)
    assert json.loads((partition.path / lake.MANIFEST).read_text()) == partition.manifest


def test_a_missing_bucket_is_a_clear_error(s3_server: Any, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    for name, value in s3_server.env("s3://no-such-bucket-here/lake").items():
        monkeypatch.setenv(name, value)
    folder = lake.partition_dir(lake.from_env(), "p", "raw", "t", DAY)
    with pytest.raises(OSError, match="check that bucket 'no-such-bucket-here' exists") as error:
        lake.publish_dir(folder, _write(1))
    assert "s3://no-such-bucket-here/lake/p/raw/t/date=2013-01-01/g-" in str(error.value)
    assert lake.list_partitions(lake.from_env(), "p", "raw", "t") == []
