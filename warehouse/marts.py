"""Parquet marts for BI tools: one directory per published table.

``write_table`` writes ``<marts>/<table>/`` complete: zstd, statistics on,
Hive-style ``year=YYYY`` partitions for large tables, content-named part
files and a ``_manifest.json``. It writes into a run's private staging
directory (``warehouse.snapshots``); the run's marts become visible together
with its warehouse when the run is published with one switch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl

from warehouse.files import atomic_write_text, write_parquet_content_named
from warehouse.schema import Table
from warehouse.tables import TABLES


def write_table(table: Table, frame: pl.DataFrame, marts_dir: Path, run_id: str, extra: dict) -> Path:
    frame = table.conform(frame).sort(list(table.key) or table.column_names[:1], nulls_last=True)
    out = marts_dir / table.name
    if out.exists():
        shutil.rmtree(out)
    files: list[str] = []
    if table.partition_year_by and frame.height:
        years = frame.with_columns(pl.col(table.partition_year_by).dt.year().alias("_y"))
        for (year,), part in years.group_by("_y", maintain_order=True):
            files.append(f"year={year}/" + write_parquet_content_named(part.drop("_y"), out / f"year={year}"))
    else:
        files.append(write_parquet_content_named(frame, out))
    manifest = {
        "table": table.name,
        "description": table.description,
        "run_id": run_id,
        "row_count": frame.height,
        "schema": [
            {"name": c.name, "type": c.duckdb_type, "nullable": c.nullable, "description": c.description, "unit": c.unit}
            for c in table.columns
        ],
        "partitioning": {"year": table.partition_year_by} if table.partition_year_by else None,
        "files": sorted(files),
        **extra,
    }
    atomic_write_text(json.dumps(manifest, indent=2, default=str) + "\n", out / "_manifest.json")
    return out


def stage_marts(frames: dict[str, pl.DataFrame], marts_dir: Path, run_id: str, extra: dict) -> dict[str, Path]:
    """Write every published table into ``marts_dir`` (a run's staging area)."""
    return {
        name: write_table(table, frames.get(name, pl.DataFrame(schema=table.polars_schema)), marts_dir, run_id, extra)
        for name, table in TABLES.items()
        if table.publish
    }
