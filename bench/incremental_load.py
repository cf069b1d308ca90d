"""Bench stage of the incremental load (issue #16 item 4): ``load_incremental``.

Needs the ``transform`` stage's tables in the work dir. It builds the
warehouse and marts as of ``--nights`` (default 5) days before the tables' last date (a full
build, timed), then adds one day at a time as a nightly run would: each
day copies the previous day's file (``warehouse.build.load_database`` with
``unchanged_before`` = that day for every dated table) and writes only the
changed mart years. Then a full ``build_database`` and ``stage_marts`` of the
last day's tables, timed in the same process, and the ratios. File sizes
after every day show how much DELETE leaves behind (the compaction rule,
``Settings.warehouse_compact_above``). The last day's copy is checked equal
to the full build (row counts and every table's row multiset via a hash).
A second series does the same but replaces the last ``REWRITE_DAYS`` days
every night (``load_incremental_rewrite_90d``), for the file growth.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

# The second series replaces this many days every night (as marts whose recent
# rows change, e.g. the factor IC completing its forward returns), to measure
# what repeated DELETEs leave in the file.
REWRITE_DAYS = 90


def _as_of(tables, cutoff):
    import polars as pl

    from contracts.tables import TABLES

    return {
        name: frame.filter(pl.col(TABLES[name].date_column) <= cutoff) if TABLES[name].date_column else frame
        for name, frame in tables.items()
    }


def _table_digest(path: Path) -> dict[str, tuple]:
    """Per table: row count and an order-free hash of its rows (DuckDB's own hash, summed)."""
    import duckdb

    from contracts.tables import TABLES

    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            name: con.execute(f"SELECT count(*), coalesce(sum(hash(t)), 0) FROM {name} AS t").fetchone()
            for name in TABLES
        }
    finally:
        con.close()


def stage_load_incremental(work: Path, args) -> None:
    _series(work, "load_incremental", 0, args.nights)
    _series(work, f"load_incremental_rewrite_{REWRITE_DAYS}d", REWRITE_DAYS, args.nights)


def _series(work: Path, label: str, lookback: int, nights: int) -> None:
    import polars as pl

    from bench.__main__ import GIB, emit
    from warehouse import marts as mart_files
    from warehouse.build import build_database, copy_file, load_database
    from contracts.tables import TABLES

    tables = {p.stem: pl.read_parquet(p) for p in sorted((work / "tables").glob("*.parquet"))}
    last = tables["fact_prices"]["date"].max()
    root = work / "load_incremental"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()

    def run_dir(k: int) -> Path:
        d = root / f"run{k}"
        d.mkdir()
        return d

    first = last - timedelta(days=nights)
    base = run_dir(0)
    frames = _as_of(tables, first)
    build_database(base / "warehouse.duckdb", frames)
    mart_files.stage_marts(frames, base / "marts", "run0", {"source": "bench"})
    days = []
    for k in range(1, nights + 1):
        day = first + timedelta(days=k)
        frames = _as_of(tables, day)
        rows = sum(f.height for f in frames.values())
        unchanged = {n: day - timedelta(days=lookback) for n in frames if TABLES[n].date_column}
        # What a run hands on (Marts.unchanged_before): a named table's rows from its day only.
        tails = {n: f.filter(pl.col(TABLES[n].date_column).is_null() | (pl.col(TABLES[n].date_column) >= unchanged[n]))
                 if n in unchanged else f for n, f in frames.items()}
        out = run_dir(k)
        # The copy alone (part of load_s), into a scratch file removed at once.
        t, c = time.perf_counter(), time.process_time()
        copy_file(base / "warehouse.duckdb", root / "scratch.duckdb")
        copy_s, copy_cpu = time.perf_counter() - t, time.process_time() - c
        (root / "scratch.duckdb").unlink()
        t, c = time.perf_counter(), time.process_time()
        loaded = load_database(out / "warehouse.duckdb", tails, published=base / "warehouse.duckdb",
                               unchanged_before=unchanged)
        db_s, db_cpu = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        mart_files.stage_marts(tails, out / "marts", f"run{k}", {"source": "bench"}, unchanged, base / "marts")
        marts_s, marts_cpu = time.perf_counter() - t, time.process_time() - c
        days.append({"day": str(day), "load_s": round(db_s, 3), "load_cpu_s": round(db_cpu, 3),
                     "copy_s": round(copy_s, 3), "copy_cpu_s": round(copy_cpu, 3),
                     "marts_s": round(marts_s, 3), "marts_cpu_s": round(marts_cpu, 3),
                     "file_gib": round((out / "warehouse.duckdb").stat().st_size / GIB, 4),
                     "full_because": loaded.full_because, "rows_changed": sum(
                         f.filter(pl.col(TABLES[n].date_column) >= unchanged[n]).height if n in unchanged else f.height
                         for n, f in frames.items())})
        shutil.rmtree(base)  # as snapshots keep two runs
        base = out
    full = root / "full"
    full.mkdir()
    t, c = time.perf_counter(), time.process_time()
    build_database(full / "warehouse.duckdb", frames)
    full_s, full_cpu = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    mart_files.stage_marts(frames, full / "marts", f"run{nights}", {"source": "bench"})
    full_marts_s, full_marts_cpu = time.perf_counter() - t, time.process_time() - c
    full_gib = (full / "warehouse.duckdb").stat().st_size / GIB
    same = _table_digest(base / "warehouse.duckdb") == _table_digest(full / "warehouse.duckdb")
    same_marts = all(
        json.loads(mart_files.manifest_path(base / "marts", n).read_text())["files"]
        == json.loads(mart_files.manifest_path(full / "marts", n).read_text())["files"]
        for n, t in TABLES.items() if t.publish
    )
    last_day = days[-1]
    emit(f"{label}_full_build", full_s, rows, cpu=full_cpu, file_gib=round(full_gib, 4),
         marts_s=round(full_marts_s, 3), marts_cpu_s=round(full_marts_cpu, 3))
    emit(label, last_day["load_s"], last_day["rows_changed"], cpu=last_day["load_cpu_s"],
         marts_s=last_day["marts_s"], days=days,
         wall_ratio_to_full=round(last_day["load_s"] / full_s, 4),
         cpu_ratio_to_full=round(last_day["load_cpu_s"] / full_cpu, 4),
         marts_wall_ratio_to_full=round(last_day["marts_s"] / full_marts_s, 4),
         file_size_ratio_to_full=round(last_day["file_gib"] / full_gib, 3),
         equal_to_full_build=same, same_mart_files=same_marts, loadavg=os.getloadavg())
    shutil.rmtree(root, ignore_errors=True)


STAGES = {"load_incremental": stage_load_incremental}
