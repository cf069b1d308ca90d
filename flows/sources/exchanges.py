"""Crypto daily candles from an ordered list of ccxt exchanges.

For each crypto asset the first configured exchange that lists its market
(``<SYMBOL>/<quote>``, or the exchange's ``symbol_map``) serves it; an exchange
whose market list cannot be loaded is skipped with a warning. Candles are fetched
with ``fetch_ohlcv(symbol, "1d", since, limit=page_size)`` page by page: ``since``
advances past the last candle received, so an exchange that returns fewer rows
than asked is fine; paging stops when the range is covered or a page brings
nothing new. Candles not closed at ``now`` (a candle dated D closes at D+1 00:00
UTC) and candles after ``as_of`` are dropped, duplicates removed, and missing days
of the 24/7 calendar are reported as gaps (warning + outcome), never filled.

With ``crypto_close="equity_close"`` hourly candles are fetched instead
(``fetch_ohlcv(symbol, "1h", ...)``, same paging, retries and deadline) from
the previous date's equity close to the last equity close passed at ``now``,
and each daily bar is built at the equity close of its date
(transforms.crypto_close; close instants from flows.calendar.equity_closes).
An exchange that keeps only recent hourly candles (Kraken: the last 720)
yields the dates it has; the missing ones are reported as gaps.

ccxt ``NetworkError`` (which includes ``RequestTimeout``, ``RateLimitExceeded``,
``DDoSProtection`` and ``ExchangeNotAvailable``) is retried with bounded backoff;
``BadSymbol`` and every other ``ExchangeError`` is an error for that symbol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from flows.sources.base import SymbolOutcome, conform_bars, with_origin
from flows.sources.live_config import (
    DeadlineExceeded,
    ExchangeConfig,
    LiveSettings,
    RetryPolicy,
    asset_row,
    bounded_timeout,
    current_deadline,
    short_error,
)
from flows.universe import Asset

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
TIMEFRAME_MS = {"1d": DAY_MS, "1h": HOUR_MS}
EPOCH = date(1970, 1, 1)

ExchangeFactory = Callable[[ExchangeConfig, LiveSettings], Any]


def build_exchange(cfg: ExchangeConfig, settings: LiveSettings) -> Any:
    """A real ccxt exchange: rate limiting on, our timeout, optional keys from settings."""
    import ccxt

    cls = getattr(ccxt, cfg.id, None)
    if cls is None:
        raise ValueError(f"unknown ccxt exchange id {cfg.id!r}")
    params: dict[str, Any] = {
        "enableRateLimit": True,
        # Keep the last raw answer so an unparseable body is told apart from "no candles".
        "enableLastJsonResponse": True,
        "enableLastHttpResponse": True,
        "timeout": int(settings.request_timeout_s * 1000),
        "options": dict(cfg.options),
    }
    creds = settings.api_keys.get(cfg.id)
    if creds is not None:
        for name, value in (
            ("apiKey", creds.api_key),
            ("secret", creds.secret),
            ("password", creds.password),
        ):
            if value is not None:
                params[name] = value.get_secret_value()
    exchange = cls(params)
    if cfg.rate_limit_ms is not None:
        exchange.rateLimit = cfg.rate_limit_ms
    return exchange


def is_retryable(exc: BaseException) -> bool:
    import ccxt

    return isinstance(exc, ccxt.NetworkError)


def is_unreachable(exc: BaseException) -> bool:
    import ccxt
    import requests

    if not isinstance(exc, ccxt.NetworkError) or isinstance(exc, ccxt.RequestTimeout):
        return False
    cause = exc.__cause__
    return isinstance(cause, (requests.exceptions.ConnectionError, ConnectionError)) and not (
        isinstance(cause, requests.exceptions.Timeout)
    )


def describe_error(exc: BaseException, attempts: int, secrets: list[str]) -> str:
    import ccxt

    tries = f" (after {attempts} attempt{'s' if attempts != 1 else ''})"
    text = short_error(exc, secrets)
    if isinstance(exc, DeadlineExceeded):
        return f"{exc}{tries}"
    if isinstance(exc, ccxt.RequestTimeout):
        return f"request timed out{tries}: {text}"
    if is_unreachable(exc):
        return f"host unreachable{tries}: {text}"
    if isinstance(exc, ccxt.NetworkError):
        return f"exchange kept failing{tries}: {text}"
    if isinstance(exc, ccxt.BadSymbol):
        return f"symbol rejected by the exchange: {text}"
    if isinstance(exc, (ccxt.BadResponse, ValueError, TypeError, KeyError, IndexError)):
        return f"malformed response: {text}"
    return text


class Venue:
    """One configured exchange; its market list is loaded once, lazily."""

    def __init__(
        self,
        cfg: ExchangeConfig,
        settings: LiveSettings,
        retry: RetryPolicy,
        factory: ExchangeFactory,
    ) -> None:
        self.cfg = cfg
        self.settings = settings
        self.retry = retry
        self.factory = factory
        self.exchange: Any = None
        self.error: str | None = None
        self.network_failures = 0  # consecutive symbols lost to network errors
        self._loaded = False

    @property
    def id(self) -> str:
        return self.cfg.id

    def available(self) -> bool:
        if not self._loaded:
            self._loaded = True
            try:
                self.exchange = self.factory(self.cfg, self.settings)
                self.retry.call(lambda: self.bounded().load_markets(), is_retryable, f"{self.id} markets")
            except Exception as exc:  # noqa: BLE001 - the venue is skipped, the run goes on
                attempts = getattr(exc, "attempts", 1)
                self.error = "markets unavailable: " + describe_error(
                    exc, attempts, self.settings.secrets()
                )
        return self.error is None

    def bounded(self) -> Any:
        """The exchange, its ccxt ``timeout`` (ms) cut to what the extract deadline leaves."""
        self.exchange.timeout = int(bounded_timeout(self.settings.request_timeout_s) * 1000)
        return self.exchange

    def lists(self, market: str) -> bool:
        return market in (self.exchange.markets or {})


@dataclass
class Fetched:
    candles: list[list[float]]
    attempts: int
    pages: int


def fetch_candles(venue: Venue, market: str, since_ms: int, until_ms: int, timeframe: str = "1d") -> Fetched:
    """Page through ``fetch_ohlcv`` from ``since_ms`` until ``until_ms`` (exclusive) is covered."""
    step = TIMEFRAME_MS[timeframe]
    ex = venue.exchange
    page = venue.cfg.page_size
    since = since_ms
    out: list[list[float]] = []
    attempts = pages = 0
    while pages < venue.cfg.max_pages:
        s = since

        def call(s: int = s) -> Any:
            return venue.bounded().fetch_ohlcv(market, timeframe, s, page)

        try:
            rows, n = venue.retry.call(call, is_retryable, f"{market} on {venue.id}")
        except Exception as exc:
            exc.attempts = attempts + getattr(exc, "attempts", 1)  # type: ignore[attr-defined]
            raise
        attempts += n
        pages += 1
        if not isinstance(rows, list):
            raise ValueError(f"fetch_ohlcv returned {type(rows).__name__}, not a list of candles")
        if not rows and getattr(ex, "last_json_response", None) is None:
            body = str(getattr(ex, "last_http_response", "") or "")[:60]
            if body.strip():
                raise ValueError(f"body is not JSON: {body!r}")
        good = []
        for r in rows:
            if not isinstance(r, (list, tuple)) or len(r) < 6 or r[0] is None:
                raise ValueError(f"malformed candle {r!r}")
            if r[0] >= since:
                good.append([float(x) if x is not None else None for x in r[:6]])
        if not good:
            break
        out.extend(good)
        last_ts = int(max(r[0] for r in good))
        if last_ts + step >= until_ms:
            break
        nxt = last_ts + 1
        if nxt <= since:
            break
        since = nxt
    return Fetched(out, attempts, pages)


def candles_frame(symbol: str, candles: list[list[float]]) -> pl.DataFrame:
    """ccxt candles -> BAR_SCHEMA (UTC candle date), de-duplicated (last one wins)."""
    if not candles:
        return conform_bars(
            pl.DataFrame(
                schema={"symbol": pl.String, "date": pl.Date, **{c: pl.Float64 for c in
                        ("open", "high", "low", "close", "adj_close", "volume")}}  # fmt: skip
            )
        )
    frame = pl.DataFrame(
        candles, schema=["ts", "open", "high", "low", "close", "volume"], orient="row"
    ).with_columns(
        pl.lit(symbol).alias("symbol"),
        pl.from_epoch(pl.col("ts").cast(pl.Int64), time_unit="ms").dt.date().alias("date"),
        pl.col("close").alias("adj_close"),
    )
    frame = frame.sort("ts").unique("date", keep="last", maintain_order=True)
    return conform_bars(frame.filter(pl.col("close").is_not_null()))


def hourly_frame(symbol: str, candles: list[list[float]]) -> pl.DataFrame:
    """ccxt 1h candles -> transforms.crypto_close.HOURLY_SCHEMA."""
    from transforms.crypto_close import HOURLY_SCHEMA

    if not candles:
        return pl.DataFrame(schema=HOURLY_SCHEMA)
    frame = pl.DataFrame(candles, schema=["ts", "open", "high", "low", "close", "volume"], orient="row", strict=False)
    return frame.with_columns(
        pl.lit(symbol).alias("symbol"), pl.from_epoch(pl.col("ts").cast(pl.Int64), time_unit="ms").dt.replace_time_zone("UTC")
    ).select([pl.col(k).cast(t) for k, t in HOURLY_SCHEMA.items()])


@dataclass(frozen=True)
class EquityClose:
    """Bars sampled at the equity close: the close instant of every calendar date in range."""

    closes: pl.DataFrame  # date, close_at (transforms.crypto_close.CLOSES_SCHEMA)

    @classmethod
    def between(cls, first: date, last: date, calendar: str) -> EquityClose:
        from flows.calendar import equity_closes

        return cls(equity_closes(first, last, calendar))

    def at(self, d: date) -> datetime | None:
        hit = self.closes.filter(pl.col("date") == d)
        return hit["close_at"][0] if hit.height else None

    def last_closed(self, now: datetime) -> date | None:
        done = self.closes.filter(pl.col("close_at") <= now)
        return done["date"].max() if done.height else None


def calendar_gaps(dates: list[date], first: date, last: date) -> list[tuple[date, date]]:
    """Runs of missing calendar days between ``first`` and ``last`` (inclusive)."""
    have = set(dates)
    gaps: list[tuple[date, date]] = []
    d = first
    run_start: date | None = None
    while d <= last:
        if d not in have:
            run_start = run_start or d
        elif run_start is not None:
            gaps.append((run_start, d - timedelta(days=1)))
            run_start = None
        d += timedelta(days=1)
    if run_start is not None:
        gaps.append((run_start, last))
    return gaps


def _fmt_gaps(gaps: list[tuple[date, date]], limit: int = 5) -> str:
    parts = [f"{a}" if a == b else f"{a}..{b}" for a, b in gaps[:limit]]
    more = f" and {len(gaps) - limit} more" if len(gaps) > limit else ""
    days = sum((b - a).days + 1 for a, b in gaps)
    return f"{days} missing day(s): {', '.join(parts)}{more}"


def _ms(d: date) -> int:
    return (d - EPOCH).days * DAY_MS


def _epoch_ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


@dataclass
class CryptoResult:
    bars: list[pl.DataFrame] = field(default_factory=list)
    assets: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[SymbolOutcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def fetch_crypto(
    assets: list[Asset],
    start: date,
    as_of: date,
    last_dates: dict[str, date],
    settings: LiveSettings,
    retry: RetryPolicy,
    now: datetime,
    factory: ExchangeFactory = build_exchange,
    crypto_close: str = "utc_midnight",
    calendar: str = "XNYS",
) -> CryptoResult:
    """Closed daily candles ``start``..``as_of`` for every crypto asset; never raises per symbol.

    ``crypto_close="equity_close"``: daily bars built from hourly candles at the
    equity close of ``calendar`` (see the module's docstring).
    """
    out = CryptoResult()
    secrets = settings.secrets()
    venues = [Venue(cfg, settings, retry, factory) for cfg in settings.exchanges]
    now_utc = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    last_closed = now_utc.date() - timedelta(days=1)
    at_close: EquityClose | None = None
    if crypto_close == "equity_close":
        # From the day before the earliest date a symbol may ask for: its bar opens at that day's close.
        earliest = min([start, *(d - timedelta(days=settings.lookback_sessions) for d in last_dates.values())])
        at_close = EquityClose.between(earliest - timedelta(days=1), as_of, calendar)
        last_closed = at_close.last_closed(now_utc) or earliest - timedelta(days=1)
    end = min(as_of, last_closed)
    warned_down: set[str] = set()
    deadline = current_deadline()
    for asset in assets:
        sym = asset.symbol
        if deadline is not None and deadline.remaining() <= 0:
            out.outcomes.append(SymbolOutcome(sym, "ccxt", "error", attempts=0, error=f"not fetched: {deadline.message()}"))
            continue
        last = last_dates.get(sym)
        first = start if last is None or last < start else max(
            start, last - timedelta(days=settings.lookback_sessions)
        )
        tried: list[str] = []
        venue: Venue | None = None
        market = ""
        for v in venues:
            m = v.cfg.market_symbol(sym, asset.quote_currency)
            if not v.available():
                tried.append(f"{v.id}: {v.error}")
                if v.id not in warned_down:
                    warned_down.add(v.id)
                    out.warnings.append(f"exchange {v.id} skipped: {v.error}")
                continue
            if v.lists(m):
                venue, market = v, m
                break
            tried.append(f"{v.id}: {m} not listed")
        if venue is None:
            out.outcomes.append(
                SymbolOutcome(
                    sym, "ccxt", "error", attempts=0,
                    error="no configured exchange serves it (" + "; ".join(tried) + ")",
                )
            )  # fmt: skip
            continue
        if first > end:
            out.outcomes.append(
                SymbolOutcome(
                    sym, venue.id, "error", attempts=0,
                    error=f"no closed daily candle in {first}..{as_of} at {now_utc:%Y-%m-%d %H:%M} UTC",
                )
            )  # fmt: skip
            continue
        try:
            if at_close is None:
                got = fetch_candles(venue, market, _ms(first), _ms(end + timedelta(days=1)))
                frame = candles_frame(sym, got.candles)
            else:
                from transforms.crypto_close import equity_close_bars

                since, until = at_close.at(first - timedelta(days=1)), at_close.at(end)
                got = fetch_candles(venue, market, _epoch_ms(since), _epoch_ms(until), timeframe="1h")
                # Only candles closed at ``now``: an hour still running is no close.
                hourly = hourly_frame(sym, got.candles).filter(
                    pl.col("ts") + timedelta(hours=1) <= now_utc
                )
                spans = at_close.closes.filter(pl.col("date").is_between(first - timedelta(days=1), end))
                frame = conform_bars(equity_close_bars(hourly, spans))
            n_raw = frame.height
            open_or_late = frame.filter(pl.col("date") > end).height
            frame = frame.filter(pl.col("date").is_between(first, end))
            if frame.height == 0:
                raise _NoCandles(
                    f"{venue.id} returned no closed candles for {market} in {first}..{end}"
                    f" ({n_raw} received)"
                )
        except _NoCandles as exc:
            out.outcomes.append(
                SymbolOutcome(sym, venue.id, "error", attempts=max(1, got.attempts), error=str(exc))
            )
            continue
        except Exception as exc:  # noqa: BLE001 - one symbol never sinks the run
            attempts = getattr(exc, "attempts", 1)
            msg = f"{market} on {venue.id}: " + describe_error(exc, attempts, secrets)
            out.outcomes.append(SymbolOutcome(sym, venue.id, "error", attempts=attempts, error=msg))
            if is_retryable(exc):
                venue.network_failures += 1
                if venue.network_failures >= settings.unreachable_after:
                    # Bounded run time: stop paying full retries on a dead exchange.
                    venue.error = (
                        f"given up after {venue.network_failures} consecutive symbols failed "
                        f"({msg})"
                    )
            else:
                venue.network_failures = 0
            continue
        venue.network_failures = 0
        notes: list[str] = []
        dates = frame["date"].to_list()
        gaps = calendar_gaps(dates, dates[0], dates[-1])
        if dates[-1] < end:
            gaps.append((dates[-1] + timedelta(days=1), end))
        if gaps:
            msg = f"gaps in the 24/7 calendar: {_fmt_gaps(gaps)}"
            notes.append(msg)
            out.warnings.append(f"{sym} ({venue.id} {market}): {msg}")
        if open_or_late:
            notes.append(f"dropped {open_or_late} candle(s) after {end} (not closed or after as_of)")
        out.bars.append(with_origin(frame, f"{venue.id}:{market} {first}..{end}"))
        quote = venue.exchange.markets[market].get("quote") or market.split("/")[-1]
        out.assets.append(asset_row(asset, quote, venue.id, market))
        out.outcomes.append(
            SymbolOutcome(
                sym, venue.id, "ok", rows=frame.height, first_date=dates[0], last_date=dates[-1],
                attempts=got.attempts, error="; ".join(notes) or None,
            )
        )  # fmt: skip
    return out


class _NoCandles(Exception):
    pass
