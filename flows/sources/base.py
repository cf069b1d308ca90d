"""What every source returns, and the frame contracts it must meet."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Literal, Protocol

import polars as pl

from contracts.tables import BAR_SCHEMA, DIM_ASSET, FACT_FUNDAMENTALS
from flows.universe import Universe
from warehouse.lake import ORIGIN

# What a source yields: each bar and where it came from (``origin``, kept in
# the lake so a quarantined bar names it): the file relative to the given
# path and its line or row (``crypto/BTC-USD.csv line 42``), the request
# (``yahoo:^RUT 2024-03-01..2024-03-28``, ``kraken:BTC/USD 2024-03-01..2024-03-28``)
# or ``sample``. Deterministic: no absolute paths, no clock.
SOURCE_BAR_SCHEMA: dict[str, pl.DataType] = {**BAR_SCHEMA, ORIGIN: pl.String()}

# What a source says about each asset is exactly the dim_asset row.
ASSET_SCHEMA: dict[str, pl.DataType] = DIM_ASSET.polars_schema


class SourceError(RuntimeError):
    """A source could not be used at all (not one bad symbol: those are outcomes)."""


@dataclass(frozen=True)
class SymbolOutcome:
    """One attempt to get one symbol, as recorded in ``ingest_log``."""

    symbol: str
    source: str
    status: Literal["ok", "error", "skipped", "withdrawn"]
    rows: int = 0
    first_date: date | None = None
    last_date: date | None = None
    attempts: int = 1
    error: str | None = None


@dataclass(frozen=True)
class InputProblem:
    """Something wrong in the input that the run worked around: a file skipped, a row
    held back. Recorded in ``quarantine`` (table ``fact_prices``) and listed in the
    run report; ``kind`` is the quarantine rule."""

    file: str
    problem: str
    action: str
    kind: str
    symbol: str | None = None
    # Where in the file: "line 42" (CSV) or "row 7" (JSON, Feather, Parquet).
    line: str | None = None
    date: date | None = None

    @property
    def origin(self) -> str:
        return f"{self.file} {self.line}" if self.line else self.file

    def text(self) -> str:
        who = f" {self.symbol}:" if self.symbol else ""
        return f"{self.origin}:{who} {self.problem}; {self.action}"


def problems_frame(problems: list[InputProblem], run_id: str = "") -> pl.DataFrame:
    """``problems`` as ``quarantine`` rows: one per problem, keyed by what is known of the row."""
    from contracts.tables import QUARANTINE

    rows = {}
    for p in problems:
        key = {k: v for k, v in (("symbol", p.symbol), ("date", p.date), ("origin", p.origin)) if v is not None}
        row = {
            "run_id": run_id,
            "table_name": "fact_prices",
            "key": json.dumps(key, default=str),
            "rule": p.kind,
            "detail": f"{p.problem}; from {p.origin}; {p.action}",
        }
        rows.setdefault((row["key"], row["rule"]), row)
    return pl.DataFrame(list(rows.values()), schema=QUARANTINE.polars_schema)


@dataclass
class SourceBatch:
    bars: pl.DataFrame
    assets: pl.DataFrame
    outcomes: list[SymbolOutcome] = field(default_factory=list)
    # Point-in-time fundamentals snapshots (symbol, as_of, ...); None if the source has none.
    fundamentals: pl.DataFrame | None = None
    synthetic: bool = False
    warnings: list[str] = field(default_factory=list)
    # Files skipped and rows held back by the source itself (the files source).
    problems: list[InputProblem] = field(default_factory=list)
    # The files source's input cursor (flows.sources.files_cursor.CursorLanding): whether ``bars``
    # are only the rows new since the last landing, and what to record once they are landed.
    cursor: object | None = None


class Source(Protocol):
    name: str
    # Whether ``fetch`` compares against ``stored_tail``; reading it costs a pass over the lake,
    # so a snapshot source that ignores it says so.
    reads_stored_tail: bool
    # Whether ``fetch`` uses ``last_dates`` (a stat of every symbol's last year file); absent: it does.
    reads_last_dates: bool

    def fetch(
        self,
        universe: Universe,
        start: date,
        as_of: date,
        last_dates: dict[str, date],
        stored_tail: pl.DataFrame,
    ) -> SourceBatch:
        """Bars dated ``start``..``as_of`` inclusive.

        ``last_dates`` is the last stored date per symbol, so an incremental
        source can fetch only what is new (plus its own look-back);
        ``stored_tail`` holds the most recent stored bars per symbol (BAR_SCHEMA)
        so a source can detect restated history in the overlap. The bars
        returned are SOURCE_BAR_SCHEMA: each says where it came from.
        """
        ...


def empty_bars() -> pl.DataFrame:
    return pl.DataFrame(schema=SOURCE_BAR_SCHEMA)


def conform_bars(frame: pl.DataFrame) -> pl.DataFrame:
    """Select and cast to SOURCE_BAR_SCHEMA (``origin`` null if absent), sorted by symbol and date."""
    if ORIGIN not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.String).alias(ORIGIN))
    return frame.select([pl.col(c).cast(t) for c, t in SOURCE_BAR_SCHEMA.items()]).sort("symbol", "date")


def with_origin(bars: pl.DataFrame, origin: str) -> pl.DataFrame:
    """``bars`` with every row's ``origin`` set to one text (a request, a generator)."""
    return bars.with_columns(pl.lit(origin, pl.String).alias(ORIGIN))


def conform_assets(frame: pl.DataFrame) -> pl.DataFrame:
    for c, t in ASSET_SCHEMA.items():
        if c not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=t).alias(c))
    return frame.select([pl.col(c).cast(t) for c, t in ASSET_SCHEMA.items()]).sort("symbol")


# Point-in-time fundamentals: one row per symbol and snapshot date ``as_of``. A
# snapshot may only be used for sessions on or after its as_of (no look-ahead).
# The fact_fundamentals contract's columns and types.
FUNDAMENTALS_SCHEMA: dict[str, pl.DataType] = FACT_FUNDAMENTALS.polars_schema
