"""The raw Parquet lake: bars as landed from each source.

Layout: ``<lake>/bars/source=<source>/<symbol>/<year>.parquet`` with the symbol
percent-encoded (``^RUT`` -> ``%5ERUT``), so a nightly run rewrites only the
current year's file of each symbol it touched. Each data directory keeps each
source apart: the synthetic sample never mixes with real prices.

Each bar file has ``fact_prices``'s columns plus ``origin``: where the bar
came from, as the source said (``BTC-USD.csv line 42``, ``yahoo:^RUT
2024-03-01..2024-03-28``, ``sample``), so a quarantined bar can be traced to
its file and row. It is nullable: files written before it existed read as null.
``origin`` stays in the lake: ``fact_prices`` does not publish it.

Upserts are idempotent: re-landing identical bars changes nothing (not even
``ingested_at``); a revised bar replaces the stored one and gets a new
``ingested_at``; a bar landed again with the same values but from elsewhere
(e.g. rows inserted above it in its file) keeps ``ingested_at`` and takes the
new ``origin``; bars outside the incoming dates are kept.

Withdrawals (``withdraw_absent``, for a source whose input is a snapshot)
move stored bars the input no longer holds to
``<lake>/withdrawn/source=<source>.parquet``, stamped ``withdrawn_at``:
out of every later run, never deleted.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from urllib.parse import quote, unquote

import polars as pl

from warehouse.files import atomic_write_parquet, read_stored_parquet
from contracts.tables import FACT_PRICES

VALUE_COLUMNS = ["open", "high", "low", "close", "adj_close", "volume"]
ORIGIN = "origin"
BARS_SCHEMA: dict[str, pl.DataType] = {**FACT_PRICES.polars_schema, ORIGIN: pl.String()}
WITHDRAWN_AT = "withdrawn_at"


def conform_stored(frame: pl.DataFrame) -> pl.DataFrame:
    """Bars as the lake keeps them: ``fact_prices``'s columns and ``origin`` (null if absent)."""
    if ORIGIN not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.String).alias(ORIGIN))
    return frame.select([pl.col(c).cast(t) for c, t in BARS_SCHEMA.items()])


def symbol_dir(symbol: str) -> str:
    # quote() with no safe characters leaves no path separator; it keeps dots,
    # so a name of dots only ('.', '..') is encoded too: never a relative component.
    encoded = quote(symbol, safe="")
    return encoded.replace(".", "%2E") if set(encoded) == {"."} else encoded


class Lake:
    def __init__(self, root: Path, source: str) -> None:
        self.root = Path(root)
        self.source = source

    @property
    def bars_dir(self) -> Path:
        return self.root / "bars" / f"source={self.source}"

    @property
    def assets_path(self) -> Path:
        return self.root / "assets" / f"source={self.source}.parquet"

    @property
    def fundamentals_path(self) -> Path:
        return self.root / "fundamentals" / f"source={self.source}.parquet"

    def _files(self) -> list[Path]:
        return sorted(self.bars_dir.glob("*/*.parquet")) if self.bars_dir.exists() else []

    def read_bars(self, symbols: list[str] | None = None) -> pl.DataFrame:
        """Stored bars (``BARS_SCHEMA``: ``fact_prices``'s columns and ``origin``)."""
        files = self._files()
        if symbols is not None:
            wanted = {symbol_dir(s) for s in symbols}
            files = [f for f in files if f.parent.name in wanted]
        if not files:
            return pl.DataFrame(schema=BARS_SCHEMA)
        # One file at a time: files written before ``origin`` existed lack it.
        return pl.concat([conform_stored(read_stored_parquet(f)) for f in files]).sort("symbol", "date")

    def last_dates(self) -> dict[str, date]:
        out: dict[str, date] = {}
        for sym_dir in self.bars_dir.iterdir() if self.bars_dir.exists() else []:
            years = sorted(sym_dir.glob("*.parquet"))
            if years:
                last = read_stored_parquet(years[-1], columns=["date"])["date"].max()
                if last is not None:
                    out[unquote(sym_dir.name)] = last
        return out

    def tail(self, n: int) -> pl.DataFrame:
        """The last ``n`` stored bars of every symbol (for revision checks)."""
        frames = []
        for sym_dir in self.bars_dir.iterdir() if self.bars_dir.exists() else []:
            years = sorted(sym_dir.glob("*.parquet"))[-2:]
            if years:
                frames.append(pl.concat([conform_stored(read_stored_parquet(y)) for y in years]).sort("date").tail(n))
        if not frames:
            return pl.DataFrame(schema=FACT_PRICES.polars_schema)
        return FACT_PRICES.conform(pl.concat(frames))

    def upsert_bars(self, bars: pl.DataFrame, ingested_at: datetime) -> int:
        """Merge bars into the lake; returns how many rows were new or revised."""
        if bars.is_empty():
            return 0
        incoming = bars.with_columns(
            pl.lit(self.source).alias("source"),
            pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")).alias("ingested_at"),
            pl.col("date").dt.year().alias("_year"),
        )
        written = 0
        for (symbol, year), part in incoming.group_by("symbol", "_year", maintain_order=True):
            path = self.bars_dir / symbol_dir(symbol) / f"{year}.parquet"
            part = conform_stored(part.drop("_year")).unique("date", keep="last", maintain_order=True)
            if path.exists():
                old = conform_stored(read_stored_parquet(path))
                # A bar whose values did not change keeps its original
                # ingested_at, so re-runs leave the lake byte-for-byte alike.
                same = part.join(old, on=["date", *VALUE_COLUMNS], how="semi", nulls_equal=True)
                changed = part.join(same, on="date", how="anti")
                # ... but takes a new origin if it now comes from elsewhere.
                moved = (
                    same.filter(pl.col(ORIGIN).is_not_null())
                    .join(old, on=["date", ORIGIN], how="anti", nulls_equal=True)
                    .drop("ingested_at")
                    .join(old.select("date", "ingested_at"), on="date", how="left", maintain_order="left")
                    .select(BARS_SCHEMA.keys())
                )
                if changed.is_empty() and moved.is_empty():
                    continue
                replaced = pl.concat([changed, moved])
                merged = pl.concat([old.join(replaced, on="date", how="anti"), replaced])
            else:
                changed = merged = part
            written += changed.height
            atomic_write_parquet(merged.sort("date"), path)
        return written

    @property
    def withdrawn_path(self) -> Path:
        return self.root / "withdrawn" / f"source={self.source}.parquet"

    def read_withdrawn(self) -> pl.DataFrame:
        """Bars withdrawn from the lake (``BARS_SCHEMA`` and ``withdrawn_at``), oldest first."""
        if not self.withdrawn_path.exists():
            return pl.DataFrame(schema={**BARS_SCHEMA, WITHDRAWN_AT: pl.Datetime("us", "UTC")})
        return read_stored_parquet(self.withdrawn_path)

    def withdraw_absent(
        self, present: pl.DataFrame, start: date, end: date, withdrawn_at: datetime, keep: set[str] = frozenset()
    ) -> pl.DataFrame:
        """Withdraw stored bars dated ``start``..``end`` that ``present`` (symbol, date) lacks.

        For a source whose input is a snapshot (the files source): what is no
        longer there is no longer vouched for. A symbol in ``keep`` (one the
        source failed to read) is left alone. Nothing is deleted: the bars are
        moved to ``withdrawn/source=<source>.parquet`` with ``withdrawn_at``
        (landing them again brings them back). Returns the withdrawn bars.
        """
        seen = present.select("symbol", "date").unique()
        # Each year file is compared with its own symbol's dates, not with every bar of the input
        # (that join cost grew with files x bars: 5 min at 500 stocks, bench e2e).
        seen_by_symbol = seen.partition_by("symbol", as_dict=True)
        none_seen = seen.clear()
        out = []
        for sym_dir in sorted(self.bars_dir.iterdir()) if self.bars_dir.exists() else []:
            symbol = unquote(sym_dir.name)
            if symbol in keep:
                continue
            for path in sorted(sym_dir.glob("*.parquet")):
                year = int(path.stem) if path.stem.isdigit() else None
                if year is None or not start.year <= year <= end.year:
                    continue
                stored = conform_stored(read_stored_parquet(path))
                in_range = pl.col("date").is_between(start, end)
                gone = stored.filter(in_range).join(
                    seen_by_symbol.get((symbol,), none_seen), on=["symbol", "date"], how="anti"
                )
                if gone.is_empty():
                    continue
                out.append(gone)
                kept = stored.join(gone.select("date"), on="date", how="anti")
                # The record first: a kill between the two writes leaves the
                # bar in both places (withdrawn again by the next run), never in neither.
                self._record_withdrawn(gone, withdrawn_at)
                if kept.is_empty():
                    path.unlink()
                else:
                    atomic_write_parquet(kept.sort("date"), path)
            if sym_dir.is_dir() and not any(sym_dir.iterdir()):
                sym_dir.rmdir()
        return pl.concat(out).sort("symbol", "date") if out else pl.DataFrame(schema=BARS_SCHEMA)

    def _record_withdrawn(self, bars: pl.DataFrame, withdrawn_at: datetime) -> None:
        new = bars.with_columns(pl.lit(withdrawn_at).cast(pl.Datetime("us", "UTC")).alias(WITHDRAWN_AT))
        old = self.read_withdrawn()
        atomic_write_parquet(pl.concat([old, new], how="diagonal_relaxed"), self.withdrawn_path)

    def read_assets(self) -> pl.DataFrame | None:
        return read_stored_parquet(self.assets_path) if self.assets_path.exists() else None

    def upsert_assets(self, assets: pl.DataFrame) -> None:
        old = self.read_assets()
        merged = assets if old is None else pl.concat([old.join(assets, on="symbol", how="anti"), assets], how="diagonal_relaxed")
        atomic_write_parquet(merged.sort("symbol"), self.assets_path)

    def read_fundamentals(self) -> pl.DataFrame | None:
        return read_stored_parquet(self.fundamentals_path) if self.fundamentals_path.exists() else None

    def upsert_fundamentals(self, snapshots: pl.DataFrame) -> None:
        """Snapshots are point-in-time: a (symbol, as_of) pair is replaced, history kept."""
        if snapshots.is_empty():
            return
        old = self.read_fundamentals()
        merged = (
            snapshots
            if old is None
            else pl.concat([old.join(snapshots, on=["symbol", "as_of"], how="anti"), snapshots], how="diagonal_relaxed")
        )
        atomic_write_parquet(merged.sort("symbol", "as_of"), self.fundamentals_path)
