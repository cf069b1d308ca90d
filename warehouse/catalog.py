"""What the analyst surface lists and describes (``xasset tables``, ``xasset describe``).

Contracted tables are described from their contract (units, keys, rules),
which needs no warehouse; views only exist in a built warehouse and are read
from DuckDB's catalog there.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from warehouse.query import QueryError, connect_read_only, one_line, read_sql_file
from contracts.schema import ident
from contracts.tables import TABLES


class UnknownObject(QueryError):
    """No table or view of that name; ``known`` lists the names there are (for suggestions)."""

    def __init__(self, message: str, known: list[str]) -> None:
        super().__init__(message)
        self.known = known


def list_objects(db_path: Path) -> pl.DataFrame:
    """schema, name, kind, rows, description of every table and view analysts can query."""
    if not Path(db_path).exists():
        return pl.DataFrame(
            [{"schema": "main", "name": t.name, "kind": "table", "rows": None, "description": t.description}
             for t in TABLES.values()],
            schema={"schema": pl.String, "name": pl.String, "kind": pl.String, "rows": pl.Int64, "description": pl.String},
        )
    con = connect_read_only(db_path)
    try:
        objects = con.sql(read_sql_file("catalog/objects.sql")).pl()
        rows = [
            con.execute(f"SELECT count(*) FROM {ident(r['schema'])}.{ident(r['name'])}").fetchone()[0] if r["kind"] == "table" else None
            for r in objects.iter_rows(named=True)
        ]
    except duckdb.Error as exc:  # a damaged block found while counting
        raise QueryError(f"cannot read {db_path}: {one_line(exc)}") from exc
    finally:
        con.close()
    return objects.with_columns(pl.Series("rows", rows, dtype=pl.Int64)).select("schema", "name", "kind", "rows", "description")


def _split(name: str) -> tuple[str, str]:
    schema, _, table = name.rpartition(".")
    return schema or "main", table


def describe(db_path: Path, name: str) -> tuple[str, pl.DataFrame]:
    """``(description, columns)`` of a table (from its contract) or a view (from the warehouse)."""
    schema, table = _split(name)
    if schema in ("main", "marts") and table in TABLES:
        t = TABLES[table]
        if schema == "marts" and not t.publish:
            raise QueryError(f"{name}: {table} is not a published mart")
        frame = pl.DataFrame(
            [
                {
                    "column": c.name,
                    "type": c.duckdb_type,
                    "nullable": c.nullable and c.name not in t.primary_key,
                    "key": c.name in t.key,
                    "unit": c.unit,
                    "description": c.description,
                }
                for c in t.columns
            ]
        )
        return t.description, frame
    contracted = [t.name for t in TABLES.values()] + [f"marts.{t.name}" for t in TABLES.values() if t.publish]
    if not Path(db_path).exists():
        raise UnknownObject(f"no table {name!r} in the contracts, and no warehouse at {db_path} to look for a view", contracted)
    con = connect_read_only(db_path)
    try:
        cols = con.sql(read_sql_file("catalog/columns.sql"), params={"schema": schema, "name": table}).pl()
        objects = con.sql(read_sql_file("catalog/objects.sql")).pl()
    except duckdb.Error as exc:
        raise QueryError(f"cannot read {db_path}: {one_line(exc)}") from exc
    finally:
        con.close()
    if cols.is_empty():
        known = [f"{s}.{n}" if s != "main" else n for s, n in objects.select("schema", "name").iter_rows()]
        raise UnknownObject(f"no table or view {name!r}", known)
    hit = objects.filter((pl.col("schema") == schema) & (pl.col("name") == table))
    return (hit["description"][0] or "") if hit.height else "", cols
