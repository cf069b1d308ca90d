"""The synthetic sample market: deterministic, calendar-true, labelled, with regimes to find."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

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


def test_hourly_candles_agree_with_the_daily_bars_and_feed_the_equity_close():
    """crypto_close=equity_close: the hourly path closes at each daily close at 00:00 UTC, is
    deterministic and prefix-stable, and its bars at the equity close sit at 20:00/21:00 UTC."""
    from flows.calendar import equity_closes

    uni = load_universe()
    as_of = date(2024, 12, 31)
    src = SampleSource(seed=7, crypto_close="equity_close")
    daily = src.generate(uni, as_of)
    hourly = src.hourly(uni, daily)
    btc_h = hourly.filter(pl.col("symbol") == "BTC").sort("ts")
    btc_d = daily.filter(pl.col("symbol") == "BTC").sort("date")
    # The candle ending at D+1 00:00 UTC closes at the daily close of D.
    last_of_day = btc_h.filter(pl.col("ts").dt.hour() == 23).with_columns(pl.col("ts").dt.date().alias("date"))
    joined = last_of_day.join(btc_d, on="date", suffix="_d")
    assert joined.height == btc_d.height
    assert (joined["close"] - joined["close_d"]).abs().max() < 1e-9 * joined["close_d"].max()
    assert (btc_h["high"] >= btc_h[["open", "close"]].max_horizontal()).all()
    assert (btc_h["low"] <= btc_h[["open", "close"]].min_horizontal()).all()
    # Deterministic and prefix-stable, like the daily bars.
    shorter = SampleSource(seed=7, crypto_close="equity_close")
    early = shorter.hourly(uni, shorter.generate(uni, date(2024, 6, 30))).filter(pl.col("symbol") == "BTC")
    assert early.equals(btc_h.filter(pl.col("ts") < datetime(2024, 7, 1, tzinfo=UTC)))
    # The bars the source returns are sampled at the equity close: each is the hourly close at that instant.
    bars = src.fetch(uni, date(2024, 1, 1), as_of, {}, pl.DataFrame()).bars
    btc = bars.filter(pl.col("symbol") == "BTC").sort("date")
    closes = equity_closes(date(2024, 1, 1), as_of).with_columns((pl.col("close_at") - timedelta(hours=1)).alias("ts"))
    expect = closes.join(btc_h.select("ts", pl.col("close").alias("hourly_close")), on="ts")
    got = btc.join(expect, on="date")
    assert got.height == btc.height == 366
    assert (got["close"] == got["hourly_close"]).all()
    # Equities are untouched by the convention.
    rut = bars.filter(pl.col("symbol") == "^RUT")
    assert rut.equals(SampleSource(seed=7).fetch(uni, date(2024, 1, 1), as_of, {}, pl.DataFrame()).bars.filter(
        pl.col("symbol") == "^RUT"))
