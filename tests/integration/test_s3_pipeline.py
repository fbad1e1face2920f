"""The example pipeline end to end with its lake in a bucket of a real S3 server (SeaweedFS).

Three weeks of the example through Airflow's dag.test() with `PITSTOP_LAKE=s3://…` and the
AWS variables pointing at the session's SeaweedFS, and an MLflow store of this module's own:
a registered version, `verify` intact and then naming the one object changed, a writer
killed mid-publish leaving nothing visible, and re-runs that give the same IDs.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines import doctor, lake, registry
from tests.integration import examples
from tests.s3server import S3Server

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

START, END, EVAL_START = dt.date(2013, 1, 1), dt.date(2013, 1, 22), dt.date(2013, 1, 15)
VIEW, DAY = "origin_delays", dt.date(2013, 1, 10)


@pytest.fixture(scope="module")
def s3_lake(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This module's environment: the lake in a new bucket, MLflow in a store of its own."""
    url = f"s3://{s3_server.new_bucket()}/lake"
    store = tmp_path_factory.mktemp("s3-mlflow") / "mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in s3_server.env(url).items():
            patch.setenv(name, value)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
        yield url


@pytest.fixture(scope="module")
def first_run(s3_lake: str, airflow_db: Path, spec_path: Path) -> dict:
    from pipelines.orchestration.runner import run_pipeline

    examples.land(spec_path, START, END)
    return run_pipeline(spec_path, START, END, "e2e on s3", echo=lambda _: None,
                        eval_start=EVAL_START)


def test_registers_a_version_from_a_lake_in_a_bucket(first_run: dict, s3_lake: str) -> None:
    assert first_run["version"] == "1" and first_run["already_registered"] is False
    version = registry.client().get_model_version("flights_delay", "1")
    assert version.tags["pair_id"] == first_run["pair_id"]
    store = lake.from_env()
    data = lake.committed_file(store.root / first_run["training_set"]["path"])
    assert str(data).startswith(f"{s3_lake}/flights_delay/datasets/{first_run['dataset_id']}/g-")
    assert len(lake.read_frame(data)) == first_run["training_set"]["rows"] > 10_000
    run = registry.client().get_run(first_run["run_id"])
    (dataset_input,) = run.inputs.dataset_inputs
    assert s3_lake in dataset_input.dataset.source
    assert registry.client().list_artifacts(run.info.run_id, "quality/data_docs")


def test_verify_is_intact_then_names_the_one_changed_object(first_run: dict) -> None:
    from pipelines import audit

    store = lake.from_env()
    (clean,) = audit.verify(store, "flights_delay/1")
    assert clean.intact and clean.checked > 50
    record = audit.trace(first_run["pair_id"])["versions"][0]["lineage"]
    victim = record["raw_partitions"][len(record["raw_partitions"]) // 2]
    path = lake.committed_file(store.root / victim["path"], victim["file"])
    original = path.read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0x01
    path.write_bytes(bytes(tampered))
    try:
        (dirty,) = audit.verify(store, "flights_delay/1")
    finally:
        path.write_bytes(original)
    assert [m.what for m in dirty.mismatches] == [f"{victim['path']}/{victim['file']}"]
    assert audit.verify(store, "flights_delay/1")[0].intact


KILLER = """
import os, signal, sys
from pipelines import cli, lake_objects

def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # files uploaded, manifest not yet put

lake_objects.commit = killed
sys.exit(cli.main(sys.argv[1:]))
"""


def _day_partition() -> lake.Partition:
    (partition,) = lake.list_partitions(lake.from_env(), "flights_delay", "features", VIEW, DAY,
                                        DAY + dt.timedelta(days=1))
    return partition


def test_a_writer_killed_mid_publish_leaves_nothing_and_a_rerun_gives_the_same_ids(
        first_run: dict, spec_path: Path) -> None:
    from pipelines import cli
    from pipelines.orchestration.runner import run_pipeline

    before = _day_partition()
    backfill = ["backfill", str(spec_path), "--start", str(DAY), "--end",
                str(DAY + dt.timedelta(days=1)), "--views", VIEW, "--reason", "kill test",
                "--force"]  # unforced, the unchanged day is skipped and nothing is written
    killed = subprocess.run([sys.executable, "-c", KILLER, *backfill], env=os.environ.copy(),
                            capture_output=True, check=False)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert _day_partition().manifest == before.manifest  # nothing of the killed one shows
    store = lake.from_env()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    (found,) = doctor.object_findings(store, later, fix=True)
    assert found.where.startswith(f"flights_delay/features/{VIEW}/date={DAY}/g-")
    assert doctor.object_findings(store, later) == []
    assert cli.main(backfill) == 0
    assert _day_partition().sha256 == before.sha256
    again = run_pipeline(spec_path, START, END, "e2e on s3 again", echo=lambda _: None,
                         eval_start=EVAL_START)
    assert (again["pair_id"], again["dataset_id"]) == (first_run["pair_id"],
                                                       first_run["dataset_id"])
    assert again["already_registered"] is True and again["version"] == "1"


def test_reproduce_rebuilds_the_same_dataset_from_the_bucket(first_run: dict) -> None:
    from pipelines import audit

    (result,) = audit.reproduce(lake.from_env(), "flights_delay/1")
    assert result.details["dataset_id"]["rebuilt"] == first_run["dataset_id"]
    assert result.checks["dataset_id identical"] and result.checks["predictions identical"]
