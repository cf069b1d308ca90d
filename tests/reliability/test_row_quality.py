"""Row-level bad data from the files source: the run publishes, and each bad row is
a ``quarantine`` row naming its symbol, date, rule and source file; good rows of
the same file are kept.

Written against the quarantine the warehouse engineer is adding (QUARANTINE in
warehouse/tables.py, rules in warehouse/quality.py); until nightly applies it,
a bad price fails the audit and nothing is published, hence the xfails.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import polars as pl
import pytest

from flows.nightly import nightly
from reliability_harness import read_table

pytestmark = pytest.mark.usefixtures("prefect_harness")

AS_OF = date(2024, 3, 28)
PENDING = pytest.mark.xfail(
    strict=True,
    reason="bad bars are quarantined naming symbol, date and rule, but (1) not the source file: the lake "
    "keeps no file provenance (flows/sources/files.py + warehouse/lake.py), and (2) an equity row dated "
    "off the exchange calendar (a weekend) is not a quarantine rule yet: it drops out of returns but "
    "stays in fact_prices (warehouse/quality.py screen)",
)
# (symbol, date, what is wrong, the CSV line)
BAD = {
    "zero_close": ("BTC", date(2024, 2, 1), "2024-02-01,100,110,90,0,5"),
    "negative_close": ("BTC", date(2024, 2, 2), "2024-02-02,100,110,90,-3,5"),
    "infinite_close": ("BTC", date(2024, 2, 3), "2024-02-03,100,110,90,inf,5"),
    "high_below_low": ("BTC", date(2024, 2, 4), "2024-02-04,100,80,95,90,5"),
    "weekend_equity_row": ("^RUT", date(2024, 2, 3), "2024-02-03,100,110,90,100,5"),
}


def series(start: date, end: date, weekdays_only: bool, skip: set[date]) -> list[str]:
    rows, d, px = [], start, 100.0
    while d <= end:
        if (not weekdays_only or d.weekday() < 5) and d not in skip:
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
    for symbol, name in (("BTC", "BTC-USD.csv"), ("^RUT", "^RUT.csv")):
        bad = [(d, line) for s, d, line in BAD.values() if s == symbol]
        good = series(date(2023, 6, 1), AS_OF, weekdays_only=symbol != "BTC", skip={d for d, _ in bad})
        (files / name).write_text("\n".join([header, *good, *(line for _, line in bad)]) + "\n")
    data = root / "data"
    try:
        summary = nightly(source="files", paths=[str(files)], as_of=AS_OF, data_dir=str(data), start=date(2023, 1, 1))
    except Exception as exc:  # the claim under test is that it does not raise
        summary = exc
    return data, summary


def test_run_with_bad_rows_publishes(run):
    _, summary = run
    assert not isinstance(summary, Exception), summary
    assert summary.status == "succeeded"


@PENDING
@pytest.mark.parametrize("case", sorted(BAD))
def test_each_bad_row_is_quarantined_naming_symbol_date_and_file(run, case):
    data, _ = run
    symbol, day, _ = BAD[case]
    q = read_table(data / "warehouse.duckdb", "quarantine")
    keys = [json.loads(k) for k in q["key"]]
    hits = q.filter(pl.Series([k.get("symbol") == symbol and k.get("date") == str(day) for k in keys]))
    assert hits.height >= 1, case
    assert (hits["table_name"] == "fact_prices").all()
    file = "BTC-USD.csv" if symbol == "BTC" else "^RUT.csv"
    assert hits["detail"].str.contains(file, literal=True).any(), hits["detail"].to_list()


@PENDING
def test_bad_rows_stay_out_of_prices_and_good_rows_stay_in(run):
    data, _ = run
    prices = read_table(data / "warehouse.duckdb", "fact_prices")
    for symbol, day, _ in BAD.values():
        assert prices.filter((pl.col("symbol") == symbol) & (pl.col("date") == day)).is_empty()
    assert prices.filter(pl.col("symbol") == "BTC").height > 250
