"""Consumers after the transform state the whole tables' figures when the run hands on tails
(Marts.unchanged_before: a named table holds only its rows from its date). The figures on the
whole of fact_prices are tests/flows/test_price_figures.py's.

Each test builds whole tables, hands the consumer the tail a run hands on, and compares its
figure with the one of the whole tables; each also checks that the tail alone gives another
figure, so the test fails if the consumer took its tail for the whole table.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from contracts.tables import TABLES
from flows.artifacts import ALPHA_TABLE, alpha_moves, with_alpha_context
from warehouse.marts import stage_marts


def test_alpha_moves_of_a_tail_read_the_last_published_sessions(tmp_path):
    table = TABLES[ALPHA_TABLE]
    days = [date(2025, 12, 30), date(2025, 12, 31), date(2026, 1, 2), date(2026, 1, 5)]
    rows = [{"symbol": s, "date": d, "alpha_score": float(i * (j + 1))} for i, d in enumerate(days)
            for j, s in enumerate(["AAA", "BBB"])]
    whole = table.conform(pl.DataFrame(rows, infer_schema_length=None).with_columns(
        *[pl.lit(None, dtype=t).alias(c) for c, t in table.polars_schema.items() if c not in ("symbol", "date", "alpha_score")]
    ))
    published = tmp_path / "run" / "marts"
    stage_marts({ALPHA_TABLE: whole}, published, "r1", {})
    since, previous_as_of = date(2026, 1, 5), date(2026, 1, 2)
    tail = whole.filter(pl.col("date") >= since)
    completed = with_alpha_context({ALPHA_TABLE: tail}, {ALPHA_TABLE: since}, published)
    assert completed[ALPHA_TABLE]["date"].unique().sort().to_list() == days[1:]
    assert alpha_moves(completed, previous_as_of) == alpha_moves({ALPHA_TABLE: whole}, previous_as_of)
    assert alpha_moves({ALPHA_TABLE: tail}, previous_as_of) != alpha_moves({ALPHA_TABLE: whole}, previous_as_of)
    # Not named: handed back as it is.
    assert with_alpha_context({ALPHA_TABLE: whole}, {}, published)[ALPHA_TABLE] is whole
