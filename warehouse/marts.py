"""Parquet marts for BI tools: one directory per published table.

``write_table`` writes ``<marts>/<table>/`` complete: zstd, statistics on,
content-named part files and nothing else, so every reader scans the
directory as one dataset without a glob (``polars.scan_parquet(dir)`` fails on
any non-Parquet file in it). Its manifest is the sibling
``<marts>/<table>.manifest.json``. It writes into a run's private staging
directory (``warehouse.snapshots``); the run's marts become visible together
with its warehouse when the run is published with one switch.

Large tables are split by year: ``<table>/<YYYY>/part-<hash>.parquet``, each
file holding a ``year`` column (INTEGER). The year is a column in the files,
not a Hive ``year=YYYY`` key in the path, on purpose: readers type a Hive key
each their own way (DuckDB BIGINT, pyarrow int32, Polars Int64, pandas
category), and a file column that is also a Hive key breaks pyarrow and
pandas. A column is typed once, by the writer, for every reader; filters on
``year`` still skip files by their statistics.

An incremental run (``stage_marts`` with ``unchanged_before`` and the
published marts) writes only the years that changed: a partitioned table's
years before the year of its ``unchanged_before`` day hold the same rows as
the published run's, so their content-named files are hard-linked from it
(the published run's directory is left as it is: readers and the run kept
for them still see it whole). The manifest is always written whole.

Such a table's frame holds only its rows from that day on (Marts.unchanged_before);
the changed year's earlier rows are read from the published run's file of that
year (``published_before``), and an unpartitioned table's from its one file.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import polars as pl

from warehouse.files import atomic_write_text, write_parquet_content_named
from warehouse.query import read_tables
from warehouse.snapshots import WAREHOUSE_FILE
from contracts.schema import Table, strictly_increasing
from contracts.tables import TABLES

MANIFEST_SUFFIX = ".manifest.json"
YEAR = "year"
YEAR_TYPE = pl.Int32  # DuckDB INTEGER, Arrow int32
YEAR_DUCKDB_TYPE = "INTEGER"


def manifest_path(marts_dir: Path, table: str) -> Path:
    """``<marts>/<table>.manifest.json``: beside the table's directory, never in it."""
    return Path(marts_dir) / f"{table}{MANIFEST_SUFFIX}"


def year_column(table: Table) -> dict | None:
    """The manifest's entry for a partitioned table's ``year`` column."""
    if not table.partition_year_by:
        return None
    return {
        "name": YEAR,
        "type": YEAR_DUCKDB_TYPE,
        "nullable": False,
        "description": f"Calendar year of {table.partition_year_by}; the files of one year are in <table>/<year>/.",
        "unit": None,
    }


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed: the same bytes by copy
        shutil.copy2(src, dst)


def reusable_years(table: Table, published_dir: Path | None, since: date | None) -> dict[int, list[str]]:
    """Published files of the years before ``since``'s year, by year; empty when none can be reused.

    Only where the published manifest describes exactly the files this run would
    write (same columns, types, descriptions, partitioning) and lists them.
    """
    if since is None or published_dir is None or not table.partition_year_by:
        return {}
    if table.date_column != table.partition_year_by:
        return {}
    manifest = _mart_manifest(table, published_dir)
    if manifest is None:
        return {}
    out: dict[int, list[str]] = {}
    for name in manifest.get("files", []):
        year = _mart_year(name)
        if year is not None and year < since.year:
            out.setdefault(year, []).append(name)
    return out


def _mart_year(name: str) -> int | None:
    """The year of a partitioned mart's file as its manifest lists it (``<year>/part-<hash>.parquet``);
    None for the null date's ``None/`` and an unpartitioned file."""
    head = name.partition("/")[0]
    return int(head) if head.isdigit() else None


def _rows_in(directory: Path, names: list[str]) -> int:
    # From the files' footers: no row is read.
    return pl.scan_parquet([directory / n for n in names]).select(pl.len()).collect().item() if names else 0


def published_before(
    table: Table, published_dir: Path | None, since: date, years: list[int] | None = None,
) -> pl.DataFrame:
    """The published run's rows of ``table`` dated before ``since`` (conformed; a null date is never
    "before"), read from its mart's files of ``years`` only (None: all of them), or, where the
    mart cannot stand for the table (``read_published``' checks), from the published run's
    warehouse beside it with the condition pushed into DuckDB's scan."""
    col = table.date_column
    if published_dir is None:
        raise ValueError(f"{table.name}: the run holds only its rows from {since}, and no published run holds the rest")
    manifest = _mart_manifest(table, published_dir)
    if manifest is not None:
        files = manifest.get("files", [])
        if years is not None and table.partition_year_by:
            files = [f for f in files if _mart_year(f) in years]
        if not files:
            return pl.DataFrame(schema=table.polars_schema)
        frame = pl.scan_parquet([published_dir / table.name / f for f in files]).filter(pl.col(col) < since).collect()
        return table.conform(frame)
    warehouse = published_dir.parent / WAREHOUSE_FILE
    if not warehouse.exists():
        raise ValueError(f"{table.name}: the run holds only its rows from {since}, and the published run "
                         f"{published_dir.parent} has neither its mart nor a warehouse")
    frame = read_tables(warehouse, [table.name], {table.name: ((col, "<", since),)}).get(table.name)
    return table.conform(frame if frame is not None else pl.DataFrame(schema=table.polars_schema))


def _mart_manifest(table: Table, marts_dir: Path) -> dict | None:
    """A published mart's manifest, None when the mart cannot stand for the table (no manifest,
    one describing other columns or partitioning, a listed file missing)."""
    try:
        manifest = json.loads(manifest_path(marts_dir, table.name).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    if manifest.get("schema") != manifest_schema(table) or manifest.get("partitioning") != partitioning(table):
        return None
    if not all((Path(marts_dir) / table.name / name).is_file() for name in manifest.get("files", [])):
        return None
    return manifest


def read_published(table: Table, marts_dir: Path, since: date | None = None) -> pl.DataFrame | None:
    """A published table's rows read back from its Parquet mart (all of them, conformed to the
    contract; the ``year`` column dropped), or None when the mart cannot stand for the table:
    no manifest, one describing other columns or partitioning, a listed file missing, or
    another number of rows than the manifest's.

    ``since`` (a year-partitioned table only): only its rows dated on/after that day, read
    from the files of that year on (the rows counted against the manifest from every file's
    footer, without reading the earlier years' data).

    Reading a run's Parquet marts is 2-4x faster than converting the same rows out of its
    DuckDB file (a next-day run reads ~27 M rows back at 1,000 equities). Row order is the
    marts' (by year, then key), not the warehouse's: for readers that do not depend on it.
    """
    manifest = _mart_manifest(table, marts_dir)
    if manifest is None:
        return None
    files, row_count = manifest.get("files", []), manifest.get("row_count")
    if not files:
        return pl.DataFrame(schema=table.polars_schema)
    paths = [Path(marts_dir) / table.name / name for name in files]
    if since is not None and table.partition_year_by:
        if _rows_in(Path(marts_dir) / table.name, files) != row_count:
            return None
        # A null date's file (no year) is read and filtered out.
        later = [p for p, name in zip(paths, files, strict=True) if (_mart_year(name) or since.year) >= since.year]
        if not later:
            return pl.DataFrame(schema=table.polars_schema)
        frame = pl.read_parquet(later).filter(pl.col(table.partition_year_by) >= since)
        return table.conform(frame)
    frame = pl.read_parquet(paths)
    if frame.height != row_count:
        return None
    return table.conform(frame)


def snapshot_files(marts_dir: Path, table: str) -> tuple[str, list[Path]]:
    """The run id and data files of one published mart, for a reader a publish may overlap.

    Resolves the ``marts`` link once and returns the files its manifest names, as paths into
    that run's own directory. Reading them gives that run's rows whole, or fails with "file
    not found" when the run was pruned meanwhile (two more publishes): never part of a run or
    rows of two runs. A glob through the links cannot promise that with DuckDB: its listing
    resolves the links again for every entry and drops without a word an entry whose
    ``stat`` fails (``LocalFileSystem::ListFilesExtended``), so a listing that overlaps a
    switch can leave out a changed year's file, and its lazy listing can read one run's files
    and list the next run's.
    """
    root = Path(os.path.realpath(marts_dir))
    manifest = json.loads(manifest_path(root, table).read_text())
    return manifest["run_id"], [root / table / name for name in manifest["files"]]


def manifest_schema(table: Table) -> list[dict]:
    partition = year_column(table)
    return [
        {"name": c.name, "type": c.duckdb_type, "nullable": c.nullable, "description": c.description, "unit": c.unit}
        for c in table.columns
    ] + ([partition] if partition else [])


def partitioning(table: Table) -> dict | None:
    if not table.partition_year_by:
        return None
    return {"column": YEAR, "type": YEAR_DUCKDB_TYPE, "of": table.partition_year_by, "directories": "<year>/",
            "in_files": True}


# The column ``key_codes`` puts into a frame while its years are sorted (never written).
SORT_CODE = "_key_code"


def key_codes(frame: pl.DataFrame, key: list[str]) -> pl.Series | None:
    """One UInt64 per row that sorts like ``key`` (strings by bytes, as ``frame.sort(key)``), or
    None where a key column holds a null or another type than string, date or integer, or
    the codes need more than 64 bits.

    Each column becomes its rank among its distinct values (strings through an Enum of
    their sorted values, dates and integers as their offset from the smallest), packed
    into as few bits as it needs. Sorting one integer column and gathering the rows
    costs about two thirds of Polars' sort on the row-encoded strings of
    mart_factor_metrics' (symbol, metric, date) (docs/performance.md); a key
    of unique values sorts to the same rows either way.
    """
    out, bits = None, 0
    for name in key:
        col = frame[name]
        if col.null_count():
            return None
        if col.dtype == pl.String:
            levels = col.unique().sort()
            code, size = col.cast(pl.Enum(levels)).to_physical(), levels.len()
        elif col.dtype.is_integer() or col.dtype == pl.Date:
            col = col.to_physical().cast(pl.Int64)
            low = col.min()
            code, size = col - low, col.max() - low + 1
        else:
            return None
        width = max(1, (size - 1).bit_length())
        bits += width
        if bits > 64:
            return None
        code = code.cast(pl.UInt64)
        out = code if out is None else out * pl.Series([1 << width], dtype=pl.UInt64) + code
    return out


def year_parts(frame: pl.DataFrame, order: list[str], in_order: bool) -> Iterator[tuple[int | None, pl.DataFrame]]:
    """Each year's rows of ``frame`` (its ``YEAR`` column) in key order (``order``; already so when
    ``in_order``), years ascending and the null year last; ``SORT_CODE`` dropped.

    A frame sorted on ``key_codes`` (``order`` is ``[SORT_CODE]``) is sorted once on the year
    and that code packed into one UInt64, and its years are slices of the result: one gather
    of every column instead of two (one to split the years, one to sort each). The rows of a
    year, and so its file, are those of sorting the year on its own (a unique key orders its
    rows one way). Otherwise each year is split off and sorted on its own: the files of
    sorting the whole table first, at less cost.
    """
    packed = None if in_order or order != [SORT_CODE] else _year_and_code(frame[YEAR], frame[SORT_CODE])
    if packed is not None:
        frame = frame.with_columns(packed.alias(SORT_CODE)).sort(SORT_CODE).drop(SORT_CODE)
        start = 0
        for year, rows in frame.group_by(YEAR, maintain_order=True).len().iter_rows():
            yield year, frame.slice(start, rows)
            start += rows
        return
    years = frame.partition_by(YEAR, as_dict=True)
    del frame
    for (year,) in sorted(years, key=lambda y: (y[0] is None, y[0] or 0)):
        part = years.pop((year,))
        yield year, part if in_order else part.sort(order, nulls_last=True).drop(SORT_CODE, strict=False)


def _year_and_code(year: pl.Series, code: pl.Series) -> pl.Series | None:
    """``year`` (its offset from the first) above ``code`` in one UInt64 that sorts like the pair;
    None where a year is null or the two need more than 64 bits."""
    if year.null_count() or not year.len():
        return None
    low = year.min()
    year_bits = max(1, int(year.max() - low).bit_length())
    code_bits = max(1, int(code.max()).bit_length())
    if year_bits + code_bits > 64:
        return None
    return (year.cast(pl.Int64) - low).cast(pl.UInt64) * pl.Series([1 << code_bits], dtype=pl.UInt64) + code


def write_table(
    table: Table, frame: pl.DataFrame, marts_dir: Path, run_id: str, extra: dict,
    since: date | None = None, published_dir: Path | None = None,
) -> Path:
    """Write ``<marts_dir>/<table>/`` and its manifest.

    With ``since`` (the table's ``unchanged_before`` day) ``frame`` is the table's tail: its
    rows dated on or after ``since`` (Marts.unchanged_before). The years before ``since.year``
    are hard-linked from the published run's marts (``reusable_years``) and the rows of
    ``since.year`` before ``since`` read from its file of that year; without years to
    reuse, every earlier row is read from the published run (``published_before``).
    """
    reuse = reusable_years(table, published_dir, since)
    frame = table.conform(frame)
    if since is not None:
        earlier = published_before(table, published_dir, since, [since.year] if reuse else None)
        rows = _rows_in(published_dir / table.name, [n for names in reuse.values() for n in names])
        frame = pl.concat([earlier, frame], rechunk=False)
        rows += frame.height
    else:
        rows = frame.height
    key = list(table.key) or table.column_names[:1]
    out = marts_dir / table.name
    if out.exists():
        shutil.rmtree(out)
    files: list[str] = []
    # A frame already strictly in key order (most large marts leave the transform so) is what
    # sorting it gives: checked in one pass instead of sorted (docs/performance.md).
    in_order = strictly_increasing(frame, key)
    codes = None if in_order or not frame.height else key_codes(frame, key)
    order = key if codes is None else [SORT_CODE]
    if codes is not None:
        frame = frame.with_columns(codes.alias(SORT_CODE))
    if table.partition_year_by:
        frame = frame.with_columns(pl.col(table.partition_year_by).dt.year().cast(YEAR_TYPE).alias(YEAR))
    for names in reuse.values():
        for name in names:
            link_or_copy(published_dir / table.name / name, out / name)
            files.append(name)
    if table.partition_year_by and rows:
        parts = year_parts(frame, order, in_order)
        del frame  # the parts hold the rows from here on
        for year, part in parts:
            files.append(f"{year}/" + write_parquet_content_named(part, out / str(year)))
    else:
        part = frame if in_order else frame.sort(order, nulls_last=True).drop(SORT_CODE, strict=False)
        files.append(write_parquet_content_named(part, out))
    manifest = {
        "table": table.name,
        "description": table.description,
        "run_id": run_id,
        "row_count": rows,
        "schema": manifest_schema(table),
        "partitioning": partitioning(table),
        "files": sorted(files),
        **extra,
    }
    atomic_write_text(json.dumps(manifest, indent=2, default=str) + "\n", manifest_path(marts_dir, table.name))
    return out


class StagingStopped(Exception):
    """``stage_marts`` was asked to stop (its run failed or was cancelled meanwhile): its marts are incomplete."""


def stage_marts(
    frames: dict[str, pl.DataFrame], marts_dir: Path, run_id: str, extra: dict,
    unchanged_before: dict[str, date] | None = None, published_dir: Path | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Path]:
    """Write every published table into ``marts_dir`` (a run's staging area).

    ``unchanged_before`` and ``published_dir`` (the published run's marts,
    resolved): reuse the published files of the years that did not change.
    ``stop`` (set by another thread): raise ``StagingStopped`` before the next table,
    so marts written beside a run that has failed meanwhile stop promptly and
    never look complete.
    """
    published_dir = Path(os.path.realpath(published_dir)) if published_dir is not None else None
    out = {}
    for name, table in TABLES.items():
        if not table.publish:
            continue
        if stop is not None and stop.is_set():
            raise StagingStopped(f"staging the marts stopped before {name}")
        out[name] = write_table(table, frames.get(name, pl.DataFrame(schema=table.polars_schema)), marts_dir, run_id,
                                extra, (unchanged_before or {}).get(name), published_dir)
    return out
