"""Read-only SQL against the published warehouse."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import duckdb
import polars as pl

from contracts.schema import ident

READ_ONLY_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
# DuckDB's own advice, kept when an error is cut to one line (the LINE/caret
# lines that follow only repeat the query).
HINT_PREFIXES = ("Did you mean", "Candidate bindings", "Candidate tables", "HINT:")


class QueryError(ValueError):
    pass


class WarehouseUnavailable(QueryError, duckdb.Error):
    """The warehouse file cannot be opened (missing, locked, corrupt, not DuckDB); the message names it.

    Also a ``duckdb.Error``: callers that fall back when DuckDB cannot open
    the file (the nightly run's incremental seed) keep catching it as before.
    """


class Target(str, Enum):
    """What a result is converted for: what each output can hold decides which columns become text."""

    text = "text"  # a terminal table or CSV: flat values only
    json = "json"  # nested lists and structs stay nested
    parquet = "parquet"  # every type Parquet holds stays typed


@dataclass(frozen=True)
class Result:
    frame: pl.DataFrame
    truncated: bool  # more rows than the limit


def one_line(exc: BaseException) -> str:
    """DuckDB's first error line, plus its hints ("Did you mean ...") on the same line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    hints = [line for line in lines[1:] if line.startswith(HINT_PREFIXES)]
    return " ".join([lines[0], *hints])


def check_read_only(sql: str) -> None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"cannot parse query: {one_line(exc)}") from exc
    if not statements:
        raise QueryError("empty query")
    for st in statements:
        if st.type not in READ_ONLY_STATEMENTS:
            raise QueryError(f"refused: only read-only queries are allowed (got a {st.type.name} statement)")


def connect_read_only(db_path: Path) -> duckdb.DuckDBPyConnection:
    """Open the warehouse read-only; every way that can fail is one QueryError naming the file."""
    db_path = Path(db_path)
    if not db_path.exists():
        raise WarehouseUnavailable(f"no warehouse at {db_path}: run `xasset run` first")
    if not db_path.is_file():
        raise WarehouseUnavailable(f"{db_path} is not a warehouse file (a directory?)")
    try:
        # No file system access from analyst SQL: a query can read the warehouse,
        # never write or read files around it.
        return duckdb.connect(str(db_path), read_only=True, config={"enable_external_access": False})
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            holder = text.split("Conflicting lock is held in", 1)[-1].split(". See also")[0].strip() if "held in" in text else ""
            raise WarehouseUnavailable(
                f"cannot open {db_path}: another process holds it open for writing"
                + (f" ({holder})" if holder else "")
                + "; close it there, or open it with read_only=True"
            ) from exc
        if "not a valid DuckDB database" in text:
            raise WarehouseUnavailable(f"cannot open {db_path}: not a DuckDB database (empty, truncated or another kind of file)") from exc
        raise WarehouseUnavailable(f"cannot open {db_path}: {one_line(exc)}") from exc
    except duckdb.Error as exc:  # corrupt blocks, a file of a newer DuckDB version
        raise WarehouseUnavailable(f"cannot open {db_path}: {one_line(exc)}") from exc


@contextmanager
def kept_open(db_path: Path) -> Iterator[None]:
    """Meanwhile every read-only connection this process opens to ``db_path`` (``connect_read_only``:
    ``read_tables``, ``read_sql``) is one to the same DuckDB instance: DuckDB hands a connection to a
    file it already holds open the open database. So a run of reads loads the catalog once, and the
    blocks one read brought into the buffer pool serve the next ones, instead of each read opening
    the file cold (a next day's ~9 reads of the published fact_prices). Only while the file cannot
    change under it (the caller holds the data dir's lock). A file that cannot be opened holds
    nothing: each read then fails on its own, as without it."""
    try:
        held = connect_read_only(db_path)
    except (QueryError, duckdb.Error):
        held = None
    try:
        yield
    finally:
        if held is not None:
            held.close()


def _needs_text(t: duckdb.typing.DuckDBPyType, target: Target) -> bool:
    """Whether a column of this type must be rendered by DuckDB as text for ``target``.

    Polars cannot import INTERVAL, UNION, BIT, BIGNUM or TIME WITH TIME ZONE at
    all; CSV and a terminal table hold no nesting or bytes; JSON holds no bytes;
    and polars cannot format DuckDB's infinite dates, so text and JSON get
    DuckDB's own rendering of every date and timestamp ('infinity' included).
    """
    kind = t.id
    if kind in ("interval", "union", "bit", "bignum", "varint", "time with time zone"):
        return True
    if target is Target.parquet:
        pass
    elif kind in ("blob",) or kind.startswith(("date", "timestamp")):
        return True
    elif target is Target.text and kind in ("list", "struct", "map", "array"):
        return True
    if kind in ("list", "struct", "map", "array"):
        return any(_needs_text(child, target) for _, child in t.children)
    return False


def _convertible(rel: duckdb.DuckDBPyRelation, target: Target) -> duckdb.DuckDBPyRelation:
    if not any(_needs_text(t, target) for t in rel.types):
        return rel
    # Positional references (#n): a result may repeat a column name.
    return rel.project(", ".join(
        f"#{i}::VARCHAR AS {ident(name)}" if _needs_text(t, target) else f"#{i} AS {ident(name)}"
        for i, (name, t) in enumerate(zip(rel.columns, rel.types, strict=True), start=1)
    ))


def run_query_result(db_path: Path, sql: str, target: Target = Target.text, limit: int | None = None) -> Result:
    """Run a read-only query; at most ``limit`` rows, converted for ``target``."""
    check_read_only(sql)
    con = connect_read_only(db_path)
    try:
        rel = con.sql(sql)
        if rel is None:  # only statements without a result (cannot pass check_read_only today)
            return Result(pl.DataFrame(), False)
        rel = _convertible(rel, target)
        if limit is not None:
            rel = rel.limit(limit + 1)
        frame = rel.pl()
    except duckdb.Error as exc:
        raise QueryError(one_line(exc)) from exc
    except (pl.exceptions.PolarsError, ValueError, TypeError) as exc:  # a type polars cannot take
        raise QueryError(f"cannot convert the result: {one_line(exc)}") from exc
    finally:
        con.close()
    if limit is not None and frame.height > limit:
        return Result(frame.head(limit), True)
    return Result(frame, False)


# A condition on a column, pushed into DuckDB's scan: ("source", "==", "derived"),
# ("date", ">=", day), ("symbol", "in", ("A", "B")). Plain tuples, so pure code
# (the mart graph's seed declarations) can state them without importing DuckDB.
Condition = tuple[str, str, object]
_OPERATORS = {
    "==": lambda c, v: c == duckdb.ConstantExpression(v),
    "!=": lambda c, v: c != duckdb.ConstantExpression(v),
    ">=": lambda c, v: c >= duckdb.ConstantExpression(v),
    "<": lambda c, v: c < duckdb.ConstantExpression(v),
    "in": lambda c, v: c.isin(*(duckdb.ConstantExpression(x) for x in v)) if v else duckdb.ConstantExpression(False),
}


def _where(conditions: Sequence[Condition]) -> duckdb.Expression:
    expr = duckdb.ConstantExpression(True)
    for column, op, value in conditions:
        if op not in _OPERATORS:
            raise ValueError(f"unknown condition operator {op!r} on column {column} (one of {', '.join(_OPERATORS)})")
        expr = expr & _OPERATORS[op](duckdb.ColumnExpression(column), value)
    return expr


def read_tables(
    db_path: Path, names: list[str], where: Mapping[str, Sequence[Condition] | None] | None = None,
    order: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, pl.DataFrame]:
    """Tables of a warehouse, read-only; a name the warehouse lacks is left out.

    ``where`` (per table): only the rows meeting every condition, filtered in
    DuckDB's scan (zone maps skip row groups), never whole tables filtered
    afterwards; a table not named there, or named with None, is read whole.
    ``order`` (per table): its rows sorted by those columns in DuckDB (strings by their bytes,
    as Polars sorts them), in parallel with the read, rather than sorted after it.
    """
    where, order = where or {}, order or {}
    con = connect_read_only(db_path)
    try:
        present = {r[0] for r in con.execute(read_sql_file("catalog/main_tables.sql")).fetchall()}
        out = {}
        for n in names:
            if n not in present:
                continue
            rel = con.table(f"main.{ident(n)}")
            if where.get(n):
                rel = rel.filter(_where(where[n]))
            if order.get(n):
                rel = rel.order(", ".join(ident(c) for c in order[n]))
            out[n] = rel.pl()
        return out
    finally:
        con.close()


def read_sql(db_path: Path, name: str, params: Mapping[str, object] | None = None) -> pl.DataFrame | None:
    """The rows of the query in ``sql/<name>`` (with its ``$`` parameters) against the warehouse,
    read-only; None when the warehouse lacks a table the query reads."""
    con = connect_read_only(db_path)
    try:
        return con.sql(read_sql_file(name), params=dict(params or {})).pl()
    except duckdb.CatalogException:
        return None
    finally:
        con.close()


def read_sql_file(name: str) -> str:
    path = Path(__file__).with_name("sql") / name
    return path.read_text()
