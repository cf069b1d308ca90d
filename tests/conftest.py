"""Shared fixtures.

``real_data`` points at ``../shared/data/real`` (third-party fixtures read in
place, never copied); tests that need it skip with a clear reason when absent.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("XASSET_REAL_DATA", REPO.parent / "shared" / "data" / "real"))


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real market data not found at {REAL_DATA} (clone with ../shared beside it)")
    return REAL_DATA


# Prefect reads these at import: quiet, no telemetry, for every test module.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session")
def prefect_harness():
    """One throwaway local Prefect API for every in-process flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.ephemeral_server import own_ephemeral_server

    # Its server dies with this process even when pytest itself is killed; also with a
    # PREFECT_API_URL in the environment (the harness starts its own server all the same).
    own_ephemeral_server(always=True)
    # A fresh database migrates on start; give a loaded 2-core CI machine time.
    with prefect_test_harness(server_startup_timeout=180):
        yield


# Modules whose tests start OS processes (servers, workers, CLI runs, other
# DuckDB clients) besides those using the fixtures below.
PROCESS_MODULES = {"test_deployments.py", "test_live_offline.py", "test_serve.py", "test_publish.py", "test_disk.py"}
# Fixtures that start a Prefect API in-process (slow) or give CLI subprocesses a Prefect home.
SLOW_FIXTURES = {"prefect_harness"}
PROCESS_FIXTURES = {"prefect_home"}


def pytest_collection_modifyitems(config, items):
    """Mark process-level and slow tests centrally, so ``pytest -m "not slow"`` is a fast subset.

    ``process``: starts OS processes (a module in PROCESS_MODULES, a test using
    ``prefect_home`` or marked so); ``slow``: every process test and every test
    on the in-process Prefect API (``prefect_harness``). ``make test`` runs all.
    """
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.path.name in PROCESS_MODULES or fixtures & PROCESS_FIXTURES:
            item.add_marker(pytest.mark.process)
        if item.get_closest_marker("process") or fixtures & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)

# ----------------------------------------------------------------- no process left behind
# Every process a test starts must be gone when the session ends, also the
# ones a test killed the parent of (Prefect's temporary API server was the
# usual survivor: parent 1, ~240 MB each). Checked once, at the end.
SESSION_STARTED = time.time()
LEFTOVER_GRACE_S = 20  # a server whose run was just killed needs a moment to notice


def _ours(p: psutil.Process) -> bool:
    """A process of this checkout's environment started during this session."""
    try:
        cmd = p.cmdline()
        return bool(cmd) and cmd[0].startswith(str(REPO / ".venv")) and p.create_time() >= SESSION_STARTED - 1
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


# Python's own helpers that a library (multiprocessing, via Dask or Prefect) starts
# for this process: they read a pipe from it and end when pytest itself exits.
PYTHON_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _exits_with_pytest(p: psutil.Process) -> bool:
    try:
        return p.ppid() == os.getpid() and any(h in " ".join(p.cmdline()) for h in PYTHON_HELPERS)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return True


def leftover_processes() -> list[psutil.Process]:
    """Children of this pytest process still running, and orphans (parent 1) of this checkout's .venv."""
    me = psutil.Process()
    found = {p.pid: p for p in me.children(recursive=True) if not _exits_with_pytest(p)}
    for p in psutil.process_iter(["ppid"]):
        if p.info["ppid"] == 1 and p.pid != me.pid and _ours(p):
            found.setdefault(p.pid, p)
    alive = []
    for p in found.values():
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


# ----------------------------------------------------------------- SIGTERM ends the session as Ctrl-C does
# `timeout` and CI cancel pytest with SIGTERM, whose default action ends it at once: no
# `finally` of a test nor fixture finalizer ran, and the servers and CLI processes the tests
# started (in sessions of their own) ran on. As a KeyboardInterrupt it ends the session
# through pytest's teardown and the check below; a second SIGTERM still ends it at once.
PYTEST_PID = os.getpid()


def _sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if os.getpid() != PYTEST_PID:  # a child forked from pytest inherited the handler: die as it would have
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise KeyboardInterrupt("pytest got SIGTERM")


def pytest_configure(config):
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm)


def pytest_runtest_makereport(item, call):
    """Inside a flow run Prefect answers SIGTERM itself, raising ``TerminationSignal`` (not a
    KeyboardInterrupt: pytest would record a failure and go on to the next test): stop the session."""
    if call.excinfo is not None and call.excinfo.typename == "TerminationSignal":
        item.session.shouldstop = "pytest got SIGTERM (in a Prefect flow run)"


# After pytest's own sessionfinish: an interrupted session tears its fixtures down there
# (the harness's server among them), and they are not leftovers.
@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    left = leftover_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = leftover_processes()
    if not left:
        return
    lines = []
    for p in left:
        try:
            lines.append(f"  pid {p.pid} (parent {p.ppid()}): {' '.join(p.cmdline())[:200]}")
            p.kill()
        except psutil.NoSuchProcess:
            pass
    sys.stderr.write(
        "\nERROR: the test session left processes running (now killed):\n" + "\n".join(lines) + "\n"
    )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
