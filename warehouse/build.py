"""Build a complete warehouse file apart from the published one.

DuckDB lets one process hold a database file open for writing and then no
other process may open it, even read-only. So a run never writes into the
published file: it builds a new file from scratch in its staging directory,
and after the audit passes the whole run is published with one switch
(``warehouse.snapshots``). An analyst who has the old file open keeps reading
their snapshot (the old inode), and the next connection sees the new run whole.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import polars as pl

from warehouse.query import read_sql_file
from contracts.schema import Table, ident, sql_literal
from contracts.tables import TABLES
from contracts.vocabulary import DEFAULT_WAREHOUSE_STORAGE_VERSION

SQL_DIR = Path(__file__).with_name("sql")


def insert_statement(table: Table, relation: str) -> str:
    # Generated from the contract, like the DDL: column order is the contract's.
    return f"INSERT INTO {table.name} SELECT {', '.join(map(ident, table.column_names))} FROM {relation}"


def view_files() -> list[Path]:
    return sorted((SQL_DIR / "views").glob("*.sql"))


def view_requires(sql: str) -> list[str]:
    """Tables named on ``-- requires:`` lines: the view is skipped while one is absent."""
    return [t for line in sql.splitlines() if line.startswith("-- requires:") for t in line.split(":", 1)[1].split()]


def mart_views(tables: dict[str, Table]) -> list[str]:
    # Generated from the contracts, like the DDL: the `marts` schema lists
    # exactly the published tables, commented like the tables themselves.
    out = []
    for t in tables.values():
        if t.publish:
            out.append(f"CREATE VIEW marts.{t.name} AS SELECT * FROM main.{t.name};")
            out.append(f"COMMENT ON VIEW marts.{t.name} IS {sql_literal(t.description)};")
            out.extend(t.comments("marts")[1:])  # its columns' (the first is COMMENT ON TABLE)
    return out


def create_views(con: duckdb.DuckDBPyConnection, tables: dict[str, Table]) -> list[str]:
    """Run every view file whose required tables exist; returns the skipped files."""
    present = {r[0] for r in con.execute(read_sql_file("catalog/main_tables.sql")).fetchall()}
    skipped = []
    for view in view_files():
        sql = view.read_text()
        if not set(view_requires(sql)) <= present:
            skipped.append(view.name)
            continue
        con.execute(sql)
        inherit_column_comments(con, sql, [tables[t] for t in view_requires(sql) if t in tables])
    for stmt in mart_views(tables):
        con.execute(stmt)
    return skipped


def inherit_column_comments(con: duckdb.DuckDBPyConnection, sql: str, sources: list[Table]) -> None:
    """Comment a view's columns that pass a contracted column through with that column's comment.

    Derived columns are commented in the view's own file; a column that merely
    repeats ``mart_x.asset`` takes the contract's words instead of a copy.
    """
    for view in re.findall(r"CREATE VIEW (\w+\.\w+)", sql):
        schema, name = view.split(".")
        rows = con.execute(read_sql_file("catalog/columns.sql"), {"schema": schema, "name": name}).fetchall()
        for column, _type, _nullable, comment in rows:
            if comment:
                continue
            source = next((c for t in sources for c in t.columns if c.name == column), None)
            if source is not None:
                text = source.description + (f" [{source.unit}]" if source.unit else "")
                con.execute(f"COMMENT ON COLUMN {view}.{ident(column)} IS {sql_literal(text)}")


def build_database(
    path: Path, frames: dict[str, pl.DataFrame], tables: dict[str, Table] = TABLES,
    storage_version: str = DEFAULT_WAREHOUSE_STORAGE_VERSION,
) -> dict[str, int]:
    """Create every contracted table in a new file at ``path``; returns row counts.

    The file is written in the storage format of DuckDB ``storage_version``
    (e.g. ``v1.1.0``), so clients of that release and later can open it.
    """
    path.unlink(missing_ok=True)
    counts: dict[str, int] = {}
    con = duckdb.connect(str(path), config={"storage_compatibility_version": storage_version})
    try:
        for name, table in tables.items():
            con.execute(table.ddl())
            for stmt in table.comments():
                con.execute(stmt)
            frame = frames.get(name)
            if frame is None:
                frame = pl.DataFrame(schema=table.polars_schema)
            arrow = table.conform(frame).to_arrow()
            con.register("incoming", arrow)
            con.execute(insert_statement(table, "incoming"))
            con.unregister("incoming")
            counts[name] = arrow.num_rows
        create_views(con, tables)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return counts
