"""Publication is atomic and idempotent; manifests hash what they describe."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines import lake


def _write(rows: int, fail: bool = False):
    def write(tmp: Path) -> dict:
        lake.write_parquet(pa.table({"x": list(range(rows))}), tmp / lake.DATA_FILE)
        if fail:
            raise OSError("disk full")
        return {"dataset": "raw/t"}
    return write


def test_publish_records_rows_bytes_sha(tmp_path: Path) -> None:
    folder = lake.partition_dir(lake.open_lake(tmp_path), "p", "raw", "t", dt.date(2013, 1, 1))
    manifest = lake.publish_dir(folder, _write(5))
    (entry,) = manifest["files"]
    assert entry["rows"] == 5
    assert entry["sha256"] == lake.sha256_file(lake.committed_file(folder))
    assert lake.committed_file(folder) == folder / manifest["generation"] / lake.DATA_FILE
    assert lake.read_manifest(folder)["dataset"] == "raw/t"


def test_rerun_replaces_whole_and_is_deterministic(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    first = lake.publish_dir(folder, _write(5))
    second = lake.publish_dir(folder, _write(5))
    assert first["files"] == second["files"]
    assert second["generation"] != first["generation"] and second["previous"] == first["generation"]
    third = lake.publish_dir(folder, _write(3))
    assert lake.read_manifest(folder)["files"][0]["rows"] == 3
    # the replaced generation stays for readers that opened its manifest; the one before goes
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [lake.MANIFEST, second["generation"], third["generation"]])


def test_failed_write_leaves_old_version_and_no_debris(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    lake.publish_dir(folder, _write(5))
    with pytest.raises(OSError, match="disk full"):
        lake.publish_dir(folder, _write(7, fail=True))
    manifest = lake.read_manifest(folder)
    assert manifest["files"][0]["rows"] == 5
    assert sorted(p.name for p in folder.iterdir()) == [lake.MANIFEST, manifest["generation"]]


def test_concurrent_publishers_leave_one_complete_version(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    threads = [threading.Thread(target=lake.publish_dir, args=(folder, _write(n)))
               for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    manifest = lake.read_manifest(folder)
    assert manifest["files"][0]["sha256"] == lake.sha256_file(lake.committed_file(folder))
    # eight commits in one line: each replaced the one before, so only the last two remain
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [lake.MANIFEST, manifest["generation"], manifest["previous"]])


def test_list_partitions_skips_unpublished(tmp_path: Path) -> None:
    for day in (1, 2, 3):
        lake.publish_dir(lake.partition_dir(lake.open_lake(tmp_path), "p", "raw", "t", dt.date(2013, 1, day)),
                         _write(day))
    (tmp_path / "p" / "raw" / "t" / "date=2013-01-04").mkdir()  # no manifest: never published
    found = lake.list_partitions(lake.open_lake(tmp_path), "p", "raw", "t", dt.date(2013, 1, 2),
                                 dt.date(2013, 1, 9))
    assert [p.day.day for p in found] == [2, 3]
    assert found[0].rows == 2


@pytest.mark.parametrize(("start", "end", "expected"), [
    ("2013-01-01", "2013-01-02", [("2013-01-01", "2013-01-02")]),
    ("2013-01-15", "2013-03-02", [("2013-01-15", "2013-02-01"), ("2013-02-01", "2013-03-01"),
                                  ("2013-03-01", "2013-03-02")]),
    ("2013-12-01", "2014-01-01", [("2013-12-01", "2014-01-01")]),
])
def test_month_chunks(start: str, end: str, expected: list) -> None:
    chunks = lake.month_chunks(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
    assert [(a.isoformat(), b.isoformat()) for a, b in chunks] == expected


@pytest.mark.parametrize(("spans", "expected"), [
    ([], []),
    ([("2013-01-01", "2013-01-11")], [("2013-01-01", "2013-01-11")]),
    ([("2013-02-01", "2013-02-05"), ("2013-01-01", "2013-01-03")],
     [("2013-01-01", "2013-01-03"), ("2013-02-01", "2013-02-05")]),
    ([("2013-01-01", "2013-01-05"), ("2013-01-05", "2013-01-09")], [("2013-01-01", "2013-01-09")]),
    ([("2013-01-01", "2013-01-08"), ("2013-01-03", "2013-01-05")], [("2013-01-01", "2013-01-08")]),
    ([("2013-01-01", "2013-01-01"), ("2013-01-02", "2013-01-03")], [("2013-01-02", "2013-01-03")]),
])
def test_merge_spans_covers_exactly_the_days(spans: list, expected: list) -> None:
    day = dt.date.fromisoformat
    merged = lake.merge_spans([(day(a), day(b)) for a, b in spans])
    assert [(a.isoformat(), b.isoformat()) for a, b in merged] == expected


def test_a_day_partition_path_names_its_day_and_dataset() -> None:
    path = "shop/raw/orders/date=2024-01-02"
    assert lake.day_of(path) == dt.date(2024, 1, 2)
    assert lake.day_of(f"{path}/g-{'0' * 32}/data.parquet") == dt.date(2024, 1, 2)
    assert lake.dataset_of(path) == "shop/raw/orders"
