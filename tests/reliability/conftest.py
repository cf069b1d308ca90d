"""Fixtures for the reliability suite: a local Prefect API for in-process runs and
one Prefect home shared by every ``xasset`` subprocess.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The tests import reliability_harness; --import-mode=importlib does not put
# test directories on sys.path.
sys.path.insert(0, str(Path(__file__).parent))

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory) -> Path:
    """One Prefect home for every subprocess: only the first pays the database migration."""
    return tmp_path_factory.mktemp("prefect-home")


