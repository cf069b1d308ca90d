"""build_marts in partitions: how the pieces are split and run never changes what comes out."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from contracts.tables import TABLES
from contracts.vocabulary import CRYPTO_CLASSES
from transforms.correlation import rolling_correlation
from transforms.events import mart_correlation_events
from transforms.marts import MartParams, blocks, build_marts, serial_map
from transforms.matrix import mart_correlation_matrix
from transforms.returns import log_returns

START, AS_OF = date(2021, 1, 4), date(2023, 6, 30)


@pytest.fixture(scope="module")
def market():
    from flows.calendar import sessions
    from flows.policy import load_policy
    from flows.settings import get_settings
    from flows.sources.sample import SampleSource
    from flows.universe import load_universe

    settings = get_settings()
    batch = SampleSource(seed=settings.sample_seed).fetch(load_universe(settings.universe_path), START, AS_OF, {}, None)
    sess = sessions(batch.bars["date"].min(), AS_OF)
    return batch.bars, batch.assets, sess, batch.fundamentals, load_policy(settings.policy_path)


def keyed(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    table = TABLES[name]
    key = list(table.key or table.unique or table.column_names)
    return frame.sort(key, nulls_last=True)


def assert_same(name: str, got: pl.DataFrame, want: pl.DataFrame) -> None:
    # Exact, floats included: a pair's rolling sums restart at the calendar's
    # epochs and never read another pair's rows, so partitioning the pairs
    # (any block size) cannot change a bit.
    assert_frame_equal(keyed(name, got), keyed(name, want), check_exact=True)


def backwards_map(fn, arg_list, names=None):
    """Runs the partitions last to first, as a busy runner might finish them, and returns them in order."""
    out = [fn(*args) for args in reversed(arg_list)]
    return out[::-1]


def test_blocks():
    assert blocks(["a", "b", "c"], 0) == [["a", "b", "c"]]
    assert blocks(["a", "b", "c"], 2) == [["a", "b"], ["c"]]
    assert blocks([], 2) == [[]]


def test_partitioned_build_equals_the_single_partition_build(market):
    prices, assets, sess, fundamentals, policy = market
    whole = build_marts(prices, assets, sess, MartParams(policy=policy), fundamentals, map_partitions=serial_map)
    calls: list[int] = []

    def counting_backwards_map(fn, arg_list, names):
        calls.append(len(arg_list))
        assert len(names) == len(arg_list)
        return backwards_map(fn, arg_list)

    split = build_marts(
        prices, assets, sess, MartParams(policy=policy, correlation_block_size=1), fundamentals,
        map_partitions=counting_backwards_map,
    )
    crypto = split.tables["dim_asset"].filter(pl.col("asset_class").is_in(CRYPTO_CLASSES)).height
    # The graph's levels: indices; returns; one per crypto asset, one per
    # matrix window, milestones, the Alpha Score, the spillover marts; allocation.
    assert calls == [1, 1, crypto + 4 + 1 + 1 + 1, 1]
    assert whole.tables.keys() == split.tables.keys()
    assert whole.warnings == split.warnings
    for name, frame in whole.tables.items():
        assert frame.height > 0, name
        # Every derived table comes out as its contract declares it (transforms conform to
        # contracts.tables); fact_prices is the bars passed through, stamped by the loader.
        if name != "fact_prices":
            assert frame.schema == pl.Schema(TABLES[name].polars_schema), name
        assert_same(name, split.tables[name], frame)


def test_partitions_equal_the_unpartitioned_functions(market):
    prices, assets, sess, fundamentals, policy = market
    params = MartParams(policy=policy, correlation_block_size=3)
    marts = build_marts(prices, assets, sess, params, fundamentals)
    all_assets = marts.tables["dim_asset"]
    crypto = all_assets.filter(pl.col("asset_class").is_in(CRYPTO_CLASSES))["symbol"].to_list()
    returns = log_returns(marts.tables["fact_prices"], sess)
    corr = rolling_correlation(returns, sess, crypto, ["^RUT", "^GSPC"], params.windows)
    events = mart_correlation_events(
        corr, levels=params.event_levels, confirm_sessions=params.event_confirm_sessions, dead_band=params.event_dead_band
    )
    index_like = all_assets.filter(pl.col("asset_class").is_in(("index", "index_crypto")))["symbol"].to_list()
    matrix = mart_correlation_matrix(returns, sess, sorted({"^RUT", "^GSPC", *index_like, *crypto}), params.windows)
    assert events.height > 0
    for name, want in (("mart_rolling_correlation", corr), ("mart_correlation_events", events),
                       ("mart_correlation_matrix", matrix)):
        assert_same(name, marts.tables[name], want)
