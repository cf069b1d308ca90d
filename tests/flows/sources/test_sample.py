"""The synthetic sample market: deterministic, calendar-true, labelled, with regimes to find."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from flows.calendar import sessions
from flows.sources.sample import SampleSource
from flows.universe import load_universe
from transforms.correlation import rolling_correlation
from transforms.returns import log_returns

UNIVERSE = load_universe()
AS_OF = date(2024, 6, 28)


@pytest.fixture(scope="module")
def market() -> pl.DataFrame:
    return SampleSource(seed=1).generate(UNIVERSE, AS_OF)


def test_universe_shape():
    stocks = UNIVERSE.stocks
    assert len(stocks) >= 24 and len({s.sector for s in stocks}) >= 5
    assert {"ALL", "A"} <= {s.symbol for s in stocks}
    assert {"^RUT", "^GSPC", "IWM", "SPY"} <= {a.symbol for a in UNIVERSE.assets}
    assert {a.symbol for a in UNIVERSE.crypto} == {"BTC", "ETH", "SOL", "ADA", "XRP", "DOGE", "AVAX", "LINK", "DOT"}


def test_calendars(market):
    xnys = set(sessions(date(2014, 1, 1), AS_OF).to_list())
    eq = market.filter(pl.col("symbol") == "^RUT")
    assert set(eq["date"].to_list()) == xnys, "equities trade on XNYS sessions only (no weekends, no holidays)"
    assert date(2023, 12, 25) not in set(eq["date"].to_list())
    btc = market.filter(pl.col("symbol") == "BTC")
    assert btc.height == (AS_OF - date(2014, 1, 1)).days + 1, "crypto trades every calendar day"
    assert market["date"].min() <= date(2014, 6, 1) and (AS_OF - market["date"].min()).days > 3650, "at least 10 years"
    assert market.filter(pl.col("symbol") == "SOL")["date"].min() == date(2020, 4, 10), "listings mid-history"


def test_deterministic_and_prefix_stable(market):
    again = SampleSource(seed=1).generate(UNIVERSE, AS_OF)
    assert market.equals(again)
    shorter = SampleSource(seed=1).generate(UNIVERSE, date(2019, 3, 1))
    assert shorter.equals(market.filter(pl.col("date") <= date(2019, 3, 1)))
    other = SampleSource(seed=2).generate(UNIVERSE, date(2019, 3, 1))
    assert not other.equals(shorter)


def test_bars_are_sane_and_fat_tailed(market):
    assert market.filter((pl.col("low") > pl.col("high")) | (pl.col("close") <= 0)).is_empty()
    assert market.filter((pl.col("close") > pl.col("high") * 1.0000001) | (pl.col("close") < pl.col("low") * 0.9999999)).is_empty()
    r = market.filter(pl.col("symbol") == "BTC").sort("date").select(pl.col("close").log().diff().alias("r")).drop_nulls()["r"]
    kurt = float(((r - r.mean()) ** 4).mean() / r.var() ** 2)
    assert kurt > 4, f"excess kurtosis expected (fat tails), got {kurt:.2f}"


def test_every_bar_says_it_is_sample(market):
    assert set(market["origin"]) == {"sample"}


def test_labelled_synthetic():
    assets = SampleSource().assets(UNIVERSE)
    assert assets["name"].str.contains("[synthetic]", literal=True).all()
    assert (assets["source"] == "sample").all()


def test_small_cap_altcoin_correlation_changes_sign(market):
    s = sessions(date(2014, 1, 1), AS_OF)
    corr = rolling_correlation(log_returns(market, s), s, ["SOL", "ADA", "BTC"], ["^RUT"], [90]).drop_nulls("correlation")
    for asset in ("ADA", "BTC"):
        c = corr.filter(pl.col("asset") == asset)["correlation"]
        assert c.max() > 0.4 and c.min() < -0.1, f"{asset}: regimes from coupled to inverse expected"
