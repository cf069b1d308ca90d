"""Exchange sessions, from exchange_calendars (holidays and early closes included)."""

from __future__ import annotations

import logging
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

# exchange_calendars and pandas (~1.5 CPU-s together) are imported where sessions
# are computed, not here: the CLI imports this module before Prefect starts the
# flow (docs/performance.md, "Per-run fixed cost").
if TYPE_CHECKING:
    import exchange_calendars as xcals

log = logging.getLogger(__name__)

# Where computed session lists are kept between processes (``cache_sessions_in``); None: not kept.
_cache_dir: Path | None = None
# The first year of every calendar this module builds (unless asked for earlier dates).
_EARLIEST = date(1980, 1, 1)


def cache_sessions_in(directory: Path | None) -> None:
    """Keep each calendar's session list as a small Parquet file under ``directory``.

    A run's first ``sessions()`` call otherwise imports exchange_calendars and
    pandas and builds the calendar (0.6-0.8 CPU-s, every night, for the same
    list); with the file, a later process reads it instead. The file is keyed by
    everything that decides the list: the calendar code, the span the calendar
    is built for, and the versions of exchange_calendars and pandas
    (``_cache_path``). The flow sets this to its data directory's ``cache/``.
    """
    global _cache_dir
    _cache_dir = directory
    _span_sessions.cache_clear()


@lru_cache(maxsize=8)
def _calendar(code: str, start: date, end: date) -> xcals.ExchangeCalendar:
    import exchange_calendars as xcals
    import pandas as pd

    # A calendar's default bounds are roughly 20 years back and 1 year ahead;
    # ask for the span we need so old history and backfills work too.
    return xcals.get_calendar(code, start=pd.Timestamp(start), end=pd.Timestamp(end))


def _span(start: date, end: date) -> tuple[date, date]:
    """The span a calendar is built for: from 1980 (or earlier dates asked for) to the end of next year."""
    return min(start, _EARLIEST), date(max(end.year, date.today().year) + 1, 12, 31)


def _cache_path(code: str, span: tuple[date, date]) -> Path | None:
    if _cache_dir is None:
        return None
    from importlib.metadata import version

    # The holiday rules are exchange_calendars' code, the session arithmetic partly pandas'.
    key = f"{code}-{span[0]}-{span[1]}-exchange_calendars{version('exchange_calendars')}-pandas{version('pandas')}"
    return _cache_dir / f"sessions-{key}.parquet"


@lru_cache(maxsize=8)
def _span_sessions(code: str, first: date, last: date) -> pl.Series:
    """Every session of the calendar built for ``first``..``last``: read from the cache, else computed (and kept)."""
    path = _cache_path(code, (first, last))
    if path is not None and path.is_file():
        try:
            kept = pl.read_parquet(path)
            if kept.schema == pl.Schema({"session_date": pl.Date()}) and kept.height:
                return kept.to_series()
            log.warning("calendar cache %s holds no session list; computing it again", path)
        except Exception as exc:  # noqa: BLE001 - a damaged cache is recomputed, never the reason a run fails
            log.warning("calendar cache %s is unreadable (%s); computing it again", path, exc)
    cal = _calendar(code, first, last)
    computed = pl.Series("session_date", [d.date() for d in cal.sessions], dtype=pl.Date)
    if path is not None:
        from warehouse.files import atomic_write_parquet

        try:
            atomic_write_parquet(computed.to_frame(), path)
        except OSError as exc:  # a full or read-only disk: the run goes on with the list it computed
            log.warning("could not keep the calendar's sessions in %s: %s", path, exc)
    return computed


def sessions(start: date, end: date, code: str = "XNYS") -> pl.Series:
    """Trading sessions from ``start`` to ``end`` inclusive, as a Date series."""
    if end < start:
        return pl.Series("session_date", [], dtype=pl.Date)
    # The calendar's sessions (cached: ``cache_sessions_in``), cut to start..end: the same list as
    # exchange_calendars' ``sessions_in_range`` over the calendar's first..last session inside it.
    every = _span_sessions(code, *_span(start, end))
    return every.filter((every >= start) & (every <= end))


def equity_closes(start: date, end: date, code: str = "XNYS") -> pl.DataFrame:
    """For every calendar date ``start``..``end``, the instant (UTC) the equity market closes.

    A session's own close from exchange_calendars: 16:00 New York time, 13:00 on
    early-close days (the day after Thanksgiving, Christmas Eve, ...), so 20:00 or
    21:00 UTC as daylight saving time starts and ends. A date without a session (a
    weekend, a holiday) takes the calendar's regular close in its own time zone.
    Columns ``date``, ``close_at`` (transforms.crypto_close.CLOSES_SCHEMA).
    """
    schema = {"date": pl.Date(), "close_at": pl.Datetime("ms", "UTC")}
    if end < start:
        return pl.DataFrame(schema=schema)
    import pandas as pd  # local: see the note at the top

    cal = _calendar(code, *_span(start, end))
    regular = cal.close_times[-1][1]
    days = pl.date_range(start, end, "1d", eager=True).alias("date").to_frame()
    default = days.with_columns(
        pl.col("date").dt.combine(regular).dt.replace_time_zone(str(cal.tz)).dt.convert_time_zone("UTC")
        .cast(schema["close_at"]).alias("close_at")
    )
    lo, hi = max(pd.Timestamp(start), cal.first_session), min(pd.Timestamp(end), cal.last_session)
    if hi < lo:
        return default
    closes = cal.schedule.loc[lo:hi, "close"]
    sessions_ = pl.DataFrame(
        {"date": [d.date() for d in closes.index], "session_close": [c.to_pydatetime() for c in closes]}
    ).with_columns(pl.col("session_close").cast(schema["close_at"]))
    return (
        default.join(sessions_, on="date", how="left")
        .select("date", pl.coalesce("session_close", "close_at").alias("close_at"))
        .sort("date")
    )
