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
