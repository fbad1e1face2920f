"""`pitstop doctor` finds each kind of leftover, fixes it, and never touches committed data
or what a live writer holds."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines import cli, doctor, lake
from pipelines.orchestration.abandoned import dag_run_findings

NOW = dt.datetime(2026, 12, 2, 12, tzinfo=dt.UTC)


def _write(rows: int):
    def write(tmp: Path) -> dict:
        lake.write_parquet(pa.table({"x": list(range(rows))}), tmp / lake.DATA_FILE)
        return {"rows": rows}
    return write


def _day(root: Path, day: int) -> Path:
    return lake.partition_dir(lake.open_lake(root), "p", "raw", "t", dt.date(2013, 1, day))


def _legacy_partition(folder: Path, rows: int) -> None:
    """A folder as the layout before generations wrote it: files beside the manifest."""
    folder.mkdir(parents=True)
    lake.write_parquet(pa.table({"x": list(range(rows))}), folder / lake.DATA_FILE)
    entry = {"name": lake.DATA_FILE, "rows": rows,
             "sha256": lake.sha256_file(folder / lake.DATA_FILE)}
    (folder / lake.MANIFEST).write_text(json.dumps({"files": [entry]}))


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"/"
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def leftovers(tmp_path: Path) -> Path:
    """A lake with one of every leftover a killed writer of either layout leaves."""
    root = tmp_path / "lake"
    for day in (1, 2, 3):
        lake.publish_dir(_day(root, day), _write(day))
        lake.publish_dir(_day(root, day), _write(day + 10))
    stray = _day(root, 1) / f"g-{uuid.uuid4().hex}"
    stray.mkdir()
    (stray / lake.DATA_FILE).write_bytes(b"")
    (_day(root, 2) / f"{lake.MANIFEST_TMP}{uuid.uuid4().hex}").write_bytes(b"")
    (_day(root, 3) / lake.LOCK).write_bytes(b"")
    dataset = _day(root, 1).parent
    (dataset / lake.LOCK).write_bytes(b"")  # the old layout locked the dataset folder
    (dataset / f".tmp-date=2013-01-01-{uuid.uuid4().hex}").mkdir()
    (dataset / f".trash-date=2013-01-02-{uuid.uuid4().hex}").mkdir()
    _legacy_partition(dataset / f".trash-date=2013-01-04-{uuid.uuid4().hex}", 4)
    return root


EXPECTED = [
    ("stale lock", "p/raw/t/.lock", "removed"),
    ("legacy temp", "p/raw/t/.tmp-date=2013-01-01-", "removed"),
    ("legacy trash", "p/raw/t/.trash-date=2013-01-02-", "removed"),
    ("legacy trash", "p/raw/t/.trash-date=2013-01-04-", "restored"),
    ("uncommitted", "p/raw/t/date=2013-01-01/g-", "removed"),
    ("uncommitted", "p/raw/t/date=2013-01-02/_manifest.json.tmp-", "removed"),
    ("stale lock", "p/raw/t/date=2013-01-03/.lock", "removed"),
]


def _summary(found: list[doctor.Finding]) -> list[tuple[str, str, str]]:
    return [(f.kind, f.where[:-32] if f.where[-32:].isalnum() else f.where, f.action)
            for f in found]


def test_every_leftover_is_listed_and_listing_changes_nothing(leftovers: Path) -> None:
    before = _tree(leftovers)
    found = doctor.lake_findings(leftovers)
    assert _summary(found) == [(kind, where, "") for kind, where, _ in EXPECTED]
    assert _tree(leftovers) == before


def test_fix_clears_them_and_keeps_every_committed_partition(leftovers: Path) -> None:
    committed = {p.day: (p.sha256, p.manifest["previous"])
                 for p in lake.list_partitions(lake.open_lake(leftovers), "p", "raw", "t")}
    assert _summary(doctor.lake_findings(leftovers, fix=True)) == EXPECTED
    assert doctor.lake_findings(leftovers) == []
    after = lake.list_partitions(lake.open_lake(leftovers), "p", "raw", "t")
    assert [p.day.day for p in after] == [1, 2, 3, 4]  # day 4 came back from its trash folder
    for part in after:
        assert lake.sha256_file(part.data_path) == part.sha256
        if part.day in committed:  # the same commit, its previous generation still kept
            assert (part.sha256, part.manifest["previous"]) == committed[part.day]
            assert (part.path / part.manifest["previous"] / lake.DATA_FILE).exists()
    assert after[3].rows == 4


def test_what_a_live_writer_holds_is_left_alone(tmp_path: Path) -> None:
    folder = _day(tmp_path, 1)
    lake.publish_dir(folder, _write(1))
    writing = folder / f"g-{uuid.uuid4().hex}"
    writing.mkdir()
    (folder / f"{lake.MANIFEST_TMP}{uuid.uuid4().hex}").write_bytes(b"")
    with lake._flocked(writing, fcntl.LOCK_SH), lake.locked(folder):
        assert doctor.lake_findings(tmp_path, fix=True) == []
        assert writing.exists()
    assert [f.kind for f in doctor.lake_findings(tmp_path)] == ["uncommitted", "uncommitted"]


def test_a_trash_folder_beside_a_day_being_written_is_kept(tmp_path: Path) -> None:
    """Its day has no manifest but exists: moving the old version back would need a merge."""
    dataset = _day(tmp_path, 1).parent
    _day(tmp_path, 1).mkdir(parents=True)
    trash = dataset / f".trash-date=2013-01-01-{uuid.uuid4().hex}"
    _legacy_partition(trash, 2)
    (found,) = doctor.lake_findings(tmp_path, fix=True)
    assert (found.kind, found.action) == ("legacy trash", "")
    assert "else republish the day" in found.detail and trash.exists()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lake with pipeline `p` and an MLflow SQLite store of this test's own."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("PITSTOP_LAKE", str(tmp_path / "lake"))
    lake.publish_dir(_day(tmp_path / "lake", 1), _write(1))
    return tmp_path / "lake"


def test_runs_left_running_are_found_and_failed(store: Path) -> None:
    from pipelines import registry

    client = registry.client()
    ours, other = client.create_experiment("p"), client.create_experiment("not_a_pipeline")
    hour = 3600 * 1000
    started = int(NOW.timestamp() * 1000)
    stale = client.create_run(ours, start_time=started - 3 * hour).info.run_id
    client.create_run(ours, start_time=started - hour // 2)  # may still be training
    done = client.create_run(ours, start_time=started - 3 * hour).info.run_id
    client.set_terminated(done, "FINISHED")
    client.create_run(other, start_time=started - 3 * hour)  # not a pipeline of this lake
    before = NOW - dt.timedelta(hours=2)
    (found,) = doctor.mlflow_findings(doctor.pipelines_in(store), before)
    assert (found.kind, found.where, found.action) == ("mlflow run", stale, "")
    assert "RUNNING since 2026-12-02 09:00 UTC in experiment p" in found.detail
    assert client.get_run(stale).info.status == "RUNNING"
    (fixed,) = doctor.mlflow_findings(["p"], before, fix=True)
    assert fixed.action == "marked FAILED" and client.get_run(stale).info.status == "FAILED"
    assert doctor.mlflow_findings(["p"], before) == []


def test_no_store_is_not_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert doctor.mlflow_findings(["p"], NOW) == []
    assert not (tmp_path / "mlflow.db").exists()


KILLED_DAG = textwrap.dedent("""
    import os, signal
    import pendulum
    from airflow.sdk import dag, task

    @dag(dag_id=os.environ["DOCTOR_DAG_ID"],
         schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
    def killed():
        @task
        def train():
            os.kill(os.getpid(), signal.SIGKILL)  # as a user's Ctrl-\\ or the OOM killer does
        train()

    run = killed()
    if __name__ == "__main__":
        run.test()
""")


def test_a_dag_run_of_a_killed_pitstop_run_is_found_and_failed(
        tmp_path: Path, airflow_db: Path) -> None:
    """A real `dag.test()` whose process is killed mid-task, as `pitstop run` would be."""
    import os

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "killed.py").write_text(KILLED_DAG)
    dag_id = f"doctor_killed_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "DOCTOR_DAG_ID": dag_id}
    done = subprocess.run([sys.executable, str(dags / "killed.py")], env=env,
                          capture_output=True, timeout=300)
    assert done.returncode == -9
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    found = [f for f in dag_run_findings(later) if f.where.startswith(dag_id)]
    assert [(f.kind, f.action) for f in found] == [("airflow dag run", "")]
    assert all(f.where.split()[0] != dag_id for f in dag_run_findings(later - dt.timedelta(
        hours=2)))  # too recent for the default threshold
    fixed = [f for f in dag_run_findings(later, fix=True) if f.where.startswith(dag_id)]
    assert [f.action for f in fixed] == ["marked failed"]
    assert [f for f in dag_run_findings(later) if f.where.startswith(dag_id)] == []
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        (run,) = session.query(DagRun).filter(DagRun.dag_id == dag_id).all()
        states = [ti.state for ti in run.get_task_instances(session=session)]
        assert (run.state, states) == ("failed", ["failed"])


def test_the_command_exits_1_until_fixed(store: Path, capsys: pytest.CaptureFixture) -> None:
    folder = _day(store, 1)
    (folder / f"g-{uuid.uuid4().hex}").mkdir()
    assert cli.main(["doctor", "--json"]) == 1
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["kind"] == "uncommitted" and listed["action"] == ""
    assert cli.main(["doctor", "--fix"]) == 0
    assert "[removed]" in capsys.readouterr().out
    assert cli.main(["doctor"]) == 0
    assert capsys.readouterr().out.strip() == "nothing found"
