"""Synthetic market panels of any size for tests, from the ``sample`` source.

Tests never import ``bench``: ``bench/panel.py`` generates the benchmark's
panels (thousands of stocks, fast numpy); tests that need a panel of a given
shape take it from the offline sample market the pipeline itself runs on
(``flows/sources/sample.py``: GARCH factors, sector moves, crypto spillover,
real listing dates), with a universe of the size asked for. As in the bench's
panels, half of the stocks and all coins but BTC and ETH list part-way through.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from flows.calendar import sessions as exchange_sessions
from flows.sources.sample import SampleSource
from flows.universe import Asset, Universe

NAMED_COINS = ("BTC", "ETH", "SOL", "ADA", "XRP", "DOGE", "AVAX", "LINK", "DOT", "USDT")
SECTORS = ("Information Technology", "Financials", "Health Care", "Industrials", "Energy", "Utilities", "Materials")


def universe(equities: int, coins: int) -> Universe:
    """``^RUT`` and ``^GSPC``, ``equities`` stocks ``E0000..`` over seven sectors, and ``coins`` coins:
    the named ones first (the default allocation policy and crypto indices refer to them), then ``C000..``."""
    names = list(NAMED_COINS[:coins]) + [f"C{i:03d}" for i in range(max(0, coins - len(NAMED_COINS)))]
    return Universe(
        benchmarks=("^RUT", "^GSPC"),
        assets=(
            Asset(symbol="^RUT", name="Russell 2000", asset_class="index"),
            Asset(symbol="^GSPC", name="S&P 500", asset_class="index"),
            *[Asset(symbol=f"E{i:04d}", name=f"Stock {i}", asset_class="equity", sector=SECTORS[i % len(SECTORS)])
              for i in range(equities)],
            *[Asset(symbol=c, name=c, asset_class="crypto", quote_currency="USD") for c in names],
        ),
    )  # fmt: skip


def generate(equities: int, coins: int, years: int, as_of: date, seed: int = 7) -> tuple[pl.DataFrame, pl.DataFrame, pl.Series]:
    """(the sample source's bars, its assets, XNYS sessions) from ``years`` before ``as_of`` to ``as_of``."""
    start = date(as_of.year - years, as_of.month, min(as_of.day, 28))
    u = universe(equities, coins)
    batch = SampleSource(seed=seed).fetch(u, start, as_of, {}, None)
    sessions = exchange_sessions(start, as_of)
    # Late listings (windows that span a listing): stocks within the first half
    # of the sessions, coins within the first two thirds of the days.
    rng = np.random.default_rng(seed)
    stocks = [a.symbol for a in u.stocks]
    late_stocks = stocks[equities // 2 :]
    late_coins = [a.symbol for a in u.assets if a.is_crypto][2:]
    n_days = (as_of - start).days + 1
    listing = pl.DataFrame(
        {
            "symbol": late_stocks + late_coins,
            "listed": [sessions[int(i)] for i in rng.integers(0, sessions.len() // 2, len(late_stocks))]
            + [start + timedelta(days=int(i)) for i in rng.integers(0, n_days * 2 // 3, len(late_coins))],
        },
        schema={"symbol": pl.String, "listed": pl.Date},
    )
    bars = batch.bars.join(listing, on="symbol", how="left").filter(
        pl.col("listed").is_null() | (pl.col("date") >= pl.col("listed"))
    )
    return bars.drop("listed").sort("symbol", "date"), batch.assets.sort("symbol"), sessions
