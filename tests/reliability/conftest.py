"""Fixtures for the reliability suite: one Prefect home shared by every ``xasset`` subprocess."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The tests import reliability_harness; --import-mode=importlib does not put
# test directories on sys.path.
sys.path.insert(0, str(Path(__file__).parent))

# prefect_harness (the in-process Prefect API) comes from tests/conftest.py.


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory) -> Path:
    """One Prefect home for every subprocess: only the first pays the database migration."""
    return tmp_path_factory.mktemp("prefect-home")


