"""A small but real run's tables (sample market, two years), built without Prefect."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

AS_OF = date(2024, 6, 28)
START = date(2022, 6, 1)


@pytest.fixture(scope="session")
def run_tables(tmp_path_factory) -> dict[str, pl.DataFrame]:
    from flows.stages.transform import transform
    from flows.settings import get_settings
    from flows.sources.sample import SampleSource
    from flows.universe import load_universe
    from warehouse.lake import Lake

    settings = get_settings()
    universe = load_universe(settings.universe_path)
    lake = Lake(tmp_path_factory.mktemp("lake"), "sample")
    batch = SampleSource(seed=settings.sample_seed).fetch(universe, START, AS_OF, {}, lake.tail(10))
    lake.upsert_bars(batch.bars, datetime(2024, 6, 29, tzinfo=UTC))
    lake.upsert_assets(batch.assets)
    tables = transform(lake, settings, universe, AS_OF, synthetic=True).tables
    return tables


@pytest.fixture
def tables(run_tables) -> dict[str, pl.DataFrame]:
    """A fresh dict per test: tests replace frames to break one rule at a time."""
    return dict(run_tables)


def built_warehouse(path: Path, frames: dict[str, pl.DataFrame]) -> Path:
    from warehouse.build import build_database

    build_database(path, frames)
    return path
