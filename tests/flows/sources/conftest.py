"""A local HTTP server on 127.0.0.1 that replays recorded Yahoo/exchange responses.

The real yfinance and ccxt clients talk to it over HTTP, so their own request
building, parsing and (for ccxt) error mapping run unchanged:

* yfinance gets a ``requests.Session`` (a type it accepts) whose ``rewrite_url``
  turns ``https://<host>.yahoo.com/<path>`` into ``http://127.0.0.1:<port>/<host>.yahoo.com/<path>``;
  cookie, crumb, v8 chart and quoteSummary calls all land here.
* ccxt exchanges get every ``urls['api']`` entry replaced by
  ``http://127.0.0.1:<port>/<exchange>/<api-key>``.

Nothing is copied from ``../shared``: recordings are read in place (``real_data``).

pytest runs with ``--import-mode=importlib``, so this module registers itself as
``live_testkit`` for the test modules here to import its helpers from.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from flows.sources.live_config import ExchangeConfig, LiveSettings
from flows.sources.yahoo import StatusCheckingSessionMixin


@dataclass
class Req:
    method: str
    path: str
    query: dict[str, str]


@dataclass
class Reply:
    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


Handler = Callable[[Req], Reply | None]


class LocalServer:
    """Routes are (path-substring, handler) pairs tried in order; every request is logged."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, Handler]] = []
        self.requests: list[Req] = []
        self._lock = threading.Lock()
        server = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                req = Req(
                    self.command,
                    parts.path,
                    {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
                )
                with server._lock:
                    server.requests.append(req)
                reply = server.dispatch(req)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                data = reply.payload()
                try:
                    self.send_response(reply.status)
                    ctype = reply.headers.get("Content-Type", "application/json")
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        if k != "Content-Type":
                            self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = _serve
            do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def route(self, fragment: str, handler: Handler) -> None:
        self.routes.append((fragment, handler))

    def dispatch(self, req: Req) -> Reply:
        for fragment, handler in self.routes:
            if fragment in req.path:
                reply = handler(req)
                if reply is not None:
                    return reply
        return Reply(404, {"error": f"no route for {req.path}"})

    def hits(self, fragment: str) -> list[Req]:
        with self._lock:
            return [r for r in self.requests if fragment in r.path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    s = LocalServer()
    yield s
    s.close()


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def _yfinance_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep yfinance's tz/cookie caches out of the user's home during tests."""
    import yfinance as yf

    yf.set_tz_cache_location(str(tmp_path_factory.mktemp("yfinance-cache")))


def fast_settings(**overrides: Any) -> LiveSettings:
    """Settings with tiny backoffs and timeouts for tests."""
    base: dict[str, Any] = dict(
        backoff_base_s=0.01,
        backoff_max_s=0.02,
        request_timeout_s=2.0,
        yahoo_batch_pause_s=0.0,
        max_attempts=3,
        exchanges=[
            ExchangeConfig(
                id="binance", page_size=1000, options={"fetchMarkets": {"types": ["spot"]}}
            ),
            ExchangeConfig(id="kraken", quote="USD", page_size=720, rate_limit_ms=1),
        ],
    )
    base.update(overrides)
    return LiveSettings(**base)


class Sleeps(list):
    """Injectable sleep that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# ---------------------------------------------------------------- Yahoo


class LocalYahooSession(StatusCheckingSessionMixin, requests.Session):
    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def rewrite_url(self, url: str) -> str:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host == "yahoo.com" or host.endswith(".yahoo.com"):
            query = f"?{parts.query}" if parts.query else ""
            return f"{self.base_url}/{host}{parts.path}{query}"
        return url


def load_recording(real_data: Path, name: str) -> dict:
    return json.loads((real_data / "gadicc-node-yahoo-finance2" / name).read_text())["response"][
        "bodyJson"
    ]


def slice_chart(body: dict, period1: int | None, period2: int | None) -> dict:
    """What Yahoo would answer for period1..period2: the recording cut to that range."""
    body = json.loads(json.dumps(body))
    result = body["chart"]["result"][0]
    ts = result.get("timestamp")
    if ts is None or period1 is None:
        return body
    keep = [i for i, t in enumerate(ts) if period1 <= t < (period2 or 2**62)]
    result["timestamp"] = [ts[i] for i in keep]
    ind = result["indicators"]
    ind["quote"] = [{k: [v[i] for i in keep] for k, v in q.items()} for q in ind["quote"]]
    if "adjclose" in ind:
        ind["adjclose"] = [{k: [v[i] for i in keep] for k, v in a.items()} for a in ind["adjclose"]]
    for kind, events in list(result.get("events", {}).items()):
        result["events"][kind] = {
            k: e for k, e in events.items() if period1 <= int(k) < (period2 or 2**62)
        }
    return body


NOT_FOUND_CHART = {
    "chart": {
        "result": None,
        "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
    }
}


def quote_summary(symbol: str) -> dict:
    """Synthetic, shaped like Yahoo's v10 quoteSummary (formatted=false) for the info modules."""
    return {
        "quoteSummary": {
            "result": [
                {
                    "assetProfile": {"sector": "Technology", "industry": "Consumer Electronics"},
                    "summaryDetail": {"trailingPE": 31.5, "maxAge": 1},
                    "defaultKeyStatistics": {
                        "priceToBook": 45.2,
                        "shortPercentOfFloat": 0.0071,
                        "profitMargins": 0.24,
                    },
                    "financialData": {
                        "returnOnEquity": 1.36,
                        "grossMargins": 0.46,
                        "debtToEquity": 145.0,
                        "recommendationMean": 2.0,
                        "numberOfAnalystOpinions": 39,
                        "profitMargins": 0.24,
                    },
                    "quoteType": {"symbol": symbol, "quoteType": "EQUITY"},
                }
            ],
            "error": None,
        }
    }


class YahooFake:
    """Yahoo's hosts on the local server: cookie, crumb, chart (sliced recordings), info."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server
        self.charts: dict[str, dict] = {}
        self.faults: dict[str, list[Reply]] = {}  # per symbol, consumed by chart requests
        self.info: dict[str, Reply] = {}
        server.route("/fc.yahoo.com", lambda r: Reply(200, "", {"Content-Type": "text/html"}))
        self.crumb_faults: list[Reply] = []
        server.route("/v1/test/getcrumb", self._crumb)
        server.route("/v8/finance/chart/", self._chart)
        server.route("/v10/finance/quoteSummary/", self._summary)
        server.route("/v7/finance/quote", lambda r: Reply(200, {"quoteResponse": {"result": [], "error": None}}))
        server.route("/fundamentals-timeseries/", lambda r: Reply(200, {"timeseries": {"result": [], "error": None}}))

    def session(self) -> LocalYahooSession:
        return LocalYahooSession(self.server.url)

    def _crumb(self, req: Req) -> Reply:
        if self.crumb_faults:
            return self.crumb_faults.pop(0)
        return Reply(200, "localcrumb", {"Content-Type": "text/plain"})

    def _chart(self, req: Req) -> Reply:
        symbol = req.path.rsplit("/", 1)[-1]
        queue = self.faults.get(symbol)
        if queue:
            return queue.pop(0)
        if symbol not in self.charts:
            return Reply(404, NOT_FOUND_CHART)
        p1 = req.query.get("period1")
        p2 = req.query.get("period2")
        return Reply(
            200, slice_chart(self.charts[symbol], int(p1) if p1 else None, int(p2) if p2 else None)
        )

    def _summary(self, req: Req) -> Reply:
        symbol = req.path.rsplit("/", 1)[-1]
        if symbol in self.info:
            return self.info[symbol]
        if symbol in self.charts:
            return Reply(200, quote_summary(symbol))
        return Reply(404, {"quoteSummary": {"result": None, "error": {"code": "Not Found"}}})

    def chart_requests(self, symbol: str) -> list[Req]:
        return [r for r in self.server.hits(f"/v8/finance/chart/{symbol}") if "period1" in r.query]


@pytest.fixture
def yahoo(server: LocalServer) -> YahooFake:
    return YahooFake(server)


# ---------------------------------------------------------------- exchanges

DAY_MS = 86_400_000


def load_binance_candles(real_data: Path, base: str) -> list[list[float]]:
    path = real_data / "djienne-3EMA_SRSI_ATR" / f"{base}_USDT-1d.json"
    return json.loads(path.read_text())


def kline_row(c: list[float]) -> list[Any]:
    """A real Binance /api/v3/klines row (12 fields, prices as strings) from a ccxt candle."""
    ms, o, h, low, close, v = c
    return [
        int(ms), f"{o:.8f}", f"{h:.8f}", f"{low:.8f}", f"{close:.8f}", f"{v:.8f}",
        int(ms) + DAY_MS - 1, f"{v * close:.8f}", 1000, f"{v / 2:.8f}", f"{v * close / 2:.8f}", "0",
    ]  # fmt: skip


def binance_symbol_info(base: str, quote: str) -> dict:
    return {
        "symbol": f"{base}{quote}",
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "MARKET"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00", "tickSize": "0.01"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.0", "stepSize": "0.00001"},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
    }  # fmt: skip


class BinanceFake:
    """``/api/v3/exchangeInfo`` and ``/api/v3/klines`` built from real Binance daily candles."""

    def __init__(self, server: LocalServer, prefix: str = "/binance/") -> None:
        self.server = server
        self.prefix = prefix
        self.candles: dict[str, list[list[float]]] = {}  # market id (BTCUSDT) -> candles
        self.page_cap: int | None = None  # the exchange returns at most this many per page
        self.faults: list[Reply] = []  # consumed by klines requests
        server.route(prefix, self._handle)

    def add(self, base: str, candles: list[list[float]], quote: str = "USDT") -> None:
        self.candles[f"{base}{quote}"] = candles

    def _handle(self, req: Req) -> Reply | None:
        if req.path.endswith("/exchangeInfo"):
            symbols = [binance_symbol_info(mid[:-4], mid[-4:]) for mid in self.candles]
            return Reply(200, {"timezone": "UTC", "serverTime": int(time.time() * 1000),
                               "rateLimits": [], "exchangeFilters": [], "symbols": symbols})  # fmt: skip
        if req.path.endswith("/klines"):
            if self.faults:
                return self.faults.pop(0)
            sym = req.query.get("symbol", "")
            if sym not in self.candles:
                return Reply(400, {"code": -1121, "msg": "Invalid symbol."})
            since = int(req.query.get("startTime", 0))
            end = int(req.query.get("endTime", 2**62))
            limit = int(req.query.get("limit", 500))
            if self.page_cap:
                limit = min(limit, self.page_cap)
            rows = [c for c in self.candles[sym] if since <= c[0] <= end][:limit]
            return Reply(200, [kline_row(c) for c in rows])
        return None

    def klines_requests(self) -> list[Req]:
        return [r for r in self.server.hits(self.prefix) if r.path.endswith("/klines")]


class KrakenFake:
    """Kraken ``/0/public/Assets``, ``AssetPairs`` and ``OHLC`` in Kraken's raw format."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server
        self.candles: dict[str, list[list[float]]] = {}  # pair id (XBTUSD) -> candles
        server.route("/kraken/", self._handle)

    def add(self, pair_id: str, base: str, quote: str, candles: list[list[float]]) -> None:
        self.candles[pair_id] = candles
        self._pairs = getattr(self, "_pairs", {})
        self._pairs[pair_id] = {
            "altname": pair_id, "wsname": f"{base}/{quote}", "aclass_base": "currency",
            "base": base, "aclass_quote": "currency", "quote": quote, "pair_decimals": 1,
            "cost_decimals": 5, "lot_decimals": 8, "lot_multiplier": 1, "leverage_buy": [],
            "leverage_sell": [], "fees": [[0, 0.4]], "fees_maker": [[0, 0.25]],
            "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
            "ordermin": "0.0001", "costmin": "0.5", "tick_size": "0.1", "status": "online",
        }  # fmt: skip

    def _handle(self, req: Req) -> Reply | None:
        if req.path.endswith("/public/Assets"):
            return Reply(200, {"error": [], "result": {}})
        if req.path.endswith("/public/AssetPairs"):
            return Reply(200, {"error": [], "result": getattr(self, "_pairs", {})})
        if req.path.endswith("/public/OHLC"):
            pair = req.query.get("pair", "")
            if pair not in self.candles:
                return Reply(200, {"error": ["EQuery:Unknown asset pair"]})
            since_s = int(req.query.get("since", 0))
            rows = [c for c in self.candles[pair] if c[0] // 1000 >= since_s][:720]
            raw = [
                [int(c[0] // 1000), f"{c[1]}", f"{c[2]}", f"{c[3]}", f"{c[4]}", f"{c[4]}", f"{c[5]}", 10]
                for c in rows
            ]  # fmt: skip
            last = raw[-1][0] if raw else since_s
            return Reply(200, {"error": [], "result": {pair: raw, "last": last}})
        return None

    def ohlc_requests(self) -> list[Req]:
        return [r for r in self.server.hits("/kraken/") if r.path.endswith("/OHLC")]


def point_exchange_at(exchange: Any, base_url: str) -> Any:
    """Replace every API root of a real ccxt exchange by the local server."""
    api = exchange.urls["api"]
    if isinstance(api, dict):
        exchange.urls["api"] = {k: f"{base_url}/{exchange.id}/{k}" for k in api}
    else:
        exchange.urls["api"] = f"{base_url}/{exchange.id}"
    return exchange


sys.modules.setdefault("live_testkit", sys.modules[__name__])
