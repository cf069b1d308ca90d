"""Checks a run's tables must pass before anything is published.

The rules themselves are declared with the contracts (``contracts.tables``)
and evaluated by ``warehouse.quality``. At audit time every rule is
table-level: raw inputs were screened (bad rows quarantined) before the
transforms, so a failing row here means a bug or an unscreened input, and the
run must not publish.

A run that copied the published warehouse audits only what it writes itself
(``written_from``): the rows dated from the day its tables changed, where a
table's key contains that date. The rows before were published by a run of
the same code (the transform's fingerprint) and passed this audit then.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date

import polars as pl

from contracts.schema import Table
from contracts.tables import TABLES
from warehouse import quality


@dataclass(frozen=True)
class AuditFailure:
    table: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.table}: {self.rule}: {self.detail}"


def audit(
    frames: dict[str, pl.DataFrame], as_of: date, since: Mapping[str, date] | None = None,
) -> list[AuditFailure]:
    """Every rule the run's tables break. ``since`` (table -> date, ``written_from``): only those
    tables' rows from that date on, where the table's key contains its date (``quality.audit_from``)."""
    return [
        AuditFailure(v.table, v.description, f"{v.rows} row(s), first {v.first_key}")
        for v in quality.violations(frames, as_of, since)
    ]


def written_from(unchanged_before: Mapping[str, date], copied: bool, tables: Mapping[str, Table] = TABLES) -> dict[str, date]:
    """Per table, the first date of the rows this run writes from its own frames; tables not named
    are written whole.

    The run publishes a table's rows from two places: its frame, and the
    published run (which passed the same audit, its code fingerprint being
    this run's). Only the former needs auditing. A table named in
    ``unchanged_before`` holds only its rows from that day on (Marts.unchanged_before):
    when the load copied the published file (``copied``) every earlier row, in the
    warehouse and in the marts (linked years, and the changed year's rows before the
    day: ``warehouse.marts.published_before``), is the published run's. A full build
    of the warehouse hands on whole tables (``warehouse.build.whole_tables``) and
    audits every row.
    """
    if not copied:
        return {}
    return {name: since for name, since in unchanged_before.items() if name in tables}


def audit_warnings(
    frames: dict[str, pl.DataFrame], as_of: date, run_id: str | None = None,
    sessions: Callable[[date, date], pl.Series] | None = None,
) -> list[str]:
    """Findings that flag but do not fail a run: quarantined rows, gaps, split-like moves.

    ``sessions(start, end)`` is the run's exchange calendar, needed to judge
    gaps in ``fact_prices``."""
    out: list[str] = []
    quarantined = frames.get("quarantine")
    if quarantined is not None and run_id is not None:
        line = quality.quarantine_summary(quarantined.filter(pl.col("run_id") == run_id))
        if line:
            out.append(line)
    prices, assets = frames.get("fact_prices"), frames.get("dim_asset")
    if prices is not None and assets is not None:
        out += price_warnings(prices, assets, as_of, sessions)
    return out


def price_warnings(
    prices: pl.DataFrame, assets: pl.DataFrame, as_of: date, sessions: Callable[[date, date], pl.Series] | None,
) -> list[str]:
    """``audit_warnings``' findings on fact_prices: gaps and split-like moves, judged on its whole
    history (a run that hands on fact_prices' tail judges them before, ``flows.stages.transform``)."""
    if sessions is None:
        raise ValueError("audit_warnings: fact_prices' gaps need the exchange calendar (sessions=)")
    return quality.session_gaps(prices, assets, as_of, sessions) + quality.split_like_moves(prices, assets)
