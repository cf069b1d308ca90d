"""Exchange sessions, from exchange_calendars (holidays and early closes included)."""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING

import polars as pl

# exchange_calendars and pandas (~1.5 CPU-s together) are imported where sessions
# are computed, not here: the CLI imports this module before Prefect starts the
# flow (docs/performance.md, "Per-run fixed cost").
if TYPE_CHECKING:
    import exchange_calendars as xcals


@lru_cache(maxsize=8)
def _calendar(code: str, start: date, end: date) -> xcals.ExchangeCalendar:
    import exchange_calendars as xcals
    import pandas as pd

    # A calendar's default bounds are roughly 20 years back and 1 year ahead;
    # ask for the span we need so old history and backfills work too.
    return xcals.get_calendar(code, start=pd.Timestamp(start), end=pd.Timestamp(end))


def sessions(start: date, end: date, code: str = "XNYS") -> pl.Series:
    """Trading sessions from ``start`` to ``end`` inclusive, as a Date series."""
    if end < start:
        return pl.Series("session_date", [], dtype=pl.Date)
    import pandas as pd  # local: see the note at the top

    cal = _calendar(code, min(start, date(1980, 1, 1)), date(max(end.year, date.today().year) + 1, 12, 31))
    lo = max(pd.Timestamp(start), cal.first_session)
    hi = min(pd.Timestamp(end), cal.last_session)
    if hi < lo:
        return pl.Series("session_date", [], dtype=pl.Date)
    idx = cal.sessions_in_range(lo, hi)
    return pl.Series("session_date", [d.date() for d in idx], dtype=pl.Date)


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

    cal = _calendar(code, min(start, date(1980, 1, 1)), date(max(end.year, date.today().year) + 1, 12, 31))
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
