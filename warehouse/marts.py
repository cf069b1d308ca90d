"""Parquet marts for BI tools, published atomically per table.

``<marts>/<table>`` is a symbolic link to ``<marts>/.versions/<table>/<run_id>``.
A run writes a complete new version directory (zstd, statistics on, Hive-style
``year=YYYY`` partitions for large tables, a ``_manifest.json``), then swaps the
link with one rename. A reader that lists ``<marts>/<table>/`` resolves the link
once and sees one run's files, never a mix; the previous version is kept for
readers still in the middle of it and removed by the run after.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import polars as pl

from warehouse.files import TMP_PREFIX, atomic_write_text, fsync_dir, write_parquet_content_named
from warehouse.schema import Table
from warehouse.tables import TABLES

VERSIONS = ".versions"
KEEP_VERSIONS = 2


def write_version(table: Table, frame: pl.DataFrame, marts_dir: Path, run_id: str, extra: dict) -> Path:
    frame = table.conform(frame).sort(list(table.key) or table.column_names[:1], nulls_last=True)
    final = marts_dir / VERSIONS / table.name / run_id
    # Staged under a temp name and renamed when complete: a run killed midway
    # leaves only a .tmp- directory, which the next run removes, never a
    # half-written version that pruning would mistake for a real one.
    version = final.with_name(f"{TMP_PREFIX}{run_id}")
    for leftover in (version, final):
        if leftover.exists():
            shutil.rmtree(leftover)
    files: list[str] = []
    if table.partition_year_by and frame.height:
        years = frame.with_columns(pl.col(table.partition_year_by).dt.year().alias("_y"))
        for (year,), part in years.group_by("_y", maintain_order=True):
            files.append(f"year={year}/" + write_parquet_content_named(part.drop("_y"), version / f"year={year}"))
    else:
        files.append(write_parquet_content_named(frame, version))
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
    atomic_write_text(json.dumps(manifest, indent=2, default=str) + "\n", version / "_manifest.json")
    os.rename(version, final)
    fsync_dir(final.parent)
    return final


def swap_link(marts_dir: Path, name: str, version: Path) -> None:
    link = marts_dir / name
    tmp = marts_dir / f"{TMP_PREFIX}link-{name}"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(version, marts_dir), tmp)
    if link.exists() and not link.is_symlink():
        shutil.rmtree(link)
    os.replace(tmp, link)


def prune_versions(marts_dir: Path, name: str) -> None:
    root = marts_dir / VERSIONS / name
    current = (marts_dir / name).resolve()
    complete = [p for p in root.iterdir() if not p.name.startswith(TMP_PREFIX)] if root.exists() else []
    versions = sorted(complete, key=lambda p: p.stat().st_mtime, reverse=True)
    for old in versions[KEEP_VERSIONS:]:
        if old.resolve() != current:
            shutil.rmtree(old, ignore_errors=True)


def stage_marts(frames: dict[str, pl.DataFrame], marts_dir: Path, run_id: str, extra: dict) -> dict[str, Path]:
    """Write every published table's new version; nothing is visible yet."""
    return {
        name: write_version(table, frames.get(name, pl.DataFrame(schema=table.polars_schema)), marts_dir, run_id, extra)
        for name, table in TABLES.items()
        if table.publish
    }


def publish_marts(staged: dict[str, Path], marts_dir: Path) -> None:
    for name, version in staged.items():
        swap_link(marts_dir, name, version)
        prune_versions(marts_dir, name)


def discard_staged(staged: dict[str, Path]) -> None:
    for version in staged.values():
        shutil.rmtree(version, ignore_errors=True)
