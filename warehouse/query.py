"""Read-only SQL against the published warehouse."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from warehouse.schema import ident

READ_ONLY_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


class QueryError(ValueError):
    pass


def check_read_only(sql: str) -> None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"cannot parse query: {exc}") from exc
    if not statements:
        raise QueryError("empty query")
    for st in statements:
        if st.type not in READ_ONLY_STATEMENTS:
            raise QueryError(f"refused: only read-only queries are allowed (got a {st.type.name} statement)")


def connect_read_only(db_path: Path) -> duckdb.DuckDBPyConnection:
    if not Path(db_path).exists():
        raise QueryError(f"no warehouse at {db_path}: run `xasset run` first")
    # No file system access from analyst SQL: a query can read the warehouse,
    # never write or read files around it.
    return duckdb.connect(str(db_path), read_only=True, config={"enable_external_access": False})


def run_query(db_path: Path, sql: str) -> pl.DataFrame:
    check_read_only(sql)
    con = connect_read_only(db_path)
    try:
        return con.sql(sql).pl()
    except duckdb.Error as exc:
        raise QueryError(str(exc).splitlines()[0]) from exc
    finally:
        con.close()


def read_tables(db_path: Path, names: list[str]) -> dict[str, pl.DataFrame]:
    """Whole tables of a warehouse, read-only; a name the warehouse lacks is left out."""
    con = connect_read_only(db_path)
    try:
        present = {r[0] for r in con.execute(read_sql_file("catalog/main_tables.sql")).fetchall()}
        return {n: con.sql(f"SELECT * FROM main.{ident(n)}").pl() for n in names if n in present}
    finally:
        con.close()


def read_sql_file(name: str) -> str:
    path = Path(__file__).with_name("sql") / name
    return path.read_text()
