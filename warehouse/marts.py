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
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl

from warehouse.files import atomic_write_text, write_parquet_content_named
from contracts.schema import Table
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


def write_table(table: Table, frame: pl.DataFrame, marts_dir: Path, run_id: str, extra: dict) -> Path:
    frame = table.conform(frame).sort(list(table.key) or table.column_names[:1], nulls_last=True)
    out = marts_dir / table.name
    if out.exists():
        shutil.rmtree(out)
    files: list[str] = []
    if table.partition_year_by:
        frame = frame.with_columns(pl.col(table.partition_year_by).dt.year().cast(YEAR_TYPE).alias(YEAR))
    if table.partition_year_by and frame.height:
        for (year,), part in frame.group_by(YEAR, maintain_order=True):
            files.append(f"{year}/" + write_parquet_content_named(part, out / str(year)))
    else:
        files.append(write_parquet_content_named(frame, out))
    partition = year_column(table)
    manifest = {
        "table": table.name,
        "description": table.description,
        "run_id": run_id,
        "row_count": frame.height,
        "schema": [
            {"name": c.name, "type": c.duckdb_type, "nullable": c.nullable, "description": c.description, "unit": c.unit}
            for c in table.columns
        ] + ([partition] if partition else []),
        "partitioning": (
            {"column": YEAR, "type": YEAR_DUCKDB_TYPE, "of": table.partition_year_by, "directories": "<year>/",
             "in_files": True}
            if partition else None
        ),
        "files": sorted(files),
        **extra,
    }
    atomic_write_text(json.dumps(manifest, indent=2, default=str) + "\n", manifest_path(marts_dir, table.name))
    return out


def stage_marts(frames: dict[str, pl.DataFrame], marts_dir: Path, run_id: str, extra: dict) -> dict[str, Path]:
    """Write every published table into ``marts_dir`` (a run's staging area)."""
    return {
        name: write_table(table, frames.get(name, pl.DataFrame(schema=table.polars_schema)), marts_dir, run_id, extra)
        for name, table in TABLES.items()
        if table.publish
    }
