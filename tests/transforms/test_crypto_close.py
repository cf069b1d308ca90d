"""Crypto daily bars sampled at the equity close (issue 18, item 4).

Unit tests of the aggregation at DST changes and early closes with hand-written
close instants, and the property that matters: one hourly path sampled as
crypto (from its hourly candles) and as an equity (at the session close) gives a
correlation of exactly 1.0 under both conventions, across the March and November
DST changes and the early closes of 2024 (day after Thanksgiving, Christmas Eve),
with the close instants from the real exchange calendar.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from transforms.correlation import rolling_correlation
from transforms.crypto_close import CLOSES_SCHEMA, HOURLY_SCHEMA, equity_close_bars
from transforms.returns import log_returns

H = timedelta(hours=1)


def utc(y, m, d, h=0) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


def hourly(symbol: str, start: datetime, closes: list[float], volume: float = 1.0) -> pl.DataFrame:
    """Candles from ``start``, one per hour; candle k opens at the previous close and closes at closes[k]."""
    rows = []
    prev = closes[0]
    for k, c in enumerate(closes):
        rows.append({"symbol": symbol, "ts": start + k * H, "open": prev, "high": max(prev, c) + 0.5,
                     "low": min(prev, c) - 0.5, "close": c, "volume": volume})
        prev = c
    return pl.DataFrame(rows, schema=HOURLY_SCHEMA)


def closes_frame(rows: dict[date, datetime]) -> pl.DataFrame:
    return pl.DataFrame({"date": list(rows), "close_at": list(rows.values())}, schema=CLOSES_SCHEMA)


def test_the_close_is_the_candle_ending_at_the_close_instant_across_the_march_dst_change():
    # 2024-03-10: New York moves to EDT; the close is 21:00 UTC before, 20:00 UTC from then on.
    start = utc(2024, 3, 8, 0)
    n = 24 * 5
    candles = hourly("BTC", start, [float(k) for k in range(n)])  # candle k closes at k, ending at start+(k+1)h
    closes = closes_frame({date(2024, 3, 8): utc(2024, 3, 8, 21), date(2024, 3, 9): utc(2024, 3, 9, 21),
                           date(2024, 3, 10): utc(2024, 3, 10, 20), date(2024, 3, 11): utc(2024, 3, 11, 20)})
    bars = equity_close_bars(candles, closes).sort("date")
    ends = [utc(2024, 3, 8, 21), utc(2024, 3, 9, 21), utc(2024, 3, 10, 20), utc(2024, 3, 11, 20)]
    expected_close = [float((e - start) // H - 1) for e in ends]
    assert bars["close"].to_list() == expected_close
    assert bars["adj_close"].to_list() == expected_close
    # Each bar spans the candles since the previous date's close: 24 h, 23 h across the change, then 24 h
    # (the first one only the 21 candles the data has since midnight).
    assert bars["volume"].to_list() == [21.0, 24.0, 23.0, 24.0]
    # The open is the first candle's open after the previous close: the previous bar's close.
    assert bars["open"].to_list()[1:] == expected_close[:-1]
    assert bars["high"].to_list()[1:] == [c + 0.5 for c in expected_close[1:]]
    assert bars["low"].to_list()[1:] == [c - 0.5 for c in expected_close[:-1]]


def test_november_dst_change_spans_25_hours():
    start = utc(2024, 11, 1, 0)
    candles = hourly("ETH", start, [100.0 + k for k in range(24 * 4)])
    closes = closes_frame({date(2024, 11, 1): utc(2024, 11, 1, 20), date(2024, 11, 2): utc(2024, 11, 2, 20),
                           date(2024, 11, 3): utc(2024, 11, 3, 21)})
    bars = equity_close_bars(candles, closes)
    assert bars["volume"].to_list() == [20.0, 24.0, 25.0]
    assert bars["close"].to_list() == [100.0 + 19, 100.0 + 43, 100.0 + 68]


def test_early_close_day_closes_at_13_new_york_and_the_next_day_spans_27_hours():
    # 2024-11-29 (day after Thanksgiving) closes 13:00 EST = 18:00 UTC.
    start = utc(2024, 11, 27, 0)
    candles = hourly("BTC", start, [float(k) for k in range(24 * 4)])
    closes = closes_frame({date(2024, 11, 28): utc(2024, 11, 28, 21), date(2024, 11, 29): utc(2024, 11, 29, 18),
                           date(2024, 11, 30): utc(2024, 11, 30, 21)})
    bars = equity_close_bars(candles, closes)
    assert bars["date"].to_list() == [date(2024, 11, 28), date(2024, 11, 29), date(2024, 11, 30)]
    assert bars["close"].to_list() == [44.0, 65.0, 92.0]
    assert bars["volume"].to_list() == [24.0, 21.0, 27.0]


def test_a_date_whose_closing_candle_is_missing_gets_no_bar_not_a_stale_close():
    start = utc(2024, 6, 3, 0)
    candles = hourly("SOL", start, [float(k) for k in range(48)]).filter(pl.col("ts") != utc(2024, 6, 3, 19))
    closes = closes_frame({date(2024, 6, 3): utc(2024, 6, 3, 20), date(2024, 6, 4): utc(2024, 6, 4, 20)})
    bars = equity_close_bars(candles, closes)
    assert bars["date"].to_list() == [date(2024, 6, 4)]
    assert bars["close"].to_list() == [43.0]


def test_symbols_are_kept_apart_and_no_candles_give_no_bars():
    start = utc(2024, 6, 3, 0)
    both = pl.concat([hourly("A", start, [1.0] * 30), hourly("B", start, [2.0] * 30)])
    closes = closes_frame({date(2024, 6, 3): utc(2024, 6, 3, 20)})
    bars = equity_close_bars(both, closes)
    assert bars.select("symbol", "close").rows() == [("A", 1.0), ("B", 2.0)]
    assert equity_close_bars(both.clear(), closes).is_empty()
    # Candles without volume make a bar without volume (null), not a volume of zero.
    assert equity_close_bars(both.with_columns(pl.lit(None, pl.Float64).alias("volume")), closes)["volume"].null_count() == 2


def _path(start: datetime, hours: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0, 0.004, hours)))


@pytest.mark.parametrize("convention", ["equity_close", "utc_midnight"])
def test_identical_series_correlate_at_one_under_both_conventions_across_dst_and_early_closes(convention):
    from flows.calendar import equity_closes, sessions

    first, last = date(2024, 1, 2), date(2025, 1, 31)
    start = datetime.combine(first - timedelta(days=2), datetime.min.time(), UTC)
    hours = int((datetime.combine(last + timedelta(days=2), datetime.min.time(), UTC) - start) / H)
    price = _path(start, hours)
    candles = hourly("COIN", start, list(price))
    at = {start + (k + 1) * H: price[k] for k in range(hours)}  # the price at the end of each hour
    sess = sessions(first, last)
    closes = equity_closes(first, last)
    assert {date(2024, 11, 29), date(2024, 12, 24)} <= set(sess.to_list())
    # The early closes and both DST regimes are in the panel.
    by_date = dict(closes.iter_rows())
    assert by_date[date(2024, 11, 29)].hour == 18 and by_date[date(2024, 12, 24)].hour == 18
    assert by_date[date(2024, 7, 1)].hour == 20 and by_date[date(2024, 1, 3)].hour == 21
    if convention == "equity_close":
        crypto = equity_close_bars(candles, closes)
        sample_at = {d: c for d, c in by_date.items()}
    else:
        # The exchange's daily candle: dated D, closing at D+1 00:00 UTC.
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        crypto = pl.DataFrame({"symbol": "COIN", "date": days,
                               "adj_close": [at[datetime.combine(d + timedelta(days=1), datetime.min.time(), UTC)]
                                             for d in days]})
        sample_at = {d: datetime.combine(d + timedelta(days=1), datetime.min.time(), UTC) for d in days}
    # The "equity": the same path, sampled on sessions at the instant the convention closes a bar.
    equity = pl.DataFrame({"symbol": "IDX", "date": sess.to_list(),
                           "adj_close": [at[sample_at[d].replace(tzinfo=UTC)] for d in sess.to_list()]})
    prices = pl.concat([crypto.select("symbol", "date", "adj_close"), equity])
    returns = log_returns(prices, sess)
    corr = rolling_correlation(returns, sess, ["COIN"], ["IDX"], windows=[30, 90])
    full = corr.filter(pl.col("correlation").is_not_null())
    assert full.height > 300
    assert full["correlation"].min() == pytest.approx(1.0, abs=1e-9)
    assert full["beta"].min() == pytest.approx(1.0, abs=1e-9)
    # Over the DST changes (March 10, November 3) and the early closes the windows still read 1.
    around = full.filter(pl.col("date").is_in([date(2024, 3, 11), date(2024, 11, 4), date(2024, 11, 29),
                                               date(2024, 12, 24), date(2024, 12, 26)]))
    # (March 11 is fewer than 90 sessions into the panel: only its 30-session window is full.)
    assert around.height == 9 and around["correlation"].min() == pytest.approx(1.0, abs=1e-9)


def test_the_utc_midnight_candle_against_the_session_close_is_not_one():
    """Why the convention matters: the same path sampled 3-4 hours apart does not correlate at 1."""
    from flows.calendar import equity_closes, sessions

    first, last = date(2024, 1, 2), date(2024, 12, 31)
    start = datetime.combine(first - timedelta(days=2), datetime.min.time(), UTC)
    hours = int((datetime.combine(last + timedelta(days=2), datetime.min.time(), UTC) - start) / H)
    price = _path(start, hours)
    at = {start + (k + 1) * H: price[k] for k in range(hours)}
    sess = sessions(first, last)
    by_date = dict(equity_closes(first, last).iter_rows())
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    crypto = pl.DataFrame({"symbol": "COIN", "date": days,
                           "adj_close": [at[datetime.combine(d + timedelta(days=1), datetime.min.time(), UTC)]
                                         for d in days]})
    equity = pl.DataFrame({"symbol": "IDX", "date": sess.to_list(), "adj_close": [at[by_date[d]] for d in sess]})
    returns = log_returns(pl.concat([crypto, equity]), sess)
    corr = rolling_correlation(returns, sess, ["COIN"], ["IDX"], windows=[90]).drop_nulls("correlation")
    assert corr["correlation"].max() < 0.95
