"""SIGTERM and Ctrl-C stop a local run once, promptly, and fail its tasks without retry."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from airflow.sdk.exceptions import AirflowFailException

from pipelines.orchestration import stopping
from pipelines.orchestration.factory import fail_on_bad_data


def _wait_for_interrupt(signum: int, seconds: float = 5.0) -> None:
    """Send `signum` to the process and wait for the KeyboardInterrupt it must become."""
    os.kill(os.getpid(), signum)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    pytest.fail("no KeyboardInterrupt reached the main thread")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_becomes_one_stop_request(signum: signal.Signals) -> None:
    with stopping.stop_on_signals():
        with pytest.raises(KeyboardInterrupt):
            _wait_for_interrupt(signum)
        assert stopping.requested() == signum.name
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == set()


def test_a_handler_installed_inside_never_runs() -> None:
    """Airflow's task runner replaces the SIGTERM handler with one that ignores it."""
    called = []
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with stopping.stop_on_signals():
            signal.signal(signal.SIGTERM, lambda *_: called.append(True))
            with pytest.raises(KeyboardInterrupt):
                _wait_for_interrupt(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert called == [] and stopping.requested() == "SIGTERM"


def test_threads_started_inside_do_not_take_the_signal() -> None:
    with stopping.stop_on_signals():
        worker = threading.Thread(target=time.sleep, args=(2,))
        worker.start()
        with pytest.raises(KeyboardInterrupt):
            _wait_for_interrupt(signal.SIGTERM)
        worker.join()


def test_nested_blocks_share_one_watcher_and_a_new_block_starts_clean() -> None:
    with stopping.stop_on_signals():
        with stopping.stop_on_signals():
            with pytest.raises(KeyboardInterrupt):
                _wait_for_interrupt(signal.SIGINT)
        assert stopping.requested() == "SIGINT"
    with stopping.stop_on_signals():
        assert stopping.requested() is None


def test_a_stopped_run_fails_tasks_without_retry() -> None:
    ran = []

    @fail_on_bad_data
    def interrupted() -> None:
        ran.append(True)
        raise KeyboardInterrupt

    @fail_on_bad_data
    def later() -> None:
        ran.append(True)

    with stopping.stop_on_signals():
        stopping._request.append("SIGTERM")  # what the watcher records
        with pytest.raises(AirflowFailException, match="not started: the run was stopped"):
            later()
        stopping._request.clear()
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C outside a stop request: Airflow's own
            interrupted()
        stopping._request.append("SIGTERM")
        ran.clear()
        with pytest.raises(AirflowFailException, match="not started"):
            interrupted()
    assert ran == []
