"""Shared fixtures.

``real_data`` points at ``../shared/data/real`` (third-party fixtures read in
place, never copied); tests that need it skip with a clear reason when absent.
"""

from __future__ import annotations

import os
from pathlib import Path

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
