"""Ctrl-C (SIGINT) and SIGTERM stop a command-line run promptly and cleanly.

``install()`` (the ``xasset run`` and ``backfill`` commands call it) makes
either signal raise ``RunCancelled`` in the main thread, where the flow runs:
the pipeline records the run ``cancelled``, discards what it staged and
publishes nothing. A signal inside ``shielded()`` (the publish switch) waits
for the end of that block, so a run is never half published nor recorded
cancelled after it published.

The main thread may not get back in time: Prefect's thread pool waits for a
task blocked in I/O before the flow returns. The first signal therefore also
arms a watchdog that calls ``on_timeout`` after ``grace_s``; a second signal
calls it at once. ``on_timeout`` ends the process (see ``flows.cli``).

Prefect installs its own SIGTERM handler for the length of a flow run
(raising ``TerminationSignal``); ``rearm()``, called by the pipeline, puts
ours back when ``install()`` was called, and Prefect restores ours after.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunCancelled(KeyboardInterrupt):
    """The operator stopped the run (a KeyboardInterrupt, so ``except Exception`` never swallows it)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"cancelled by {signal.Signals(signum).name}")


class _State:
    installed = False
    requested: int | None = None
    raised = False
    shield_depth = 0
    grace_s = 8.0
    on_timeout: Callable[[int], None] | None = None
    watchdog: threading.Timer | None = None
    run_id: str | None = None
    data_dir: Path | None = None
    lock = threading.Lock()


_state = _State()


def exit_code(signum: int) -> int:
    """The shell's convention for a process ended by a signal."""
    return 128 + signum


def requested() -> int | None:
    """The signal that asked the run to stop, if any."""
    return _state.requested


def _handler(signum: int, frame) -> None:
    with _state.lock:
        first = _state.requested is None
        if first:
            _state.requested = signum
            if _state.on_timeout is not None:
                _state.watchdog = threading.Timer(_state.grace_s, _state.on_timeout, args=(signum,))
                _state.watchdog.daemon = True
                _state.watchdog.start()
    if not first:
        if _state.on_timeout is not None:
            _state.on_timeout(_state.requested or signum)
        return
    if _state.shield_depth:
        return  # raised when the shielded block ends
    _state.raised = True
    raise RunCancelled(signum)


def install(grace_s: float, on_timeout: Callable[[int], None]) -> dict:
    """Turn SIGINT and SIGTERM into ``RunCancelled`` (main thread only); returns the handlers replaced."""
    _state.installed = True
    _state.requested, _state.raised, _state.shield_depth = None, False, 0
    _state.grace_s = grace_s
    _state.on_timeout = on_timeout
    return {s: signal.signal(s, _handler) for s in SIGNALS}


def uninstall(previous: dict) -> None:
    """Put back the handlers ``install`` replaced (a command run in-process, e.g. by a test, ends)."""
    _state.installed = False
    # A later run in this process (a test's, or the next of a caller's) starts with no stop requested.
    _state.requested, _state.raised, _state.shield_depth = None, False, 0
    _state.on_timeout = None
    if _state.watchdog is not None:
        _state.watchdog.cancel()
        _state.watchdog = None
    for s, handler in previous.items():
        signal.signal(s, handler)


def rearm() -> None:
    """Put our handlers back over Prefect's for the length of a flow run (no-op unless installed)."""
    if not _state.installed or threading.current_thread() is not threading.main_thread():
        return
    for s in SIGNALS:
        signal.signal(s, _handler)


@contextmanager
def shielded() -> Iterator[None]:
    """A block a stop request does not interrupt; the request takes effect right after it."""
    _state.shield_depth += 1
    try:
        yield
    finally:
        _state.shield_depth -= 1
    if _state.shield_depth == 0 and _state.requested is not None and not _state.raised:
        _state.raised = True
        raise RunCancelled(_state.requested)


def current_run(run_id: str, data_dir: Path) -> None:
    """The run in progress in this process: what a stop that cannot wait for it records cancelled."""
    _state.run_id, _state.data_dir = run_id, data_dir


def run_in_progress() -> tuple[str | None, Path | None]:
    return _state.run_id, _state.data_dir


def describe(exc: BaseException) -> str:
    """'cancelled by SIGINT' and the like."""
    signum = getattr(exc, "signum", None) or getattr(exc, "signal", None) or signal.SIGINT
    return f"cancelled by {signal.Signals(signum).name}"


def swallowed(exc: BaseException) -> RunCancelled | None:
    """The stop request ``exc`` came out in place of, if any.

    The handler raises ``RunCancelled`` inside whatever the main thread runs.
    C code that polls for signals swallows it and raises its own error
    instead: DuckDB ends the query with ``RuntimeError('Query interrupted')``.
    Once the handler raised, any other error that reaches the run is that
    stop's doing, and is a cancellation, not a failure.
    """
    if _state.installed and _state.raised and _state.requested is not None and not is_cancellation(exc):
        return RunCancelled(_state.requested)
    return None


def is_cancellation(exc: BaseException) -> bool:
    """A stop request: ours, a plain Ctrl-C, or Prefect's SIGTERM bridge."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    try:
        from prefect.exceptions import TerminationSignal
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, TerminationSignal)
