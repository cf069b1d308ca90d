"""What the figures stated on the whole of fact_prices need of the published rows before a date
(``flows.price_figures``): one aggregate per symbol and, for a few symbols, their bars. Read-only,
from one connection, so every read sees the same published file."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Self

import polars as pl

from warehouse.query import connect_read_only, read_sql_file


class EarlierPrices:
    """fact_prices' rows before ``since`` in the warehouse at ``db_path`` (a context manager)."""

    def __init__(self, db_path: Path, since: date):
        self.since = since
        self.con = connect_read_only(db_path)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.con.close()

    def first_date(self, before: date) -> date | None:
        """The first date of a bar before ``before`` (at most ``since``)."""
        return self.con.sql(
            read_sql_file("reads/published_bars_first_date.sql"),
            params={"before": min(before, self.since), "own_only": False},
        ).fetchall()[0][0]

    def summary(self, before: date, sessions: pl.Series) -> pl.DataFrame:
        """Per symbol with a bar before ``before`` (at most ``since``): ``figures/earlier_prices.sql``'s
        columns, the struct ``at_last`` unnested to ``source`` and ``adj_close``."""
        self.con.register("sessions", pl.DataFrame({"date": sessions.cast(pl.Date).unique()}).to_arrow())
        try:
            frame = self.con.sql(
                read_sql_file("figures/earlier_prices.sql"), params={"before": min(before, self.since)}
            ).pl()
        finally:
            self.con.unregister("sessions")
        return frame.unnest("at_last")

    def bars(self, symbols: list[str] | None) -> pl.DataFrame:
        """(symbol, date, adj_close) of the bars before ``since`` of ``symbols`` (None: every symbol)."""
        self.con.register("wanted", pl.DataFrame({"symbol": symbols or []}, schema={"symbol": pl.String}).to_arrow())
        try:
            return self.con.sql(
                read_sql_file("figures/earlier_bars.sql"), params={"since": self.since, "every": symbols is None}
            ).pl()
        finally:
            self.con.unregister("wanted")
