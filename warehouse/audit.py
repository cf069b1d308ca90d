"""Checks a run's tables must pass before anything is published.

The rules themselves are declared with the contracts (``contracts.tables``)
and evaluated by ``warehouse.quality``. At audit time every rule is
table-level: raw inputs were screened (bad rows quarantined) before the
transforms, so a failing row here means a bug or an unscreened input, and the
run must not publish.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import polars as pl

from warehouse import quality


@dataclass(frozen=True)
class AuditFailure:
    table: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.table}: {self.rule}: {self.detail}"


def audit(frames: dict[str, pl.DataFrame], as_of: date) -> list[AuditFailure]:
    return [
        AuditFailure(v.table, v.description, f"{v.rows} row(s), first {v.first_key}")
        for v in quality.violations(frames, as_of)
    ]


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
        if sessions is None:
            raise ValueError("audit_warnings: fact_prices' gaps need the exchange calendar (sessions=)")
        out += quality.session_gaps(prices, assets, as_of, sessions)
        out += quality.split_like_moves(prices, assets)
    return out
