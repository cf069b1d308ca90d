"""Checks a run's tables must pass before anything is published."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from warehouse.tables import TABLES


@dataclass(frozen=True)
class AuditFailure:
    table: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.table}: {self.rule}: {self.detail}"


def _rows(frame: pl.DataFrame, mask: pl.Expr, table: str, rule: str) -> list[AuditFailure]:
    bad = frame.filter(mask)
    if bad.is_empty():
        return []
    keys = TABLES[table].key or tuple(frame.columns[:2])
    first = bad.select(keys).row(0, named=True)
    return [AuditFailure(table, rule, f"{bad.height} row(s), first {first}")]


def audit(frames: dict[str, pl.DataFrame], as_of: date) -> list[AuditFailure]:
    failures: list[AuditFailure] = []
    for name, frame in frames.items():
        table = TABLES.get(name)
        if table is None or not table.key or frame.is_empty():
            continue
        dupes = frame.select(table.key).is_duplicated()
        if dupes.any():
            failures += _rows(frame, dupes, name, "primary key is unique")
    prices = frames.get("fact_prices")
    if prices is not None:
        failures += _rows(prices, (pl.col("close") <= 0) | (pl.col("adj_close") <= 0), "fact_prices", "prices > 0")
        failures += _rows(prices, pl.col("high") < pl.col("low"), "fact_prices", "high >= low")
        failures += _rows(prices, pl.col("date") > as_of, "fact_prices", f"no date after as_of {as_of}")
    corr = frames.get("mart_rolling_correlation")
    if corr is not None:
        failures += _rows(
            corr, ~pl.col("correlation").is_between(-1.0, 1.0) & pl.col("correlation").is_not_null(),
            "mart_rolling_correlation", "correlation in [-1, 1]",
        )
    returns = frames.get("fact_returns")
    if returns is not None:
        failures += _rows(returns, ~pl.col("log_return").is_finite() & pl.col("log_return").is_not_null(),
                          "fact_returns", "returns are finite")
    return failures
