"""Row-level bad data from the files source: the run publishes, and each bad row is
a ``quarantine`` row naming its symbol, date, rule, source file and line; good
rows of the same file are kept. An equity bar on a weekend is one such row.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import polars as pl
import pytest

from flows.calendar import sessions
from flows.nightly import nightly
from reliability_harness import read_table

pytestmark = pytest.mark.usefixtures("prefect_harness")

AS_OF = date(2024, 3, 28)
# case: (symbol, date, the CSV line, a rule it must be quarantined under)
BAD = {
    "zero_close": ("BTC", date(2024, 2, 1), "2024-02-01,100,110,90,0,5", "close|min_exclusive"),
    "negative_close": ("BTC", date(2024, 2, 2), "2024-02-02,100,110,90,-3,5", "close|min_exclusive"),
    "infinite_close": ("BTC", date(2024, 2, 3), "2024-02-03,100,110,90,inf,5", "close|inf"),
    "high_below_low": ("BTC", date(2024, 2, 4), "2024-02-04,100,80,95,90,5", "high_ge_low"),
    "weekend_equity_row": ("^RUT", date(2024, 2, 3), "2024-02-03,100,110,90,100,5", "not_a_session"),
    # Plausibility (issue 19, items 6 and 8): a close outside its own day's range (JSON `true` read as 1.0
    # below a low of 108), a fat-finger crypto close x1e5 the next bar reverts, a finite extreme value.
    "close_below_low": ("BTC", date(2024, 2, 5), "2024-02-05,110,112,108,1,5", "close_in_range"),
    "fat_finger_crypto_close": ("BTC", date(2024, 2, 6), "2024-02-06,110,11500000,108,11000000,5", "close_jump_confirmed"),
    "extreme_finite_close": ("BTC", date(2024, 2, 7), "2024-02-07,110,112,108,1.7e308,5", "close|max"),
}
FILES = {"BTC": "BTC-USD.csv", "^RUT": "^RUT.csv"}


def series(start: date, end: date, sessions_only: bool, skip: set[date]) -> list[str]:
    """Good bars: every day (crypto) or every XNYS session (a weekday holiday is a bad row too)."""
    rows, d, px = [], start, 100.0
    open_days = set(sessions(start, end).to_list())
    while d <= end:
        if (not sessions_only or d in open_days) and d not in skip:
            px *= 1.001
            rows.append(f"{d},{px:.4f},{px * 1.01:.4f},{px * 0.99:.4f},{px:.4f},1000")
        d += timedelta(days=1)
    return rows


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rowq")
    files = root / "in"
    files.mkdir()
    header = "Date,Open,High,Low,Close,Volume"
    where = {}  # case -> "file line n": the header is line 1, the bad rows come last
    for symbol, name in FILES.items():
        bad = [(case, d, line) for case, (s, d, line, _) in BAD.items() if s == symbol]
        good = series(date(2023, 6, 1), AS_OF, sessions_only=symbol != "BTC", skip={d for _, d, _ in bad})
        (files / name).write_text("\n".join([header, *good, *(line for _, _, line in bad)]) + "\n")
        where |= {case: f"{name} line {len(good) + 2 + i}" for i, (case, _, _) in enumerate(bad)}
    data = root / "data"
    try:
        summary = nightly(source="files", paths=[str(files)], as_of=AS_OF, data_dir=str(data), start=date(2023, 1, 1))
    except Exception as exc:  # the claim under test is that it does not raise
        summary = exc
    return data, summary, where


def test_run_with_bad_rows_publishes(run):
    _, summary, _ = run
    assert not isinstance(summary, Exception), summary
    assert summary.status == "succeeded"


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_bad_row_is_quarantined_naming_symbol_date_file_and_line(run, case):
    data, summary, where = run
    symbol, day, _, rule = BAD[case]
    q = read_table(data / "warehouse.duckdb", "quarantine")
    keys = [json.loads(k) for k in q["key"]]
    hits = q.filter(pl.Series([k.get("symbol") == symbol and k.get("date") == str(day) for k in keys]))
    assert hits.height >= 1, case
    assert (hits["table_name"] == "fact_prices").all() and (hits["run_id"] == summary.run_id).all()
    assert rule in hits["rule"].to_list(), hits["rule"].to_list()
    # Symbol and date are the key; the detail names the file and the line in it.
    assert hits["detail"].str.contains(f"from {where[case]};", literal=True).all(), (where[case], hits["detail"].to_list())


def test_only_the_bad_rows_are_quarantined(run):
    data, _, _ = run
    q = read_table(data / "warehouse.duckdb", "quarantine")
    assert sorted(set(q["key"])) == sorted(json.dumps({"symbol": s, "date": str(d)}) for s, d, _, _ in BAD.values())


def test_derived_indices_never_see_the_implausible_bars(run):
    data, _, _ = run
    prices = read_table(data / "warehouse.duckdb", "fact_prices")
    derived = prices.filter(pl.col("source") == "derived").sort("symbol", "date")
    assert derived.height, "the run builds crypto indices from BTC"
    moves = derived.select((pl.col("close") / pl.col("close").shift(1).over("symbol")).log().abs().max()).item()
    assert moves < 1.0, f"a derived index moved x{moves:.1f} (log) in a day"


def test_bad_rows_stay_out_of_prices_and_good_rows_stay_in(run):
    data, _, _ = run
    prices = read_table(data / "warehouse.duckdb", "fact_prices")
    for symbol, day, _, _ in BAD.values():
        assert prices.filter((pl.col("symbol") == symbol) & (pl.col("date") == day)).is_empty()
    assert prices.filter(pl.col("symbol") == "BTC").height > 250
