"""The command line: arguments, exit codes and what a command records about itself."""

from __future__ import annotations

import getpass
import socket

import pytest

from pipelines import cli, lake
from pipelines.lake import from_env as env_lake
from pipelines.spec import LoadedSpec
from tests.unit.conftest import D1, D4


def test_backfill_needs_a_reason(ingested: LoadedSpec, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["backfill", str(ingested.path), "--start", str(D1), "--end", str(D4)])
    assert exit_.value.code == 2 and "--reason" in capsys.readouterr().err
    assert lake.list_partitions(env_lake(), ingested.name, "features", "last") == []


def test_backfill_records_who_why_and_how_in_every_manifest(
        ingested: LoadedSpec, capsys: pytest.CaptureFixture) -> None:
    argv = ["backfill", str(ingested.path), "--start", str(D1), "--end", str(D4),
            "--reason", "sensor b recalibrated"]
    assert cli.main(argv) == 0
    assert "backfilled 216 feature rows in 3 partitions" in capsys.readouterr().out
    written = lake.list_partitions(env_lake(), ingested.name, "features", "last")
    assert len(written) == 3
    for partition in written:
        assert partition.manifest["produced_by"] == {
            "command": f"pitstop backfill {ingested.path} --start {D1} --end {D4} "
                       f"--reason 'sensor b recalibrated'",
            "user": getpass.getuser(), "host": socket.gethostname(),
            "triggered_by": getpass.getuser(), "reason": "sensor b recalibrated"}


def test_a_bad_backfill_range_exits_1_naming_the_rule(
        ingested: LoadedSpec, capsys: pytest.CaptureFixture) -> None:
    argv = ["backfill", str(ingested.path), "--start", str(D4), "--end", str(D1), "--reason", "x"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("pitstop: ") and "backfill" in err
