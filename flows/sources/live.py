"""The ``live`` source: Yahoo Finance (yfinance) for equities/indices, ccxt for crypto.

``LiveSource.fetch`` never raises for one bad symbol: every symbol yields a
``SymbolOutcome`` (source ``"yahoo"`` or the serving exchange id). Whether the run
as a whole is acceptable is the flow's call, via ``failure_policy``.
See ``docs/live_source.md``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any

import polars as pl

from flows.sources.base import (
    ASSET_SCHEMA,
    SourceBatch,
    SymbolOutcome,
    conform_assets,
    conform_bars,
    empty_bars,
)
from flows.sources.exchanges import ExchangeFactory, build_exchange, fetch_crypto
from flows.sources.live_config import LiveSettings, RetryPolicy
from flows.sources.yahoo import YahooClient, fetch_equities, fundamentals_frame, utc_now
from flows.universe import Universe


class LiveSource:
    """Real market data.

    Args:
        settings: ``LiveSettings`` (the flow passes ``Settings.live``); defaults when None.
        sleep: used for every backoff and batch pause (tests pass a recorder).
        now: clock deciding which bars/candles are closed (UTC-aware datetime).
        rng: jitter source.
        yahoo_session_factory: builds the HTTP session handed to yfinance (a requests or
            curl_cffi Session, status-checked); default curl_cffi impersonating Chrome.
        exchange_factory: builds a ccxt exchange from its ``ExchangeConfig``.
        crypto_close: ``utc_midnight`` (daily candles) or ``equity_close`` (hourly candles
            sampled at the equity close of ``calendar``); see ``flows.sources.exchanges``.
    """

    name = "live"
    reads_stored_tail = True  # restated history in the look-back overlap is found against it

    def __init__(
        self,
        settings: LiveSettings | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
        yahoo_session_factory: Callable[[], Any] | None = None,
        exchange_factory: ExchangeFactory = build_exchange,
        crypto_close: str = "utc_midnight",
        calendar: str = "XNYS",
    ) -> None:
        self.crypto_close = crypto_close
        self.calendar = calendar
        self.settings = settings or LiveSettings()
        self.sleep = sleep
        self.now = now
        self.retry = RetryPolicy.from_settings(self.settings, sleep, rng)
        self.yahoo = YahooClient(self.settings, self.retry, yahoo_session_factory)
        self.exchange_factory = exchange_factory

    @classmethod
    def from_settings(cls, settings: Any) -> LiveSource:
        """From the app ``Settings`` (its ``live`` field once mounted; defaults until then)."""
        live = getattr(settings, "live", None)
        return cls(
            live if isinstance(live, LiveSettings) else LiveSettings(),
            crypto_close=getattr(settings, "crypto_close", "utc_midnight"),
            calendar=getattr(settings, "exchange_calendar", "XNYS"),
        )

    def __repr__(self) -> str:  # settings may hold keys: never print them
        return f"LiveSource(exchanges={[e.id for e in self.settings.exchanges]})"

    def fetch(
        self,
        universe: Universe,
        start: date,
        as_of: date,
        last_dates: dict[str, date],
        stored_tail: pl.DataFrame,
    ) -> SourceBatch:
        now = self.now()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        equities = fetch_equities(
            self.yahoo, universe.equities, start, as_of, last_dates, stored_tail, now, self.sleep
        )
        crypto = fetch_crypto(
            universe.crypto,
            start,
            as_of,
            last_dates,
            self.settings,
            self.retry,
            now,
            self.exchange_factory,
            crypto_close=self.crypto_close,
            calendar=self.calendar,
        )
        frames = [f for f in equities.bars + crypto.bars if f.height]
        bars = conform_bars(pl.concat(frames)) if frames else empty_bars()
        rows = equities.assets + crypto.assets
        assets = (
            conform_assets(pl.DataFrame(rows, schema=ASSET_SCHEMA))
            if rows
            else pl.DataFrame(schema=ASSET_SCHEMA)
        )
        fundamentals = fundamentals_frame(equities.fundamentals) if self.settings.fundamentals else None
        return SourceBatch(
            bars=bars,
            assets=assets,
            outcomes=equities.outcomes + crypto.outcomes,
            fundamentals=fundamentals,
            synthetic=False,
            warnings=equities.warnings + crypto.warnings,
        )


def failure_policy(
    outcomes: Iterable[SymbolOutcome], benchmarks: Iterable[str], max_failed_share: float
) -> tuple[bool, str]:
    """(ok, reason): a run fails if a benchmark failed or more than ``max_failed_share`` did.

    A symbol counts as failed when its last outcome is an error (a later success
    of the same symbol supersedes an earlier error).
    """
    last: dict[str, SymbolOutcome] = {}
    for o in outcomes:
        last[o.symbol] = o
    if not last:
        return False, "no symbol was attempted"
    failed = sorted(s for s, o in last.items() if o.status == "error")
    bench_failed = [b for b in benchmarks if b in failed or b not in last]
    share = len(failed) / len(last)
    summary = f"{len(failed)}/{len(last)} symbols failed ({share:.0%})"
    if bench_failed:
        reasons = "; ".join(
            f"{b}: {last[b].error if b in last else 'not attempted'}" for b in bench_failed
        )
        return False, f"benchmark failed ({reasons}); {summary}"
    if share > max_failed_share:
        names = ", ".join(failed[:10]) + (" ..." if len(failed) > 10 else "")
        return False, f"{summary} > {max_failed_share:.0%} allowed: {names}"
    return True, summary
