"""Services down or slow: an MLflow tracking server that refuses connections or accepts them
and never answers. Each call gives up within pitstop's bounds (`settings.MLFLOW_HTTP_BOUNDS`),
names the server's URI, and is never taken for "not registered" or "no champion"."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator

import pytest
from mlflow.exceptions import MlflowException

from pipelines import audit, registry, settings
from pipelines.errors import LineageError
from pipelines.lake import from_env as env_lake
from tests.faults.invariants import assert_clear_error

pytestmark = pytest.mark.timeout(120)  # a hang fails the test instead of the suite


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _silent_server() -> Iterator[str]:
    """A server that accepts every connection and never answers: a hung MLflow."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


def _unset_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's HTTP variables unset for this test, and restored after it (set, then deleted,
    so monkeypatch records them even when they were absent)."""
    for name in settings.MLFLOW_HTTP_BOUNDS:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


@pytest.fixture
def refused(monkeypatch: pytest.MonkeyPatch) -> str:
    """MLFLOW_TRACKING_URI on a port that refuses connections, with pitstop's own bounds."""
    uri = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    _unset_bounds(monkeypatch)
    return uri


def test_an_unreachable_store_is_not_an_unregistered_pair(refused: str) -> None:
    """Invariant: a store that does not answer fails `find_version` (what `plan_pair` asks)
    naming its URI, within the
    bounded retries; it is never read as "this pair is not registered yet" (which would
    register a duplicate once the store is back).

    Sees: `API request to http://127.0.0.1:<port>/api/2.0/mlflow/model-versions/search failed
    with exception … Connection refused`.
    """
    with pytest.raises(MlflowException) as error:
        registry.find_version("sensors", "0" * 64)
    assert_clear_error(error, MlflowException, refused, "model-versions/search")


def test_an_unreachable_store_is_not_a_missing_champion(refused: str) -> None:
    """Invariant: the champion is unchanged unless a passing candidate moved it: with the
    store down, `champion_version` raises instead of answering "no champion" (which would let
    the gate skip the comparison and promote the first candidate it sees).

    Sees: `API request to http://127.0.0.1:<port>/api/2.0/mlflow/registered-models/search
    failed …` (whether the model exists is asked first).
    """
    with pytest.raises(MlflowException) as error:
        registry.champion_version("sensors")
    assert_clear_error(error, MlflowException, refused, "registered-models/search")


def test_an_unreachable_store_is_not_a_missing_version_for_the_auditor(refused: str) -> None:
    """Invariant: a clear error naming the service: `pitstop trace/verify` with the store down
    says the request failed and where, not "no such model version".

    Sees: `API request to http://127.0.0.1:<port>/… failed` (not a LineageError).
    """
    with pytest.raises(MlflowException) as error:
        audit.verify(env_lake(), "sensors@champion")
    assert not isinstance(error.value, LineageError)
    assert_clear_error(error, MlflowException, refused)


def test_a_hung_store_gives_up_within_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Invariant: nothing hangs: a server that accepts and never answers fails the call after
    `MLFLOW_HTTP_REQUEST_TIMEOUT` per try (set short here; pitstop's default is 30 s, 4 tries),
    naming the server.

    Sees: `API request to http://127.0.0.1:<port>/… failed with exception … Read timed out`.
    """
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    with _silent_server() as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        with pytest.raises(MlflowException) as error:
            registry.champion_version("sensors")
    assert_clear_error(error, MlflowException, uri, "timed out")


def test_the_bounds_apply_unless_the_environment_sets_them(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """Invariant: every service call has a bounded wait: `registry.client()` applies
    pitstop's MLflow bounds where the environment is silent and keeps an operator's own.

    Sees: nothing (MLflow's variables: timeout 30 s, 3 retries, backoff factor 1).
    """
    _unset_bounds(monkeypatch)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    registry.client()
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3"
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"
