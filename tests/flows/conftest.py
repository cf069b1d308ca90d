"""Flow tests run against a throwaway local Prefect API (one per test session)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    # A fresh database migrates on start; give a loaded 2-core CI machine time.
    with prefect_test_harness(server_startup_timeout=180):
        yield
