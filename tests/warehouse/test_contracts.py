"""Each contract is the single source of truth: the DDL agrees with it and enforces its key.

Transforms take their output schemas from the same contracts (``Table.conform``),
so there is no restated schema to keep equal to them."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from contracts.tables import TABLES
from warehouse.build import build_database


def test_ddl_types_keys_and_comments(tmp_path):
    db = tmp_path / "w.duckdb"
    build_database(db, {})
    con = duckdb.connect(str(db), read_only=True)
    try:
        for table in TABLES.values():
            cols = con.execute(
                "SELECT column_name, data_type, is_nullable, comment FROM duckdb_columns() WHERE schema_name = 'main' AND table_name = ? ORDER BY column_index",
                [table.name],
            ).fetchall()
            assert [c[0] for c in cols] == table.column_names
            for (name, dtype, nullable, comment), col in zip(cols, table.columns):
                assert dtype == {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}.get(col.duckdb_type, col.duckdb_type)
                assert nullable == (col.nullable and name not in table.primary_key), (table.name, name)
                assert comment.startswith(col.description), (table.name, name)
            table_comment = con.execute("SELECT comment FROM duckdb_tables() WHERE table_name = ?", [table.name]).fetchall()[0][0]
            assert table_comment == table.description
    finally:
        con.close()


def test_primary_key_is_enforced(tmp_path):
    db = tmp_path / "w.duckdb"
    dupe = pl.DataFrame({"index_symbol": ["ALTS", "ALTS"], "member_symbol": ["SOL", "SOL"], "method": ["a", "b"]})
    with pytest.raises(duckdb.ConstraintException):
        build_database(db, {"dim_index_member": dupe})
