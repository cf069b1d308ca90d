"""What a files run publishes when its input changes under it, or its published warehouse is unusable
(issue 19, items 1, 2 and 7).

Each test publishes a run from small CSV files, changes the input or the published state, runs again
and checks the published state before and after, and that every table equals a full rebuild from the
same input in a fresh data directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from flows.calendar import sessions
from flows.nightly import nightly
from flows.rebuild_plan import UNREADABLE_WAREHOUSE
from tests.flows.test_incremental_run import assert_same_tables
from warehouse.lake import Lake
from warehouse.query import read_tables

pytestmark = pytest.mark.usefixtures("prefect_harness")

START, D1, D2 = date(2021, 6, 1), date(2024, 2, 29), date(2024, 3, 28)
HEADER = "Date,Open,High,Low,Close,Volume"
# symbol -> (file, trades only on sessions, starting price)
FILES = {"^RUT": ("^RUT.csv", True, 2000.0), "^GSPC": ("^GSPC.csv", True, 4000.0),
         "BTC": ("BTC-USD.csv", False, 30000.0), "ETH": ("ETH-USD.csv", False, 2000.0),
         "SOL": ("SOL-USD.csv", False, 40.0)}


def write_inputs(folder: Path) -> dict[str, dict[date, str]]:
    """Deterministic bars up to D2, one CSV per symbol; returns each file's rows by date."""
    folder.mkdir(parents=True, exist_ok=True)
    open_days = set(sessions(START, D2).to_list())
    out = {}
    for k, (symbol, (name, on_sessions, px)) in enumerate(FILES.items()):
        rows, d, i = {}, START, 0
        while d <= D2:
            if not on_sessions or d in open_days:
                i += 1
                px *= 1 + 0.01 * (((i * (k + 3)) % 7) - 3) / 3
                rows[d] = f"{d},{px:.6f},{px * 1.01:.6f},{px * 0.99:.6f},{px:.6f},{1000 + i}"
            d += timedelta(days=1)
        out[symbol] = rows
        save(folder, symbol, rows)
    return out


def save(folder: Path, symbol: str, rows: dict[date, str]) -> None:
    (folder / FILES[symbol][0]).write_text("\n".join([HEADER, *rows.values()]) + "\n")


def run(folder: Path, data: Path, as_of: date):
    return nightly(source="files", paths=[str(folder)], start=START, as_of=as_of, data_dir=str(data))


def full_rebuild(folder: Path, tmp_path: Path, as_of: date = D2) -> Path:
    fresh = tmp_path / "fresh"
    assert run(folder, fresh, as_of).incremental_from is None
    return fresh


def published(data: Path, name: str) -> pl.DataFrame:
    return read_tables(data / "warehouse.duckdb", [name])[name]


def bar(data: Path, symbol: str, day: date) -> pl.DataFrame:
    prices = published(data, "fact_prices")
    return prices.filter((pl.col("symbol") == symbol) & (pl.col("date") == day))


# Revisions of published bars into values the contract quarantines: (symbol, date, new CSV row, rule).
REVISIONS = [
    ("BTC", date(2024, 2, 12), "2024-02-12,100,110,90,-5,7", "close|min_exclusive"),
    ("ETH", date(2024, 2, 13), "2024-02-13,0,110,90,100,7", "open|min_exclusive"),
    ("SOL", date(2024, 2, 14), "2024-02-14,100,80,95,90,7", "high_ge_low"),
    ("^RUT", date(2024, 2, 15), "2024-02-15,100,110,90,100,-7", "volume|min"),
]


def test_a_published_bar_revised_into_a_quarantined_value_is_withdrawn_and_equals_a_full_rebuild(tmp_path):
    folder, data = tmp_path / "in", tmp_path / "data"
    rows = write_inputs(folder)
    run(folder, data, D1)
    for symbol, day, _, _ in REVISIONS:
        assert bar(data, symbol, day).height == 1, "published before the revision"
    for symbol, day, line, _ in REVISIONS:
        rows[symbol][day] = line
        save(folder, symbol, rows[symbol])
    second = run(folder, data, D2)
    # The rebuild starts at the first revised bar, not after the published as-of.
    assert second.incremental_from == min(day for _, day, _, _ in REVISIONS)
    quarantine = published(data, "quarantine").filter(pl.col("run_id") == second.run_id)
    for symbol, day, _, rule in REVISIONS:
        assert bar(data, symbol, day).is_empty(), f"{symbol} {day} still published"
        hits = quarantine.filter(pl.col("key") == json.dumps({"symbol": symbol, "date": str(day)}))
        assert rule in hits["rule"].to_list()
        assert hits["detail"].str.contains(f"from {FILES[symbol][0]} line ", literal=True).all()
    assert_same_tables(data, full_rebuild(folder, tmp_path))


def test_deleted_rows_and_a_removed_file_are_withdrawn_with_a_warning_and_a_record(tmp_path):
    folder, data = tmp_path / "in", tmp_path / "data"
    rows = write_inputs(folder)
    first = run(folder, data, D2)
    wrong_day = date(2024, 1, 10)
    assert bar(data, "BTC", wrong_day).height == 1
    assert published(data, "fact_prices").filter(pl.col("symbol") == "SOL").height > 900
    btc_line = list(rows["BTC"]).index(wrong_day) + 2  # the header is line 1
    # A wrong row deleted from its file, and a whole file removed.
    del rows["BTC"][wrong_day]
    save(folder, "BTC", rows["BTC"])
    (folder / "SOL-USD.csv").unlink()
    second = run(folder, data, D2)
    assert second.status == "succeeded" and second.run_id != first.run_id
    assert bar(data, "BTC", wrong_day).is_empty()
    assert published(data, "fact_prices").filter(pl.col("symbol") == "SOL").is_empty()
    assert "SOL" not in published(data, "dim_asset")["symbol"].to_list()
    (warning,) = [w for w in second.warnings if w.startswith("withdrawn ")]
    assert "BTC (1 bar(s) from 2024-01-10, was BTC-USD.csv line" in warning
    assert "SOL (" in warning and "no file holds it any more" in warning
    quarantine = published(data, "quarantine").filter(
        (pl.col("run_id") == second.run_id) & (pl.col("rule") == "withdrawn")
    )
    btc = quarantine.filter(pl.col("key") == json.dumps({"symbol": "BTC", "date": str(wrong_day)}))
    assert btc["detail"].str.contains(f"was from BTC-USD.csv line {btc_line};", literal=True).all(), btc["detail"]
    assert quarantine.filter(pl.col("key").str.contains('"SOL"')).height == len(rows["SOL"])
    ingest = published(data, "ingest_log").filter(pl.col("run_id") == second.run_id)
    assert ingest.filter(pl.col("symbol") == "SOL")["status"].to_list() == ["withdrawn"]
    # Nothing is deleted: the lake keeps what it withdrew.
    kept = Lake(data / "lake", "files").read_withdrawn()
    assert kept.filter(pl.col("symbol") == "SOL").height == len(rows["SOL"])
    assert_same_tables(data, full_rebuild(folder, tmp_path))
    # Putting the file back brings the symbol back.
    save(folder, "SOL", rows["SOL"])
    third = run(folder, data, D2)
    assert third.status == "succeeded"
    assert published(data, "fact_prices").filter(pl.col("symbol") == "SOL").height == len(rows["SOL"])


def test_a_corrupt_published_warehouse_falls_back_to_a_full_rebuild_naming_it(tmp_path):
    folder, data = tmp_path / "in", tmp_path / "data"
    write_inputs(folder)
    first = run(folder, data, D1)
    target = (data / "warehouse.duckdb").resolve()
    target.write_bytes(b"this is not a DuckDB file\n" * 100)  # e.g. overwritten through the link
    second = run(folder, data, D2)
    assert second.status == "succeeded" and second.incremental_from is None
    (warning,) = [w for w in second.warnings if w.startswith(UNREADABLE_WAREHOUSE)]
    assert str(data / "warehouse.duckdb") in warning and "rebuilding every table from the lake" in warning
    assert (data / "current").resolve().name == second.run_id != first.run_id
    assert_same_tables(data, full_rebuild(folder, tmp_path))


def test_a_warehouse_held_open_read_write_by_another_process_does_not_freeze_the_run(tmp_path):
    folder, data = tmp_path / "in", tmp_path / "data"
    write_inputs(folder)
    run(folder, data, D1)
    held = str((data / "warehouse.duckdb").resolve())
    # A notebook's `duckdb.connect(path)`: read-write, an exclusive lock on the file.
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({held!r}); print('open', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(duckdb.IOException):
            duckdb.connect(held, read_only=True)
        second = run(folder, data, D2)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert second.status == "succeeded" and second.incremental_from is None
    (warning,) = [w for w in second.warnings if w.startswith(UNREADABLE_WAREHOUSE)]
    # warehouse.query words DuckDB's "Could not set lock" for the operator.
    assert str(data / "warehouse.duckdb") in warning and "another process holds it open for writing" in warning
    assert (data / "current").resolve().name == second.run_id
    assert_same_tables(data, full_rebuild(folder, tmp_path))


def test_a_jump_held_on_the_last_day_is_published_once_the_next_bar_confirms_it(tmp_path):
    """The jump rule compares a bar with its next one: a real x10 move on the as-of day is held out,
    and the next run, whose new bar confirms it, publishes it and equals a full rebuild."""
    folder, data = tmp_path / "in", tmp_path / "data"
    rows = write_inputs(folder)
    day = D1  # a Thursday: a crypto bar every day
    base = float(rows["SOL"][day].split(",")[4])
    for i, d in enumerate(d for d in rows["SOL"] if d >= day):
        px = base * 10 * (1 + 0.001 * i)
        rows["SOL"][d] = f"{d},{px:.6f},{px * 1.01:.6f},{px * 0.99:.6f},{px:.6f},1000"
    save(folder, "SOL", rows["SOL"])
    first = run(folder, data, D1)
    held = published(data, "quarantine").filter(pl.col("run_id") == first.run_id)
    assert bar(data, "SOL", day).is_empty(), "an unconfirmed x10 jump is held out"
    assert "close_jump_confirmed" in held.filter(pl.col("key").str.contains('"SOL"'))["rule"].to_list()
    second = run(folder, data, D2)
    assert second.incremental_from == day
    assert bar(data, "SOL", day)["close"].to_list() == [pytest.approx(base * 10)]
    assert_same_tables(data, full_rebuild(folder, tmp_path))


def test_first_published_difference_looks_at_the_touched_range_and_the_bar_before_it():
    from flows.rebuild_plan import first_published_difference

    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(60)]
    bars = pl.DataFrame({"symbol": ["A"] * 60 + ["B"] * 60, "date": days * 2, "close": [1.0] * 120})
    as_of = days[49]
    published_ = bars.filter(pl.col("date") <= as_of)
    nothing = bars.clear().select("symbol", "date")
    new_days = bars.filter(pl.col("date") > as_of).select("symbol", "date")
    # A plain next night: the first new day.
    assert first_published_difference(published_, bars, new_days, as_of) == days[50]
    # The published as-of bar of B is no longer clean (its new next bar reverts it): found, though untouched.
    gone = bars.filter(~((pl.col("symbol") == "B") & (pl.col("date") == as_of)))
    assert first_published_difference(published_, gone, new_days, as_of) == as_of
    # A touched bar deep in history (revised into a quarantined value): found, and the bar before it is compared.
    deep = days[10]
    revised = bars.filter(~((pl.col("symbol") == "A") & (pl.col("date") == deep)))
    touched = pl.concat([new_days, pl.DataFrame({"symbol": ["A"], "date": [deep]})])
    assert first_published_difference(published_, revised, touched, as_of) == deep
    earlier = bars.filter(~((pl.col("symbol") == "A") & (pl.col("date") == days[9])))
    assert first_published_difference(published_, earlier, touched, as_of) == days[9]
    # A symbol new to the lake is compared whole; so is one withdrawn whole (every bar touched).
    assert first_published_difference(published_.filter(pl.col("symbol") == "A"), bars, nothing, as_of) == days[0]
    withdrawn_b = published_.filter(pl.col("symbol") == "B").select("symbol", "date")
    assert first_published_difference(published_, bars.filter(pl.col("symbol") == "A"), withdrawn_b, as_of) == days[0]


def test_the_published_bars_compared_are_read_bounded_from_the_warehouse_and_give_the_same_difference(tmp_path):
    """``published_bars_compared`` reads from a real DuckDB file only the bars
    ``first_published_difference`` looks at (filters in the scan), and the
    difference found from them is the one found from the whole published table."""
    import duckdb

    from flows.rebuild_plan import first_published_difference, published_bars_compared

    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(120)]
    bars = pl.DataFrame({"symbol": ["A"] * 120 + ["B"] * 120, "date": days * 2, "close": [1.0] * 240,
                         "source": ["sample"] * 240})
    as_of = days[109]
    index = pl.DataFrame({"symbol": ["IDX"] * 110, "date": days[:110], "close": [2.0] * 110, "source": ["derived"] * 110})
    # C stopped 60 days before the as-of: a symbol with no bar in the search window is compared whole.
    gone = pl.DataFrame({"symbol": ["C"] * 50, "date": days[:50], "close": [3.0] * 50, "source": ["sample"] * 50})
    published = pl.concat([bars.filter(pl.col("date") <= as_of), gone])
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    con.register("p", pl.concat([published, index]).to_arrow())
    con.execute("CREATE TABLE fact_prices AS SELECT * FROM p")
    con.close()
    reads = []

    def read(where):
        frame = read_tables(path, ["fact_prices"], {"fact_prices": where}).get("fact_prices")
        reads.append(frame.height)
        return frame

    new_days = bars.filter(pl.col("date") > as_of).select("symbol", "date")
    resumed = pl.DataFrame({"symbol": ["C"] * 10, "date": days[110:], "close": [3.0] * 10, "source": ["sample"] * 10})
    deep = days[30]
    cases = [
        (bars, new_days, True),  # a plain next night
        # A deep bar withdrawn: everything from a month before it is compared.
        (bars.filter(~((pl.col("symbol") == "A") & (pl.col("date") == deep))),
         pl.concat([new_days, pl.DataFrame({"symbol": ["A"], "date": [deep]})]), False),
        # C resumes after its gap, and one of its old bars is no longer clean.
        (pl.concat([bars, gone.filter(pl.col("date") != days[5]), resumed]),
         pl.concat([new_days, resumed.select("symbol", "date")]), True),
    ]
    for clean, touched, bounded_read in cases:
        reads.clear()
        bounded = published_bars_compared(read, clean, touched, as_of)
        assert "derived" not in bounded["source"].to_list()
        if bounded_read:
            assert sum(reads) < published.height / 2
        assert first_published_difference(bounded, clean, touched, as_of) == first_published_difference(
            published, clean, touched, as_of)
    assert first_published_difference(bounded, clean, touched, as_of) == days[5], "C is compared whole"
    assert published_bars_compared(lambda where: None, bars, new_days, as_of) is None, "no fact_prices table"


def test_read_tables_filters_in_the_scan_and_names_a_bad_condition(tmp_path):
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t AS SELECT range AS n, CASE WHEN range % 2 = 0 THEN 'even' ELSE 'odd' END AS kind "
                "FROM range(100)")
    con.close()
    got = read_tables(path, ["t", "absent"], {"t": [("kind", "==", "odd"), ("n", ">=", 90)]})
    assert list(got) == ["t"] and got["t"]["n"].to_list() == [91, 93, 95, 97, 99]
    assert read_tables(path, ["t"], {"t": [("n", "in", ())]})["t"].columns == ["n", "kind"]
    assert read_tables(path, ["t"], {"t": [("n", "in", (3, 5)), ("kind", "!=", "even")]})["t"]["n"].to_list() == [3, 5]
    assert read_tables(path, ["t"], {"t": None})["t"].height == 100
    # Sorted in DuckDB on request, strings by their bytes as Polars sorts them ("Z" before "a").
    ordered = read_tables(path, ["t"], {"t": [("n", "<", 6)]}, {"t": ("kind", "n")})["t"]
    assert ordered.select("kind", "n").rows() == [("even", 0), ("even", 2), ("even", 4), ("odd", 1), ("odd", 3), ("odd", 5)]
    mixed = tmp_path / "m.duckdb"
    con = duckdb.connect(str(mixed))
    con.execute("CREATE TABLE s AS SELECT * FROM (VALUES ('a'), ('Z'), ('^R'), ('B')) AS v(symbol)")
    con.close()
    got = read_tables(mixed, ["s"], order={"s": ("symbol",)})["s"]
    assert got.equals(got.sort("symbol"))
    with pytest.raises(ValueError, match="unknown condition operator '~' on column kind"):
        read_tables(path, ["t"], {"t": [("kind", "~", "odd")]})
