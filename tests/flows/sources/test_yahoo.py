"""Equities through the real yfinance client against recorded Yahoo v8 chart responses."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from live_testkit import Reply, Sleeps, fast_settings, load_recording

from flows.sources.base import BAR_SCHEMA, SOURCE_BAR_SCHEMA
from flows.sources.live_config import RetryPolicy
from flows.sources.yahoo import YahooClient, fetch_equities, window_start
from flows.universe import Asset

AAPL_FILE = "chart-AAPL-2020-08-31-to-2020-11-07.json"
MSFT_FILE = "historical-via-chart-MSFT-dividends-2021-02-01-to-2022-01-31.csv.json"
NVDA_FILE = "historical-via-chart-NVDA-split-2021-02-01-to-2022-01-31.csv.json"
WEEKEND_FILE = "chart-AAPL-2025-02-01-to-2025-02-02-includePrePost-false-interval-1m.json"
NY = ZoneInfo("America/New_York")
LATER = datetime(2025, 1, 1, tzinfo=UTC)  # every recorded session is long closed


def ny_midnight(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=NY).timestamp())


def stock(symbol: str) -> Asset:
    return Asset(symbol=symbol, name=symbol, asset_class="equity", sector="Tech")


def client(yahoo, sleeps=None, **overrides) -> YahooClient:
    s = fast_settings(**overrides)
    return YahooClient(s, RetryPolicy.from_settings(s, sleeps or Sleeps()), yahoo.session)


def run(yahoo, symbols, start, as_of, last_dates=None, tail=None, now=LATER, **overrides):
    c = client(yahoo, **overrides)
    sleeps = Sleeps()
    c.retry.sleep = sleeps
    res = fetch_equities(
        c,
        [stock(s) for s in symbols],
        start,
        as_of,
        last_dates or {},
        tail if tail is not None else pl.DataFrame(schema=BAR_SCHEMA),
        now,
        sleeps,
    )
    return res, sleeps


def outcome(res, symbol):
    (o,) = [o for o in res.outcomes if o.symbol == symbol]
    return o


def test_split_and_dividends_across_dst_parse_to_session_dates(real_data, yahoo):
    yahoo.charts["AAPL"] = load_recording(real_data, AAPL_FILE)
    bars, meta, attempts = client(yahoo).history("AAPL", date(2020, 8, 31), date(2020, 11, 6))

    assert attempts == 1 and meta["exchangeTimezoneName"] == "America/New_York"
    assert bars.schema == pl.Schema(SOURCE_BAR_SCHEMA)
    assert bars.height == 49
    dates = bars["date"].to_list()
    assert dates[0] == date(2020, 8, 31) and dates[-1] == date(2020, 11, 6)
    # Bars before and after the DST change (13:30 -> 14:30 UTC) land on their session date.
    assert date(2020, 10, 30) in dates and date(2020, 11, 2) in dates
    assert all(d.weekday() < 5 for d in dates)
    first = bars.row(0, named=True)
    # auto_adjust=False: Close as Yahoo reports it (post-split) and the dividend-adjusted close.
    assert first["close"] == pytest.approx(129.039993, rel=1e-6)
    assert first["adj_close"] < first["close"]
    # The 4:1 split (2020-08-31) is in the recording's events; Yahoo's close is already split-adjusted.
    assert bars["close"].max() < 140
    (req,) = yahoo.chart_requests("AAPL")
    assert req.query["interval"] == "1d"
    assert int(req.query["period1"]) == ny_midnight(date(2020, 8, 31))
    assert int(req.query["period2"]) == ny_midnight(date(2020, 11, 7))


def test_nvda_split_year_has_every_session(real_data, yahoo):
    yahoo.charts["NVDA"] = load_recording(real_data, NVDA_FILE)
    bars, _, _ = client(yahoo).history("NVDA", date(2021, 2, 1), date(2022, 1, 31))
    assert bars.height == 252
    assert bars["date"].is_unique().all()
    # After the 4:1 split (2021-07-20) Yahoo's close is already split-adjusted: no 4x jump.
    closes = bars.sort("date")["close"]
    assert (closes / closes.shift(1)).drop_nulls().max() < 1.5


def test_incremental_run_fetches_only_the_lookback_window(real_data, yahoo):
    yahoo.charts["AAPL"] = load_recording(real_data, AAPL_FILE)
    yahoo.charts["MSFT"] = load_recording(real_data, MSFT_FILE)
    start, as_of = date(2020, 8, 31), date(2022, 1, 31)
    first, _ = run(yahoo, ["AAPL", "MSFT"], start, as_of, fundamentals=False)
    assert [o.status for o in first.outcomes] == ["ok", "ok"]
    stored = pl.concat(first.bars)
    last_dates = {s: stored.filter(pl.col("symbol") == s)["date"].max() for s in ("AAPL", "MSFT")}
    tail = stored.sort("date").group_by("symbol").tail(10)

    second, _ = run(yahoo, ["AAPL", "MSFT"], start, as_of, last_dates, tail, fundamentals=False)

    aapl, msft = yahoo.chart_requests("AAPL"), yahoo.chart_requests("MSFT")
    assert [int(r.query["period1"]) for r in aapl] == [
        ny_midnight(start),
        ny_midnight(date(2020, 11, 2)),  # 5th-last stored session (DST over: EST)
    ]
    msft_5th_last = sorted(stored.filter(pl.col("symbol") == "MSFT")["date"])[-5]
    assert [int(r.query["period1"]) for r in msft] == [
        ny_midnight(start),
        ny_midnight(msft_5th_last),
    ]
    assert outcome(second, "AAPL").rows == 5 and outcome(second, "MSFT").rows == 5
    assert outcome(second, "AAPL").error is None and not second.warnings


def test_restated_adjusted_close_refetches_that_symbol_only(real_data, yahoo):
    yahoo.charts["AAPL"] = load_recording(real_data, AAPL_FILE)
    yahoo.charts["MSFT"] = load_recording(real_data, MSFT_FILE)
    start, as_of = date(2020, 8, 31), date(2022, 1, 31)
    first, _ = run(yahoo, ["AAPL", "MSFT"], start, as_of, fundamentals=False)
    stored = pl.concat(first.bars)
    last_dates = {s: stored.filter(pl.col("symbol") == s)["date"].max() for s in ("AAPL", "MSFT")}
    # A dividend restated AAPL's history: the stored adjusted closes no longer match Yahoo's.
    tail = (
        stored.sort("date")
        .group_by("symbol")
        .tail(10)
        .with_columns(
            pl.when(pl.col("symbol") == "AAPL")
            .then(pl.col("adj_close") * 1.01)
            .otherwise(pl.col("adj_close"))
            .alias("adj_close")
        )
    )
    n_before = {s: len(yahoo.chart_requests(s)) for s in ("AAPL", "MSFT")}

    second, _ = run(yahoo, ["AAPL", "MSFT"], start, as_of, last_dates, tail, fundamentals=False)

    aapl = yahoo.chart_requests("AAPL")[n_before["AAPL"] :]
    msft = yahoo.chart_requests("MSFT")[n_before["MSFT"] :]
    assert [int(r.query["period1"]) for r in aapl] == [
        ny_midnight(date(2020, 11, 2)),
        ny_midnight(start),  # full re-fetch
    ]
    msft_5th_last = sorted(stored.filter(pl.col("symbol") == "MSFT")["date"])[-5]
    assert [int(r.query["period1"]) for r in msft] == [ny_midnight(msft_5th_last)]
    a = outcome(second, "AAPL")
    assert a.status == "ok" and a.rows == 49 and a.first_date == start and a.attempts == 2
    assert "restated" in a.error and "re-fetched full history" in a.error
    # The bars name the request they came from: AAPL's full re-fetch, MSFT's look-back window.
    bars = pl.concat(second.bars)
    assert set(bars.filter(pl.col("symbol") == "AAPL")["origin"]) == {f"yahoo:AAPL {start}..{as_of}"}
    assert set(bars.filter(pl.col("symbol") == "MSFT")["origin"]) == {f"yahoo:MSFT {msft_5th_last}..{as_of}"}
    assert any(w.startswith("AAPL: adjusted close restated") for w in second.warnings)
    assert outcome(second, "MSFT").rows == 5


def test_429_then_success_is_retried_with_backoff(real_data, yahoo):
    yahoo.charts["RL"] = load_recording(real_data, AAPL_FILE)
    yahoo.faults["RL"] = [Reply(429, "Too Many Requests", {"Content-Type": "text/plain"})]
    res, sleeps = run(yahoo, ["RL"], date(2020, 8, 31), date(2020, 11, 6), fundamentals=False)
    o = outcome(res, "RL")
    assert o.status == "ok" and o.rows == 49 and o.attempts == 2
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 0.02


def test_rate_limited_crumb_does_not_fail_the_data_call(real_data, yahoo):
    from yfinance.data import YfData

    YfData()._crumb = None  # force a fresh crumb fetch
    yahoo.charts["CRUMB"] = load_recording(real_data, AAPL_FILE)
    yahoo.crumb_faults = [Reply(429, "Too Many Requests", {"Content-Type": "text/plain"})] * 4
    res, sleeps = run(yahoo, ["CRUMB"], date(2020, 8, 31), date(2020, 11, 6), fundamentals=False)
    o = outcome(res, "CRUMB")
    assert o.status == "ok" and o.rows == 49 and o.attempts == 1 and sleeps == []
    assert len(yahoo.crumb_faults) < 4  # the rate-limited crumb endpoint was really hit


def test_timeout_then_success(real_data, yahoo):
    yahoo.charts["SLOW"] = load_recording(real_data, AAPL_FILE)
    yahoo.faults["SLOW"] = [Reply(200, load_recording(real_data, AAPL_FILE), delay_s=1.5)]
    res, _ = run(
        yahoo,
        ["SLOW"],
        date(2020, 8, 31),
        date(2020, 11, 6),
        fundamentals=False,
        request_timeout_s=0.4,
    )
    o = outcome(res, "SLOW")
    assert o.status == "ok" and o.attempts == 2


def test_persistent_5xx_gives_up_after_bounded_attempts(real_data, yahoo):
    yahoo.charts["DOWN"] = load_recording(real_data, AAPL_FILE)
    yahoo.faults["DOWN"] = [Reply(503, "<html>Will be right back</html>")] * 10
    res, sleeps = run(yahoo, ["DOWN"], date(2020, 8, 31), date(2020, 11, 6), fundamentals=False)
    o = outcome(res, "DOWN")
    assert o.status == "error" and o.attempts == 3 and len(sleeps) == 2
    assert "HTTP 503" in o.error and "3 attempts" in o.error


def test_malformed_unknown_and_empty_are_errors_not_empty_successes(real_data, yahoo):
    yahoo.charts["GARBLED"] = load_recording(real_data, AAPL_FILE)
    yahoo.faults["GARBLED"] = [Reply(200, b'{"chart": {"result": [{"meta": ')]
    yahoo.charts["WKND"] = load_recording(real_data, WEEKEND_FILE)
    yahoo.charts["OLD"] = load_recording(real_data, AAPL_FILE)  # has data, but not in range
    res, _ = run(
        yahoo,
        ["GARBLED", "NOSUCH", "WKND", "OLD"],
        date(2020, 8, 31),
        date(2020, 11, 6),
        fundamentals=False,
    )
    garbled, nosuch, wknd = (outcome(res, s) for s in ("GARBLED", "NOSUCH", "WKND"))
    assert garbled.status == "error" and "malformed" in garbled.error
    assert garbled.attempts == 1  # not retried
    assert nosuch.status == "error" and "no price data" in nosuch.error
    assert wknd.status == "error" and wknd.rows == 0 and "no price data" in wknd.error
    assert not res.bars or all(b["symbol"].unique().to_list() == ["OLD"] for b in res.bars)

    res2, _ = run(yahoo, ["OLD"], date(2024, 1, 2), date(2024, 1, 31), fundamentals=False)
    old = outcome(res2, "OLD")
    assert old.status == "error" and old.rows == 0


def test_session_not_yet_closed_is_dropped(real_data, yahoo):
    yahoo.charts["AAPL"] = load_recording(real_data, AAPL_FILE)
    during = datetime(2020, 11, 6, 15, 0, tzinfo=NY)  # Friday session still trading
    res, _ = run(yahoo, ["AAPL"], date(2020, 8, 31), date(2020, 11, 6), now=during)
    o = outcome(res, "AAPL")
    assert o.status == "ok" and o.last_date == date(2020, 11, 5) and o.rows == 48
    assert any("not yet closed" in w for w in res.warnings)


def test_fundamentals_snapshot_and_its_failure_does_not_fail_prices(real_data, yahoo):
    yahoo.charts["AAPL"] = load_recording(real_data, AAPL_FILE)
    yahoo.charts["NOFUN"] = load_recording(real_data, AAPL_FILE)
    yahoo.info["NOFUN"] = Reply(404, {"quoteSummary": {"result": None, "error": {"code": "x"}}})
    as_of = date(2020, 11, 6)
    res, _ = run(yahoo, ["AAPL", "NOFUN"], date(2020, 8, 31), as_of)

    assert outcome(res, "NOFUN").status == "ok" and outcome(res, "AAPL").status == "ok"
    (row,) = res.fundamentals
    assert row["symbol"] == "AAPL" and row["as_of"] == as_of
    assert row["trailing_pe"] == 31.5 and row["price_to_book"] == 45.2
    assert row["number_of_analyst_opinions"] == 39 and row["sector"] == "Technology"
    assert row["short_percent_of_float"] == pytest.approx(0.0071)
    assert any(w.startswith("NOFUN: fundamentals unavailable") for w in res.warnings)


def test_no_network_fails_each_symbol_clearly_and_quickly(closed_port, real_data, yahoo):
    yahoo.server.url = f"http://127.0.0.1:{closed_port}"  # sessions now point at a dead port
    symbols = ["NA1", "NA2", "NA3", "NA4", "NA5"]
    t0 = time.monotonic()
    res, _ = run(yahoo, symbols, date(2020, 8, 31), date(2020, 11, 6))
    assert time.monotonic() - t0 < 60
    assert [o.status for o in res.outcomes] == ["error"] * 5
    assert all("host unreachable" in o.error for o in res.outcomes)
    # After `unreachable_after` (3) symbols the rest are not even tried.
    assert [o.attempts for o in res.outcomes][3:] == [0, 0]
    assert res.outcomes[0].attempts == 3


def test_window_start_counts_stored_sessions():
    tail = pl.DataFrame(
        {"symbol": ["X"] * 6, "date": [date(2024, 1, d) for d in (2, 3, 4, 5, 8, 9)]}
    )
    assert window_start("X", date(2020, 1, 1), {"X": date(2024, 1, 9)}, tail, 5) == date(2024, 1, 3)
    assert window_start("X", date(2020, 1, 1), {}, tail, 5) == date(2020, 1, 1)
    # No stored tail: count back weekdays.
    empty = pl.DataFrame(schema={"symbol": pl.String, "date": pl.Date})
    assert window_start("X", date(2020, 1, 1), {"X": date(2024, 1, 9)}, empty, 5) == date(2024, 1, 2)
