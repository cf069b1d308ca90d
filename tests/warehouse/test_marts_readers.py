"""Every Parquet mart reads the same in DuckDB, pyarrow.dataset, Polars and pandas: a directory, no glob."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from warehouse.marts import manifest_path, stage_marts
from contracts.tables import TABLES

PUBLISHED = sorted(n for n, t in TABLES.items() if t.publish)


@pytest.fixture(scope="module")
def marts(run_tables, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("marts")
    stage_marts(run_tables, root, "run-1", {"source": "sample"})
    return root


def canonical(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    table = TABLES[name]
    return frame.select(table.column_names).sort(table.key, nulls_last=True)


def year_type(frame: pl.DataFrame):
    return frame.schema.get("year")


@pytest.mark.parametrize("name", PUBLISHED)
def test_four_readers_same_rows_and_types(marts, run_tables, name):
    """Each reader's plain "read this directory", as the docs show it: no glob, no options."""
    table = TABLES[name]
    path = marts / name
    expected = canonical(table.conform(run_tables[name]), name)
    assert expected.height > 0, "the fixture run fills every mart"

    via_duckdb = duckdb.sql(f"SELECT * FROM read_parquet('{path}')").pl()
    via_arrow = pl.from_arrow(ds.dataset(path, format="parquet").to_table())
    via_arrow_hive = pl.from_arrow(ds.dataset(path, format="parquet", partitioning="hive").to_table())
    via_polars = pl.scan_parquet(path).collect()
    via_pandas = pd.read_parquet(path)
    readers = (("duckdb", via_duckdb), ("pyarrow", via_arrow), ("pyarrow hive", via_arrow_hive), ("polars", via_polars),
               ("pandas", pl.from_pandas(via_pandas)))
    for how, frame in readers[:-1]:
        got = canonical(frame, name)
        assert got.schema == expected.schema, how
        assert got.equals(expected), how
    for how, frame in readers:
        assert frame.height == expected.height, how
        if table.partition_year_by:  # the partition column: one type for every reader, the manifest's
            assert year_type(frame) == pl.Int32, how
            years = expected[table.partition_year_by].dt.year().cast(pl.Int32)
            assert frame["year"].sort().equals(years.sort().alias("year")), how
        else:
            assert "year" not in frame.columns, how
    assert list(via_pandas.columns[: len(table.column_names)]) == table.column_names
    pandas_back = canonical(pl.from_pandas(via_pandas[table.column_names]), name)
    assert pandas_back.height == expected.height
    for col in table.columns:  # pandas brings dates back as datetime64
        want = expected[col.name] if col.type != "date" else expected[col.name].cast(pl.Datetime("ms"))
        got = pandas_back[col.name].cast(want.dtype)
        assert got.equals(want), (name, col.name)


def test_every_mart_directory_holds_only_parquet(marts):
    """polars.scan_parquet(dir) fails on any other file in it: the manifests live beside the directories."""
    for name in PUBLISHED:
        others = [p for p in (marts / name).rglob("*") if p.is_file() and p.suffix != ".parquet"]
        assert others == [], name
        assert manifest_path(marts, name).is_file()


@pytest.mark.parametrize("name", PUBLISHED)
def test_files_are_zstd_with_statistics_logical_types_and_a_manifest(marts, run_tables, name):
    table = TABLES[name]
    version = (marts / name).resolve()
    manifest = json.loads(manifest_path(marts, name).read_text())
    assert manifest["run_id"] == "run-1" and manifest["source"] == "sample"
    assert manifest["row_count"] == run_tables[name].height
    columns = table.column_names + (["year"] if table.partition_year_by else [])
    assert [c["name"] for c in manifest["schema"]] == columns
    if table.partition_year_by:
        assert manifest["partitioning"] == {"column": "year", "type": "INTEGER", "of": table.partition_year_by,
                                            "directories": "<year>/", "in_files": True}
        assert manifest["schema"][-1]["type"] == "INTEGER"
    else:
        assert manifest["partitioning"] is None
    files = sorted(version.rglob("*.parquet"))
    assert sorted(str(p.relative_to(version)) for p in files) == manifest["files"]
    for f in files:
        if table.partition_year_by:
            assert f.parent.name.isdigit(), "large tables are split into one directory per year"
        meta = pq.ParquetFile(f)
        schema = meta.schema_arrow
        assert schema.names == columns, "stable column order, no index columns"
        if table.partition_year_by:
            assert schema.field("year").type == pa.int32()
        assert b"pandas" not in (schema.metadata or {})
        for col in table.columns:
            if col.type == "date":
                assert schema.field(col.name).type == pa.date32()
            if col.type == "timestamp":
                assert schema.field(col.name).type == pa.timestamp("us", tz="UTC")
        for rg in range(meta.metadata.num_row_groups):
            for i in range(meta.metadata.num_columns):
                chunk = meta.metadata.row_group(rg).column(i)
                assert chunk.compression == "ZSTD"
                assert chunk.statistics is not None and chunk.statistics.has_min_max or chunk.statistics.null_count == chunk.num_values
