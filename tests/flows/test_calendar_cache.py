"""The exchange calendar's sessions kept between runs (flows.calendar.cache_sessions_in).

Every answer is compared with exchange_calendars itself (the oracle below); the
cache must only spare a later process the import of exchange_calendars and
pandas and the calendar's construction, never change a session.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from flows import calendar

REPO = Path(__file__).resolve().parents[2]
RANGES = [
    (date(2006, 1, 2), date(2026, 11, 20)),  # the bench's 20 years
    (date(2024, 12, 23), date(2024, 12, 27)),  # Christmas
    (date(1975, 6, 1), date(1981, 1, 10)),  # before 1980: a calendar of another span
    (date(2026, 11, 20), date(2027, 12, 31)),  # into next year
    (date(2024, 12, 25), date(2024, 12, 25)),  # a holiday alone: no session
    (date(2025, 1, 1), date(2024, 1, 1)),  # an empty span
]


def oracle(start: date, end: date, code: str) -> list[date]:
    import exchange_calendars as xcals
    import pandas as pd

    if end < start:
        return []
    first = min(start, date(1980, 1, 1))
    cal = xcals.get_calendar(code, start=pd.Timestamp(first), end=pd.Timestamp(date(max(end.year, date.today().year) + 1, 12, 31)))
    lo, hi = max(pd.Timestamp(start), cal.first_session), min(pd.Timestamp(end), cal.last_session)
    return [d.date() for d in cal.sessions_in_range(lo, hi)] if lo <= hi else []


@pytest.fixture
def cache_dir(tmp_path):
    calendar.cache_sessions_in(tmp_path / "calendar")
    yield tmp_path / "calendar"
    calendar.cache_sessions_in(None)


@pytest.mark.parametrize("code", ["XNYS", "XLON"])
def test_cold_and_warm_cache_give_exchange_calendars_sessions(cache_dir, code):
    for rnd in ("cold", "warm"):
        if rnd == "warm":
            calendar.cache_sessions_in(cache_dir)  # drops the in-process copies: read from the files
            assert any(cache_dir.glob(f"sessions-{code}-*.parquet"))
        for start, end in RANGES:
            got = calendar.sessions(start, end, code)
            assert got.name == "session_date" and str(got.dtype) == "Date"
            assert got.to_list() == oracle(start, end, code), (rnd, start, end)


def _probe(cache: Path) -> dict:
    code = (
        "import json, sys\n"
        "from datetime import date\n"
        "from pathlib import Path\n"
        "from flows.calendar import cache_sessions_in, sessions\n"
        f"cache_sessions_in(Path({str(cache)!r}))\n"
        "s = sessions(date(2006, 1, 2), date(2026, 11, 20))\n"
        "print(json.dumps({'n': s.len(), 'last': str(s[-1]), 'loaded': sorted({m.split('.')[0] for m in sys.modules})}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_later_process_reads_the_sessions_without_the_calendar_libraries(tmp_path):
    first = _probe(tmp_path / "calendar")  # computes and keeps them
    assert {"exchange_calendars", "pandas"} <= set(first["loaded"])
    second = _probe(tmp_path / "calendar")
    assert second["n"] == first["n"] == len(oracle(date(2006, 1, 2), date(2026, 11, 20), "XNYS"))
    assert second["last"] == first["last"] == "2026-11-20"
    assert {"exchange_calendars", "pandas"}.isdisjoint(second["loaded"]), "the warm cache imported them"


def test_another_library_version_is_another_key(cache_dir, monkeypatch):
    calendar.sessions(date(2024, 1, 2), date(2024, 12, 31))
    (kept,) = cache_dir.glob("sessions-XNYS-*.parquet")
    # A file under the current key is what the next process reads: prove it, with a wrong list.
    import polars as pl

    pl.DataFrame({"session_date": [date(2024, 7, 4)]}).write_parquet(kept)
    calendar.cache_sessions_in(cache_dir)
    assert calendar.sessions(date(2024, 7, 1), date(2024, 7, 5)).to_list() == [date(2024, 7, 4)]
    # Another exchange_calendars (new holiday rules) does not read it: computed afresh, kept beside it.
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "999.0" if name == "exchange_calendars" else real(name))
    calendar.cache_sessions_in(cache_dir)
    got = calendar.sessions(date(2024, 7, 1), date(2024, 7, 5))
    assert got.to_list() == oracle(date(2024, 7, 1), date(2024, 7, 5), "XNYS")  # July 4th is a holiday
    assert len(list(cache_dir.glob("sessions-XNYS-*exchange_calendars999.0*.parquet"))) == 1


@pytest.mark.parametrize("damage", [b"", b"not parquet at all", "empty list"])
def test_a_damaged_cache_file_is_computed_again_and_replaced(cache_dir, damage):
    import polars as pl

    calendar.sessions(date(2024, 1, 2), date(2024, 12, 31))
    (kept,) = cache_dir.glob("sessions-XNYS-*.parquet")
    if damage == "empty list":
        pl.DataFrame({"session_date": []}, schema={"session_date": pl.Date}).write_parquet(kept)
    else:
        kept.chmod(0o644)
        kept.write_bytes(damage)
    calendar.cache_sessions_in(cache_dir)
    assert calendar.sessions(date(2024, 1, 2), date(2024, 12, 31)).to_list() == oracle(
        date(2024, 1, 2), date(2024, 12, 31), "XNYS")
    assert pl.read_parquet(kept).height > 9000  # replaced by the whole list again


def test_an_unwritable_cache_is_no_failure(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would go")
    calendar.cache_sessions_in(blocked / "calendar")
    try:
        assert calendar.sessions(date(2024, 12, 23), date(2024, 12, 27)).len() == 4
    finally:
        calendar.cache_sessions_in(None)
