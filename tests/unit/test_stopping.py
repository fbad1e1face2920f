"""SIGTERM and Ctrl-C stop a local run once, promptly, and fail its tasks without retry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
    assert stopping.requested() is None


CLI_LIKE = """
import os, signal, sys, threading, time
from pipelines.orchestration import stopping
called = []
with stopping.stop_on_signals():
    # as Airflow's task runner does for every task, and a thread as Airflow's services start
    signal.signal(signal.SIGTERM, lambda *_: called.append(True))
    threading.Thread(target=time.sleep, args=(3,), daemon=True).start()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        print("not interrupted")
    except KeyboardInterrupt:
        print("interrupted", stopping.requested(), "handler called" if called else "")
"""


def test_in_a_fresh_process_no_later_handler_or_thread_takes_the_signal() -> None:
    """What the CLI does: blocked before any thread starts, the signal reaches only the
    watcher, whatever handler Airflow installs and whichever threads start later."""
    done = subprocess.run([sys.executable, "-c", CLI_LIKE], capture_output=True, text=True,
                          timeout=60, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "interrupted SIGTERM"), done.stderr


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
