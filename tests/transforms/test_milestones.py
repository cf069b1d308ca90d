from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from flows.sources.base import BAR_SCHEMA
from transforms.milestones import mart_market_milestones, mart_period_returns



def _bars_from(symbol: str, dates: list[date], closes: list[float]) -> pl.DataFrame:
    return pl.DataFrame(
        {"symbol": symbol, "date": dates, "open": closes, "high": closes, "low": closes, "close": closes,
         "adj_close": closes, "volume": None},
        schema=BAR_SCHEMA,
    )  # fmt: skip


def _real_prices(real_data: Path) -> pl.DataFrame:
    frames = []
    for sym, path, skip in (
        ("^RUT", real_data / "alitalbi-storage_data_fy" / "^RUT.csv", None),
        ("SPY", real_data / "alitalbi-storage_data_fy" / "SPY.csv", None),
        ("BTC", real_data / "pratham093-AEGIS" / "BTC-USD.csv", [1]),
    ):
        d = pd.read_csv(path, skiprows=skip)
        frames.append(_bars_from(sym, list(pd.to_datetime(d["Date"]).dt.date), list(d["Close"].astype(float))))
    return pl.concat(frames)


def _year_ago(d: date) -> date:
    try:
        return d.replace(year=d.year - 1)
    except ValueError:  # 29 February
        return d.replace(year=d.year - 1, day=28)


def _reference_milestones(dates: list[date], closes: list[float]) -> list[tuple]:
    def last_before(limit: date, inclusive: bool) -> float | None:
        i = (bisect_right if inclusive else bisect_left)(dates, limit)
        return closes[i - 1] if i > 0 else None

    def ret(c: float, base: float | None) -> float | None:
        return None if base is None else c / base - 1

    out, running_max = [], None
    for i, (d, c) in enumerate(zip(dates, closes, strict=True)):
        new_ath = running_max is not None and c > running_max
        running_max = c if running_max is None else max(running_max, c)
        low = min(closes[i - 20 : i + 1]) if i >= 20 else None
        quarter_start = date(d.year, 3 * ((d.month - 1) // 3) + 1, 1)
        out.append(
            (
                d, c, running_max, new_ath, c / running_max - 1, low, ret(c, low),
                ret(c, closes[i - 1] if i else None),
                ret(c, last_before(d.replace(day=1), False)),
                ret(c, last_before(quarter_start, False)),
                ret(c, last_before(date(d.year, 1, 1), False)),
                ret(c, last_before(_year_ago(d), True)),
            )
        )  # fmt: skip
    return out


COLUMNS = ["date", "close", "ath_close", "is_new_ath", "drawdown_from_ath", "low_21d", "rally_from_low_21d",
           "ret_1d", "ret_mtd", "ret_qtd", "ret_ytd", "ret_1y"]  # fmt: skip


def _assert_rows_equal(got: list[tuple], want: list[tuple]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[0] == w[0] and g[3] == w[3], (g, w)
        for a, b in zip(g[1:], w[1:], strict=True):
            assert (a is None and b is None) or a == pytest.approx(b, rel=1e-12, abs=1e-15), (g, w)


def test_milestones_match_reference_on_real_data(real_data: Path) -> None:
    prices = _real_prices(real_data)
    got = mart_market_milestones(prices)
    assert got.columns[:2] == ["date", "symbol"]
    for sym in ("^RUT", "SPY", "BTC"):
        p = prices.filter(pl.col("symbol") == sym).sort("date")
        want = _reference_milestones(p["date"].to_list(), p["adj_close"].to_list())
        _assert_rows_equal(got.filter(pl.col("symbol") == sym).select(COLUMNS).rows(), want)
    btc = got.filter(pl.col("symbol") == "BTC")
    # Crypto's 1y return is a calendar year back (365 rows), not 252 rows.
    row = btc.filter(pl.col("date") == date(2022, 6, 1)).row(0, named=True)
    base = prices.filter((pl.col("symbol") == "BTC") & (pl.col("date") == date(2021, 6, 1)))["close"][0]
    assert row["ret_1y"] == pytest.approx(row["close"] / base - 1, rel=1e-12)
    assert btc.filter(pl.col("date") < date(2022, 1, 1))["ret_1y"].null_count() == 365


def test_year_lookback_rows_option(real_data: Path) -> None:
    prices = _real_prices(real_data).filter(pl.col("symbol") == "SPY")
    got = mart_market_milestones(prices, year_lookback_rows=252)
    c = prices.sort("date")["adj_close"].to_numpy()
    want = np.concatenate([np.full(252, np.nan), c[252:] / c[:-252] - 1])
    np.testing.assert_allclose(got["ret_1y"].fill_null(np.nan).to_numpy(), want, rtol=1e-12)


def test_equal_closes_at_ath_are_not_new_and_leap_day() -> None:
    dates = [date(2024, 2, 26) + timedelta(days=i) for i in range(6)]
    got = mart_market_milestones(_bars_from("X", dates, [10.0, 12.0, 12.0, 11.0, 12.0, 13.0]))
    assert got["is_new_ath"].to_list() == [False, True, False, False, False, True]
    assert got["ath_close"].to_list() == [10.0, 12.0, 12.0, 12.0, 12.0, 13.0]
    assert got["drawdown_from_ath"][3] == pytest.approx(11 / 12 - 1)
    assert got["low_21d"].null_count() == 6  # fewer than 21 rows
    # March 1 (12.0): MTD is against Feb 29's close (11.0); YTD has no earlier year.
    march = got.filter(pl.col("date") == date(2024, 3, 1)).row(0, named=True)
    assert march["ret_mtd"] == pytest.approx(12.0 / 11.0 - 1) and march["ret_ytd"] is None
    assert march["ret_1d"] == pytest.approx(12.0 / 11.0 - 1)

    leap_days = [date(2023, 2, 27), date(2023, 2, 28), date(2024, 2, 29)]
    leap = mart_market_milestones(_bars_from("Y", leap_days, [1.0, 2.0, 3.0]))
    assert leap["ret_1y"].to_list()[-1] == pytest.approx(0.5)  # 2024-02-29 vs 2023-02-28


def _reference_periods(dates: list[date], closes: list[float], key) -> dict:
    ends: dict = {}
    for d, c in zip(dates, closes, strict=True):
        ends[key(d)] = (d, c)
    keys = sorted(ends)
    return {k: (ends[k][0], ends[k][1] / ends[p][1] - 1) for p, k in zip(keys[:-2], keys[1:-1], strict=True)}


KEYS = {
    "month": lambda d: (d.year, d.month),
    "quarter": lambda d: (d.year, (d.month - 1) // 3),
    "year": lambda d: (d.year,),
}


def test_period_returns_match_reference_on_real_data(real_data: Path) -> None:
    prices = _real_prices(real_data)
    got = mart_period_returns(prices, benchmark="SPY")
    series = {s: prices.filter(pl.col("symbol") == s).sort("date") for s in ("^RUT", "SPY", "BTC")}
    total = 0
    for period, key in KEYS.items():
        bench = _reference_periods(series["SPY"]["date"].to_list(), series["SPY"]["adj_close"].to_list(), key)
        for sym, p in series.items():
            want = _reference_periods(p["date"].to_list(), p["adj_close"].to_list(), key)
            g = got.filter((pl.col("symbol") == sym) & (pl.col("period") == period)).sort("period_end")
            assert g["period_end"].to_list() == [v[0] for v in want.values()]
            np.testing.assert_allclose(g["return"].to_numpy(), [v[1] for v in want.values()], rtol=1e-12)
            b = [bench.get(k, (None, np.nan))[1] for k in want]
            np.testing.assert_allclose(g["benchmark_return"].fill_null(np.nan).to_numpy(), b, rtol=1e-12)
            np.testing.assert_allclose(
                g["excess_return"].fill_null(np.nan).to_numpy(), np.array([v[1] for v in want.values()]) - b, atol=1e-12
            )
            total += len(want)
    assert got.height == total
    # ^RUT's last row (2026-02-23) is an intraday partial bar: February 2026 is not complete.
    rut_months = got.filter((pl.col("symbol") == "^RUT") & (pl.col("period") == "month"))
    assert rut_months["period_end"].max() == date(2026, 1, 30)
    # BTC months end on the calendar month's last day, weekends included.
    assert date(2021, 7, 31) in got.filter((pl.col("symbol") == "BTC") & (pl.col("period") == "month"))["period_end"]


def test_period_returns_gap_month_and_missing_benchmark() -> None:
    dates = [date(2024, 1, 30), date(2024, 1, 31), date(2024, 3, 28), date(2024, 4, 1), date(2024, 5, 1)]
    got = mart_period_returns(_bars_from("X", dates, [9.0, 10.0, 12.0, 15.0, 16.0]), periods=["month"])
    # January is the first period (no prior close); February has no rows;
    # March is measured from January's last close; May is still running.
    assert got.select("period_end", "return", "benchmark", "benchmark_return").rows() == [
        (date(2024, 3, 28), pytest.approx(0.2), "^GSPC", None),
        (date(2024, 4, 1), pytest.approx(0.25), "^GSPC", None),
    ]


def test_highs_look_back_over_the_whole_real_rut_history(real_data):
    # The Yahoo file holds ^RUT from 1987-09-10; a run starting 2015-01-02
    # used to call 2015-01-26, 02-05 and 02-12 new all-time highs although
    # the 2014-12-29 close (1219.11) was higher.
    pdf = pd.read_csv(real_data / "alitalbi-storage_data_fy" / "^RUT.csv")
    bars = pl.DataFrame(
        {"symbol": "^RUT", "date": pd.to_datetime(pdf["Date"]).dt.date, "adj_close": pdf["Close"].astype(float)}
    )
    start = date(2015, 1, 2)
    window, history = bars.filter(pl.col("date") >= start), bars.filter(pl.col("date") < start)
    claimed = [date(2015, 1, 26), date(2015, 2, 5), date(2015, 2, 12)]
    short = mart_market_milestones(window, ["^RUT"])
    assert short.filter(pl.col("date").is_in(claimed))["is_new_ath"].all()  # the old, false claim
    assert short["ath_since"].unique().to_list() == [start]  # ...which now at least says "since 2015-01-02"
    full = mart_market_milestones(window, ["^RUT"], history=history)
    assert full.height == short.height and full["date"].min() == start  # rows of the window only
    assert full["ath_since"].unique().to_list() == [date(1987, 9, 10)]
    early = full.filter(pl.col("date").is_in(claimed))
    assert not early["is_new_ath"].any()
    assert (early["ath_close"] >= 1219.11 - 0.01).all()
    assert (early["drawdown_from_ath"] < 0).all()
    # The record is the same as a run over the whole file.
    whole = mart_market_milestones(bars, ["^RUT"]).filter(pl.col("date") >= start)
    assert full.drop("ath_since").equals(whole.drop("ath_since"))


def test_session_gaps_are_counted_on_the_exchange_calendar():
    # An index on weekday sessions loses 2024-03-13..03-15 (three sessions).
    sessions = [d for d in (date(2024, 1, 1) + timedelta(days=i) for i in range(200)) if d.weekday() < 5]
    missing = {date(2024, 3, 13), date(2024, 3, 14), date(2024, 3, 15)}
    rows = [d for d in sessions if d not in missing]
    closes = 100 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.01, len(rows))))
    prices = pl.DataFrame({"symbol": "IDX", "date": rows, "adj_close": closes})
    sess = pl.Series(sessions, dtype=pl.Date)
    ms = mart_market_milestones(prices, ["IDX"], sessions=sess).sort("date")
    assert ms.filter(pl.col("gap_days") > 0).select("date", "gap_days").rows() == [(date(2024, 3, 18), 3)]
    march = ms.filter(pl.col("date").dt.month() == 3)
    # Before the gap the month-to-date is measured; from the gap on it spans it.
    assert march.filter(pl.col("date") < date(2024, 3, 13))["ret_mtd"].null_count() == 0
    assert march.filter(pl.col("date") > date(2024, 3, 13))["ret_mtd"].null_count() == march.filter(
        pl.col("date") > date(2024, 3, 13)
    ).height
    # A weekend is not a gap on the exchange calendar (no session missing).
    assert ms.filter(pl.col("date") == date(2024, 1, 8))["gap_days"].item() == 0
    pr = mart_period_returns(prices, ["IDX"], benchmark="IDX", sessions=sess)
    months = {r["period_end"].month: r for r in pr.filter(pl.col("period") == "month").to_dicts()}
    assert months[3]["spans_gap"] and months[3]["return"] is None
    assert not months[2]["spans_gap"] and not months[4]["spans_gap"]
    # Without the calendar, nothing can be judged for a non-daily series.
    assert mart_market_milestones(prices, ["IDX"])["gap_days"].max() == 0


def test_a_series_stopping_mid_period_before_a_gap_is_not_a_full_period():
    # Daily series: data to 2024-02-10, nothing until 2024-04-03.
    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(0, 130)]
    keep = [d for d in days if d <= date(2024, 2, 10) or d >= date(2024, 4, 3)]
    prices = pl.DataFrame({"symbol": "C", "date": keep, "adj_close": np.linspace(10, 20, len(keep))})
    pr = mart_period_returns(prices, ["C"], benchmark="C", daily_symbols=["C"])
    months = {r["period_end"]: r for r in pr.filter(pl.col("period") == "month").to_dicts()}
    assert months[date(2024, 2, 10)]["spans_gap"] and months[date(2024, 2, 10)]["return"] is None
    assert months[date(2024, 4, 30)]["spans_gap"]  # measured from 2024-02-10, across the hole
    assert date(2024, 1, 31) not in months  # January is the series' first period: no base
    may = pr.filter((pl.col("period") == "month") & (pl.col("period_end") == date(2024, 5, 9)))
    assert may.is_empty()  # May is the running (last) period
