"""Session alignment and log returns, against hand-computed golden frames."""

from __future__ import annotations

import math
from datetime import date, timedelta

import polars as pl
import pytest

from transforms.returns import log_returns

# XNYS around Thanksgiving 2024: Thu 2024-11-28 is a holiday.
SESSIONS = pl.Series(
    [date(2024, 11, 22), date(2024, 11, 25), date(2024, 11, 26), date(2024, 11, 27), date(2024, 11, 29), date(2024, 12, 2)],
    dtype=pl.Date,
)


def bars(symbol: str, closes: dict[date, float]) -> pl.DataFrame:
    return pl.DataFrame({"symbol": symbol, "date": list(closes), "adj_close": list(closes.values())})


def by_date(frame: pl.DataFrame, symbol: str) -> dict[date, float | None]:
    return dict(frame.filter(pl.col("symbol") == symbol).select("session_date", "log_return").iter_rows())


def test_crypto_monday_return_compounds_the_weekend():
    days = [date(2024, 11, 22) + timedelta(days=i) for i in range(11)]
    closes = {d: 100.0 + i for i, d in enumerate(days)}
    r = by_date(log_returns(bars("BTC", closes), SESSIONS), "BTC")
    # Friday 22 -> Monday 25: three UTC candles, one session return.
    assert r[date(2024, 11, 25)] == pytest.approx(math.log(closes[date(2024, 11, 25)] / closes[date(2024, 11, 22)]))
    # Across the holiday: Wed 27 -> Fri 29 compounds Thursday.
    assert r[date(2024, 11, 29)] == pytest.approx(math.log(closes[date(2024, 11, 29)] / closes[date(2024, 11, 27)]))
    assert set(r) == set(SESSIONS.to_list()), "crypto is sampled on sessions only"
    assert r[date(2024, 11, 22)] is None, "first session has no previous close"


def test_equity_gap_is_null_not_forward_filled_and_weekend_rows_drop():
    closes = {
        date(2024, 11, 22): 10.0,
        date(2024, 11, 23): 99.0,  # a Saturday row in an equity file is not a session
        date(2024, 11, 25): 11.0,
        # 26th missing
        date(2024, 11, 27): 12.0,
        date(2024, 11, 29): 12.5,
    }
    r = by_date(log_returns(bars("IWM", closes), SESSIONS), "IWM")
    assert r[date(2024, 11, 25)] == pytest.approx(math.log(11 / 10))
    assert date(2024, 11, 26) not in r
    assert r[date(2024, 11, 27)] is None, "previous session has no close: no return"
    assert r[date(2024, 11, 29)] == pytest.approx(math.log(12.5 / 12))
    assert date(2024, 11, 23) not in r


def test_non_positive_price_gives_null_return():
    closes = {date(2024, 11, 22): 10.0, date(2024, 11, 25): 0.0, date(2024, 11, 26): 5.0}
    r = by_date(log_returns(bars("X", closes), SESSIONS), "X")
    assert r[date(2024, 11, 25)] is None and r[date(2024, 11, 26)] is None


def test_row_order_does_not_matter():
    days = [date(2024, 11, 22) + timedelta(days=i) for i in range(11)]
    frame = pl.concat([bars("BTC", {d: 50.0 * (1.01**i) for i, d in enumerate(days)}), bars("ETH", {d: 7.0 + i for i, d in enumerate(days)})])
    a = log_returns(frame, SESSIONS)
    b = log_returns(frame.sample(fraction=1.0, shuffle=True, seed=3), SESSIONS)
    assert a.equals(b)
