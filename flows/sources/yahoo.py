"""Equities and indices from Yahoo Finance through yfinance (bars + fundamentals).

Options asked of yfinance, explicitly so a version's defaults cannot change them:
``Ticker.history(start, end, interval="1d", auto_adjust=False, actions=True,
back_adjust=False, repair=False, prepost=False, keepna=False, rounding=False)``.
With ``auto_adjust=False`` Yahoo's ``Close`` (split-adjusted, not dividend-adjusted:
what Yahoo calls the close) is stored as ``close`` and ``Adj Close`` (split- and
dividend-adjusted) as ``adj_close``; open/high/low/volume are as Yahoo gives them.

Bars are dated by the exchange session: yfinance's timestamps are converted to the
exchange time zone Yahoo reports (``exchangeTimezoneName``) before taking the date.

Transient failures (HTTP 429/5xx, timeouts, refused connections) are retried with
bounded backoff; anything else (unknown ticker, malformed or empty payload) is an
error for that symbol. yfinance swallows errors by default, so calls run with
``yf.config.debug.hide_exceptions = False`` and the session raises on 429/5xx.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from flows.sources.base import BAR_SCHEMA, FUNDAMENTALS_SCHEMA, SymbolOutcome, conform_bars, with_origin
from flows.sources.live_config import (
    DeadlineExceeded,
    LiveSettings,
    RetryPolicy,
    asset_row,
    bounded_timeout,
    current_deadline,
    short_error,
)
from flows.universe import Asset

SOURCE = "yahoo"

# Ticker.info key -> FUNDAMENTALS_SCHEMA column.
INFO_FIELDS: dict[str, str] = {
    "sector": "sector",
    "industry": "industry",
    "trailingPE": "trailing_pe",
    "priceToBook": "price_to_book",
    "returnOnEquity": "return_on_equity",
    "profitMargins": "profit_margin",
    "grossMargins": "gross_margin",
    "debtToEquity": "debt_to_equity",
    "recommendationMean": "recommendation_mean",
    "numberOfAnalystOpinions": "number_of_analyst_opinions",
    "shortPercentOfFloat": "short_percent_of_float",
}


class YahooStatusError(Exception):
    """Yahoo answered 429 or 5xx: transient, worth a retry."""

    def __init__(self, status: int, url: str) -> None:
        self.status = status
        self.host = urlsplit(url).hostname or "?"
        super().__init__(f"HTTP {status} from {self.host}")


class StatusCheckingSessionMixin:
    """Mix into a requests or curl_cffi Session (the types yfinance accepts).

    Raises ``YahooStatusError`` on 429/5xx so yfinance cannot turn a rate limit
    or an outage into "no data"; ``rewrite_url`` is a hook (tests point it at a
    local server).
    """

    # yfinance hard-codes 30 s for its cookie/crumb calls; cap every request:
    # (connect, read) timeouts, both cut to what the extract deadline leaves.
    timeout_cap_s: float | None = None
    connect_timeout_s: float | None = None

    def rewrite_url(self, url: str) -> str:
        return url

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        url = self.rewrite_url(str(url))
        cap = self.timeout_cap_s
        if cap is not None:
            t = kwargs.get("timeout")
            read = cap if not isinstance(t, (int, float)) else min(t, cap)
            connect = min(read, self.connect_timeout_s or read)
            # curl_cffi bounds the whole request by connect + read: keep that
            # within what the extract deadline leaves (raises once it passed).
            left = bounded_timeout(connect + read)
            if connect + read > left:
                connect = min(connect, left / 2)
                read = left - connect
            kwargs["timeout"] = (connect, read)
        response = super().request(method, url, *args, **kwargs)  # type: ignore[misc]
        # Only data endpoints: yfinance itself degrades gracefully when the cookie or
        # crumb calls (fc.yahoo.com, /v1/test/getcrumb, consent pages) are rate-limited.
        data_call = "/finance/" in (urlsplit(url).path or "")
        if data_call and (response.status_code == 429 or response.status_code >= 500):
            raise YahooStatusError(response.status_code, url)
        return response


def default_session(timeout_cap_s: float | None = None) -> Any:
    """curl_cffi session impersonating Chrome (yfinance's own default), status-checked."""
    from curl_cffi import requests as curl_requests

    class _YahooSession(StatusCheckingSessionMixin, curl_requests.Session):
        pass

    session = _YahooSession(impersonate="chrome")
    session.timeout_cap_s = timeout_cap_s
    return session


def _network_errors() -> tuple[type[BaseException], ...]:
    import requests

    errors: list[type[BaseException]] = [
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        ConnectionError,
        TimeoutError,
    ]
    try:
        from curl_cffi.requests import exceptions as curl_exc

        errors += [curl_exc.ConnectionError, curl_exc.Timeout]
    except ImportError:  # pragma: no cover - curl_cffi is a yfinance dependency
        pass
    return tuple(errors)


def _timeout_errors() -> tuple[type[BaseException], ...]:
    import requests

    errors: list[type[BaseException]] = [requests.exceptions.Timeout, TimeoutError]
    try:
        from curl_cffi.requests import exceptions as curl_exc

        errors.append(curl_exc.Timeout)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def is_unreachable(exc: BaseException) -> bool:
    return isinstance(exc, _network_errors()) and not isinstance(exc, _timeout_errors())


def is_retryable(exc: BaseException) -> bool:
    from yfinance.exceptions import YFRateLimitError

    return isinstance(exc, (YahooStatusError, YFRateLimitError, *_network_errors()))


def describe_error(exc: BaseException, attempts: int, timeout_s: float) -> str:
    from yfinance.exceptions import YFPricesMissingError, YFRateLimitError, YFTzMissingError

    tries = f" (after {attempts} attempt{'s' if attempts != 1 else ''})"
    if isinstance(exc, DeadlineExceeded):
        return f"{exc}{tries}"
    if isinstance(exc, _timeout_errors()):
        return f"request timed out after {timeout_s:g}s{tries}: {short_error(exc, [])}"
    if is_unreachable(exc):
        return f"host unreachable{tries}: {short_error(exc, [])}"
    if isinstance(exc, (YahooStatusError, YFRateLimitError)):
        return f"Yahoo kept failing: {exc}{tries}"
    if isinstance(exc, (YFPricesMissingError, YFTzMissingError)):
        return f"no price data (unknown or delisted ticker?): {short_error(exc, [])}"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        url = str(getattr(exc.response, "url", "") or "")  # type: ignore[attr-defined]
        host = urlsplit(url).hostname or "Yahoo"
        what = " (unknown or delisted ticker?)" if status in (400, 404) else ""
        return f"no price data{what}: HTTP {status} from {host}"
    if isinstance(exc, (json.JSONDecodeError, KeyError, TypeError, IndexError, ValueError)):
        return f"malformed response: {short_error(exc, [])}"
    return short_error(exc, [])


_CONFIG_LOCK = threading.Lock()


@contextmanager
def yfinance_raising() -> Iterator[None]:
    """Make yfinance raise instead of logging and returning an empty frame."""
    import yfinance as yf

    if not hasattr(yf, "config"):  # yfinance < 1.0 has no config object
        yield
        return
    with _CONFIG_LOCK:
        old = yf.config.debug.hide_exceptions
        yf.config.debug.hide_exceptions = False
    try:
        yield
    finally:
        with _CONFIG_LOCK:
            yf.config.debug.hide_exceptions = old


def history_frame(symbol: str, raw: Any, exchange_tz: str | None) -> pl.DataFrame:
    """yfinance's pandas frame -> BAR_SCHEMA, dated by the exchange session."""
    needed = ["Open", "High", "Low", "Close", "Adj Close", "Volume"]
    if raw is None or not hasattr(raw, "columns"):
        raise ValueError(f"malformed payload for {symbol}: not a frame")
    missing = [c for c in needed if c not in raw.columns]
    if raw.empty:
        return pl.DataFrame(schema=BAR_SCHEMA)
    if missing:
        raise ValueError(f"malformed payload for {symbol}: missing columns {missing}")
    index = raw.index
    if getattr(index, "tz", None) is not None and exchange_tz:
        index = index.tz_convert(exchange_tz)
    dates = [ts.date() for ts in index]
    frame = pl.DataFrame(
        {
            "symbol": [symbol] * len(dates),
            "date": dates,
            "open": raw["Open"].to_numpy(dtype=float),
            "high": raw["High"].to_numpy(dtype=float),
            "low": raw["Low"].to_numpy(dtype=float),
            "close": raw["Close"].to_numpy(dtype=float),
            "adj_close": raw["Adj Close"].to_numpy(dtype=float),
            "volume": raw["Volume"].to_numpy(dtype=float),
        }
    )
    frame = frame.with_columns(pl.col(pl.Float64).fill_nan(None)).filter(
        pl.col("close").is_not_null()
    )
    return conform_bars(frame).unique(["symbol", "date"], keep="last", maintain_order=True)


def window_start(
    symbol: str,
    start: date,
    last_dates: dict[str, date],
    stored_tail: pl.DataFrame,
    lookback_sessions: int,
) -> date:
    """First date an incremental run asks for: ``lookback_sessions`` stored sessions back."""
    last = last_dates.get(symbol)
    if last is None or last < start:
        return start
    stored: list[date] = []
    if stored_tail is not None and stored_tail.height and "symbol" in stored_tail.columns:
        stored = sorted(
            stored_tail.filter((pl.col("symbol") == symbol) & (pl.col("date") <= last))["date"]
        )
    if lookback_sessions == 0:
        return max(start, last)
    if len(stored) >= lookback_sessions:
        return max(start, stored[-lookback_sessions])
    # Not enough stored sessions to count back: weekdays are an upper bound on sessions.
    back = np.busday_offset(np.datetime64(last, "D"), -lookback_sessions, roll="backward")
    return max(start, back.astype(object))


def restated_sessions(
    symbol: str, fetched: pl.DataFrame, stored_tail: pl.DataFrame, rel_tol: float
) -> list[tuple[date, float, float]]:
    """Overlapping sessions whose adjusted close moved beyond ``rel_tol``: (date, old, new)."""
    if stored_tail is None or not stored_tail.height or not fetched.height:
        return []
    old = stored_tail.filter(pl.col("symbol") == symbol).select(
        "date", pl.col("adj_close").cast(pl.Float64).alias("old")
    )
    joined = (
        fetched.select("date", pl.col("adj_close").alias("new"))
        .join(old, on="date", how="inner")
        .drop_nulls()
        .filter(
            (pl.col("new") - pl.col("old")).abs()
            > rel_tol * pl.max_horizontal(pl.col("old").abs(), pl.lit(1e-12))
        )
        .sort("date")
    )
    return [(r["date"], r["old"], r["new"]) for r in joined.iter_rows(named=True)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(float(value)) else None
    return None


def fundamentals_row(symbol: str, as_of: date, info: Any) -> dict[str, Any]:
    """``Ticker.info`` -> one FUNDAMENTALS_SCHEMA row; raises if it holds none of the fields."""
    if not isinstance(info, dict):
        raise ValueError(f"malformed info payload ({type(info).__name__})")
    if not any(info.get(k) is not None for k in INFO_FIELDS):
        raise ValueError("no fundamentals fields in Yahoo's answer")
    row: dict[str, Any] = {"symbol": symbol, "as_of": as_of}
    for key, col in INFO_FIELDS.items():
        v = info.get(key)
        if col in ("sector", "industry"):
            row[col] = v if isinstance(v, str) and v else None
        elif col == "number_of_analyst_opinions":
            n = _number(v)
            row[col] = int(n) if n is not None else None
        else:
            row[col] = _number(v)
    return row


@dataclass
class EquityResult:
    bars: list[pl.DataFrame] = field(default_factory=list)
    assets: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[SymbolOutcome] = field(default_factory=list)
    fundamentals: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class YahooClient:
    """Daily bars and info for one symbol at a time, through yfinance, with retries."""

    def __init__(
        self,
        settings: LiveSettings,
        retry: RetryPolicy,
        session_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.retry = retry
        self._session_factory = session_factory or default_session
        self._session: Any = None

    @property
    def session(self) -> Any:
        if self._session is None:
            session = self._session_factory()
            if isinstance(session, StatusCheckingSessionMixin):
                cap = self.settings.request_timeout_s
                old = session.timeout_cap_s
                session.timeout_cap_s = cap if old is None else min(old, cap)
                session.connect_timeout_s = self.settings.connect_timeout_s
            self._session = session
        return self._session

    def reset_cache(self) -> None:
        """Drop yfinance's in-process response cache so a run never sees an earlier run's data."""
        from yfinance.data import YfData

        YfData.cache_get.cache_clear()

    def history(self, symbol: str, first: date, last: date) -> tuple[pl.DataFrame, dict, int]:
        """Bars dated ``first``..``last`` (inclusive) and Yahoo's chart metadata."""
        import yfinance as yf

        timeout = self.settings.request_timeout_s

        def call() -> tuple[Any, dict]:
            ticker = yf.Ticker(symbol, session=self.session)
            raw = ticker.history(
                start=first.isoformat(),
                end=(last + timedelta(days=1)).isoformat(),
                interval="1d",
                auto_adjust=False,
                actions=True,
                back_adjust=False,
                repair=False,
                prepost=False,
                keepna=False,
                rounding=False,
                timeout=timeout,
            )
            md = ticker.get_history_metadata()  # from the chart call just made, no new request
            meta = {k: md[k] for k in ("exchangeTimezoneName", "currency") if k in md}
            return raw, meta

        with yfinance_raising():
            (raw, meta), attempts = self.retry.call(call, is_retryable, symbol)
        frame = history_frame(symbol, raw, meta.get("exchangeTimezoneName"))
        frame = frame.filter(pl.col("date").is_between(first, last))
        return frame, meta, attempts

    def info(self, symbol: str) -> tuple[dict, int]:
        import yfinance as yf

        def call() -> dict:
            return yf.Ticker(symbol, session=self.session).info

        with yfinance_raising():
            return self.retry.call(call, is_retryable, f"{symbol} fundamentals")


def _session_closed(d: date, tz: str | None, settle_minutes: int, now: datetime) -> bool:
    zone = ZoneInfo(tz) if tz else ZoneInfo("America/New_York")
    close = datetime.combine(d, time(16, 0), zone) + timedelta(minutes=settle_minutes)
    return now >= close


def fetch_equities(
    client: YahooClient,
    assets: list[Asset],
    start: date,
    as_of: date,
    last_dates: dict[str, date],
    stored_tail: pl.DataFrame,
    now: datetime,
    sleep: Callable[[float], None],
) -> EquityResult:
    """Bars for every non-crypto asset (plus fundamentals for stocks); never raises per symbol."""
    s = client.settings
    out = EquityResult()
    client.reset_cache()
    unreachable_streak = 0
    last_unreachable = ""
    deadline = current_deadline()
    for i, asset in enumerate(assets):
        sym = asset.symbol
        if deadline is not None and deadline.remaining() <= 0:
            out.outcomes.append(
                SymbolOutcome(sym, SOURCE, "error", attempts=0, error=f"not fetched: {deadline.message()}")
            )
            continue
        if i and i % s.yahoo_batch_size == 0 and s.yahoo_batch_pause_s:
            sleep(s.yahoo_batch_pause_s)
        if unreachable_streak >= s.unreachable_after:
            out.outcomes.append(
                SymbolOutcome(
                    sym,
                    SOURCE,
                    "error",
                    attempts=0,
                    error=(
                        f"host unreachable: not tried after {unreachable_streak} consecutive "
                        f"symbols could not reach Yahoo (last: {last_unreachable})"
                    ),
                )
            )
            continue
        attempts = 0
        note: str | None = None
        first = window_start(sym, start, last_dates, stored_tail, s.lookback_sessions)
        asked = first  # the request the bars come from (their origin)
        try:
            bars, meta, n = client.history(sym, first, as_of)
            attempts += n
            if first > start:
                restated = restated_sessions(sym, bars, stored_tail, s.restatement_rel_tol)
                if restated:
                    d, old, new = restated[0]
                    note = (
                        f"adjusted close restated on {len(restated)} overlapping session(s), "
                        f"first {d} (stored {old:.6g}, now {new:.6g}): re-fetched full history "
                        f"from {start}"
                    )
                    out.warnings.append(f"{sym}: {note}")
                    bars, meta, n = client.history(sym, start, as_of)
                    asked = start
                    attempts += n
            tz = meta.get("exchangeTimezoneName")
            still_open = [
                d for d in bars["date"] if not _session_closed(d, tz, s.equity_settle_minutes, now)
            ]
            if still_open:
                bars = bars.filter(~pl.col("date").is_in(still_open))
                out.warnings.append(
                    f"{sym}: dropped {len(still_open)} bar(s) of a session not yet closed "
                    f"({still_open[0]})"
                )
            if bars.height == 0:
                raise _EmptyWindow(f"Yahoo returned no bars for {first}..{as_of}")
        except _EmptyWindow as exc:
            out.outcomes.append(
                SymbolOutcome(sym, SOURCE, "error", attempts=max(attempts, 1), error=str(exc))
            )
            unreachable_streak = 0
            continue
        except Exception as exc:  # noqa: BLE001 - one symbol never sinks the run
            n = getattr(exc, "attempts", 1)
            attempts += n
            msg = describe_error(exc, n, s.request_timeout_s)
            out.outcomes.append(SymbolOutcome(sym, SOURCE, "error", attempts=attempts, error=msg))
            if isinstance(exc, _network_errors()):  # refused, DNS failure or timeout
                unreachable_streak += 1
                last_unreachable = msg
            else:
                unreachable_streak = 0
            continue
        unreachable_streak = 0
        out.bars.append(with_origin(bars, f"{SOURCE}:{sym} {asked}..{as_of}"))
        out.assets.append(asset_row(asset, meta.get("currency") or asset.quote_currency, SOURCE, sym))
        out.outcomes.append(
            SymbolOutcome(
                sym,
                SOURCE,
                "ok",
                rows=bars.height,
                first_date=bars["date"].min(),
                last_date=bars["date"].max(),
                attempts=attempts,
                error=note,
            )
        )
        if s.fundamentals and asset.asset_class == "equity":
            try:
                info, _ = client.info(sym)
                out.fundamentals.append(fundamentals_row(sym, as_of, info))
            except Exception as exc:  # noqa: BLE001 - fundamentals never fail the prices
                n = getattr(exc, "attempts", 1)
                out.warnings.append(
                    f"{sym}: fundamentals unavailable: {describe_error(exc, n, s.request_timeout_s)}"
                )
    return out


class _EmptyWindow(Exception):
    pass


def fundamentals_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema=FUNDAMENTALS_SCHEMA)
    return pl.DataFrame(rows, schema=FUNDAMENTALS_SCHEMA).sort("symbol")


def utc_now() -> datetime:
    return datetime.now(UTC)
