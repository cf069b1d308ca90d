"""Daily log returns aligned to the equity trading calendar.

Crypto trades every day, equities only on exchange sessions. To compare them
honestly we sample both on the sessions: a crypto asset's close on session d is
the close of its UTC candle dated d, so its return on a Monday compounds
Saturday and Sunday. A return needs a close on the session and on the
*previous session of the calendar*; a missing close is never forward-filled.
"""

from __future__ import annotations

import polars as pl

from contracts.tables import FACT_RETURNS


def session_index(sessions: pl.Series) -> pl.DataFrame:
    """Sessions numbered 0..n-1 so "previous session" is plain integer arithmetic."""
    s = sessions.cast(pl.Date).unique().sort()
    return pl.DataFrame({"session_date": s, "session_idx": pl.int_range(0, s.len(), eager=True, dtype=pl.Int32)})


def closes_on_sessions(prices: pl.DataFrame, sessions: pl.Series, price_col: str = "adj_close") -> pl.DataFrame:
    """(symbol, session_date, session_idx, close): each symbol's close on each session it has.

    Rows dated off the calendar (an equity's weekend row, a crypto Saturday)
    are not sessions and drop out here.
    """
    idx = session_index(sessions)
    return (
        prices.select("symbol", pl.col("date").alias("session_date"), pl.col(price_col).alias("close"))
        .join(idx, on="session_date", how="inner")
        .sort("symbol", "session_idx")
    )


def log_returns(prices: pl.DataFrame, sessions: pl.Series, price_col: str = "adj_close") -> pl.DataFrame:
    """fact_returns: one row per symbol and session it has a close on.

    ``log_return`` is ln(close_d / close_prev) where prev is the previous
    session of the calendar; null when that session has no close (the first
    row of a symbol, or after a gap), or when either close is not positive.
    """
    closes = closes_on_sessions(prices, sessions, price_col)
    prev_close = pl.col("close").shift(1).over("symbol")
    prev_idx = pl.col("session_idx").shift(1).over("symbol")
    valid = (prev_idx == pl.col("session_idx") - 1) & (pl.col("close") > 0) & (prev_close > 0)
    return closes.select(
        "symbol",
        "session_date",
        pl.when(valid).then((pl.col("close") / prev_close).log()).otherwise(None).alias("log_return"),
    ).pipe(FACT_RETURNS.conform)
