"""Each contract is the single source of truth: the DDL agrees with it and names its key (the audit enforces it).

Transforms take their output schemas from the same contracts (``Table.conform``),
so there is no restated schema to keep equal to them."""

from __future__ import annotations

import duckdb
import polars as pl


from contracts.schema import Table
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
            assert table_comment == table.key_comment and table_comment.startswith(table.description)
    finally:
        con.close()


def test_keys_are_named_in_comments_not_declared_as_indexes(tmp_path):
    """DuckDB holds no PRIMARY KEY (the audit checks keys, an index would slow every insert ~3x);
    analysts still read each table's key in its comment."""
    db = tmp_path / "w.duckdb"
    build_database(db, {})
    con = duckdb.connect(str(db), read_only=True)
    try:
        kinds = {r[0] for r in con.execute("SELECT DISTINCT constraint_type FROM duckdb_constraints()").fetchall()}
        assert kinds <= {"NOT NULL"}, kinds
        assert con.execute("SELECT count(*) FROM duckdb_indexes()").fetchone()[0] == 0
        for table in TABLES.values():
            comment = con.execute("SELECT comment FROM duckdb_tables() WHERE table_name = ?", [table.name]).fetchone()[0]
            if table.key:
                assert f"Key: ({', '.join(table.key)})" in comment, table.name
    finally:
        con.close()


def _row(table: Table, as_of) -> dict:
    from datetime import UTC, datetime

    values = {"string": "x", "date": as_of, "float": 0.5, "int": 1, "bigint": 1, "bool": True,
              "timestamp": datetime(2024, 1, 1, tzinfo=UTC)}
    return {c.name: values[c.type] for c in table.columns}


def test_the_audit_checks_every_contracted_key(run_tables):
    """Every table with a key: two rows with the same key fail the audit on that key."""
    from warehouse.audit import audit
    from warehouse.quality import violations

    as_of = run_tables["fact_prices"]["date"].max()
    for table in TABLES.values():
        if not table.key:
            continue
        real = run_tables.get(table.name)
        row = (table.conform(real).head(1) if real is not None and real.height
               else pl.DataFrame([_row(table, as_of)], schema=table.polars_schema))
        floats = [c.name for c in table.columns if c.type == "float" and c.name not in table.key]
        # The same key twice; another column differs where there is one, so the rows are not mere copies.
        twin = row.with_columns((pl.col(floats[0]) * 0.5).alias(floats[0])) if floats else row
        rules = {v.rule for v in violations({table.name: pl.concat([row, twin])}, as_of)}
        assert rules & {"primary_key", "key_is_unique"}, (table.name, rules)
        assert any("is unique" in str(f) for f in audit({table.name: pl.concat([row, twin])}, as_of)), table.name
