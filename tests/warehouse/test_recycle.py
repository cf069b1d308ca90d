"""A next day's load recycles the file of the run before the published one instead of copying the
published file (warehouse.build.recycle), and the result equals a full build all the same; a reader
holding that file, a file changed since, or a crash mid-way make the load copy instead."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from warehouse import build as build_module
from warehouse.build import Loaded, build_database, load_database
from contracts.tables import TABLES
from tests.warehouse.test_incremental_load import (
    assert_same_warehouse, change_from, fingerprint, incremental_change, tails,
)

WAREHOUSE = "warehouse.duckdb"


class Runs:
    """Run directories as warehouse.snapshots lays them out: each run loads into ``.tmp-<id>``,
    renamed to ``<id>`` when it publishes; the published file is the last run's."""

    def __init__(self, root: Path, frames: dict[str, pl.DataFrame]):
        self.root, self.ids = root, []
        self.publish("r0", lambda staged: load_database(staged, frames))

    @property
    def published(self) -> Path:
        return self.root / self.ids[-1] / WAREHOUSE

    def publish(self, run_id: str, write) -> Loaded:
        staging = self.root / f".tmp-{run_id}"
        staging.mkdir(parents=True)
        loaded = write(staging / WAREHOUSE)
        os.rename(staging, self.root / run_id)
        self.ids.append(run_id)
        return loaded

    def night(self, run_id: str, frames: dict[str, pl.DataFrame], unchanged_before: dict[str, date]) -> Loaded:
        published = self.published
        return self.publish(run_id, lambda staged: load_database(
            staged, tails(frames, unchanged_before), published=published, unchanged_before=unchanged_before,
            recycle_previous=True, compact_above=100,  # small tables, big changes: no compaction here
        ))


def full(tmp_path: Path, frames: dict[str, pl.DataFrame], name: str) -> Path:
    path = tmp_path / f"full-{name}.duckdb"
    build_database(path, frames)
    return path


@pytest.fixture
def carry_all(monkeypatch):
    # Small tables: any share of rows may be carried (the share rule has its own test).
    monkeypatch.setattr(build_module, "RECYCLE_MAX_CARRIED", 1.0)


def test_nights_that_recycle_the_run_before_equal_a_full_build(tmp_path, tables, carry_all):
    runs, frames = Runs(tmp_path / ".runs", tables), tables
    wholes_now_tails = 0
    previous: dict[str, date] = {}
    for night, seed in enumerate((21, 22, 23, 24, 25), start=1):
        frames, unchanged_before = incremental_change(frames, seed)
        # A table the published run replaced whole that this run hands as a tail: its rows
        # before the day come from the published file.
        wholes_now_tails += len(set(unchanged_before) - set(previous))
        loaded = runs.night(f"r{night}", frames, unchanged_before)
        assert loaded.full_because is None
        if night == 1:  # the published file was built whole: nothing to recycle
            assert loaded.recycled_from is None and loaded.not_recycled
        else:
            assert loaded.recycled_from == runs.ids[-3], loaded.not_recycled
            assert not os.path.lexists(runs.root / runs.ids[-3] / WAREHOUSE), "the recycled file moved"
        assert loaded.counts == {n: frames.get(n, pl.DataFrame()).height for n in TABLES}
        assert_same_warehouse(runs.published, full(tmp_path, frames, str(night)))
        previous = unchanged_before
    assert wholes_now_tails, "no night handed as a tail a table the night before replaced whole"


def test_a_revision_night_and_one_after_it_recycle_and_equal_a_full_build(tmp_path, tables, carry_all):
    """A night replacing from further back than the published run (a restated bar), then a normal one
    over the file of that revision's base: each table's rows go from the earlier of the two days."""
    runs, frames = Runs(tmp_path / ".runs", tables), tables
    dated = [n for n in TABLES if TABLES[n].date_column and n in frames and not frames[n].is_empty()]

    def from_day(quantile: float) -> dict[str, date]:
        out = {}
        for n in dated:
            days = frames[n][TABLES[n].date_column].drop_nulls().unique().sort()
            out[n] = days[int(quantile * (days.len() - 1))]
        return out

    for night, quantile in enumerate((0.95, 0.9, 0.3, 0.97, 0.99), start=1):
        unchanged_before = from_day(quantile)
        rng = random.Random(night)
        frames = {n: change_from(n, f, unchanged_before[n], rng) if n in unchanged_before else f
                  for n, f in frames.items()}
        loaded = runs.night(f"r{night}", frames, unchanged_before)
        assert loaded.full_because is None
        assert (loaded.recycled_from is not None) == (night >= 2), loaded.not_recycled
        assert_same_warehouse(runs.published, full(tmp_path, frames, str(night)))


READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
query = "SELECT count(*), sum(close), max(date) FROM fact_prices"
print(con.execute(query).fetchone(), flush=True)
sys.stdin.readline()
print(con.execute(query).fetchone(), flush=True)
"""


@pytest.mark.process
def test_a_reader_in_another_process_keeps_its_snapshot_and_the_load_copies(tmp_path, tables, carry_all):
    runs, frames = Runs(tmp_path / ".runs", tables), tables
    for night, seed in ((1, 31), (2, 32)):
        frames, unchanged_before = incremental_change(frames, seed)
        runs.night(f"r{night}", frames, unchanged_before)
    # r2's file was recycled from r0's; r1's is the base the next night would recycle.
    base = runs.root / "r1" / WAREHOUSE
    before = fingerprint(base)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(base)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        seen = reader.stdout.readline()
        assert seen.startswith("(")
        frames, unchanged_before = incremental_change(frames, 33)
        loaded = runs.night("r3", frames, unchanged_before)
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline() == seen, "the reader saw the file change under it"
    finally:
        reader.stdin.close()
        reader.wait(timeout=30)
    assert reader.returncode == 0
    assert loaded.full_because is None and loaded.recycled_from is None
    assert "open in another process" in loaded.not_recycled
    # The moved name went (the reader kept its inode); the run copied the published file instead.
    assert not os.path.lexists(base)
    assert before[0] != fingerprint(runs.published)[0]
    assert_same_warehouse(runs.published, full(tmp_path, frames, "3"))
    # The night after recycles again (r2's file, untouched).
    frames, unchanged_before = incremental_change(frames, 34)
    loaded = runs.night("r4", frames, unchanged_before)
    assert loaded.recycled_from == "r2"
    assert_same_warehouse(runs.published, full(tmp_path, frames, "4"))


@pytest.mark.parametrize("changed", ["r0", "r1"])
def test_a_file_changed_since_its_run_wrote_it_is_not_recycled(tmp_path, tables, carry_all, changed):
    """Someone wrote into the file to recycle (r0) or into the published one (r1) by hand."""
    runs, frames = Runs(tmp_path / ".runs", tables), tables
    frames, unchanged_before = incremental_change(frames, 41)
    runs.night("r1", frames, unchanged_before)
    con = duckdb.connect(str(runs.root / changed / WAREHOUSE))
    con.execute("CREATE TABLE scratch AS SELECT 1 AS x")  # written and gone: its tables are as they were
    con.execute("CHECKPOINT")
    con.execute("DROP TABLE scratch")
    con.close()
    frames, unchanged_before = incremental_change(frames, 42)
    loaded = runs.night("r2", frames, unchanged_before)
    assert loaded.recycled_from is None and "changed since" in loaded.not_recycled
    assert_same_warehouse(runs.published, full(tmp_path, frames, "2"))


def test_a_recycle_carrying_many_rows_copies_instead(tmp_path, tables):
    runs, frames = Runs(tmp_path / ".runs", tables), tables
    # fact_returns named, fact_prices not: r1 replaced fact_prices whole over r0's file.
    runs.night("r1", frames, {"fact_returns": frames["fact_returns"][TABLES["fact_returns"].date_column].max()})
    day = frames["fact_prices"]["date"].max()
    loaded = runs.night("r2", frames, {"fact_prices": day})
    # fact_prices before its day would all come from r1's file: the copy is cheaper.
    assert loaded.recycled_from is None and "would be carried over" in loaded.not_recycled
    assert_same_warehouse(runs.published, full(tmp_path, frames, "2"))


def test_a_crash_mid_recycle_publishes_nothing_and_the_next_load_copies(tmp_path, tables, carry_all, monkeypatch):
    runs, frames = Runs(tmp_path / ".runs", tables), tables
    frames, unchanged_before = incremental_change(frames, 51)
    runs.night("r1", frames, unchanged_before)
    published = fingerprint(runs.published)
    real = build_module.replace_tail

    def crash(con, table, *args):
        real(con, table, *args)
        if table.name == "fact_prices":
            raise RuntimeError("killed mid-recycle")

    monkeypatch.setattr(build_module, "replace_tail", crash)
    new, new_unchanged = incremental_change(frames, 52)
    with pytest.raises(RuntimeError, match="mid-recycle"):
        runs.night("r2", new, new_unchanged)
    assert fingerprint(runs.published) == published
    assert not os.listdir(runs.root / ".tmp-r2"), "the failed load left its file"
    os.rmdir(runs.root / ".tmp-r2")  # what the run lock's clean-up does
    monkeypatch.setattr(build_module, "replace_tail", real)
    loaded = runs.night("r2", new, new_unchanged)
    assert loaded.full_because is None and loaded.recycled_from is None and "gone" in loaded.not_recycled
    assert_same_warehouse(runs.published, full(tmp_path, new, "2"))


def test_an_unreadable_record_of_the_files_copies_instead(tmp_path, tables, carry_all):
    runs, frames = Runs(tmp_path / ".runs", tables), tables
    frames, unchanged_before = incremental_change(frames, 61)
    runs.night("r1", frames, unchanged_before)
    record = runs.root / "r1" / (WAREHOUSE + build_module.LINEAGE_SUFFIX)
    state = json.loads(record.read_text())
    record.write_text(json.dumps(state | {"unchanged_before": {"fact_prices": "not a date"}}))
    frames, unchanged_before = incremental_change(frames, 62)
    loaded = runs.night("r2", frames, unchanged_before)
    assert loaded.recycled_from is None and "could not be compared" in loaded.not_recycled
    assert os.path.exists(runs.root / "r0" / WAREHOUSE), "a doubt leaves the file where it was"
    assert_same_warehouse(runs.published, full(tmp_path, frames, "2"))
