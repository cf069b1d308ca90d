"""LiveSource end to end (real yfinance + real ccxt against the local server) and its policy."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import polars as pl
import pytest
from live_testkit import (
    BinanceFake,
    LocalYahooSession,
    Sleeps,
    YahooFake,
    fast_settings,
    load_binance_candles,
    load_recording,
    point_exchange_at,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from flows.sources.base import ASSET_SCHEMA, BAR_SCHEMA, FUNDAMENTALS_SCHEMA, SOURCE_BAR_SCHEMA, SymbolOutcome
from flows.sources.exchanges import build_exchange
from flows.sources.live import LiveSource, failure_policy
from flows.sources.live_config import LiveSettings
from flows.universe import Asset, Universe

NOW = datetime(2022, 10, 12, 12, tzinfo=UTC)


def universe() -> Universe:
    return Universe(
        benchmarks=("MSFT",),
        assets=(
            Asset(symbol="MSFT", name="Microsoft", asset_class="equity", sector="IT"),
            Asset(symbol="NVDA", name="NVIDIA", asset_class="equity", sector="IT"),
            Asset(symbol="ZZZZ", name="Nobody", asset_class="equity"),
            Asset(symbol="BTC", name="Bitcoin", asset_class="crypto", quote_currency="USDT"),
            Asset(symbol="ETH", name="Ethereum", asset_class="crypto", quote_currency="USDT"),
        ),
    )


def source(base_url: str, sleeps: Sleeps, **overrides) -> LiveSource:
    return LiveSource(
        fast_settings(**overrides),
        sleep=sleeps,
        now=lambda: NOW,
        yahoo_session_factory=lambda: LocalYahooSession(base_url),
        exchange_factory=lambda cfg, s: point_exchange_at(build_exchange(cfg, s), base_url),
    )


def test_fetch_returns_contract_frames_and_one_outcome_per_symbol(server, real_data):
    yahoo = YahooFake(server)
    yahoo.charts["MSFT"] = load_recording(
        real_data, "historical-via-chart-MSFT-dividends-2021-02-01-to-2022-01-31.csv.json"
    )
    yahoo.charts["NVDA"] = load_recording(
        real_data, "historical-via-chart-NVDA-split-2021-02-01-to-2022-01-31.csv.json"
    )
    binance = BinanceFake(server)
    for base in ("BTC", "ETH"):
        binance.add(base, load_binance_candles(real_data, base))
    sleeps = Sleeps()
    src = source(server.url, sleeps)
    empty = pl.DataFrame(schema=BAR_SCHEMA)

    batch = src.fetch(universe(), date(2021, 2, 1), date(2022, 1, 31), {}, empty)

    assert src.name == "live" and batch.synthetic is False
    assert batch.bars.schema == pl.Schema(SOURCE_BAR_SCHEMA)
    assert batch.assets.schema == pl.Schema(ASSET_SCHEMA)
    assert batch.fundamentals is not None
    assert batch.fundamentals.schema == pl.Schema(FUNDAMENTALS_SCHEMA)
    by = {o.symbol: o for o in batch.outcomes}
    assert sorted(by) == ["BTC", "ETH", "MSFT", "NVDA", "ZZZZ"] and len(batch.outcomes) == 5
    assert by["ZZZZ"].status == "error" and by["ZZZZ"].error
    for s in ("MSFT", "NVDA", "BTC", "ETH"):
        assert by[s].status == "ok" and by[s].rows > 200, s
        assert batch.bars.filter(pl.col("symbol") == s).height == by[s].rows
    assert by["BTC"].source == "binance" and by["MSFT"].source == "yahoo"
    assert by["BTC"].first_date == date(2021, 2, 1) and by["BTC"].last_date == date(2022, 1, 31)
    assert sorted(batch.fundamentals["symbol"]) == ["MSFT", "NVDA"]
    assert (batch.fundamentals["as_of"] == date(2022, 1, 31)).all()
    assert sorted(batch.assets["symbol"]) == ["BTC", "ETH", "MSFT", "NVDA"]
    assert batch.bars.select("symbol", "date").is_duplicated().sum() == 0
    # Every bar names the request it came from (deterministic: no clock, no host).
    origins = dict(batch.bars.group_by("symbol").agg(pl.col("origin").unique()).iter_rows())
    assert origins["MSFT"] == ["yahoo:MSFT 2021-02-01..2022-01-31"]
    assert origins["BTC"] == ["binance:BTC/USDT 2021-02-01..2022-01-31"]
    assert failure_policy(batch.outcomes, universe().benchmarks, 0.2) == (
        True,
        "1/5 symbols failed (20%)",
    )


def test_no_network_at_all_ends_by_itself_with_clear_errors(closed_port):
    dead = f"http://127.0.0.1:{closed_port}"
    t0 = time.monotonic()
    batch = source(dead, Sleeps()).fetch(
        universe(), date(2021, 2, 1), date(2022, 1, 31), {}, pl.DataFrame(schema=BAR_SCHEMA)
    )
    assert time.monotonic() - t0 < 120
    assert len(batch.outcomes) == 5 and batch.bars.height == 0
    assert all(o.status == "error" and "unreachable" in o.error for o in batch.outcomes)
    ok, reason = failure_policy(batch.outcomes, ("MSFT",), 0.2)
    assert not ok and "benchmark failed" in reason


def o(symbol: str, status: str = "ok", error: str | None = None) -> SymbolOutcome:
    return SymbolOutcome(symbol, "yahoo", status, error=error)  # type: ignore[arg-type]


def test_failure_policy():
    fine = [o("A"), o("B"), o("C"), o("D"), o("E", "error", "boom")]
    assert failure_policy(fine, ["A"], 0.2) == (True, "1/5 symbols failed (20%)")
    ok, reason = failure_policy(fine + [o("F", "error", "x")], ["A"], 0.2)
    assert not ok and "2/6 symbols failed" in reason and "E, F" in reason
    ok, reason = failure_policy(fine, ["E"], 0.5)
    assert not ok and "benchmark failed (E: boom)" in reason
    ok, reason = failure_policy(fine, ["Q"], 0.5)
    assert not ok and "Q: not attempted" in reason
    # A later success of the same symbol supersedes its earlier error.
    assert failure_policy([o("A", "error", "x"), o("A")], ["A"], 0.0)[0]
    assert failure_policy([], [], 0.2) == (False, "no symbol was attempted")


def test_settings_defaults_and_env(monkeypatch):
    s = LiveSettings()
    assert [e.id for e in s.exchanges] == ["binance", "coinbase", "kraken"]
    assert s.lookback_sessions == 5 and s.max_failed_share == 0.2
    assert s.exchanges[1].market_symbol("BTC", "USDT") == "BTC/USD"
    assert s.exchanges[0].market_symbol("BTC", "USDT") == "BTC/USDT"

    class Mounted(BaseSettings):  # how Settings.live is mounted
        model_config = SettingsConfigDict(env_prefix="XASSET_", env_nested_delimiter="__")
        live: LiveSettings = LiveSettings()

    monkeypatch.setenv("XASSET_LIVE__LOOKBACK_SESSIONS", "10")
    monkeypatch.setenv("XASSET_LIVE__API_KEYS__BINANCE__API_KEY", "k-123")
    m = Mounted()
    assert m.live.lookback_sessions == 10
    assert m.live.api_keys["binance"].api_key.get_secret_value() == "k-123"
    assert "k-123" not in repr(m) and "k-123" not in repr(LiveSource(m.live))
    assert LiveSource.from_settings(m).settings.lookback_sessions == 10
    with pytest.raises(ValueError):
        LiveSettings(max_failed_share=2)
