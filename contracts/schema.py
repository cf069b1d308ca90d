"""Table contracts: each table's schema is declared once and everything else derives from it.

From one ``Table`` declaration come the DuckDB DDL (types, NOT NULL), ``COMMENT
ON`` statements (the table's comment names its key), the Polars and Arrow schemas used to conform
frames and write Parquet marts, and the data dictionary in the docs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

import polars as pl
import pyarrow as pa

LogicalType = Literal["string", "date", "float", "int", "bigint", "bool", "timestamp"]

_DUCKDB = {
    "string": "VARCHAR",
    "date": "DATE",
    "float": "DOUBLE",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
}
_POLARS = {
    "string": pl.String(),
    "date": pl.Date(),
    "float": pl.Float64(),
    "int": pl.Int32(),
    "bigint": pl.Int64(),
    "bool": pl.Boolean(),
    "timestamp": pl.Datetime("us", "UTC"),
}
_ARROW = {
    "string": pa.string(),
    "date": pa.date32(),
    "float": pa.float64(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: LogicalType
    description: str
    nullable: bool = True
    unit: str | None = None
    # Value bounds checked by the data-quality rules (warehouse.quality).
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    # Floats must be finite (no NaN, no inf) unless a column says otherwise.
    finite: bool = True

    @property
    def duckdb_type(self) -> str:
        return _DUCKDB[self.type]

    @property
    def polars_type(self) -> pl.DataType:
        return _POLARS[self.type]


@dataclass(frozen=True)
class RuleInputs:
    """What a rule may compare a row with besides the row itself.

    Always the run's ``as_of``; the exchange calendar only where the caller
    knows it (the screen of raw inputs does; the audit of derived tables and
    the data dictionary do not). A rule whose inputs are missing holds.
    """

    as_of: date
    # Exchange sessions (the run's calendar, XNYS by default) covering the rows.
    sessions: tuple[date, ...] | None = None
    # Symbols that trade only on those sessions (equities, ETFs, indices).
    session_symbols: tuple[str, ...] | None = None
    # Per symbol, the largest one-day move (a factor, e.g. 5.0: x5 or /5) its
    # asset class's jump bound lets through unconfirmed (settings.jump_bounds).
    jump_bounds: tuple[tuple[str, float], ...] | None = None


@dataclass(frozen=True)
class Rule:
    """A data-quality rule over rows: ``check(inputs)`` is true where a row is valid.

    ``inputs`` is a ``RuleInputs``; the description may mention ``{as_of}``.
    Null counts as valid (nullability is the column's business). Rules that
    compare a row with its neighbours use window expressions (``.over``).
    """

    name: str
    description: str
    check: Callable[[RuleInputs], pl.Expr] = field(compare=False)
    # Compares a row with its neighbours among the rows that pass every other
    # rule (a bar with its previous and next clean bars), so one bad row
    # never vouches for, or condemns, another: checked in a second pass.
    on_clean_rows: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    # Natural key checked by the audit where it includes a nullable column
    # (DuckDB primary keys cannot); defaults to the primary key.
    unique: tuple[str, ...] = ()
    # Published as a Parquet mart for BI tools under <data dir>/marts/<name>/.
    publish: bool = False
    # Date column to partition the Parquet mart by year (large tables only).
    partition_year_by: str | None = None
    # The date a row belongs to: an incremental load replaces a table's rows
    # dated on or after a day and keeps the older ones (docs/performance.md).
    # None: the table is always rewritten whole.
    date_column: str | None = None
    # Data-quality rules beyond types, nullability, keys and column bounds.
    rules: tuple[Rule, ...] = ()
    # Row-level: a row breaking a rule is quarantined and the rest go on (raw
    # inputs). Otherwise a single bad row fails the audit (derived tables: a
    # bad row there is a bug, and hiding it would publish a wrong number).
    quarantine_bad_rows: bool = False
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.name}: duplicate column")
        for k in (*self.primary_key, *self.unique):
            if k not in names:
                raise ValueError(f"table {self.name}: key column {k} is not a column")
        for label, col in (("date_column", self.date_column), ("partition_year_by", self.partition_year_by)):
            if col is not None and (col not in names or self.column(col).type != "date"):
                raise ValueError(f"table {self.name}: {label} {col} is not a date column")

    @property
    def key(self) -> tuple[str, ...]:
        return self.unique or self.primary_key

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def polars_schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.polars_type for c in self.columns}

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [pa.field(c.name, _ARROW[c.type], nullable=c.nullable, metadata={"description": c.description}) for c in self.columns],
            metadata={"table": self.name, "description": self.description},
        )

    def ddl(self, schema: str | None = None) -> str:
        """``CREATE TABLE`` with types and NOT NULL; no PRIMARY KEY.

        The audit checks every key before anything is published
        (``warehouse.quality``), so a DuckDB index would only make every
        insert ~3x slower (docs/performance.md); the key is named in the
        table's comment instead (``key_comment``).
        """
        qualified = f"{schema}.{self.name}" if schema else self.name
        cols = [
            f"    {ident(c.name)} {c.duckdb_type}{'' if c.nullable and c.name not in self.primary_key else ' NOT NULL'}"
            for c in self.columns
        ]
        return f"CREATE TABLE {qualified} (\n" + ",\n".join(cols) + "\n);"

    @property
    def key_comment(self) -> str:
        """The table's comment: its description, then its key (what DuckDB no longer declares)."""
        if not self.key:
            return self.description
        return f"{self.description} Key: ({', '.join(self.key)}), unique (checked by the audit)."

    def comments(self, schema: str | None = None) -> list[str]:
        qualified = f"{schema}.{self.name}" if schema else self.name
        out = [f"COMMENT ON TABLE {qualified} IS {sql_literal(self.key_comment)};"]
        for c in self.columns:
            text = c.description + (f" [{c.unit}]" if c.unit else "")
            out.append(f"COMMENT ON COLUMN {qualified}.{ident(c.name)} IS {sql_literal(text)};")
        return out

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Exactly the contract's columns, in order, with its types."""
        missing = [c for c in self.column_names if c not in frame.columns]
        if missing:
            raise ValueError(f"{self.name}: frame lacks column(s) {missing}")
        return frame.select([pl.col(c.name).cast(c.polars_type) for c in self.columns])


def ident(name: str) -> str:
    """A double-quoted SQL identifier: column names like ``table`` are keywords."""
    return '"' + name.replace('"', '""') + '"'


def sql_literal(text: str) -> str:
    """A single-quoted SQL string literal (quotes doubled), for generated DDL only."""
    return "'" + text.replace("'", "''") + "'"


def strictly_increasing(frame: pl.DataFrame, columns: Sequence[str]) -> bool:
    """Whether ``frame``'s rows strictly increase on ``columns`` (compared in turn, as
    ``frame.sort(columns)`` orders them, strings by bytes), with no null in them: no key twice,
    so the frame is its own sort by ``columns`` whatever the sort's tie rule and a caller may
    skip the sort, or a uniqueness check of the key (one vectorized pass, a tenth of hashing
    the rows). The first rows are checked first, so a frame in another order costs next to
    nothing."""
    if not columns or frame.select(pl.sum_horizontal(pl.col(list(columns)).null_count())).item():
        return False
    if frame.height < 2:
        return True

    def increasing(rows: pl.DataFrame) -> bool:
        # Each column compared with its previous row in its own expression (Polars runs them in
        # parallel), then folded: greater on the first column that differs.
        compared = rows.select(
            *((pl.col(c) > pl.col(c).shift(1)).alias(f"gt{i}") for i, c in enumerate(columns)),
            *((pl.col(c) == pl.col(c).shift(1)).alias(f"eq{i}") for i, c in enumerate(columns)),
        ).slice(1)
        greater, equal = pl.lit(False), pl.lit(True)
        for i in range(len(columns)):
            greater, equal = greater | (equal & pl.col(f"gt{i}")), equal & pl.col(f"eq{i}")
        return compared.select(greater.fill_null(False).all()).item()

    return increasing(frame.head(1024)) and increasing(frame)
