"""Timeouts that bound: a server on 127.0.0.1 that accepts connections and never answers.

The real HTTP stacks are used: curl_cffi (what yfinance gets in production) and
ccxt's requests session. Claims: each request gives up after its read timeout;
the extract deadline (``XASSET_EXTRACT_TIMEOUT_SECONDS``) ends a hung extract
even when the request timeout is far longer; every symbol not fetched is
recorded failed with a one-line reason; the others are kept and the failure
policy decides.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime

import polars as pl
import pytest
from live_testkit import (
    BinanceFake,
    LocalYahooSession,
    Reply,
    Sleeps,
    YahooFake,
    fast_settings,
    load_binance_candles,
    load_recording,
    point_exchange_at,
)

from flows.sources.base import BAR_SCHEMA
from flows.sources.exchanges import build_exchange, fetch_crypto
from flows.sources.live import LiveSource, failure_policy
from flows.sources.live_config import RetryPolicy, deadline
from flows.sources.yahoo import StatusCheckingSessionMixin, YahooClient, fetch_equities
from flows.universe import Asset, Universe

NOW = datetime(2022, 10, 12, 12, tzinfo=UTC)
START, AS_OF = date(2021, 2, 1), date(2022, 1, 31)
EMPTY = pl.DataFrame(schema=BAR_SCHEMA)
# Generous: what each test proves is that the wait ends at all, long before
# the request timeouts that would otherwise apply.
BOUND_S = 60


class BlackHole:
    """Accepts every connection and never sends a byte (nor reads one)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)  # so the accept loop sees close() promptly
        self.closed = threading.Event()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.closed.set()
        self._thread.join(10)
        self.sock.close()
        for c in self.accepted:
            c.close()


@pytest.fixture
def hole() -> Iterator[BlackHole]:
    h = BlackHole()
    yield h
    h.close()


def curl_session(base_url: str):
    """The production session type (curl_cffi impersonating Chrome), pointed at ``base_url``."""
    from curl_cffi import requests as curl_requests

    class CurlToLocal(StatusCheckingSessionMixin, curl_requests.Session):
        rewrite_url = LocalYahooSession.rewrite_url

    session = CurlToLocal(impersonate="chrome")
    session.base_url = base_url
    return session


def equities(*symbols: str) -> list[Asset]:
    return [Asset(symbol=s, name=s, asset_class="equity") for s in symbols]


def crypto(*symbols: str) -> list[Asset]:
    return [Asset(symbol=s, name=s, asset_class="crypto", quote_currency="USDT") for s in symbols]


def one_line(text: str | None) -> bool:
    return bool(text) and "\n" not in text and "Traceback" not in text


def test_yahoo_read_timeout_on_the_curl_session(hole):
    settings = fast_settings(request_timeout_s=1.0, connect_timeout_s=1.0, max_attempts=2, fundamentals=False)
    client = YahooClient(settings, RetryPolicy.from_settings(settings, Sleeps()), lambda: curl_session(hole.url))
    t0 = time.monotonic()
    out = fetch_equities(client, equities("MSFT"), START, AS_OF, {}, EMPTY, NOW, Sleeps())
    assert time.monotonic() - t0 < BOUND_S
    assert hole.accepted, "the requests reached the silent server"
    (o,) = out.outcomes
    assert o.status == "error" and one_line(o.error), o.error
    assert o.error.startswith("request timed out after 1s (after 2 attempts)"), o.error


def test_ccxt_timeout_from_settings(hole):
    settings = fast_settings(request_timeout_s=1.0, max_attempts=2)
    factory = lambda cfg, s: point_exchange_at(build_exchange(cfg, s), hole.url)  # noqa: E731
    assert factory(settings.exchanges[0], settings).timeout == 1000
    t0 = time.monotonic()
    out = fetch_crypto(crypto("BTC"), START, AS_OF, {}, settings, RetryPolicy.from_settings(settings, Sleeps()), NOW, factory)
    assert time.monotonic() - t0 < BOUND_S
    (o,) = out.outcomes
    assert o.status == "error" and one_line(o.error), o.error
    assert "markets unavailable: request timed out (after 2 attempts)" in o.error


def test_the_extract_deadline_ends_a_hung_extract_long_before_the_request_timeouts(hole):
    # Ten minutes per request, four attempts: without the deadline this would take hours.
    settings = fast_settings(request_timeout_s=600.0, connect_timeout_s=600.0, max_attempts=4, backoff_base_s=1.0)
    src = LiveSource(
        settings, sleep=time.sleep, now=lambda: NOW,
        yahoo_session_factory=lambda: curl_session(hole.url),
        exchange_factory=lambda cfg, s: point_exchange_at(build_exchange(cfg, s), hole.url),
    )
    universe = Universe(benchmarks=("MSFT",), assets=(*equities("MSFT", "NVDA"), *crypto("BTC", "ETH")))
    t0 = time.monotonic()
    with deadline(3.0):
        batch = src.fetch(universe, START, AS_OF, {}, EMPTY)
    assert time.monotonic() - t0 < BOUND_S
    assert batch.bars.height == 0
    by = {o.symbol: o for o in batch.outcomes}
    assert sorted(by) == ["BTC", "ETH", "MSFT", "NVDA"]
    for sym, o in by.items():
        assert o.status == "error" and one_line(o.error), (sym, o.error)
        assert "extract deadline of 3 s passed (XASSET_EXTRACT_TIMEOUT_SECONDS)" in o.error, (sym, o.error)
    ok, reason = failure_policy(batch.outcomes, universe.benchmarks, 0.2)
    assert not ok and "benchmark failed (MSFT: " in reason


def test_the_flows_extract_task_applies_the_stage_deadline(hole):
    from flows.stages.extract import extract_batch

    settings = fast_settings(request_timeout_s=600.0, connect_timeout_s=600.0, fundamentals=False)
    src = LiveSource(settings, sleep=time.sleep, now=lambda: NOW, yahoo_session_factory=lambda: curl_session(hole.url))
    universe = Universe(benchmarks=(), assets=tuple(equities("MSFT")))
    t0 = time.monotonic()
    batch = extract_batch.fn(src, universe, START, AS_OF, {}, EMPTY, "fp", deadline_at=time.time() + 2)
    assert time.monotonic() - t0 < BOUND_S
    (o,) = batch.outcomes
    assert o.status == "error" and "extract deadline of" in o.error, o.error


def test_a_symbol_that_hangs_fails_alone_and_the_run_goes_on(server, real_data):
    yahoo = YahooFake(server)
    yahoo.charts["MSFT"] = load_recording(real_data, "historical-via-chart-MSFT-dividends-2021-02-01-to-2022-01-31.csv.json")
    # NVDA's chart request is accepted and never answered (within any timeout used here).
    yahoo.faults["NVDA"] = [Reply(200, {}, delay_s=120) for _ in range(4)]
    binance = BinanceFake(server)
    binance.add("BTC", load_binance_candles(real_data, "BTC"))
    settings = fast_settings(request_timeout_s=1.0, max_attempts=2, fundamentals=False)
    src = LiveSource(
        settings, sleep=Sleeps(), now=lambda: NOW,
        yahoo_session_factory=lambda: curl_session(server.url),
        exchange_factory=lambda cfg, s: point_exchange_at(build_exchange(cfg, s), server.url),
    )
    universe = Universe(benchmarks=("MSFT",), assets=(*equities("MSFT", "NVDA"), *crypto("BTC")))
    with deadline(BOUND_S):
        batch = src.fetch(universe, START, AS_OF, {}, EMPTY)
    by = {o.symbol: o for o in batch.outcomes}
    assert by["MSFT"].status == "ok" and by["BTC"].status == "ok"
    assert by["NVDA"].status == "error" and one_line(by["NVDA"].error)
    assert by["NVDA"].error.startswith("request timed out after 1s (after 2 attempts)"), by["NVDA"].error
    assert set(batch.bars["symbol"]) == {"MSFT", "BTC"}
    assert failure_policy(batch.outcomes, universe.benchmarks, 0.5) == (True, "1/3 symbols failed (33%)")
