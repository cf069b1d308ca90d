"""Settings of the ``live`` source (yfinance + ccxt) and its retry policy.

``LiveSettings`` is mounted as ``Settings.live``, so every field can be set from
the environment, e.g. ``XASSET_LIVE__LOOKBACK_SESSIONS=10`` or
``XASSET_LIVE__API_KEYS__BINANCE__API_KEY=...``. API keys are ``SecretStr``:
they never appear in a repr, a log line or an outcome's error message.

The retry helper lives here too because it is nothing but the retry settings
applied to tenacity: bounded attempts, exponential backoff with jitter, an
injectable sleep, a stop at the extract deadline.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import tenacity
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from flows import progress
from flows.universe import Asset

T = TypeVar("T")
logger = logging.getLogger(__name__)


class ExchangeConfig(BaseModel):
    """One ccxt exchange the crypto leg may use, in order of preference."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="ccxt exchange id, e.g. 'binance'.")
    quote: str | None = Field(
        None,
        description=(
            "Quote currency asked on this exchange (e.g. 'USD' on Coinbase/Kraken); "
            "None uses the asset's quote_currency from the universe (USDT)."
        ),
    )
    symbol_map: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Universe symbol -> ccxt unified market symbol where the default "
            "'<SYMBOL>/<quote>' is wrong (e.g. {'BTC': 'BTC/USD'})."
        ),
    )
    page_size: int = Field(
        500, ge=1, description="Candles asked per fetch_ohlcv call (the exchange may return fewer)."
    )
    max_pages: int = Field(
        200, ge=1, description="Hard cap on pages per symbol, a guard against a looping API."
    )
    rate_limit_ms: int | None = Field(
        None, description="Override ccxt's per-exchange rateLimit (ms between calls); None keeps it."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Extra ccxt ``options`` for this exchange."
    )

    def market_symbol(self, symbol: str, default_quote: str | None) -> str:
        if symbol in self.symbol_map:
            return self.symbol_map[symbol]
        return f"{symbol}/{self.quote or default_quote or 'USDT'}"


class ExchangeCredentials(BaseModel):
    """Optional keys; public OHLCV needs none. Secret values never print."""

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr | None = None
    secret: SecretStr | None = None
    password: SecretStr | None = None

    def secrets(self) -> list[str]:
        return [s.get_secret_value() for s in (self.api_key, self.secret, self.password) if s]


def _default_exchanges() -> list[ExchangeConfig]:
    return [
        # Spot only: by default ccxt's binance also loads the linear and inverse
        # futures market lists (two more large requests) that we never use.
        ExchangeConfig(
            id="binance", page_size=1000, options={"fetchMarkets": {"types": ["spot"]}}
        ),
        ExchangeConfig(id="coinbase", quote="USD", page_size=300),
        ExchangeConfig(id="kraken", quote="USD", page_size=720),
    ]


class LiveSettings(BaseModel):
    """Tunables of the live source; defaults suit the default universe."""

    model_config = ConfigDict(extra="forbid")

    exchanges: list[ExchangeConfig] = Field(
        default_factory=_default_exchanges,
        description=(
            "ccxt exchanges tried in order; the first that lists a crypto asset's market serves it."
        ),
    )
    lookback_sessions: int = Field(
        5,
        ge=0,
        description=(
            "An incremental run re-fetches this many stored sessions (equities) or days "
            "(crypto) before the last stored date, to catch revisions."
        ),
    )
    restatement_rel_tol: float = Field(
        1e-4,
        ge=0,
        description=(
            "If an overlapping session's adjusted close moved by more than this relative "
            "amount vs the stored value (a split or dividend restated history), the symbol's "
            "full history is re-fetched from the run's start."
        ),
    )
    yahoo_batch_size: int = Field(
        20, ge=1, description="Yahoo symbols fetched per batch before pausing."
    )
    yahoo_batch_pause_s: float = Field(
        1.0, ge=0, description="Pause between Yahoo batches (politeness towards the rate limit)."
    )
    fundamentals: bool = Field(
        True, description="Fetch the point-in-time fundamentals snapshot for stocks."
    )
    max_attempts: int = Field(
        4, ge=1, description="Attempts per request (1 = no retry) on transient errors."
    )
    backoff_base_s: float = Field(
        1.0, ge=0, description="First retry waits about this long; each next one doubles it."
    )
    backoff_max_s: float = Field(20.0, ge=0, description="Upper bound of one backoff wait.")
    backoff_jitter: float = Field(
        0.25, ge=0, le=1, description="Each wait is scaled by a random factor in [1-j, 1+j]."
    )
    request_timeout_s: float = Field(
        20.0,
        gt=0,
        description=(
            "Read timeout of one HTTP request: how long a server may stay silent (Yahoo; ccxt's "
            "``timeout``, which bounds connecting too)."
        ),
    )
    connect_timeout_s: float = Field(
        10.0, gt=0, description="Timeout of opening one HTTP connection to Yahoo (TCP and TLS)."
    )
    unreachable_after: int = Field(
        3,
        ge=1,
        description=(
            "After this many consecutive symbols failed because a provider's host could not "
            "be reached, the provider's remaining symbols fail at once (bounded run time "
            "without network)."
        ),
    )
    equity_settle_minutes: int = Field(
        30,
        ge=0,
        description=(
            "An equity bar dated D counts as final this long after 16:00 exchange time on D; "
            "earlier it is an intraday partial bar and is dropped."
        ),
    )
    max_failed_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="The run fails when more than this share of symbols failed (or a benchmark); applies to the "
        "files source too (one policy for both).",
    )
    api_keys: dict[str, ExchangeCredentials] = Field(
        default_factory=dict,
        description="Optional ccxt credentials by exchange id (XASSET_LIVE__API_KEYS__BINANCE__API_KEY).",
    )

    def secrets(self) -> list[str]:
        return [s for c in self.api_keys.values() for s in c.secrets()]


class DeadlineExceeded(Exception):
    """The extract stage's deadline passed (``XASSET_EXTRACT_TIMEOUT_SECONDS``)."""


class Deadline:
    """When the current extraction must end; a monotonic clock, so wall-clock jumps do not matter."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self.at = clock() + seconds

    def remaining(self) -> float:
        return self.at - self.clock()

    def message(self) -> str:
        return f"extract deadline of {self.seconds:g} s passed (XASSET_EXTRACT_TIMEOUT_SECONDS)"

    def check(self) -> None:
        if self.remaining() <= 0:
            raise DeadlineExceeded(self.message())


_DEADLINE: ContextVar[Deadline | None] = ContextVar("xasset_extract_deadline", default=None)


@contextmanager
def deadline(seconds: float | None) -> Iterator[Deadline | None]:
    """Bound everything the live source does in this block (this thread) to ``seconds``.

    Every HTTP request's timeout is cut to the time left, a retry never sleeps
    past it, and once it has passed no request starts: the symbols not fetched
    by then are recorded failed with the deadline as the reason. ``None``: no
    deadline beyond each request's own timeouts.
    """
    token = _DEADLINE.set(Deadline(seconds) if seconds is not None else None)
    try:
        yield _DEADLINE.get()
    finally:
        _DEADLINE.reset(token)


def current_deadline() -> Deadline | None:
    return _DEADLINE.get()


def bounded_timeout(timeout: float) -> float:
    """``timeout`` cut to the time left before the deadline; raises once it has passed."""
    d = _DEADLINE.get()
    if d is None:
        return timeout
    d.check()
    return max(0.001, min(timeout, d.remaining()))


class _JitteredExponential(tenacity.wait.wait_base):
    """``base * 2**(n-1)`` capped at ``max_s``, scaled by a factor in [1-j, 1+j] (the settings' meaning).

    tenacity's own jittered waits add jitter or draw from the whole range;
    neither is what ``backoff_jitter`` documents, and this one draws from an
    injectable ``rng`` so tests are reproducible.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return self.policy.delay(retry_state.attempt_number)


class RetryPolicy:
    """Bounded exponential backoff with jitter (tenacity); ``sleep`` and ``rng`` are injectable.

    Within an extract deadline (``deadline``), no attempt starts after it and
    no retry sleeps past it: the request fails with ``DeadlineExceeded``
    naming its last error instead.
    """

    def __init__(
        self,
        max_attempts: int,
        base_s: float,
        max_s: float,
        jitter: float,
        sleep: Callable[[float], None],
        rng: random.Random | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.base_s = base_s
        self.max_s = max_s
        self.jitter = jitter
        self.sleep = sleep
        self.rng = rng or random.Random()

    @classmethod
    def from_settings(
        cls, s: LiveSettings, sleep: Callable[[float], None], rng: random.Random | None = None
    ) -> RetryPolicy:
        return cls(s.max_attempts, s.backoff_base_s, s.backoff_max_s, s.backoff_jitter, sleep, rng)

    def delay(self, attempt: int) -> float:
        """Wait after failed attempt number ``attempt`` (1-based)."""
        d = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        return max(0.0, d * (1 + self.rng.uniform(-self.jitter, self.jitter)))

    def call(
        self, fn: Callable[[], T], retryable: Callable[[BaseException], bool], what: str = "request"
    ) -> tuple[T, int]:
        """Run ``fn`` until it succeeds, fails non-retryably or runs out of attempts (or time).

        Returns (result, attempts). The last exception propagates with an
        ``attempts`` attribute set. ``what`` (the symbol or venue) names the
        request in the line announcing each retry.
        """
        d = current_deadline()

        def out_of_time(state: tenacity.RetryCallState) -> bool:
            return d is not None and d.remaining() <= (state.upcoming_sleep or 0.0)

        def attempt() -> T:
            if d is not None:
                d.check()  # nothing starts after the extract deadline
            return fn()

        def announce(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            note = f"{what}: attempt {state.attempt_number} of {self.max_attempts} failed " \
                   f"({short_error(exc, []) if exc else 'no result'}); retrying in {state.upcoming_sleep:.1f} s"
            logger.info(note)
            progress.retrying(what, state.attempt_number, state.upcoming_sleep, note)

        def gave_up(state: tenacity.RetryCallState) -> T:
            exc = state.outcome.exception()
            if out_of_time(state):
                late = DeadlineExceeded(f"{d.message()}; last attempt: {short_error(exc, [])}")
                late.attempts = state.attempt_number  # type: ignore[attr-defined]
                raise late from exc
            raise exc

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts) | out_of_time,
            wait=_JitteredExponential(self),
            retry=tenacity.retry_if_exception(
                lambda e: not isinstance(e, DeadlineExceeded) and retryable(e)
            ),
            sleep=self.sleep,
            before_sleep=announce,
            retry_error_callback=gave_up,
        )
        try:
            return retrying(attempt), retrying.statistics["attempt_number"]
        except Exception as exc:
            if not hasattr(exc, "attempts"):
                try:
                    exc.attempts = retrying.statistics["attempt_number"]  # type: ignore[attr-defined]
                except Exception:  # noqa: BLE001 - some exceptions forbid attributes
                    pass
            raise


def scrub(message: str, secrets: list[str]) -> str:
    """Remove secret values from a message (error strings may echo request details)."""
    for s in secrets:
        if s:
            message = message.replace(s, "***")
    return message


def short_error(exc: BaseException, secrets: list[str], limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    text = scrub(text, secrets)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def asset_row(asset: Asset, quote_currency: str | None, source: str, source_symbol: str) -> dict:
    """One ASSET_SCHEMA row: the universe's description plus where the data came from."""
    return {
        "symbol": asset.symbol,
        "name": asset.name,
        "asset_class": asset.asset_class,
        "sector": asset.sector,
        "industry": asset.industry,
        "quote_currency": quote_currency,
        "source": source,
        "source_symbol": source_symbol,
    }
