"""The ``files`` source: the user's own price histories from folders.

Formats recognised (by extension, then by content):
- CSV in Yahoo's shapes: ``Date,Open,High,Low,Close[,Adj Close],Volume`` in any
  column order, dates with or without time and zone, and the extra ticker row
  (or ``Price``/``Ticker``/``Date`` header rows) yfinance's multi-index export
  writes under the header;
- ccxt/freqtrade OHLCV JSON: ``[[ms, open, high, low, close, volume], ...]``;
- Feather/Arrow IPC with ``date, open, high, low, close, volume``;
- Parquet with the canonical columns, one symbol per file or a long file with
  a ``symbol`` column.

The symbol comes from the file name (``^RUT.csv`` -> ``^RUT``, ``BTC-USD.csv``
and ``BTC_USDT-1d.json`` -> ``BTC``). A file that is not a price history is
skipped with a warning naming it; a malformed value in a price history is an
error naming file, row and column, and two different bars for one date (often
mixed time zones) are an error naming file, symbol and date.

Every bar keeps its ``origin``: the file relative to the ``--path`` it was
found under (to its parent when several are given) and where in it, ``crypto/BTC-USD.csv line 42`` (a CSV's line, the
header being line 1, as in the error messages and a spreadsheet's row numbers)
or ``BTC.parquet row 7`` (1-based data row of JSON, Feather and Parquet files).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from flows.sources.base import (
    BAR_SCHEMA,
    ORIGIN,
    SourceBatch,
    SourceError,
    SymbolOutcome,
    conform_assets,
    conform_bars,
)
from flows.universe import Universe, check_symbol, infer_asset_class

log = logging.getLogger(__name__)

# Quote currencies that mark a file name as a crypto pair (BTC-USD, ETH_USDT).
CRYPTO_QUOTES = ("USD", "USDT", "USDC", "BUSD", "FDUSD")
SUFFIXES = {".csv": "csv", ".json": "json", ".feather": "ipc", ".arrow": "ipc", ".ipc": "ipc", ".parquet": "parquet"}
_TIMEFRAME = re.compile(r"[-_](1d|1D|d1|daily)$")
_PAIR = re.compile(r"^(?P<base>[A-Za-z0-9]+)[-_/](?P<quote>[A-Za-z]+)$")
_COLUMN_ALIASES = {
    "date": "date",
    "datetime": "date",
    "timestamp": "date",
    "time": "date",
    "price": "date",  # yfinance multi-index export: the first header cell is "Price"
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "adj close": "adj_close",
    "adj_close": "adj_close",
    "adjclose": "adj_close",
    "volume": "volume",
}
_PRICE_COLUMNS = ("open", "high", "low", "close")
# Where in its file each row was (a CSV's line, otherwise the 1-based row),
# added by every reader and turned into ``origin`` by ``FilesSource``.
_AT = "_at"


class NotAPriceHistory(Exception):
    """The file is readable but is not daily OHLC prices; it is skipped."""


class FileFormatError(SourceError):
    """A price history with a malformed value; the message names file, row and column."""


@dataclass(frozen=True)
class SymbolName:
    symbol: str
    asset_class: str
    quote_currency: str | None
    source_symbol: str


def symbol_from_filename(path: Path, universe: Universe | None = None) -> SymbolName:
    """Canonical symbol and asset class from a file name (universe first, then naming rules)."""
    stem = _TIMEFRAME.sub("", path.stem)
    pair = _PAIR.match(stem)
    if pair and pair["quote"].upper() in CRYPTO_QUOTES:
        base = pair["base"].upper()
        known = universe.get(base) if universe else None
        return SymbolName(check_symbol(base), known.asset_class if known else "crypto", pair["quote"].upper(), stem)
    return classify_symbol(stem, universe)


def classify_symbol(symbol: str, universe: Universe | None = None) -> SymbolName:
    check_symbol(symbol)
    known = universe.get(symbol) if universe else None
    if known is not None:
        return SymbolName(symbol, known.asset_class, known.quote_currency or "USD", symbol)
    pair = _PAIR.match(symbol)
    if pair and pair["quote"].upper() in CRYPTO_QUOTES:
        return SymbolName(pair["base"].upper(), "crypto", pair["quote"].upper(), symbol)
    return SymbolName(symbol, infer_asset_class(symbol), "USD", symbol)


def _parse_dates(values: pl.Series, path: Path, first_row: int) -> pl.Series:
    """Date of each cell as written: an ISO timestamp's own local date, whatever its zone.

    Yahoo writes equities at midnight exchange time and crypto at midnight UTC;
    either way the calendar date in the text is the trading date.
    """
    text = values.str.strip_chars()
    iso = text.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    us = text.str.to_date("%m/%d/%Y", strict=False)
    parsed = iso.fill_null(us)
    bad = parsed.is_null() & text.is_not_null()
    if bad.any():
        i = int(bad.arg_max())
        raise FileFormatError(f"{path}: row {first_row + i}: cannot read date {values[i]!r}")
    return parsed


def _numeric(frame: pl.DataFrame, path: Path, first_row: int) -> pl.DataFrame:
    out = {}
    for col in frame.columns:
        if col == "date":
            continue
        s = frame[col].str.strip_chars()
        s = pl.Series(col, s).replace({"": None, "null": None, "NaN": None, "nan": None})
        f = s.cast(pl.Float64, strict=False)
        bad = f.is_null() & s.is_not_null()
        if bad.any():
            i = int(bad.arg_max())
            raise FileFormatError(f"{path}: row {first_row + i}: column {col!r} is not a number: {s[i]!r}")
        out[col] = f
    return frame.with_columns(**out)


def read_csv(path: Path) -> pl.DataFrame:
    try:
        raw = pl.read_csv(path, infer_schema=False, truncate_ragged_lines=True)
    except pl.exceptions.NoDataError as exc:
        raise NotAPriceHistory("empty file") from exc
    rename = {c: _COLUMN_ALIASES[c.strip().lower()] for c in raw.columns if c.strip().lower() in _COLUMN_ALIASES}
    frame = raw.rename(rename)
    missing = [c for c in ("date", *_PRICE_COLUMNS) if c not in frame.columns]
    if missing:
        raise NotAPriceHistory(f"no {', '.join(missing)} column(s); columns are {raw.columns}")
    frame = frame.select([c for c in ("date", *_PRICE_COLUMNS, "adj_close", "volume") if c in frame.columns])
    # Skip the header rows yfinance's multi-index export adds (ticker row,
    # "Ticker"/"Date" rows): everything before the first row with a date.
    is_date = frame["date"].str.strip_chars().str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False).is_not_null()
    is_date = is_date | frame["date"].str.to_date("%m/%d/%Y", strict=False).is_not_null()
    if not is_date.any():
        raise NotAPriceHistory("no row with a date")
    skip = int(is_date.arg_max())
    frame = frame.slice(skip)
    first_row = 2 + skip  # 1-based line numbers, after the header line
    frame = frame.with_columns(_parse_dates(frame["date"], path, first_row).alias("date"))
    return _numeric(frame, path, first_row).with_row_index(_AT, offset=first_row)


def read_json(path: Path) -> pl.DataFrame:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, list) or not data or not all(isinstance(r, list) for r in data[:5]):
        raise NotAPriceHistory("not a list of [ms, open, high, low, close, volume] rows")
    for i, row in enumerate(data):
        if len(row) < 6 or not all(isinstance(v, (int, float)) or v is None for v in row[:6]):
            raise FileFormatError(f"{path}: row {i + 1}: expected [ms, open, high, low, close, volume], got {row!r}")
    ms = pl.Series([r[0] for r in data], dtype=pl.Int64)
    cols = list(zip(*[r[1:6] for r in data], strict=True))
    return pl.DataFrame(
        {
            "date": ms.cast(pl.Datetime("ms", "UTC")).dt.date(),
            **{name: pl.Series(vals, dtype=pl.Float64) for name, vals in zip(("open", "high", "low", "close", "volume"), cols, strict=True)},
        }
    ).with_row_index(_AT, offset=1)


def _from_table(frame: pl.DataFrame) -> pl.DataFrame:
    rename = {c: _COLUMN_ALIASES.get(c.strip().lower(), c) for c in frame.columns}
    frame = frame.rename(rename)
    missing = [c for c in ("date", *_PRICE_COLUMNS) if c not in frame.columns]
    if missing:
        raise NotAPriceHistory(f"no {', '.join(missing)} column(s); columns are {frame.columns}")
    dtype = frame.schema["date"]
    if isinstance(dtype, pl.Datetime):
        frame = frame.with_columns(pl.col("date").dt.date())
    elif dtype != pl.Date:
        frame = frame.with_columns(pl.col("date").cast(pl.String).str.slice(0, 10).str.to_date("%Y-%m-%d"))
    keep = [c for c in ("symbol", "date", *_PRICE_COLUMNS, "adj_close", "volume") if c in frame.columns]
    return (
        frame.select(keep)
        .with_columns([pl.col(c).cast(pl.Float64) for c in keep if c not in ("symbol", "date")])
        .with_row_index(_AT, offset=1)
    )


def read_ipc(path: Path) -> pl.DataFrame:
    try:
        frame = pl.read_ipc(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise FileFormatError(f"{path}: unreadable Feather/Arrow file: {exc}") from exc
    return _from_table(frame)


def read_parquet(path: Path) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise FileFormatError(f"{path}: unreadable Parquet: {exc}") from exc
    return _from_table(frame)


READERS = {"csv": read_csv, "json": read_json, "ipc": read_ipc, "parquet": read_parquet}


def _complete(frame: pl.DataFrame) -> pl.DataFrame:
    if "adj_close" not in frame.columns:
        # Files without Adj Close (yfinance auto_adjust=True, exchanges) are
        # already adjusted or never adjusted: the close is the adjusted close.
        frame = frame.with_columns(pl.col("close").alias("adj_close"))
    else:
        frame = frame.with_columns(pl.col("adj_close").fill_null(pl.col("close")))
    if "volume" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("volume"))
    return frame


def _one_bar_per_date(part: pl.DataFrame, path: Path, symbol: str, warnings: list[str]) -> pl.DataFrame:
    """Collapse exact repeats; two different bars for one date are an error, not a coin toss."""
    part = part.drop_nulls("date")
    values = [c for c in part.columns if c != ORIGIN]
    exact = part.height - part.unique(values).height
    if exact:
        warnings.append(f"{path}: {symbol}: {exact} exact duplicate row(s) collapsed")
        part = part.unique(values, keep="first", maintain_order=True)
    clash = part.filter(pl.col("date").is_duplicated())
    if clash.height:
        day = clash["date"].min()
        n = clash.filter(pl.col("date") == day).height
        raise FileFormatError(
            f"{path}: {symbol}: date {day} appears {n} times with different values "
            f"({clash.select(pl.col('date').n_unique()).item()} date(s) affected); "
            "keep one bar per date (mixed time zones can map two timestamps to one date)"
        )
    return part.sort("date")


def _symbols_of(frame: pl.DataFrame, path: Path, universe: Universe) -> list[tuple[SymbolName, pl.DataFrame]]:
    """A long file's symbols; a symbol that could not be a ticker names its file and row."""
    parts = []
    rows = frame.with_row_index("_row", offset=1)
    for (s,), g in rows.group_by("symbol", maintain_order=True):
        try:
            parts.append((classify_symbol(s, universe), g.drop("symbol", "_row")))
        except (ValueError, TypeError) as why:
            raise FileFormatError(f"{path}: row {g['_row'][0]}: column 'symbol': {why}") from None
    return parts


def _agree(a: pl.DataFrame, b: pl.DataFrame, rel_tol: float) -> tuple[bool, str]:
    j = a.join(b, on="date", suffix="_b")
    for col in ("open", "high", "low", "close", "adj_close"):
        diff = ((pl.col(col) - pl.col(f"{col}_b")).abs() / pl.col(f"{col}_b").abs().clip(lower_bound=1e-12)) > rel_tol
        bad = j.filter(diff)
        if bad.height:
            r = bad.row(0, named=True)
            return False, f"{col} on {r['date']}: {r[col]} vs {r[col + '_b']}"
    return True, ""


class FilesSource:
    name = "files"

    def __init__(self, paths: list[Path], overlap_rel_tol: float = 1e-4) -> None:
        if not paths:
            raise SourceError("the files source needs at least one --path")
        for p in paths:
            if not Path(p).exists():
                raise SourceError(f"path not found: {p}")
        self.paths = [Path(p) for p in paths]
        self.overlap_rel_tol = overlap_rel_tol

    def discover(self) -> list[Path]:
        return [f for f, _ in self._discover()]

    def _discover(self) -> list[tuple[Path, str]]:
        """Each file and its name relative to the path it was found under (a file path: its
        name); with several paths, relative to that path's parent, so the names stay apart."""
        files: list[tuple[Path, str]] = []
        for p in self.paths:
            base = p.parent if p.is_file() or len(self.paths) > 1 else p
            found = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
            files.extend((f, f.relative_to(base).as_posix()) for f in found)
        return files

    def read_all(self, universe: Universe) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
        """(bars, assets, warnings) over every file; raises on conflicting duplicates."""
        warnings: list[str] = []
        by_symbol: dict[str, tuple[Path, pl.DataFrame]] = {}
        meta: dict[str, dict] = {}
        for path, rel in self._discover():
            kind = SUFFIXES.get(path.suffix.lower())
            try:
                frame = READERS[kind](path)
            except NotAPriceHistory as why:
                warnings.append(f"skipped {path}: not a price history ({why})")
                continue
            where = f"{rel} {'line' if kind == 'csv' else 'row'} "
            frame = frame.with_columns((pl.lit(where) + pl.col(_AT).cast(pl.String)).alias(ORIGIN)).drop(_AT)
            if "symbol" in frame.columns:
                parts = _symbols_of(frame, path, universe)
            else:
                try:
                    name = symbol_from_filename(path, universe)
                except ValueError as why:
                    warnings.append(f"skipped {path}: {why}")
                    continue
                parts = [(name, frame)]
            for name, part in parts:
                part = _one_bar_per_date(_complete(part), path, name.symbol, warnings)
                if name.symbol in by_symbol:
                    other_path, other = by_symbol[name.symbol]
                    ok, detail = _agree(other, part, self.overlap_rel_tol)
                    if not ok:
                        raise SourceError(
                            f"symbol {name.symbol} is in both {other_path} and {path} and they disagree ({detail})"
                        )
                    merged = pl.concat([other, part.filter(~pl.col("date").is_in(other["date"].implode()))], how="diagonal_relaxed")
                    by_symbol[name.symbol] = (other_path, merged.sort("date"))
                else:
                    by_symbol[name.symbol] = (path, part)
                    known = universe.get(name.symbol)
                    meta[name.symbol] = {
                        "symbol": name.symbol,
                        "name": known.name if known else name.symbol,
                        "asset_class": name.asset_class,
                        "sector": known.sector if known else None,
                        "industry": known.industry if known else None,
                        "quote_currency": name.quote_currency,
                        "source": self.name,
                        "source_symbol": name.source_symbol,
                    }
        if not by_symbol:
            # The skip warnings are the only explanation: put them in the error.
            why = "; ".join(warnings[:5]) + (f"; and {len(warnings) - 5} more" if len(warnings) > 5 else "")
            raise SourceError(
                f"no price history found under {', '.join(map(str, self.paths))}" + (f" ({why})" if why else "")
            )
        bars = pl.concat(
            [conform_bars(f.with_columns(pl.lit(sym).alias("symbol"))) for sym, (_, f) in by_symbol.items()]
        )
        return bars, conform_assets(pl.DataFrame(list(meta.values()))), warnings

    def fetch(
        self,
        universe: Universe,
        start: date,
        as_of: date,
        last_dates: dict[str, date],
        stored_tail: pl.DataFrame,
    ) -> SourceBatch:
        bars, assets, warnings = self.read_all(universe)
        # An index keeps its whole record before ``start``: all-time highs
        # look back over all of it (the transform uses it for milestones only).
        indices = assets.filter(pl.col("asset_class") == "index")["symbol"].implode()
        bars = bars.filter(pl.col("date").is_between(start, as_of) | ((pl.col("date") < start) & pl.col("symbol").is_in(indices)))
        for w in warnings:
            log.warning(w)
        outcomes = []
        for sym in assets["symbol"]:
            rows = bars.filter(pl.col("symbol") == sym)
            outcomes.append(
                SymbolOutcome(
                    symbol=sym,
                    source=self.name,
                    status="ok" if rows.height else "skipped",
                    rows=rows.height,
                    first_date=rows["date"].min() if rows.height else None,
                    last_date=rows["date"].max() if rows.height else None,
                    error=None if rows.height else f"no rows between {start} and {as_of}",
                )
            )
        return SourceBatch(bars=bars, assets=assets, outcomes=outcomes, warnings=warnings)


__all__ = ["FilesSource", "FileFormatError", "NotAPriceHistory", "symbol_from_filename", "BAR_SCHEMA"]
