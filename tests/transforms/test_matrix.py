from __future__ import annotations

from datetime import date
from pathlib import Path

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import polars as pl
import pytest

from transforms.matrix import as_of_sessions, mart_correlation_matrix


def _sessions(start: str, end: str) -> pl.Series:
    idx = xcals.get_calendar("XNYS").sessions_in_range(start, end)
    return pl.Series("session_date", [d.date() for d in idx], dtype=pl.Date)


def _real_returns(real_data: Path, sessions: pl.Series) -> pd.DataFrame:
    """Wide (session x symbol) log returns; a return needs closes on the session and the previous one."""
    base = real_data / "pratham093-AEGIS"
    days = pd.DatetimeIndex(sessions.to_list())
    closes = {}
    for sym in ("SPY", "IWM", "BTC", "ETH", "SOL"):
        file = f"{sym}.csv" if sym in ("SPY", "IWM") else f"{sym}-USD.csv"
        s = pd.read_csv(base / file, skiprows=[1], index_col="Date", parse_dates=True)["Close"]
        closes[sym] = s.reindex(days)
    wide = pd.DataFrame(closes)
    wide.loc[wide.index < "2023-03-15", "SOL"] = np.nan  # listing inside the history
    return np.log(wide).diff()


def _long(wide: pd.DataFrame) -> pl.DataFrame:
    rows = [(sym, d.date(), None if np.isnan(v) else float(v)) for sym in wide.columns for d, v in wide[sym].items()]
    schema = {"symbol": pl.String, "session_date": pl.Date, "log_return": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row")


def test_matrix_matches_pandas_windows_on_real_data(real_data: Path) -> None:
    sessions = _sessions("2021-01-04", "2025-06-13")
    wide = _real_returns(real_data, sessions)
    got = mart_correlation_matrix(_long(wide), sessions, wide.columns, windows=(30, 90))
    got_map = {(r[0], r[1], r[2], r[3]): (r[4], r[5]) for r in got.rows()}

    days = list(wide.index)
    month_end = [days[i] for i in range(len(days) - 1) if days[i + 1].month != days[i].month] + [days[-1]]
    expected_keys = 0
    for w in (30, 90):
        for t_day in month_end:
            t = days.index(t_day)
            if t + 1 < w:
                continue
            block = wide.iloc[t + 1 - w : t + 1]
            for a in wide.columns:
                for b in wide.columns:
                    expected_keys += 1
                    x, y = block[a].to_numpy(), block[b].to_numpy()
                    paired = ~np.isnan(x) & ~np.isnan(y)
                    corr, obs = got_map[(t_day.date(), w, a, b)]
                    assert obs == paired.sum()
                    if paired.all() and x.std() > 0 and y.std() > 0:
                        assert corr == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-10)
                    else:
                        assert corr is None
    assert got.height == expected_keys
    # SOL lists 2023-03-15 (first return on the 16th): 12 returns by March's
    # end, 31 by April's, so its 30-session window is full at end-April only.
    sol = got.filter((pl.col("asset_a") == "SOL") & (pl.col("asset_b") == "BTC") & (pl.col("window_days") == 30))
    march, april = (sol.filter(pl.col("date") == d).row(0, named=True) for d in (date(2023, 3, 31), date(2023, 4, 28)))
    assert (march["correlation"], march["observations"]) == (None, 12)
    assert april["correlation"] is not None and april["observations"] == 30


def test_matrix_agrees_with_rolling_correlation(real_data: Path) -> None:
    correlation = pytest.importorskip("transforms.correlation")
    sessions = _sessions("2021-01-04", "2022-12-30")
    returns = _long(_real_returns(real_data, sessions))
    rolling = correlation.rolling_correlation(returns, sessions, ["BTC", "ETH"], ["SPY"], windows=(30,))
    matrix = mart_correlation_matrix(returns, sessions, ["BTC", "ETH", "SPY"], windows=(30,))
    joined = matrix.join(
        rolling.rename({"asset": "asset_a", "benchmark": "asset_b"}), on=["date", "window_days", "asset_a", "asset_b"]
    )
    assert joined.height == 2 * 24 - 2  # Jan 2021 has fewer than 30 sessions
    assert (joined["correlation"] - joined["correlation_right"]).abs().max() < 1e-9


def test_golden_zero_variance_holiday_month_end_and_symmetry() -> None:
    sessions = _sessions("2024-02-01", "2024-04-05")
    n = sessions.len()
    rng = np.random.default_rng(7)
    a = rng.normal(size=n)
    b = 0.5 * a + rng.normal(size=n)
    rows = []
    for i, d in enumerate(sessions.to_list()):
        rows += [("A", d, float(a[i])), ("B", d, float(b[i])), ("FLAT", d, 0.001)]
    returns = pl.DataFrame(rows, schema=["symbol", "session_date", "log_return"], orient="row")
    got = mart_correlation_matrix(returns, sessions, ["A", "B", "FLAT", "NONE"], windows=(20,))
    # Good Friday 2024-03-29 is a holiday: March's as-of session is Thursday the 28th.
    assert got["date"].unique().sort().to_list() == [date(2024, 2, 29), date(2024, 3, 28), date(2024, 4, 5)]
    assert got.height == 3 * 16
    at = got.filter(pl.col("date") == date(2024, 3, 28))
    cell = {(r["asset_a"], r["asset_b"]): r for r in at.iter_rows(named=True)}
    assert cell[("A", "B")]["correlation"] == cell[("B", "A")]["correlation"] is not None
    assert cell[("A", "A")]["correlation"] == 1.0
    assert cell[("FLAT", "A")]["correlation"] is None and cell[("FLAT", "A")]["observations"] == 20
    assert cell[("FLAT", "FLAT")]["correlation"] is None
    assert cell[("NONE", "A")]["observations"] == 0 and cell[("NONE", "NONE")]["correlation"] is None


def test_as_of_sessions() -> None:
    s = _sessions("2023-12-20", "2024-01-10")
    assert as_of_sessions(s).to_list() == [date(2023, 12, 29), date(2024, 1, 10)]


def test_window_counts_equal_the_direct_count_of_rows_with_both_values() -> None:
    from transforms.matrix import _window_counts

    rng = np.random.default_rng(3)
    valid = rng.random((400, 9)) > 0.3
    valid[:120, 4] = False  # a late listing
    # Overlapping, nested, repeated and empty spans, in no order.
    spans = [(0, 400), (10, 40), (370, 400), (0, 1), (5, 5), (10, 40), (200, 390), (1, 400)]
    got = _window_counts(valid, spans)
    for (lo, hi), counts in zip(spans, got, strict=True):
        direct = valid[lo:hi].T.astype(np.int64) @ valid[lo:hi].astype(np.int64)
        assert counts.dtype == np.int64 and np.array_equal(counts, direct), (lo, hi)


def test_matrix_rows_come_in_key_order_and_per_window_parts_combine_to_the_whole() -> None:
    from transforms.graph import Built, _combine_matrix

    sessions = _sessions("2023-01-03", "2024-06-28")
    rng = np.random.default_rng(5)
    names = ["ZEC", "BTC", "^RUT", "ALTS", "ETH"]
    rows = [
        (s, d, float(rng.normal()) if rng.random() > 0.05 else None)
        for s in names
        for d in sessions.to_list()
        if not (s == "ZEC" and d < date(2023, 9, 1))
    ]
    returns = pl.DataFrame(rows, schema={"symbol": pl.String, "session_date": pl.Date, "log_return": pl.Float64}, orient="row")
    windows = (90, 30, 180)
    whole = mart_correlation_matrix(returns, sessions, names, windows)
    key = ["date", "window_days", "asset_a", "asset_b"]
    assert whole.height and whole.equals(whole.sort(key))
    parts = [Built({"mart_correlation_matrix": mart_correlation_matrix(returns, sessions, names, (w,))}) for w in windows]
    assert _combine_matrix(parts).tables["mart_correlation_matrix"].equals(whole)
