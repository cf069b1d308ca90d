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
