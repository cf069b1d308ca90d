"""Crypto daily bars sampled at the equity close, from hourly candles.

Two conventions for the close of a crypto daily bar (``Settings.crypto_close``):

- ``utc_midnight``: the exchange's own daily candle, dated D, closing at D+1
  00:00 UTC, 3-4 hours after the US close of D. A same-day return then holds
  crypto's after-hours move, which the equity return of D cannot see.
- ``equity_close``: the bar dated D closes at the equity close of D (its
  instant given per date in ``closes``), as in the published research on
  crypto-equity links. Built here from hourly candles: close = close of the
  hourly candle ending exactly at the close instant; open, high, low and
  volume over the candles ending after the previous calendar date's close
  instant and up to this one (so every candle belongs to exactly one bar;
  the span is 24 h on most days, 23 or 25 h across a daylight-saving change,
  21 h on an early-close day and 27 h on the day after). A date whose closing
  candle is missing gets no bar: a stale earlier price is never passed off as
  the close. The first date of ``closes`` spans the 24 h before its close.

Pure: frames in, frame out; the close instants come from the flows (exchange
calendars), the candles from a source.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from contracts.tables import BAR_SCHEMA

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# Hourly candles: ``ts`` is the candle's opening instant (ccxt's convention), UTC.
HOURLY_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": pl.Datetime("ms", "UTC"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
}

# One row per calendar date: the instant the bar of that date closes.
CLOSES_SCHEMA: dict[str, pl.DataType] = {"date": pl.Date(), "close_at": pl.Datetime("ms", "UTC")}


def bar_spans(closes: pl.DataFrame) -> pl.DataFrame:
    """``closes`` with ``open_at``: the previous calendar date's close, or 24 h before the close."""
    c = closes.select([pl.col(k).cast(t) for k, t in CLOSES_SCHEMA.items()]).unique("date").sort("date")
    prev_is_yesterday = pl.col("date").shift(1) == pl.col("date") - pl.duration(days=1)
    return c.with_columns(
        pl.when(prev_is_yesterday).then(pl.col("close_at").shift(1)).otherwise(pl.col("close_at") - DAY).alias("open_at")
    )


def equity_close_bars(hourly: pl.DataFrame, closes: pl.DataFrame) -> pl.DataFrame:
    """Daily bars (``BAR_SCHEMA``) of every symbol in ``hourly``, one per date of ``closes`` whose closing candle exists."""
    spans = bar_spans(closes)
    if hourly.is_empty() or spans.is_empty():
        return pl.DataFrame(schema=BAR_SCHEMA)
    candles = (
        hourly.select([pl.col(k).cast(t) for k, t in HOURLY_SCHEMA.items()])
        .filter(pl.col("close").is_not_null())
        .unique(["symbol", "ts"], keep="last", maintain_order=True)
        .with_columns((pl.col("ts") + HOUR).alias("end_at"))
        .sort("end_at")
    )
    # Each candle goes to the first close at or after its end, if it ends after that bar's opening instant.
    tagged = candles.join_asof(
        spans.sort("close_at"), left_on="end_at", right_on="close_at", strategy="forward"
    ).filter(pl.col("date").is_not_null() & (pl.col("end_at") > pl.col("open_at")))
    bars = (
        tagged.sort("symbol", "ts")
        .group_by("symbol", "date", maintain_order=True)
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").filter(pl.col("end_at") == pl.col("close_at")).last(),
            # No volume in any candle is no volume, not zero.
            pl.when(pl.col("volume").is_not_null().any()).then(pl.col("volume").sum()).alias("volume"),
        )
        .filter(pl.col("close").is_not_null())
        .with_columns(pl.col("close").alias("adj_close"))
    )
    return bars.select([pl.col(k).cast(t) for k, t in BAR_SCHEMA.items()]).sort("symbol", "date")
