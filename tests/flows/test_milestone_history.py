"""Issue 14 item 2 through the nightly flow: an index's whole file feeds its highs.

A files run starting at the default history start (2015-01-02) lands the
index's earlier bars too; the milestones look back over them, while
fact_prices and every other mart still start at the history start.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from flows.nightly import nightly

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _weekdays(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1) if (start + timedelta(days=i)).weekday() < 5]


def _csv(path: Path, days: list[date], closes: list[float]) -> None:
    lines = ["Date,Open,High,Low,Close,Volume"] + [f"{d},{c},{c},{c},{c},1000" for d, c in zip(days, closes, strict=True)]
    path.write_text("\n".join(lines) + "\n")


def test_index_highs_use_the_whole_file_other_marts_start_at_history_start(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    # ^RUT peaks at 150 in 2013, then trades 100-120 from 2015: no 2015 close
    # is an all-time high, though each would be one of a 2015-only history.
    old = _weekdays(date(2012, 1, 3), date(2014, 12, 31))
    new = _weekdays(date(2015, 1, 2), date(2015, 6, 30))
    rut = [100.0 + 50.0 * (i == 300) for i in range(len(old))] + [100.0 + 20.0 * i / len(new) for i in range(len(new))]
    _csv(folder / "^RUT.csv", old + new, rut)
    _csv(folder / "IWM.csv", old + new, [50.0 + 0.01 * i for i in range(len(old) + len(new))])
    data = tmp_path / "data"
    summary = nightly(source="files", paths=[str(folder)], data_dir=str(data), as_of=date(2015, 6, 30))
    assert summary.status == "succeeded"
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        ms = con.sql("SELECT * FROM mart_market_milestones WHERE symbol = '^RUT' ORDER BY date").pl()
        px = con.sql("SELECT symbol, min(date) AS first FROM fact_prices GROUP BY 1").pl()
        classes = dict(con.sql("SELECT symbol, asset_class FROM dim_asset").fetchall())
    finally:
        con.close()
    assert classes["IWM"] == "etf" and classes["^RUT"] == "index"
    assert dict(px.iter_rows()) == {"^RUT": new[0], "IWM": new[0]}
    assert ms["date"].min() == new[0]
    assert ms["ath_since"].unique().to_list() == [old[0]]
    assert ms["ath_close"].min() == pytest.approx(150.0)
    assert not ms["is_new_ath"].any()
