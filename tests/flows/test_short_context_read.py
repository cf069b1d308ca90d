"""A next day whose bars all landed as a delta screens only a few days of the lake as its context
(``flows.rebuild_plan.lake_read_plan``, ``Settings.lake_context_days``): the first changed date
is known to the day, and the year files covering its context are read. Every bar's verdict and
every table still equal a full rebuild's: with a bad bar right at the short context's start, a
symbol with one clean bar in it, a withdrawal, a revision of an old bar (the plan widens to its
year) and a new symbol."""

from __future__ import annotations

import re
from datetime import date, timedelta

import polars as pl
import pytest

from flows.settings import Settings, get_settings
from tests.flows.test_bounded_lake_read import runs  # noqa: F401  (a fixture)
from tests.flows.test_incremental_run import assert_same_tables
from tests.warehouse.test_integrity import D1, D2, full_rebuild, run, save, write_inputs

pytestmark = pytest.mark.usefixtures("prefect_harness")

DAYS = Settings().lake_context_days
CHANGED = D1 + timedelta(days=1)  # the delta's first bar: the coins' next day
CONTEXT = CHANGED - timedelta(days=DAYS)


def line(day: date, px: float) -> str:
    return f"{day},{px:.6f},{px * 1.01:.6f},{px * 0.99:.6f},{px:.6f},1000"


def spike(rows: dict, symbol: str, day: date) -> None:
    """``symbol``'s bar on ``day`` x10, reverted by the next one: quarantined by the jump rules."""
    px = float(rows[symbol][day].split(",")[4]) * 10
    rows[symbol][day] = line(day, px)


def first_night(folder, data, rows) -> None:
    for symbol, by_date in rows.items():
        save(folder, symbol, {d: r for d, r in by_date.items() if d <= D1})
    assert run(folder, data, D1).status == "succeeded"


def keys(quarantine: pl.DataFrame) -> list[tuple[str, str]]:
    """The screen's quarantine rows by key and rule, in order (the details name CSV lines, which
    a full rebuild of edited files numbers anew)."""
    return list(quarantine.select("key", "rule").iter_rows())


def next_night_equals_a_full_rebuild(folder, data, tmp_path, built, skip: tuple[str, ...] = ()) -> str:
    second = run(folder, data, D2)
    assert second.status == "succeeded"
    bounded = built[-1]
    assert_same_tables(data, full_rebuild(folder, tmp_path), skip)
    assert keys(bounded.screened) == keys(built[-1].screened)
    assert bounded.incremental_from is not None or not bounded.lake_read.startswith("read ")
    return bounded.lake_read


def test_a_delta_night_screens_a_few_days_of_context_and_equals_a_full_rebuild(tmp_path, runs):  # noqa: F811
    built, reads = runs
    folder, data = tmp_path / "in", tmp_path / "data"
    rows = write_inputs(folder)
    # Bad bars the published run quarantined, just before and well inside the short context.
    spike(rows, "ETH", CONTEXT - timedelta(days=1))
    spike(rows, "BTC", CONTEXT + timedelta(days=3))
    first_night(folder, data, rows)
    for symbol, by_date in rows.items():
        save(folder, symbol, by_date)
    reads.clear()
    told = next_night_equals_a_full_rebuild(folder, data, tmp_path, built)
    assert f"screened from {CONTEXT}; nothing landed or withdrawn before {CHANGED}" in told, told
    # The coins' 2024 files (the context's year), the indices whole.
    coins = [p for p in reads[0] if "%5E" not in p]
    assert coins and {p.rsplit("/", 1)[1] for p in coins} == {"2024.parquet"}


def test_a_bad_bar_at_the_short_contexts_start_widens_the_context_to_the_year(tmp_path, runs):  # noqa: F811
    """The spike on the context's first day has no earlier bar there: that screen keeps it, the
    whole one did not (``merge_published``); the run screens the year before instead."""
    built, _ = runs
    folder, data = tmp_path / "in", tmp_path / "data"
    rows = write_inputs(folder)
    spike(rows, "BTC", CONTEXT)
    first_night(folder, data, rows)
    for symbol, by_date in rows.items():
        save(folder, symbol, by_date)
    told = next_night_equals_a_full_rebuild(folder, data, tmp_path, built)
    assert f"screened from 2023-01-01; nothing landed or withdrawn before {CHANGED}" in told, told
    assert any('"BTC"' in k and str(CONTEXT) in k for k, _ in keys(built[-1].screened))


def test_a_symbol_with_one_clean_bar_in_the_short_context_widens_it(tmp_path, runs, monkeypatch, request):  # noqa: F811
    built, _ = runs
    monkeypatch.setenv("XASSET_LAKE_CONTEXT_DAYS", "3")
    get_settings.cache_clear()
    monkeypatch.setattr(get_settings, "cache_clear", get_settings.cache_clear)  # undone after: cleared again
    request.addfinalizer(get_settings.cache_clear)
    folder, data = tmp_path / "in", tmp_path / "data"
    rows = write_inputs(folder)
    # Of ETH's three bars in the context's days, two break a row rule (high < low): one clean bar.
    for day in (CHANGED - timedelta(days=3), CHANGED - timedelta(days=2)):
        px = float(rows["ETH"][day].split(",")[4])
        rows["ETH"][day] = f"{day},{px:.6f},{px * 0.99:.6f},{px * 1.01:.6f},{px:.6f},1000"
    first_night(folder, data, rows)
    for symbol, by_date in rows.items():
        save(folder, symbol, by_date)
    # ETH's last return before the published as-of is days before it (a gap at the seam): the
    # spillover marts' rows of the gap's sessions, published only once ETH resumes, equal too.
    told = next_night_equals_a_full_rebuild(folder, data, tmp_path, built)
    assert "screened from 2023-01-01" in told, told
    assert [r for k, r in keys(built[-1].screened) if '"ETH"' in k].count("high_ge_low") == 2


def test_a_withdrawal_in_the_short_context_and_a_new_symbol_equal_a_full_rebuild(tmp_path, runs):  # noqa: F811
    """A row deleted from its file (withdrawn: its year file is rewritten, so the change counts from
    1 January) and a coin listed on the next day (a new year file: from its year too)."""
    built, _ = runs
    folder, data = tmp_path / "in", tmp_path / "data"
    rows = write_inputs(folder)
    sol = rows["SOL"]
    rows["SOL"] = {}
    (folder / "SOL-USD.csv").unlink()
    first_night(folder, data, {s: r for s, r in rows.items() if s != "SOL"})
    del rows["BTC"][D1 - timedelta(days=2)]
    rows["SOL"] = {d: r for d, r in sol.items() if d > D1}
    for symbol, by_date in rows.items():
        save(folder, symbol, by_date)
    told = next_night_equals_a_full_rebuild(folder, data, tmp_path, built)
    assert "nothing landed or withdrawn before 2024-01-01" in told, told


def test_a_revision_of_an_old_bar_widens_the_plan_to_its_year(tmp_path, runs):  # noqa: F811
    """Not an append: the revised bar's year file is rewritten (the deltas folded first), and the
    run reads from the year before it, though every other bar landed as a night's append would."""
    built, _ = runs
    folder, data = tmp_path / "in", tmp_path / "data"
    rows = write_inputs(folder)
    first_night(folder, data, rows)
    old = date(2023, 6, 6)
    px = float(rows["BTC"][old].split(",")[4]) * 1.01
    rows["BTC"][old] = line(old, px)
    for symbol, by_date in rows.items():
        save(folder, symbol, by_date)
    told = next_night_equals_a_full_rebuild(folder, data, tmp_path, built)
    assert re.search(r"nothing landed or withdrawn before 2023-01-01", told), told
    assert f"screened from {date(2023, 1, 1) - timedelta(days=DAYS)}" in told, told


def test_the_first_changed_date_is_the_newer_deltas_first_unless_the_year_file_was_written():
    from flows.rebuild_plan import first_changed_date

    listed, previous = 100, date(2024, 3, 4)
    files = pl.DataFrame({
        "symbol": ["A", "A", "B", "C"], "year": [2023, 2024, 2024, 2024],
        "ctime_ns": [50, 120, 130, 90], "file_ctime_ns": [50, 90, 130, 90],
    }, schema_overrides={"year": pl.Int32})
    deltas = pl.DataFrame({
        "symbol": ["A", "A", "B", "C"], "year": [2024] * 4,
        "first": [date(2024, 3, 1), date(2024, 3, 5), date(2024, 3, 5), date(2024, 2, 27)],
        "ctime_ns": [80, 120, 130, 90],
    }, schema_overrides={"year": pl.Int32})
    # B's year file was written since the listing: from 1 January.
    assert first_changed_date(files, deltas, listed, previous) == date(2024, 1, 1)
    # Without B: A's newer delta (not its older one, nor C's, read by the published run).
    assert first_changed_date(files.filter(pl.col("symbol") != "B"), deltas, listed, previous) == date(2024, 3, 5)
    # Later than the day after the published as-of: that day.
    assert first_changed_date(files.filter(pl.col("symbol") != "B"), deltas, listed, date(2024, 3, 1)) == date(2024, 3, 2)
    # A changed (symbol, year) no newer delta explains (a listing without ``file_ctime_ns``, or
    # no delta found): from 1 January.
    assert first_changed_date(files.filter(pl.col("symbol") == "A"), deltas.head(1), listed, previous) == date(2024, 1, 1)
    assert first_changed_date(files.drop("file_ctime_ns"), deltas, listed, previous) == date(2024, 1, 1)
    assert first_changed_date(files.filter(pl.col("symbol") == "C"), deltas, listed, previous) == date(2024, 3, 5)
