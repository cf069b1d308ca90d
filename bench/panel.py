"""A synthetic price panel shaped like the real one, generated with numpy.

Equities (and the ``^RUT``/``^GSPC`` benchmarks) trade on XNYS sessions, coins on
every UTC day; returns share a market factor so correlations are not all zero.
Coins list at staggered dates like real ones. The first coin names are the ones
the default allocation policy and crypto indices refer to, so every mart has
work to do.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl

from flows.calendar import sessions as exchange_sessions

NAMED_COINS = ("BTC", "ETH", "SOL", "ADA", "XRP", "DOGE", "AVAX", "LINK", "DOT", "USDT")
SECTORS = ("Technology", "Financials", "Health Care", "Industrials", "Energy", "Utilities", "Materials")
INGESTED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def _ohlc(rng: np.random.Generator, log_close: np.ndarray) -> dict[str, np.ndarray]:
    close = np.exp(log_close)
    prev = np.concatenate([close[:1], close[:-1]])
    open_ = prev * np.exp(rng.normal(0, 0.002, close.shape))
    hi = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.005, close.shape)))
    lo = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.005, close.shape)))
    return {"open": open_, "high": hi, "low": lo, "close": close}


def _long(names: list[str], dates: np.ndarray, mask: np.ndarray, cols: dict[str, np.ndarray]) -> pl.DataFrame:
    """Dense (date x symbol) arrays to a long frame, keeping cells where ``mask`` holds."""
    sym_idx, date_idx = np.nonzero(mask.T)  # symbol-major, dates ascending
    frame = pl.DataFrame(
        {
            "symbol": pl.Series(names, dtype=pl.String).gather(sym_idx),
            "date": pl.Series(dates).gather(date_idx),
            **{k: v.T[sym_idx, date_idx] for k, v in cols.items()},
        }
    )
    return frame.with_columns(pl.col("close").alias("adj_close"))


def generate(equities: int, coins: int, years: int, as_of: date, seed: int = 7) -> tuple[pl.DataFrame, pl.DataFrame, pl.Series]:
    """(prices in FACT_PRICES shape, assets in ASSET_SCHEMA shape, XNYS sessions)."""
    rng = np.random.default_rng(seed)
    start = date(as_of.year - years, as_of.month, min(as_of.day, 28))
    sess = exchange_sessions(start, as_of)
    days = pl.date_range(start, as_of, "1d", eager=True)
    sess_np = sess.to_numpy()
    days_np = days.to_numpy()

    # Equity side: one market factor on sessions.
    market = rng.normal(0.0003, 0.011, len(sess_np))
    eq_names = ["^RUT", "^GSPC"] + [f"E{i:04d}" for i in range(equities)]
    betas = np.concatenate([[1.2, 1.0], rng.uniform(0.3, 1.8, equities)])
    idio = rng.normal(0, 0.018, (len(sess_np), len(eq_names)))
    idio[:, :2] *= 0.2
    eq_log = np.log(rng.uniform(5, 500, len(eq_names))) + np.cumsum(market[:, None] * betas + idio, axis=0)
    eq_vol = rng.lognormal(13, 1, eq_log.shape)
    eq_mask = np.ones(eq_log.shape, dtype=bool)
    # Late listings among stocks, never the benchmarks.
    first = rng.integers(0, len(sess_np) // 2, len(eq_names))
    first[: min(len(eq_names), 2 + equities // 2)] = 0
    eq_mask &= np.arange(len(sess_np))[:, None] >= first

    # Crypto side: every UTC day; the equity factor leaks in on sessions.
    on_session = np.isin(days_np, sess_np)
    day_market = np.zeros(len(days_np))
    day_market[on_session] = market
    coin_names = list(NAMED_COINS[:coins]) + [f"C{i:03d}" for i in range(max(0, coins - len(NAMED_COINS)))]
    coin_beta = rng.uniform(0.0, 1.5, len(coin_names))
    crypto_factor = rng.normal(0, 0.03, len(days_np))
    cr_ret = day_market[:, None] * coin_beta + crypto_factor[:, None] * rng.uniform(0.5, 1.2, len(coin_names))
    cr_ret += rng.normal(0, 0.03, cr_ret.shape)
    is_stable = np.array([n == "USDT" for n in coin_names])
    cr_ret[:, is_stable] = rng.normal(0, 0.0005, (len(days_np), int(is_stable.sum())))
    cr_log = np.log(rng.uniform(0.1, 1000, len(coin_names))) + np.cumsum(cr_ret, axis=0)
    cr_vol = rng.lognormal(15, 1.5, cr_log.shape)
    listed = rng.integers(0, len(days_np) * 2 // 3, len(coin_names))
    listed[:2] = 0
    cr_mask = np.arange(len(days_np))[:, None] >= listed

    eq = _long(eq_names, sess_np, eq_mask, {**_ohlc(rng, eq_log), "volume": eq_vol})
    cr = _long(coin_names, days_np, cr_mask, {**_ohlc(rng, cr_log), "volume": cr_vol})
    prices = pl.concat([eq, cr]).with_columns(
        pl.lit("bench").alias("source"), pl.lit(INGESTED_AT).cast(pl.Datetime("us", "UTC")).alias("ingested_at")
    )
    prices = prices.select("symbol", "date", "open", "high", "low", "close", "adj_close", "volume", "source", "ingested_at")
    assets = pl.DataFrame(
        {
            "symbol": eq_names + coin_names,
            "name": eq_names + coin_names,
            "asset_class": ["index", "index"] + ["equity"] * equities + ["crypto"] * len(coin_names),
            "sector": [None, None] + [SECTORS[i % len(SECTORS)] for i in range(equities)] + [None] * len(coin_names),
            "industry": [None] * (len(eq_names) + len(coin_names)),
            "quote_currency": ["USD"] * len(eq_names) + ["USDT"] * len(coin_names),
            "source": ["bench"] * (len(eq_names) + len(coin_names)),
            "source_symbol": eq_names + coin_names,
        },
        schema={c: pl.String for c in ("symbol", "name", "asset_class", "sector", "industry", "quote_currency", "source", "source_symbol")},
    )
    return prices.sort("symbol", "date"), assets.sort("symbol"), sess


def previous_day(as_of: date) -> date:
    return as_of - timedelta(days=1)
