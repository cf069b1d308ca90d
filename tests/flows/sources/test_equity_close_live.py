"""The live source's crypto sampled at the equity close (issue 18, item 4): hourly candles through the
real ccxt parsing path against a 127.0.0.1 server, aggregated at the exchange calendar's closes."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from live_testkit import BinanceFake, KrakenFake, Reply, Sleeps, fast_settings, point_exchange_at

from flows.sources.exchanges import Venue, build_exchange, fetch_candles, fetch_crypto, hourly_frame
from flows.sources.live_config import ExchangeConfig, RetryPolicy
from flows.universe import Asset
from transforms.crypto_close import CLOSES_SCHEMA, equity_close_bars

H_MS = 3_600_000


def test_kraken_recorded_1h_response_parses_into_an_equity_close_bar(server, real_data):
    """The real Kraken /0/public/OHLC 1h payload from ccxt's static tests, through ccxt and the aggregation."""
    excerpt = json.loads((real_data / "ccxt" / "kraken.fetchOHLCV.excerpt.json").read_text())
    case = excerpt["methods"]["fetchOHLCV"][0]
    assert case["input"][1] == "1h"
    fake = KrakenFake(server)
    fake.add("XBTUSDT", "XXBT", "USDT", [])
    server.routes.insert(0, ("/OHLC", lambda r: Reply(200, case["httpResponse"])))
    settings = fast_settings()
    cfg = ExchangeConfig(id="kraken", page_size=case["input"][3], rate_limit_ms=1)
    venue = Venue(cfg, settings, RetryPolicy.from_settings(settings, Sleeps()),
                  lambda c, s: point_exchange_at(build_exchange(c, s), server.url))
    assert venue.available() and venue.lists("BTC/USDT")
    since = case["input"][2]
    got = fetch_candles(venue, "BTC/USDT", since, since + 1, timeframe="1h")
    (req,) = [r for r in server.hits("/kraken/") if r.path.endswith("/OHLC")]
    assert req.query["interval"] == "60"  # ccxt asked Kraken for hourly candles
    parsed = case["parsedResponse"]
    hourly = hourly_frame("BTC", got.candles)
    assert hourly.height == 3 and hourly["close"].to_list() == pytest.approx([c[4] for c in parsed])
    # A close instant at the end of the third candle (an early close: 13:00 New York is 18:00 UTC).
    last_end = datetime.fromtimestamp(parsed[-1][0] / 1000, UTC) + timedelta(hours=1)
    closes = pl.DataFrame({"date": [last_end.date()], "close_at": [last_end]}, schema=CLOSES_SCHEMA)
    (bar,) = equity_close_bars(hourly, closes).iter_rows(named=True)
    assert bar["close"] == pytest.approx(parsed[-1][4])
    assert bar["open"] == pytest.approx(parsed[0][1])
    assert bar["high"] == pytest.approx(max(c[2] for c in parsed))
    assert bar["low"] == pytest.approx(min(c[3] for c in parsed))
    assert bar["volume"] == pytest.approx(sum(c[5] for c in parsed))


def _hourly_path(first: datetime, hours: int) -> list[list[float]]:
    # Price = 1000 + the candle's hour index: a bar's close names the hour it was sampled at.
    return [[(first + timedelta(hours=k)).timestamp() * 1000, 1000.0 + k, 1001.0 + k, 999.0 + k, 1000.0 + k + 0.5, 2.0]
            for k in range(hours)]


@pytest.mark.parametrize(("now", "last"), [
    (datetime(2024, 3, 12, 20, 30, tzinfo=UTC), date(2024, 3, 12)),  # 16:00 EDT (20:00 UTC) has passed
    (datetime(2024, 3, 12, 19, 30, tzinfo=UTC), date(2024, 3, 11)),  # not yet: the 12th is still open
])
def test_fetch_crypto_at_the_equity_close_across_the_march_dst_change(server, now, last):
    first = datetime(2024, 3, 1, tzinfo=UTC)
    fake = BinanceFake(server)
    fake.add("BTC", _hourly_path(first, 24 * 13))
    settings = fast_settings()
    res = fetch_crypto(
        [Asset(symbol="BTC", name="BTC", asset_class="crypto", quote_currency="USDT")],
        date(2024, 3, 6), date(2024, 3, 20), {}, settings, RetryPolicy.from_settings(settings, Sleeps()), now,
        lambda cfg, s: point_exchange_at(build_exchange(cfg, s), server.url),
        crypto_close="equity_close", calendar="XNYS",
    )
    (o,) = res.outcomes
    assert o.status == "ok", o.error
    assert {r.query["interval"] for r in fake.klines_requests()} == {"1h"}
    (bars,) = res.bars
    assert bars["date"].min() == date(2024, 3, 6) and bars["date"].max() == last
    closes = dict(bars.select("date", "close").iter_rows())

    def sampled_at(t: datetime) -> float:  # the close of the candle ending at t
        return 1000.0 + (t - first) / timedelta(hours=1) - 1 + 0.5

    # 21:00 UTC (16:00 EST) before the change on Sunday March 10, 20:00 UTC (16:00 EDT) from then on.
    assert closes[date(2024, 3, 8)] == sampled_at(datetime(2024, 3, 8, 21, tzinfo=UTC))
    assert closes[date(2024, 3, 9)] == sampled_at(datetime(2024, 3, 9, 21, tzinfo=UTC))
    assert closes[date(2024, 3, 10)] == sampled_at(datetime(2024, 3, 10, 20, tzinfo=UTC))
    assert closes[date(2024, 3, 11)] == sampled_at(datetime(2024, 3, 11, 20, tzinfo=UTC))
    vol = dict(bars.select("date", "volume").iter_rows())
    assert vol[date(2024, 3, 10)] == 2.0 * 23 and vol[date(2024, 3, 9)] == 2.0 * 24
    assert set(bars["origin"]) == {f"binance:BTC/USDT 2024-03-06..{last}"}
