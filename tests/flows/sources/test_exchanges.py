"""Crypto through real ccxt exchanges (binance, kraken) talking HTTP to the local server."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from live_testkit import (
    BinanceFake,
    KrakenFake,
    Reply,
    Sleeps,
    fast_settings,
    load_binance_candles,
    point_exchange_at,
)

from flows.sources.exchanges import Venue, build_exchange, fetch_candles, fetch_crypto
from flows.sources.live_config import ExchangeConfig, ExchangeCredentials, RetryPolicy
from flows.universe import Asset

NOW = datetime(2022, 10, 10, 12, 0, tzinfo=UTC)  # the 2022-10-10 candle is still open


def crypto(*symbols: str) -> list[Asset]:
    return [Asset(symbol=s, name=s, asset_class="crypto", quote_currency="USDT") for s in symbols]


def day(ms: float) -> date:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).date()


@pytest.fixture
def binance(server, real_data):
    fake = BinanceFake(server)
    fake.add("BTC", load_binance_candles(real_data, "BTC"))
    fake.add("ETH", load_binance_candles(real_data, "ETH"))
    return fake


@pytest.fixture
def kraken(server, real_data):
    fake = KrakenFake(server)
    fake.add("XBTUSD", "XXBT", "ZUSD", load_binance_candles(real_data, "BTC")[-400:])
    fake.add("SOLUSD", "SOL", "ZUSD", load_binance_candles(real_data, "SOL")[-400:])
    return fake


def run(server, assets, start, as_of, last_dates=None, now=NOW, **overrides):
    settings = fast_settings(**overrides)
    sleeps = Sleeps()

    def factory(cfg, s):
        return point_exchange_at(build_exchange(cfg, s), server.url)

    res = fetch_crypto(
        assets,
        start,
        as_of,
        last_dates or {},
        settings,
        RetryPolicy.from_settings(settings, sleeps),
        now,
        factory,
    )
    return res, sleeps


def outcome(res, symbol):
    (o,) = [o for o in res.outcomes if o.symbol == symbol]
    return o


def test_paginates_through_capped_pages_and_drops_open_candle(server, binance, real_data):
    binance.page_cap = 100  # asked for 1000, the exchange gives 100
    res, _ = run(server, crypto("BTC"), date(2022, 1, 1), date(2022, 10, 10))

    o = outcome(res, "BTC")
    assert o.status == "ok" and o.source == "binance"
    assert o.first_date == date(2022, 1, 1) and o.last_date == date(2022, 10, 9)
    assert o.rows == (date(2022, 10, 9) - date(2022, 1, 1)).days + 1
    assert "dropped 1 candle" in o.error
    reqs = binance.klines_requests()
    assert len(reqs) == 3 and all(r.query["limit"] == "1000" for r in reqs)
    sinces = [int(r.query["startTime"]) for r in reqs]
    assert sinces == sorted(sinces) and len(set(sinces)) == 3
    # Values are the recorded Binance candles, parsed by ccxt from real klines rows.
    bars = res.bars[0]
    recorded = {day(c[0]): c for c in load_binance_candles(real_data, "BTC")}
    row = bars.row(100, named=True)
    assert [row[k] for k in ("open", "high", "low", "close", "volume")] == pytest.approx(
        recorded[row["date"]][1:6]
    )
    assert (bars["adj_close"] == bars["close"]).all()
    (asset,) = res.assets
    assert asset["source"] == "binance" and asset["source_symbol"] == "BTC/USDT"
    assert asset["quote_currency"] == "USDT"


def test_gap_in_the_middle_is_reported_not_filled(server, binance, real_data):
    candles = load_binance_candles(real_data, "ETH")
    hole = {date(2022, 3, 10), date(2022, 3, 11), date(2022, 3, 12)}
    binance.add("ETH", [c for c in candles if day(c[0]) not in hole])
    res, _ = run(server, crypto("ETH"), date(2022, 3, 1), date(2022, 3, 31))

    o = outcome(res, "ETH")
    assert o.status == "ok" and o.rows == 31 - 3
    assert "3 missing day(s): 2022-03-10..2022-03-12" in o.error
    assert any("ETH" in w and "2022-03-10..2022-03-12" in w for w in res.warnings)
    assert not set(res.bars[0]["date"].to_list()) & hole


def test_unlisted_market_falls_through_to_next_exchange(server, binance, kraken):
    res, _ = run(server, crypto("SOL", "DOGE"), date(2022, 6, 1), date(2022, 6, 30))

    sol = outcome(res, "SOL")
    assert sol.status == "ok" and sol.source == "kraken" and sol.rows == 30
    (asset,) = res.assets
    assert asset["source_symbol"] == "SOL/USD" and asset["quote_currency"] == "USD"
    (bars,) = res.bars
    assert set(bars["origin"]) == {"kraken:SOL/USD 2022-06-01..2022-06-30"}  # the venue that served it
    assert kraken.ohlc_requests()[0].query["pair"] == "SOLUSD"
    doge = outcome(res, "DOGE")
    assert doge.status == "error"
    assert "DOGE/USDT not listed" in doge.error and "DOGE/USD not listed" in doge.error


def test_kraken_recorded_ohlc_parses_through_the_pager(server, real_data):
    """The real Kraken /0/public/OHLC payload from ccxt's own static tests."""
    excerpt = json.loads((real_data / "ccxt" / "kraken.fetchOHLCV.excerpt.json").read_text())
    case = excerpt["methods"]["fetchOHLCV"][0]
    fake = KrakenFake(server)
    fake.add("XBTUSDT", "XXBT", "USDT", [])
    server.routes.insert(0, ("/OHLC", lambda r: Reply(200, case["httpResponse"])))
    settings = fast_settings()
    cfg = ExchangeConfig(id="kraken", page_size=case["input"][3], rate_limit_ms=1)
    venue = Venue(
        cfg,
        settings,
        RetryPolicy.from_settings(settings, Sleeps()),
        lambda c, s: point_exchange_at(build_exchange(c, s), server.url),
    )
    assert venue.available() and venue.lists("BTC/USDT")
    since = case["input"][2]
    got = fetch_candles(venue, "BTC/USDT", since, since + 1)
    flat = [x for c in got.candles for x in c]
    assert flat == pytest.approx([x for c in case["parsedResponse"] for x in c])
    assert len(got.candles) == 3
    assert got.pages == 1


def test_rate_limit_then_success_is_retried(server, binance):
    binance.faults = [Reply(429, {"code": -1003, "msg": "Too many requests."})]
    res, sleeps = run(server, crypto("BTC"), date(2022, 9, 1), date(2022, 9, 30))
    o = outcome(res, "BTC")
    assert o.status == "ok" and o.attempts == 2 and o.rows == 30
    assert len(sleeps) == 1


def test_timeout_then_success(server, binance):
    binance.faults = [Reply(200, [], delay_s=1.5)]
    res, _ = run(server, crypto("BTC"), date(2022, 9, 1), date(2022, 9, 30), request_timeout_s=0.4)
    o = outcome(res, "BTC")
    assert o.status == "ok" and o.attempts == 2


def test_persistent_outage_is_bounded(server, binance):
    binance.faults = [Reply(503, "<html>down</html>", {"Content-Type": "text/html"})] * 10
    res, sleeps = run(server, crypto("BTC"), date(2022, 9, 1), date(2022, 9, 30))
    o = outcome(res, "BTC")
    assert o.status == "error" and o.attempts == 3 and len(sleeps) == 2
    assert "kept failing" in o.error


def test_malformed_empty_and_bad_symbol_are_errors(server, binance):
    binance.faults = [
        Reply(200, b"[[1661990400000, \"oops\"", {"Content-Type": "text/plain"}),
        Reply(200, []),
    ]
    res, _ = run(server, crypto("BTC", "ETH"), date(2022, 9, 1), date(2022, 9, 30))
    btc, eth = outcome(res, "BTC"), outcome(res, "ETH")
    assert btc.status == "error" and "malformed" in btc.error and btc.attempts == 1
    assert eth.status == "error" and "no closed candles" in eth.error and eth.rows == 0

    binance.faults = [Reply(400, {"code": -1121, "msg": "Invalid symbol."})]
    res, sleeps = run(server, crypto("BTC"), date(2022, 9, 1), date(2022, 9, 30))
    btc = outcome(res, "BTC")
    assert btc.status == "error" and "BadSymbol" in btc.error and btc.attempts == 1
    assert sleeps == []


def test_incremental_since_is_last_date_minus_lookback(server, binance):
    res, _ = run(
        server, crypto("BTC"), date(2017, 8, 17), date(2022, 10, 10), {"BTC": date(2022, 10, 1)}
    )
    (req,) = binance.klines_requests()
    assert day(int(req.query["startTime"])) == date(2022, 9, 26)
    assert outcome(res, "BTC").first_date == date(2022, 9, 26)


def test_no_network_is_a_clear_bounded_error_and_keys_stay_secret(closed_port):
    settings_keys = {"binance": ExchangeCredentials(api_key="SECRET-KEY-123", secret="SHH-456")}
    from live_testkit import LocalServer  # noqa: F401 - server deliberately not started

    class Dead:
        url = f"http://127.0.0.1:{closed_port}"

    t0 = time.monotonic()
    res, _ = run(
        Dead, crypto("BTC", "ETH", "SOL"), date(2022, 1, 1), date(2022, 10, 10),
        api_keys=settings_keys,
    )  # fmt: skip
    assert time.monotonic() - t0 < 60
    assert [o.status for o in res.outcomes] == ["error"] * 3
    for o in res.outcomes:
        assert "host unreachable" in o.error and "binance" in o.error and "kraken" in o.error
    text = repr(res) + repr(fast_settings(api_keys=settings_keys))
    assert "SECRET-KEY-123" not in text and "SHH-456" not in text
    assert sum("skipped" in w for w in res.warnings) == 2


def test_exchange_failing_symbol_after_symbol_is_given_up(server, binance, kraken, real_data):
    binance.add("SOL", load_binance_candles(real_data, "SOL"))
    binance.faults = [Reply(502, "<html>bad gateway</html>", {"Content-Type": "text/html"})] * 50
    res, _ = run(
        server, crypto("BTC", "ETH", "SOL"), date(2022, 6, 1), date(2022, 6, 30),
        unreachable_after=2,
    )  # fmt: skip
    assert [outcome(res, s).status for s in ("BTC", "ETH")] == ["error", "error"]
    assert len(binance.klines_requests()) == 2 * 3  # two symbols x max_attempts, then no more
    sol = outcome(res, "SOL")
    assert sol.status == "ok" and sol.source == "kraken"
    assert any("binance skipped: given up after 2" in w for w in res.warnings)
