"""Exchange sessions, from exchange_calendars (holidays and early closes included)."""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import exchange_calendars as xcals
import pandas as pd
import polars as pl


@lru_cache(maxsize=8)
def _calendar(code: str, start: date, end: date) -> xcals.ExchangeCalendar:
    # A calendar's default bounds are roughly 20 years back and 1 year ahead;
    # ask for the span we need so old history and backfills work too.
    return xcals.get_calendar(code, start=pd.Timestamp(start), end=pd.Timestamp(end))


def sessions(start: date, end: date, code: str = "XNYS") -> pl.Series:
    """Trading sessions from ``start`` to ``end`` inclusive, as a Date series."""
    if end < start:
        return pl.Series("session_date", [], dtype=pl.Date)
    cal = _calendar(code, min(start, date(1980, 1, 1)), date(max(end.year, date.today().year) + 1, 12, 31))
    lo = max(pd.Timestamp(start), cal.first_session)
    hi = min(pd.Timestamp(end), cal.last_session)
    if hi < lo:
        return pl.Series("session_date", [], dtype=pl.Date)
    idx = cal.sessions_in_range(lo, hi)
    return pl.Series("session_date", [d.date() for d in idx], dtype=pl.Date)
