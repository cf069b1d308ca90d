"""The previous tables as an incremental run's seed read gives them, for pure tests.

``flows.rebuild_plan`` reads each of the graph's previous tables with the
conditions ``transforms.graph.seed_reads`` names, pushed into the warehouse's
scan (``warehouse.query.read_tables``) or the year files of its Parquet mart
(``warehouse.marts.read_published``). Here the same conditions filter frames in
memory, so a node's incremental build is tested with exactly the rows it is
given in a run, not with whole tables it would never see.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl


_OPERATORS = {
    "==": lambda c, v: c == v,
    "!=": lambda c, v: c != v,
    ">=": lambda c, v: c >= v,
    "<": lambda c, v: c < v,
    "in": lambda c, v: c.is_in(list(v)),
}


def seed_rows(
    tables: Mapping[str, pl.DataFrame], reads: Mapping[str, Sequence[tuple[str, str, object]] | None]
) -> dict[str, pl.DataFrame]:
    """``tables`` cut to what the seed read returns: only the tables in ``reads``
    (those the graph reads back), each filtered by its conditions (None: whole).
    A condition on a column the frame lacks is left out: the generated panels'
    fact_prices has no ``source`` (the warehouse's always has; the indices node
    reads such a frame whole, as it is)."""
    out = {}
    for name, conditions in reads.items():
        if name not in tables:
            continue
        frame = tables[name]
        for column, op, value in conditions or ():
            if column not in frame.columns:
                continue
            frame = frame.filter(_OPERATORS[op](pl.col(column), value))
        out[name] = frame
    return out


def seeded_build(prices, assets, sessions, params, previous: dict[str, pl.DataFrame], since, rereads: list | None = None):
    """An incremental build as the run does it (``flows.stages.transform``): from the previous
    tables as the seed read gives them; the tables a node finds too short
    (``SeedTooShort``) read whole and built again. ``rereads`` collects those tables."""
    from transforms.graph import GRAPH, SeedTooShort, seed_reads, window_starts
    from transforms.marts import build_marts

    seeded = seed_rows(previous, seed_reads(sessions=sessions, params=params, since=since))
    bounded = window_starts(GRAPH, sessions, params, since)
    while True:
        try:
            return build_marts(prices, assets, sessions, params, previous=seeded, since=since, previous_from=bounded)
        except SeedTooShort as short:
            assert set(short.tables) & set(bounded), f"{short}: asked again for a table read whole"
            if rereads is not None:
                rereads.extend(short.tables)
            seeded |= {t: previous[t] for t in short.tables if t in previous}
            bounded = {t: d for t, d in bounded.items() if t not in short.tables}
