"""SYNTHETIC monthly fundamentals snapshots for the ``sample`` source.

Made up, like the sample prices: they exist so the Alpha Score has value,
quality and sentiment inputs offline. Each stock gets persistent, sector-typical
levels (Financials trade near 1.2x book, Tech near 30x earnings, ...) plus
AR(1) monthly deviations; trailing P/E and P/B move with the price relative to
its trailing-year average (price up -> multiple up); a persistent "loss" state
now and then gives a negative P/E and negative margins; about 3% of fields are
missing.

Determinism: every draw comes from a generator seeded by ``(seed, symbol)``
and indexed by month from a fixed origin over a fixed horizon, so the snapshot
for a (symbol, month) never depends on ``end`` or on the other symbols, and an
incremental run reproduces history. P/E and P/B also read the stock's prices up
to the snapshot date, which an incremental run must therefore have (a trailing
year of them).
"""

from __future__ import annotations

import zlib
from datetime import date

import numpy as np
import polars as pl

from flows.sources.base import FUNDAMENTALS_SCHEMA

ORIGIN_YEAR = 1970
HORIZON_MONTHS = 12 * 110  # 1970-01 .. 2079-12
MISSING_RATE = 0.03
PRICE_WINDOW = 252  # sessions in the trailing price average multiples move against

# (trailing P/E, price-to-book, ROE, profit margin, gross margin, debt/equity as a ratio)
SECTOR_LEVELS: dict[str, tuple[float, float, float, float, float, float]] = {
    "Information Technology": (30.0, 8.0, 0.25, 0.20, 0.60, 0.5),
    "Communication Services": (22.0, 3.5, 0.15, 0.15, 0.55, 0.8),
    "Consumer Discretionary": (24.0, 5.0, 0.18, 0.08, 0.38, 1.0),
    "Consumer Staples": (22.0, 5.0, 0.20, 0.07, 0.35, 0.9),
    "Energy": (12.0, 1.8, 0.14, 0.09, 0.35, 0.5),
    "Financials": (13.0, 1.2, 0.11, 0.22, 0.60, 1.5),
    "Health Care": (25.0, 4.5, 0.15, 0.10, 0.55, 0.7),
    "Industrials": (21.0, 4.0, 0.17, 0.09, 0.32, 1.0),
    "Materials": (17.0, 2.5, 0.12, 0.09, 0.28, 0.6),
    "Real Estate": (35.0, 2.0, 0.07, 0.20, 0.55, 1.2),
    "Utilities": (18.0, 1.9, 0.09, 0.12, 0.40, 1.5),
}
DEFAULT_LEVELS = (20.0, 3.0, 0.12, 0.10, 0.40, 0.8)

# AR(1) series, in draw order: pe, pb, roe, margin, gross, de, rec, analysts, short, loss.
_PHI = np.array([0.85, 0.85, 0.8, 0.8, 0.9, 0.9, 0.8, 0.9, 0.85, 0.95])
_N_STATIC = 10
_FIELDS = (
    "trailing_pe",
    "price_to_book",
    "return_on_equity",
    "profit_margin",
    "gross_margin",
    "debt_to_equity",
    "recommendation_mean",
    "number_of_analyst_opinions",
    "short_percent_of_float",
)
# A stationary N(0,1) AR(1) below this is a loss-making month: ~3% of months,
# in runs because the series is persistent.
_LOSS_THRESHOLD = -1.9


def _month_index(d: date) -> int:
    return (d.year - ORIGIN_YEAR) * 12 + d.month - 1


def _symbol_draws(seed: int, symbol: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # crc32, not hash(): str hashes are salted per process.
    rng = np.random.default_rng([seed, zlib.crc32(symbol.encode("utf-8"))])
    static = rng.standard_normal(_N_STATIC)
    noise = rng.standard_normal((HORIZON_MONTHS, len(_PHI)))
    missing = rng.random((HORIZON_MONTHS, len(_FIELDS))) < MISSING_RATE
    return static, noise, missing


def sample_fundamentals(
    stocks: pl.DataFrame, prices: pl.DataFrame, seed: int, start: date, end: date
) -> pl.DataFrame:
    """Monthly snapshots (FUNDAMENTALS_SCHEMA) for ``stocks`` that have prices.

    ``as_of`` is the first weekday of each month, or the stock's first price
    date in its first month; snapshots are kept when ``start <= as_of <= end``.
    """
    if "asset_class" in stocks.columns:
        stocks = stocks.filter(pl.col("asset_class") == "equity")
    px = prices.select("symbol", pl.col("date").cast(pl.Date), pl.col("adj_close").cast(pl.Float64)).filter(
        pl.col("symbol").is_in(stocks["symbol"].to_list()) & (pl.col("date") <= end)
    )
    firsts = px.group_by("symbol").agg(pl.col("date").min().alias("first_date"))
    meta = (
        stocks.select("symbol", "sector", "industry")
        .unique("symbol")
        .join(firsts, on="symbol", how="inner")
        .sort("symbol")
    )
    if meta.is_empty() or end < start:
        return pl.DataFrame(schema=FUNDAMENTALS_SCHEMA)
    m_end = _month_index(end)
    m_firsts = np.array([_month_index(d) for d in meta["first_date"].to_list()])
    if m_firsts.min() < 0 or m_end >= HORIZON_MONTHS:
        raise ValueError(f"sample fundamentals cover {ORIGIN_YEAR}-01..{ORIGIN_YEAR + HORIZON_MONTHS // 12 - 1}-12")
    n_sym, n_months = meta.height, m_end + 1

    statics = np.empty((n_sym, _N_STATIC))
    eps = np.empty((n_sym, n_months, len(_PHI)))
    missing = np.empty((n_sym, n_months, len(_FIELDS)), dtype=bool)
    for i, sym in enumerate(meta["symbol"].to_list()):
        s, e, m = _symbol_draws(seed, sym)
        statics[i], eps[i], missing[i] = s, e[:n_months], m[:n_months]
    # Recurse from the origin so month m's value is the same whatever the
    # first month asked for; a stationary start keeps early months typical.
    ar = np.empty_like(eps)
    ar[:, 0] = eps[:, 0]
    scale = np.sqrt(1.0 - _PHI**2)
    for m in range(1, n_months):
        ar[:, m] = _PHI * ar[:, m - 1] + scale * eps[:, m]

    m_lo = int(m_firsts.min())
    ar, missing = ar[:, m_lo:], missing[:, m_lo:]
    months = np.arange(m_lo, n_months)
    levels = np.array([SECTOR_LEVELS.get(s, DEFAULT_LEVELS) if s else DEFAULT_LEVELS for s in meta["sector"]])
    pe0, pb0, roe0, pm0, gm0, de0 = (levels[:, k : k + 1] for k in range(6))
    st = statics[:, :, None]  # broadcast stock-level draws over months

    loss = ar[:, :, 9] < _LOSS_THRESHOLD
    pe = pe0 * np.exp(0.25 * st[:, 0] + 0.15 * ar[:, :, 0])
    pb = pb0 * np.exp(0.30 * st[:, 1] + 0.12 * ar[:, :, 1])
    roe = roe0 + 0.05 * st[:, 2] + 0.03 * ar[:, :, 2]
    pm = pm0 + 0.04 * st[:, 3] + 0.02 * ar[:, :, 3]
    roe = np.where(loss, -np.abs(roe) * 0.6 - 0.02, roe)
    pm = np.where(loss, -np.abs(pm) * 0.6 - 0.02, pm)
    gm = np.clip(np.maximum(gm0 + 0.08 * st[:, 4] + 0.03 * ar[:, :, 4], pm + 0.05), -0.5, 0.95)
    de = de0 * np.exp(0.40 * st[:, 5] + 0.15 * ar[:, :, 5])
    rec = np.clip(2.4 + 0.35 * st[:, 6] + 0.30 * ar[:, :, 6], 1.0, 5.0).round(2)
    analysts = np.maximum(0, np.rint(np.exp(np.log(12.0) + 0.6 * st[:, 7] + 0.12 * ar[:, :, 7]))).astype(np.int64)
    short = np.clip(np.exp(np.log(0.035) + 0.6 * st[:, 8] + 0.30 * ar[:, :, 8]), 0.005, 0.25)

    cols = [pe, pb, roe, pm, gm, de, rec, analysts, short]
    frame = pl.DataFrame(
        {
            "symbol": np.repeat(meta["symbol"].to_numpy(), len(months)),
            "month": np.tile(months, n_sym),
            "first_month": np.repeat(m_firsts, len(months)),
            "first_date": np.repeat(meta["first_date"].to_numpy(), len(months)),
            "loss": loss.ravel(),
            **{name: c.ravel() for name, c in zip(_FIELDS, cols, strict=True)},
            **{f"{name}__missing": missing[:, :, k].ravel() for k, name in enumerate(_FIELDS)},
        }
    ).filter(pl.col("month") >= pl.col("first_month"))

    year = pl.col("month") // 12 + ORIGIN_YEAR
    month = pl.col("month") % 12 + 1
    first_of_month = pl.date(year, month, 1)
    # First weekday: Saturday (6) -> +2 days, Sunday (7) -> +1 day.
    shift_days = pl.when(first_of_month.dt.weekday() == 6).then(2).when(first_of_month.dt.weekday() == 7).then(1).otherwise(0)
    frame = frame.with_columns(
        pl.max_horizontal(first_of_month + pl.duration(days=shift_days), pl.col("first_date")).alias("as_of")
    ).filter(pl.col("as_of").is_between(start, end))

    # Multiples move with price against the stock's trailing-year average price,
    # read at the latest bar on or before the snapshot (point in time).
    rel = (
        px.sort("symbol", "date")
        .with_columns(
            (
                pl.col("adj_close") / pl.col("adj_close").rolling_mean(PRICE_WINDOW, min_samples=1).over("symbol")
            ).alias("price_rel")
        )
        .select("symbol", "date", "price_rel")
        .sort("date")
    )
    frame = (
        frame.sort("as_of")
        .join_asof(rel, left_on="as_of", right_on="date", by="symbol", strategy="backward", check_sortedness=False)
        .with_columns(pl.col("price_rel").fill_null(1.0).clip(0.2, 5.0))
    )
    frame = frame.with_columns(
        (pl.col("trailing_pe") * pl.col("price_rel") * pl.when(pl.col("loss")).then(-0.8).otherwise(1.0)).alias(
            "trailing_pe"
        ),
        (pl.col("price_to_book") * pl.col("price_rel").sqrt()).alias("price_to_book"),
    ).with_columns(
        [
            pl.when(pl.col(f"{name}__missing")).then(None).otherwise(pl.col(name)).alias(name)
            for name in _FIELDS
        ]
    )
    out = frame.join(meta.select("symbol", "sector", "industry"), on="symbol", how="left")
    return out.select([pl.col(c).cast(t) for c, t in FUNDAMENTALS_SCHEMA.items()]).sort("symbol", "as_of")
