"""Stopping a local run on SIGTERM or Ctrl-C: promptly, without retries, nothing left running.

`pitstop run` executes tasks in its own process through `dag.test()`, and Airflow's task
runner installs its own SIGTERM handler for every task (it calls the operator's `on_kill`
and carries on), so a plain handler is replaced at the first task and SIGTERM is ignored.
Ctrl-C fares no better: the task fails with KeyboardInterrupt and is retried.

So while a run lasts, both signals are blocked in the process and a watcher thread takes
them with `sigtimedwait`: no handler anyone installs is ever called. The watcher records
the request and interrupts the main thread; the task wrapper (`factory.fail_on_bad_data`)
then fails the running task without retry, and every later task of the run fails at once,
so `dag.test()` returns a failed run within a task's own cleanup time.

The kernel gives a process's signal to any thread that does not block it, and a thread
inherits its creator's mask: enter `stop_on_signals` before any other thread starts (the
CLI does, before Airflow is imported). For a thread started earlier (a host such as pytest
has some), a handler of our own does the same until someone replaces it.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = {signal.SIGTERM, signal.SIGINT}
_request: list[str] = []
_active: list[bool] = []


def requested() -> str | None:
    """The name of the signal that asked the running block to stop, or None."""
    return _request[0] if _request else None


def _record(signum: int) -> None:
    if not _request:
        _request.append(signal.Signals(signum).name)


def _watch(done: threading.Event) -> None:
    """Take blocked signals; `interrupt_main` runs the SIGINT handler (`_handle`) in the main
    thread, which raises KeyboardInterrupt there."""
    while not done.is_set():
        info = signal.sigtimedwait(SIGNALS, 0.2)
        # a tracer stopping the process (py-spy) can wake the wait with garbage: only a
        # signal of ours is a request
        if info is not None and info.si_signo in SIGNALS:
            _record(info.si_signo)
            _thread.interrupt_main()


def _handle(signum: int, frame: object) -> None:
    _record(signum)
    raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into one stop request for the block's duration (main thread).

    Nested blocks share the outermost one's watcher.
    """
    if _active:
        yield
        return
    _request.clear()
    _active.append(True)
    handlers = {signum: signal.signal(signum, _handle) for signum in SIGNALS}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(done,), name="pitstop-stop", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        _active.clear()
        _request.clear()  # a request ends with its block: later work in the process runs
