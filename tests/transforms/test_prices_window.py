"""An incremental build reads, of every symbol not in ``whole_price_symbols``, only its first bar and
its bars from ``prices_from`` on (the nodes' ``prices_window``): built from exactly those bars it
equals the full build bit for bit, and a bound one session later does not."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import polars as pl
import pytest

from tests.transforms.seeding import seeded_build
from tests.transforms.test_incremental import AS_OF, PARAMS, as_of, assert_same_marts, completed
from tests.panels import generate
from transforms.graph import FACTOR_TABLES, _sess, prices_from, whole_price_symbols
from transforms.marts import build_marts

FACTORS = dataclasses.replace(PARAMS, factors=True)


@pytest.fixture(scope="module")
def panel():
    prices, assets, sessions = generate(14, 4, 3, AS_OF, 7)
    return prices, assets, sessions.sort()


def bounded(prices: pl.DataFrame, assets: pl.DataFrame, params, start: date) -> pl.DataFrame:
    """The bars a narrow read hands the build: the whole symbols' every bar, each other symbol's
    first bar and its bars from ``start`` on."""
    whole = pl.Series(sorted(whole_price_symbols(assets, params)), dtype=pl.String).implode()
    first = pl.col("date") == pl.col("date").min().over("symbol")
    return prices.filter(pl.col("symbol").is_in(whole) | (pl.col("date") >= start) | first)


def test_prices_from_is_the_longest_prices_window_before_the_first_changed_session(panel):
    _, _, sessions = panel
    sess = _sess(sessions)
    since = sess[-1]
    # The factors' metrics read 252 sessions back (momentum_12_1); without factors, the previous close.
    assert prices_from(sessions, FACTORS, since) == sess[sess.len() - 1 - 252]
    assert prices_from(sessions, PARAMS, since) == sess[-2]
    assert prices_from(sessions, FACTORS, sess[100]) is None, "the window reaches the first session"
    assert prices_from(sessions, FACTORS, since, {}) is None, "the factors build in full without their tables"


def test_whole_price_symbols_are_the_crypto_assets_indices_and_benchmarks(panel):
    _, assets, _ = panel
    whole = whole_price_symbols(assets, FACTORS)
    crypto = set(assets.filter(pl.col("asset_class") == "crypto")["symbol"])
    assert crypto and crypto <= whole
    assert {"^RUT", "^GSPC"} <= whole
    assert not whole & set(assets.filter(pl.col("asset_class") == "equity")["symbol"])


@pytest.mark.parametrize("back", [1, 30], ids=["one-new-day", "a-restated-month"])
def test_an_incremental_build_from_the_bounded_bars_equals_the_full_build(panel, back):
    prices, assets, sessions = panel
    sess = _sess(sessions)
    d, prev = sess[-1], sess[-1 - back]
    p, s = as_of(prices, sessions, d)
    pp, ps = as_of(prices, sessions, prev)
    previous = build_marts(pp, assets, ps, FACTORS)
    full = build_marts(p, assets, s, FACTORS)
    since = prev + timedelta(days=1)
    start = prices_from(s, FACTORS, since, previous.tables)
    assert start is not None
    narrow = bounded(p, assets, FACTORS, start)
    stocks = pl.col("symbol").is_in(assets.filter(pl.col("asset_class") == "equity")["symbol"].implode())
    assert narrow.filter(stocks).height < p.filter(stocks).height * 0.6, "the bound leaves most stock bars out"
    inc = seeded_build(narrow, assets, s, FACTORS, previous.tables, since)
    assert set(FACTOR_TABLES) <= set(inc.tables)
    assert_same_marts(full.tables, completed(previous.tables, inc))

    # One session too short: the factors' momentum at the first changed session reads a bar left out.
    later = sess[sess.search_sorted(start) + 1]
    short = seeded_build(bounded(p, assets, FACTORS, later), assets, s, FACTORS, previous.tables, since)
    with pytest.raises(AssertionError):
        assert_same_marts(full.tables, completed(previous.tables, short))
