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
and ``BTC_USDT-1d.json`` -> ``BTC``). One pass reads every file and collects
every problem (``InputProblem``: file, symbol, problem, action, line): a file
that cannot be read or is not a price history is skipped; a row with a value
the parser cannot vouch for (a shifted CSV row, a bad date or number, the
text NaN, an empty row, a blank Adj Close, a JSON ``true``) is held back;
every version of a date written twice with different values is held back;
two files disagreeing about one symbol are a conflict (``on_conflict``).
Nothing is guessed, and no message quotes more than a few hundred characters.

Hourly candles (``BTC_USDT-1h.json``, ``BTC-USD_1h.csv``, ``ETH_USDT-60m.feather``:
a crypto pair and ``1h``/``60m``/``hourly`` in the name; same formats and readers,
timestamps in UTC or with an offset) feed crypto bars sampled at the equity close
(``crypto_close="equity_close"``, transforms.crypto_close): each bar's origin is
its closing candle's file and row. With that setting a crypto symbol's daily
files are not used (bars of two conventions never mix) and a crypto symbol with
no hourly file is not published; with the default ``utc_midnight`` hourly files
are not used. Either way a warning says so.

Every bar keeps its ``origin``: the file relative to the ``--path`` it was
found under (to its parent when several are given) and where in it, ``crypto/BTC-USD.csv line 42`` (a CSV's line, the
header being line 1, as in the error messages and a spreadsheet's row numbers)
or ``BTC.parquet row 7`` (1-based data row of JSON, Feather and Parquet files).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from flows.sources.base import (
    ASSET_SCHEMA,
    BAR_SCHEMA,
    ORIGIN,
    SOURCE_BAR_SCHEMA,
    InputProblem,
    SourceBatch,
    SourceError,
    SymbolOutcome,
    conform_assets,
    empty_bars,
)
from flows.sources.files_cursor import (
    CursorLanding,
    CursorState,
    FileRecord,
    InputCursor,
    bytes_digest,
    code_digest,
    combine,
    digest_rows,
    follow_parquet,
    group_records,
    groups_digest,
    row_hashes,
    summarize,
)
from flows.universe import Universe, check_symbol, infer_asset_class
from warehouse.lake import Lake

log = logging.getLogger(__name__)

# Quote currencies that mark a file name as a crypto pair (BTC-USD, ETH_USDT).
CRYPTO_QUOTES = ("USD", "USDT", "USDC", "BUSD", "FDUSD")
SUFFIXES = {".csv": "csv", ".json": "json", ".feather": "ipc", ".arrow": "ipc", ".ipc": "ipc", ".parquet": "parquet"}
_TIMEFRAME = re.compile(r"[-_](1d|1D|d1|daily)$")
_HOURLY = re.compile(r"[-_](1h|1H|h1|60m|hourly)$")
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
# Why a row is held back (null: the row is fine), set by the readers.
_WHY = "_why"
# An hourly file's candle opening instant (UTC), set by the readers with ``keep_time``.
_TS = "_ts"
# Which symbol of its file a row belongs to (0, 1, ... in the order first seen), set by ``FilesSource.read``.
_GROUP = "_group"


def is_hourly(path: Path) -> bool:
    """An hourly candle file by its name (``BTC_USDT-1h.json``)."""
    return bool(_HOURLY.search(path.stem))


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
    stem = _HOURLY.sub("", _TIMEFRAME.sub("", path.stem))
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


# Cell texts that mean "no value" and "not a number" (compared lower-cased).
_NULL_TEXT = ("", "null", "none")
_NAN_TEXT = ("nan", "-nan", "+nan")
# Error messages quote at most this much of a value, a header or a library's
# message: a 300 MB line of NUL bytes must not become a 300 MB warning.
MAX_QUOTE = 40
MAX_MESSAGE = 240
# What the files source may see of a binary file before calling it not text.
_SNIFF_BYTES = 1 << 16
# JSON timestamps outside 1900..2100 are not daily candles (milliseconds).
_MS_RANGE = (-2_208_988_800_000, 4_102_444_800_000)
# Larger JSON integers are no price (and no float can hold them).
_MAX_JSON_INT = 10**300
CONFLICT_POLICIES = ("refuse", "first-path")


def quote(value: object, limit: int = MAX_QUOTE) -> str:
    """``repr(value)``, cut to ``limit`` characters (saying how long it was)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """One line of at most ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit] + " ..."


def _date_text(text: pl.Expr) -> pl.Expr:
    """Date of each cell as written: an ISO timestamp's own local date, whatever its zone.

    Yahoo writes equities at midnight exchange time and crypto at midnight UTC;
    either way the calendar date in the text is the trading date.
    """
    text = text.str.strip_chars()
    iso = text.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    return iso.fill_null(text.str.to_date("%m/%d/%Y", strict=False))


def _why(*reasons: pl.Expr) -> pl.Expr:
    """The reason a row already has, else the first of ``reasons`` that applies, else null."""
    return pl.coalesce([pl.col(_WHY), *reasons]) if reasons else pl.col(_WHY)


def _numbers_from_text(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Text cells to floats; a cell that is not a number (or is the text NaN) marks its row."""
    reasons, values = [], {}
    for col in columns:
        text = pl.col(col).cast(pl.String).str.strip_chars()
        low = text.str.to_lowercase()
        missing = text.is_null() | low.is_in(_NULL_TEXT)
        number = pl.when(missing | low.is_in(_NAN_TEXT)).then(None).otherwise(text).cast(pl.Float64, strict=False)
        shown = text.str.slice(0, MAX_QUOTE)
        # A NaN volume is no volume; a NaN price is refused.
        nan = pl.lit(None, pl.String) if col == "volume" else pl.lit(f"column {col!r} is NaN, not a price")
        reasons.append(
            pl.when(low.is_in(_NAN_TEXT)).then(nan)
            .when(~missing & ~low.is_in(_NAN_TEXT) & number.is_null())
            .then(pl.format(f"column {col!r} is not a number: '{{}}'", shown))
        )
        values[col] = number
    return frame.with_columns(_why(*reasons).alias(_WHY)).with_columns(**values)


def _refuse_missing(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows without a usable close, all-empty rows and blank Adj Close are held back, never guessed."""
    prices = [c for c in _PRICE_COLUMNS if c in frame.columns]
    reasons = [
        pl.when(pl.all_horizontal(pl.col(c).is_null() for c in prices)).then(pl.lit("an empty row (no price)")),
        pl.when(pl.col("date").is_null()).then(pl.lit("no date")),
        pl.when(pl.col("close").is_null()).then(pl.lit("no close")),
    ]
    if "adj_close" in frame.columns:
        reasons.append(
            pl.when(pl.col("adj_close").is_null() & pl.col("close").is_not_null())
            .then(pl.lit("Adj Close is blank; the raw close is not an adjusted close"))
        )
    # A reason found while reading (a shifted row, a bad date or number) comes first.
    return frame.with_columns(_why(*reasons).alias(_WHY))


def _sniff_text(path: Path) -> bytes:
    """The file's bytes, refusing binary data before reading more than its first 64 KiB."""
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
        nul = head.find(b"\x00")
        if nul >= 0:
            raise FileFormatError(f"{path}: binary data (a NUL byte at offset {nul}), not text")
        return head + fh.read()


def _ts_text(text: pl.Expr) -> pl.Expr:
    """An ISO timestamp cell as a UTC instant: with an offset (``+00:00``, ``Z``) or, without one, UTC."""
    t = text.str.strip_chars().str.replace(r"^(\d{4}-\d{2}-\d{2})T", "$1 ").str.replace(r"Z$", "+00:00")
    forms = [
        t.str.to_datetime(f, strict=False, time_unit="ms", time_zone="UTC")
        for f in ("%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d %H:%M%z")
    ] + [
        t.str.to_datetime(f, strict=False, time_unit="ms").dt.replace_time_zone("UTC")
        for f in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")
    ]
    return pl.coalesce(forms)


def read_csv(path: Path, keep_time: bool = False) -> pl.DataFrame:
    data = _sniff_text(path)
    if not data.strip():
        raise NotAPriceHistory("empty file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileFormatError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    lines: list[int] = []
    rows: list[list[str] | None] = []
    shifted: list[str | None] = []
    try:
        for row in reader:
            if not row or not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = row
                continue
            lines.append(reader.line_num)
            if len(row) != len(header):
                rows.append(None)
                shifted.append(f"{len(row)} fields where the header has {len(header)} (a shifted row)")
            else:
                rows.append(row)
                shifted.append(None)
    except csv.Error as exc:
        raise FileFormatError(f"{path}: line {reader.line_num}: unreadable CSV: {clip(str(exc))}") from None
    if header is None:
        raise NotAPriceHistory("empty file")
    names = {i: _COLUMN_ALIASES[c.strip().lower()] for i, c in enumerate(header) if c.strip().lower() in _COLUMN_ALIASES}
    found = set(names.values())
    missing = [c for c in ("date", *_PRICE_COLUMNS) if c not in found]
    if missing:
        shown = ", ".join(quote(c, 30) for c in header[:10]) + (f", ... ({len(header)} columns)" if len(header) > 10 else "")
        raise NotAPriceHistory(f"no {', '.join(missing)} column(s); columns are [{shown}]")
    keep = {}
    for i, name in names.items():
        keep.setdefault(name, i)  # the first column of a name wins
    frame = pl.DataFrame(
        {name: [r[i] if r is not None else None for r in rows] for name, i in keep.items()}
        | {_AT: lines, _WHY: shifted},
        schema={**{name: pl.String for name in keep}, _AT: pl.Int64, _WHY: pl.String},
    )
    frame = frame.select([c for c in ("date", *_PRICE_COLUMNS, "adj_close", "volume", _AT, _WHY) if c in frame.columns])
    # Skip the header rows yfinance's multi-index export adds (ticker row,
    # "Ticker"/"Date" rows): everything before the first row with a date.
    parsed = frame.select(_date_text(pl.col("date"))).to_series()
    if not parsed.is_not_null().any():
        raise NotAPriceHistory("no row with a date")
    skip = int(parsed.is_not_null().arg_max())
    frame = frame.slice(skip).with_columns(date=parsed.slice(skip), _date_text=pl.col("date"))
    if keep_time:
        frame = frame.with_columns(_ts_text(pl.col("_date_text")).alias(_TS))
    frame = frame.with_columns(
        _why(
            pl.when(pl.col("date").is_null() & pl.col(_WHY).is_null())
            .then(pl.format("cannot read date '{}'", pl.col("_date_text").str.slice(0, MAX_QUOTE)))
        ).alias(_WHY)
    ).drop("_date_text")
    return _numbers_from_text(frame, [c for c in (*_PRICE_COLUMNS, "adj_close", "volume") if c in frame.columns])


def read_json(path: Path, keep_time: bool = False) -> pl.DataFrame:
    try:
        data = json.loads(_sniff_text(path))
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{path}: not UTF-8 text (at offset {exc.start})") from None
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise FileFormatError(f"{path}: not valid JSON: {clip(str(exc))}") from None
    if not isinstance(data, list) or not data or not all(isinstance(r, list) for r in data[:5]):
        raise NotAPriceHistory("not a list of [ms, open, high, low, close, volume] rows")
    names = ("open", "high", "low", "close", "volume")
    cols: dict[str, list] = {"ms": [], **{n: [] for n in names}, _WHY: []}
    for row in data:
        why = None
        if not isinstance(row, list) or len(row) < 6:
            why = f"expected [ms, open, high, low, close, volume], got {quote(row)}"
        elif not _is_ms(row[0]):
            why = f"timestamp {quote(row[0])} is not milliseconds between 1900 and 2100"
        else:
            for name, v in zip(names, row[1:6], strict=True):
                if isinstance(v, bool) or not isinstance(v, (int, float, type(None))):
                    why = f"{name} is {quote(v)}, not a number"
                elif isinstance(v, int) and abs(v) > _MAX_JSON_INT:
                    why = f"{name} is {quote(v)}, out of range"
                elif isinstance(v, float) and not math.isfinite(v) and name != "volume":
                    why = f"{name} is {v}, not a price"
                if why:
                    break
        ok = why is None
        cols["ms"].append(int(row[0]) if ok else None)
        for i, name in enumerate(names, start=1):
            v = row[i] if ok else None
            cols[name].append(float(v) if v is not None else None)
        cols[_WHY].append(why)
    frame = pl.DataFrame(cols, schema={"ms": pl.Int64, **{n: pl.Float64 for n in names}, _WHY: pl.String})
    return (
        frame.with_columns(date=pl.col("ms").cast(pl.Datetime("ms", "UTC")).dt.date(),
                           **{_TS: pl.col("ms").cast(pl.Datetime("ms", "UTC"))})
        .select("date", *names, _WHY, *([_TS] if keep_time else []))
        .with_row_index(_AT, offset=1)
    )


def _is_ms(value: object) -> bool:
    """A JSON candle's timestamp: whole milliseconds (written as an integer or an integral float) in 1900..2100."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return False
    return _MS_RANGE[0] <= value < _MS_RANGE[1]


def _from_table(frame: pl.DataFrame, path: Path, keep_time: bool = False, skipped: int = 0) -> pl.DataFrame:
    rename = {c: _COLUMN_ALIASES.get(c.strip().lower(), c) for c in frame.columns}
    if len(set(rename.values())) < len(rename):
        frame = frame.select(list({v: k for k, v in reversed(rename.items())}.values()))
        rename = {c: _COLUMN_ALIASES.get(c.strip().lower(), c) for c in frame.columns}
    frame = frame.rename(rename)
    missing = [c for c in ("date", *_PRICE_COLUMNS) if c not in frame.columns]
    if missing:
        shown = ", ".join(quote(c, 30) for c in frame.columns[:10])
        raise NotAPriceHistory(f"no {', '.join(missing)} column(s); columns are [{shown}]")
    keep = [c for c in ("symbol", "date", *_PRICE_COLUMNS, "adj_close", "volume") if c in frame.columns]
    # ``skipped``: the frame is the file's rows after that many (read through the input cursor).
    frame = frame.select(keep).with_row_index(_AT, offset=1 + skipped).with_columns(pl.lit(None, pl.String).alias(_WHY))
    dtype = frame.schema["date"]
    if keep_time:
        if isinstance(dtype, pl.Datetime):
            ts = pl.col("date") if dtype.time_zone else pl.col("date").dt.replace_time_zone("UTC")
            ts = ts.dt.convert_time_zone("UTC").dt.cast_time_unit("ms")
        else:
            ts = _ts_text(pl.col("date").cast(pl.String)) if dtype == pl.String else pl.lit(None, pl.Datetime("ms", "UTC"))
        frame = frame.with_columns(ts.alias(_TS))
    if isinstance(dtype, pl.Datetime):
        frame = frame.with_columns(pl.col("date").dt.date())
    elif dtype == pl.String:
        text = pl.col("date")
        frame = frame.with_columns(
            date=_date_text(text),
            **{_WHY: pl.when(_date_text(text).is_null()).then(pl.format("cannot read date '{}'", text.str.slice(0, MAX_QUOTE)))},
        )
    elif dtype != pl.Date:
        raise FileFormatError(f"{path}: column 'date' holds {dtype}, not dates")
    numbers = [c for c in keep if c not in ("symbol", "date")]
    for c in numbers:
        if frame.schema[c] == pl.Boolean or not (frame.schema[c].is_numeric() or frame.schema[c] == pl.String):
            raise FileFormatError(f"{path}: column {c!r} holds {frame.schema[c]}, not numbers")
    text = [c for c in numbers if frame.schema[c] == pl.String]
    frame = _numbers_from_text(frame, text) if text else frame
    nan = [
        pl.when(pl.col(c).is_nan()).then(pl.lit(f"column {c!r} is NaN, not a price"))
        for c in numbers if c != "volume"
    ]
    return frame.with_columns([pl.col(c).cast(pl.Float64) for c in numbers]).with_columns(_why(*nan).alias(_WHY))


def read_ipc(path: Path, keep_time: bool = False) -> pl.DataFrame:
    try:
        frame = pl.read_ipc(path)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise FileFormatError(f"{path}: unreadable Feather/Arrow file: {clip(str(exc))}") from None
    return _from_table(frame, path, keep_time)


def parquet_table(path: Path, skip: int = 0) -> pl.DataFrame:
    """The file's table as stored, or its rows after the first ``skip``."""
    try:
        # read_parquet is this scan collected; the slice skips the row groups before ``skip`` unread.
        return pl.scan_parquet(path).slice(skip).collect() if skip else pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise FileFormatError(f"{path}: unreadable Parquet: {clip(str(exc))}") from None


def read_parquet(path: Path, keep_time: bool = False, skip: int = 0) -> pl.DataFrame:
    """The file's rows, or those after the first ``skip`` (numbered as in the whole file)."""
    return _from_table(parquet_table(path, skip), path, keep_time, skipped=skip)


READERS = {"csv": read_csv, "json": read_json, "ipc": read_ipc, "parquet": read_parquet}


def read_hashed(path: Path, kind: str) -> tuple[pl.DataFrame, pl.Schema, bytes]:
    """A daily file's rows, and what the input cursor digests of them: each row's hash (``row_hashes``)
    and the schema hashed with them. A Parquet file's rows are hashed as stored: its decoded rows are
    a function of them row by row (``_from_table``), and hashing the stored ones costs half as much
    (0.5 against 1.0 CPU s for 8.8 M rows: no row numbers, reasons, or casts to hash)."""
    if kind == "parquet":
        table = parquet_table(path)
        return _from_table(table, path), table.schema, row_hashes(table)
    frame = READERS[kind](path)
    return frame, frame.schema, row_hashes(frame)


def _complete(frame: pl.DataFrame) -> pl.DataFrame:
    if "adj_close" not in frame.columns:
        # Files without Adj Close (yfinance auto_adjust=True, exchanges) are
        # already adjusted or never adjusted: the close is the adjusted close.
        # A blank Adj Close in a file that has the column is held back
        # (``_refuse_missing``), never filled with the raw close.
        frame = frame.with_columns(pl.col("close").alias("adj_close"))
    if "volume" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("volume"))
    return frame


def _line_of(origin: str, rel: str) -> str:
    return origin[len(rel) + 1 :]


def _symbol_groups(
    frame: pl.DataFrame, rel: str, universe: Universe, problems: list[InputProblem]
) -> tuple[pl.DataFrame, dict[int, SymbolName]]:
    """A long file's symbols: each value of its ``symbol`` column is a group (``_GROUP``, numbered in
    the order first seen) named by ``classify_symbol``; the rows of a value that could not be a ticker
    are held back, naming each row. Returns the other rows (``symbol`` dropped) and the groups."""
    values = frame.select(pl.col("symbol").unique(maintain_order=True)).with_row_index(_GROUP)
    groups: dict[int, SymbolName] = {}
    bad: dict[int, str] = {}
    for i, s in values.iter_rows():
        try:
            groups[i] = classify_symbol(s, universe)
        except (ValueError, TypeError) as why:
            bad[i] = clip(str(why))
    frame = frame.join(values, on="symbol", how="left", nulls_equal=True, maintain_order="left").drop("symbol")
    if bad:
        held = frame.filter(pl.col(_GROUP).is_in(list(bad))).sort(_GROUP, maintain_order=True)
        for i, origin in held.select(_GROUP, ORIGIN).iter_rows():
            problems.append(InputProblem(
                rel, f"column 'symbol': {bad[i]}", "row held back", "row_unreadable", line=_line_of(origin, rel),
            ))
        frame = frame.filter(~pl.col(_GROUP).is_in(list(bad)))
    return frame, groups


def _split(frame: pl.DataFrame, groups: dict[int, SymbolName]) -> list[tuple[SymbolName, pl.DataFrame]]:
    """Each group's rows (``_GROUP`` dropped), in group order; a group with no rows left gets an empty frame."""
    found = frame.partition_by(_GROUP, as_dict=True, include_key=False, maintain_order=True)
    empty = frame.clear().drop(_GROUP)
    return [(sym, found.get((i,), empty)) for i, sym in groups.items()]


def _daily_parts(
    frame: pl.DataFrame, groups: dict[int, SymbolName], rel: str, warnings: list[str], problems: list[InputProblem],
    split: bool = True,
) -> list[tuple[SymbolName, pl.DataFrame]] | pl.DataFrame:
    """One file's daily bars per symbol, checked over the whole file at once: rows the contracts cannot vouch
    for are held back (``_refuse_missing``), exact repeats collapsed, and every version of a date written twice
    with different values held back. Problems come per symbol in the order found, each symbol's held-back rows
    by line, then its clashing dates by date."""
    part = _refuse_missing(frame)
    held = part.filter(pl.col(_WHY).is_not_null()).select(_GROUP, ORIGIN, "date", _WHY)
    part = _complete(part.filter(pl.col(_WHY).is_null()).drop(_WHY))
    # Only rows sharing a symbol and a date can repeat or contradict each other: look among those alone.
    twice = part.select(_day_key().is_duplicated()).to_series()
    kept, clash, collapsed = part, part.clear(), {}
    if twice.any():
        part = part.with_row_index("_row")
        values = [c for c in part.columns if c not in (ORIGIN, "_row")]  # _GROUP among them: per symbol
        dup = part.filter(twice)
        once = dup.unique(values, keep="first", maintain_order=True)
        n = dup.group_by(_GROUP).len().join(once.group_by(_GROUP).len(), on=_GROUP, suffix="_kept")
        collapsed = {i: a - b for i, a, b in n.iter_rows() if a > b}
        again = once.select(_day_key().is_duplicated()).to_series()
        clash = once.filter(again).drop("_row")
        kept = pl.concat([part.filter(~twice), once.filter(~again)]).sort("_row").drop("_row")
    clash = clash.with_columns(
        n=pl.len().over(_GROUP, "date"), days=pl.col("date").n_unique().over(_GROUP)
    ).sort(_GROUP, "date", maintain_order=True)
    by_group: dict[int, list[InputProblem]] = {}
    for i, origin, day, why in held.iter_rows():
        by_group.setdefault(i, []).append(InputProblem(
            rel, why, "row held back", _row_kind(why), groups[i].symbol, _line_of(origin, rel), day,
        ))
    for r in clash.iter_rows(named=True):
        by_group.setdefault(r[_GROUP], []).append(InputProblem(
            rel,
            f"date {r['date']} appears {r['n']} times with different values (close {r['close']}); "
            "mixed time zones can map two timestamps to one date",
            f"every version of the date held back ({r['days']} date(s)), the rest of the file kept",
            "duplicate_date_conflict", groups[r[_GROUP]].symbol, _line_of(r[ORIGIN], rel), r["date"],
        ))
    for i, sym in groups.items():
        problems.extend(by_group.get(i, []))
        if i in collapsed:
            warnings.append(f"{rel}: {sym.symbol}: {collapsed[i]} exact duplicate row(s) collapsed")
    # Each symbol's rows in file order: ``read`` sorts each history by date once, at the end.
    return _split(kept, groups) if split else kept  # unsplit: every symbol's rows, ``_GROUP`` kept


def _day_key() -> pl.Expr:
    """A row's symbol in its file (``_GROUP``) and date as one integer: cheaper to hash than the pair."""
    return pl.col(_GROUP).cast(pl.Int64) * (1 << 32) + pl.col("date").cast(pl.Int64)


def _disagreement(a: pl.DataFrame, b: pl.DataFrame, rel_tol: float) -> str | None:
    """Why two files' bars for one symbol differ on shared dates, with the likely cause; None if they agree."""
    j = a.join(b, on="date", suffix="_b").sort("date")
    cols = ("close", "adj_close", "open", "high", "low")

    def off(x: str, y: str) -> pl.Expr:
        return ((pl.col(x) - pl.col(y)).abs() / pl.col(y).abs().clip(lower_bound=1e-12)) > rel_tol

    bad = j.filter(pl.any_horizontal(off(c, f"{c}_b").fill_null(False) for c in cols))
    if bad.is_empty():
        return None
    r = bad.row(0, named=True)
    col = next(c for c in cols if r[c] is not None and r[f"{c}_b"] is not None
               and abs(r[c] - r[f"{c}_b"]) / max(abs(r[f"{c}_b"]), 1e-12) > rel_tol)
    first = f"{col} on {r['date']}: {r[col]} vs {r[col + '_b']}"
    share = f"{bad.height} of {j.height} shared dates differ"
    if j.height < 5:
        return f"{first}; {share}"
    many = bad.height * 2 >= j.height

    def ratio(x: str, y: str) -> tuple[float, float, float] | None:
        """(median, min, max) of x / y over the shared dates."""
        r = j.select((pl.col(x) / pl.col(y)).alias("r")).to_series().drop_nulls()
        r = r.filter(r.is_finite() & (r > 0))
        return (r.median(), r.min(), r.max()) if r.len() else None

    def spread(q: tuple[float, float, float] | None) -> float:
        return float("inf") if q is None else q[2] / q[1] - 1

    closes = ratio("close", "close_b")
    # One file's Adj Close following the other's close more steadily than the closes follow each other.
    for x, y, who in (("adj_close", "close_b", "the first file's Adj Close tracks the second's close"),
                      ("close", "adj_close_b", "the first file's close tracks the second's Adj Close")):
        q = ratio(x, y)
        if many and spread(q) < 0.02 and spread(q) < spread(closes):
            return (f"{first}; {share}; {who} (ratio {q[0]:.4f}, {q[1]:.4f}..{q[2]:.4f}), closer than the closes "
                    f"do: adjusted vs raw prices")
    if many and spread(closes) < 0.05:
        mid, lo, hi = closes
        return (f"{first}; {share}; close ratio roughly constant ({mid:.4f}, {lo:.4f}..{hi:.4f}): "
                "likely adjusted vs raw prices (or adjusted at different dates)")
    if many and closes is not None:
        return (f"{first}; {share}; close ratio drifts from {closes[1]:.4f} to {closes[2]:.4f}: "
                "likely a different adjustment basis (dividend-adjusted vs raw) or another instrument")
    return f"{first}; {share}: likely revised or bad rows in one of the files"


@dataclass
class FilesRead:
    """Everything one pass over the inputs found."""

    bars: pl.DataFrame
    assets: pl.DataFrame
    warnings: list[str]
    problems: list[InputProblem]
    # Per symbol not published: (status, why) for ingest_log.
    failed: dict[str, tuple[str, str]]
    # What an input cursor records of each file (None: this read cannot be a cursor's base).
    records: list[FileRecord] | None = None
    # Read through the input cursor: ``bars`` are only the rows after the recorded ones, and the
    # rest (problems, warnings, failed, each symbol's old rows) is the recorded state's.
    old: CursorState | None = None

    @property
    def last_date(self) -> date | None:
        last = self.bars["date"].max()
        if self.old is not None and self.old.summary.height:
            last = max(d for d in (last, self.old.summary["last"].max()) if d is not None)
        return last


class FilesSource:
    name = "files"
    reads_stored_tail = False  # the files are the whole snapshot
    reads_last_dates = False  # likewise: what is new is found in the files (the input cursor), not the lake

    def __init__(
        self, paths: list[Path], overlap_rel_tol: float = 1e-4, on_conflict: str = "refuse",
        crypto_close: str = "utc_midnight", calendar: str = "XNYS", lake: Lake | None = None,
    ) -> None:
        check_paths(paths)
        self.crypto_close = crypto_close
        self.calendar = calendar
        if on_conflict not in CONFLICT_POLICIES:
            raise SourceError(f"unknown conflict policy {on_conflict!r}: choose {' or '.join(CONFLICT_POLICIES)}")
        self.paths = [Path(p) for p in paths]
        self.overlap_rel_tol = overlap_rel_tol
        self.on_conflict = on_conflict
        self._memo: tuple[Universe, FilesRead] | None = None
        # The input cursor of the lake this source lands in (files_cursor): none without a lake.
        self.cursor = InputCursor(lake) if lake is not None else None

    def cursor_key(self, universe: Universe) -> dict:
        """Everything besides the files that decides what a read returns: another value, a full read."""
        import pyarrow

        return {
            "source": self.name, "polars": pl.__version__, "pyarrow": pyarrow.__version__, "code": code_digest(),
            "paths": [str(p.resolve()) for p in self.paths], "given": [str(p) for p in self.paths],
            "on_conflict": self.on_conflict, "overlap_rel_tol": repr(self.overlap_rel_tol),
            "crypto_close": self.crypto_close, "calendar": self.calendar,
            "universe": hashlib.blake2b(universe.model_dump_json().encode(), digest_size=16).hexdigest(),
        }

    def _discover(self) -> list[tuple[Path, str]]:
        """Each file and its name relative to the path it was found under (a file path: its
        name); with several paths, relative to that path's parent, so the names stay apart.
        In the order of the paths given, then by name: the order "first path wins" follows."""
        files: list[tuple[Path, str]] = []
        for p in self.paths:
            base = p.parent if p.is_file() or len(self.paths) > 1 else p
            found = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
            files.extend((f, f.relative_to(base).as_posix()) for f in found)
        return files

    def read(self, universe: Universe) -> FilesRead:
        """One pass over every file: what is valid, and every problem found (never only the first).

        Through the input cursor when it holds: only the rows after those the last landed run read."""
        if self._memo is not None and self._memo[0] == universe:
            return self._memo[1]
        state = self.cursor.load(self.cursor_key(universe), ASSET_SCHEMA) if self.cursor is not None else None
        done = self._read_after(universe, state) if state is not None else None
        if done is None:
            done = self._read_full(universe)
        self._memo = (universe, done)
        return done

    def _read_after(self, universe: Universe, state: CursorState) -> FilesRead | None:
        """The rows after those ``state`` recorded, or None (why logged) when a full read is needed."""
        found = self._discover()
        if [(str(p), rel) for p, rel in found] != [(f.path, f.rel) for f in state.files]:
            self.cursor.not_used("the input files are not the ones it recorded")
            return None
        owner = {sym: i for i, f in enumerate(state.files) for sym in f.symbols}
        last = dict(state.summary.select("symbol", "last").iter_rows())
        records: list[FileRecord] = []
        new: list[pl.DataFrame] = []  # each file's new bars
        names: list[SymbolName] = []  # the symbols they are of
        for i, ((path, rel), rec) in enumerate(zip(found, state.files, strict=True)):
            if rec.mode == "bytes":
                if bytes_digest(path) != rec.digest:
                    self.cursor.not_used("%s changed (a file the cursor does not follow row by row)", rel)
                    return None
                records.append(rec)
                continue
            kind = SUFFIXES[path.suffix.lower()]
            try:
                if rec.groups is not None and kind == "parquet":
                    # Only the row groups from the first not byte for byte as recorded are decoded, and
                    # of their rows only the new ones parsed (the stored rows are what is hashed).
                    grown = follow_parquet(path, rec, lambda p, skip: parquet_table(p, skip))
                    if grown is None:
                        self.cursor.not_used("%s: its first %d rows changed", rel, rec.rows)
                        return None
                    height, followed = grown.skipped + grown.frame.height, grown.groups
                    whole = groups_digest(followed)
                    added = _from_table(grown.frame.slice(rec.rows - grown.skipped), path, skipped=rec.rows)
                else:
                    before = os.stat(path)
                    frame, schema, hashes = read_hashed(path, kind)
                    first = digest_rows(schema, memoryview(hashes)[: 8 * min(rec.rows, frame.height)])
                    if frame.height < rec.rows or first != rec.digest:
                        self.cursor.not_used("%s: its first %d rows changed", rel, rec.rows)
                        return None
                    # A Parquet file is followed by row group from now on.
                    followed = group_records(path, schema, hashes, before) if kind == "parquet" else None
                    whole = groups_digest(followed) if followed else digest_rows(schema, hashes)
                    height, added = frame.height, frame.slice(rec.rows)
            except (NotAPriceHistory, FileFormatError, OSError):
                self.cursor.not_used("%s no longer reads as it did", rel)
                return None
            symbols = set(rec.symbols)
            if added.height:
                problems: list[InputProblem] = []
                warnings: list[str] = []
                where = f"{rel} {'line' if kind == 'csv' else 'row'} "
                added = added.with_columns((pl.lit(where) + pl.col(_AT).cast(pl.String)).alias(ORIGIN)).drop(_AT)
                if "symbol" in added.columns:
                    added, groups = _symbol_groups(added, rel, universe, problems)
                else:
                    groups = {0: symbol_from_filename(path, universe)}
                    added = added.with_columns(pl.lit(0, pl.UInt32).alias(_GROUP))
                kept = _daily_parts(added, groups, rel, warnings, problems, split=False)
                if len({n.symbol for n in groups.values()}) < len(groups):
                    self.cursor.not_used("two values of %s's symbol column name one symbol", rel)
                    return None
                if problems or warnings:
                    self.cursor.not_used("the new rows of %s have problems", rel)
                    return None
                # Per symbol at once, not one frame per symbol (2,000 of them a night).
                for g, first in kept.group_by(_GROUP).agg(pl.col("date").min()).sort(_GROUP).iter_rows():
                    sym = groups[g]
                    if owner.get(sym.symbol, i) != i or sym.symbol in state.failed:
                        self.cursor.not_used("%s's new rows are of %s, also in another file", rel, sym.symbol)
                        return None
                    if sym.symbol in last and first <= last[sym.symbol]:
                        self.cursor.not_used("%s's new rows of %s are not after %s", rel, sym.symbol,
                                 last[sym.symbol])
                        return None
                    owner[sym.symbol] = i
                    symbols.add(sym.symbol)
                    names.append(sym)
                named = pl.DataFrame({_GROUP: list(groups), "symbol": [n.symbol for n in groups.values()]},
                                     schema={_GROUP: pl.UInt32, "symbol": pl.String})
                new.append(kept.join(named, on=_GROUP).select(
                    pl.col(c).cast(t) for c, t in SOURCE_BAR_SCHEMA.items()
                ))
            records.append(FileRecord(str(path), rel, "rows", whole, height, sorted(symbols), followed))
        known = set(state.assets["symbol"])
        meta = [self._asset(sym, universe) for sym in names if sym.symbol not in known]
        assets = pl.concat([state.assets, pl.DataFrame(meta, schema=ASSET_SCHEMA)]) if meta else state.assets
        # By symbol, each by date (as the full read hands each symbol's history on).
        bars = pl.concat(new).sort("symbol", "date", maintain_order=True) if new else empty_bars()
        return FilesRead(
            bars, conform_assets(assets), list(state.warnings), list(state.problems), dict(state.failed),
            records=records, old=state,
        )

    def _asset(self, name: SymbolName, universe: Universe) -> dict:
        """A symbol's ``dim_asset`` row: the universe's name and sector, the file's class and currency."""
        known = universe.get(name.symbol)
        return {
            "symbol": name.symbol,
            "name": known.name if known else name.symbol,
            "asset_class": name.asset_class,
            "sector": known.sector if known else None,
            "industry": known.industry if known else None,
            "quote_currency": name.quote_currency,
            "source": self.name,
            "source_symbol": name.source_symbol,
        }

    @staticmethod
    def _bars(symbol: str, frame: pl.DataFrame) -> pl.DataFrame:
        """One symbol's bars as the source hands them on, by date (as ``conform_bars`` sorts one symbol's frame)."""
        return frame.select(
            pl.lit(symbol, t).alias(c) if c == "symbol" else pl.col(c).cast(t) for c, t in SOURCE_BAR_SCHEMA.items()
        ).sort("date")

    def _read_full(self, universe: Universe) -> FilesRead:
        """Every row of every file (today's read), and what an input cursor records of each file."""
        warnings: list[str] = []
        problems: list[InputProblem] = []
        parts: dict[str, list[tuple[str, pl.DataFrame]]] = {}
        names: dict[str, SymbolName] = {}
        failed_files: dict[str, tuple[str, str]] = {}
        hourly: dict[str, list[tuple[str, pl.DataFrame]]] = {}
        seen: list[dict] = []  # per file, what an input cursor records
        for path, rel in self._discover():
            kind = SUFFIXES.get(path.suffix.lower())
            info = {"path": path, "rel": rel, "problems": len(problems), "warnings": len(warnings),
                    "digest": None, "rows": 0, "symbols": set(), "groups": None}
            seen.append(info)
            try:
                name = symbol_from_filename(path, universe)
            except ValueError as why:
                name = None
                naming = clip(str(why))
            try:
                if kind is None:
                    raise NotAPriceHistory(f"unknown file type {quote(path.suffix or path.name, 20)}")
                hour = is_hourly(path)
                if hour and name is not None and name.asset_class not in ("crypto", "index_crypto"):
                    raise NotAPriceHistory(f"hourly candles of {name.symbol}, not a crypto pair: only crypto is "
                                           "sampled from hourly candles")
                before = os.stat(path)
                if hour:
                    frame = READERS[kind](path, keep_time=True)
                else:
                    frame, schema, hashes = read_hashed(path, kind)
            except NotAPriceHistory as why:
                problems.append(InputProblem(rel, f"not a price history ({clip(str(why))})", "file skipped",
                                             "file_not_price_history", name.symbol if name else None))
                if name:
                    failed_files.setdefault(name.symbol, ("skipped", f"{rel}: not a price history ({clip(str(why))})"))
                    info["symbols"].add(name.symbol)
                continue
            except (FileFormatError, OSError) as why:
                text = clip(str(why).replace(str(path), rel))
                text = text[len(rel) + 2:] if text.startswith(rel + ": ") else text
                problems.append(InputProblem(rel, text, "file skipped", "file_unreadable", name.symbol if name else None))
                if name:
                    failed_files[name.symbol] = ("error", f"{rel}: {text}")
                    info["symbols"].add(name.symbol)
                continue
            if not hour:  # the rows' digests, for the input cursor
                info["rows"], info["digest"] = frame.height, digest_rows(schema, hashes)
                if kind == "parquet" and self.cursor is not None:
                    info["groups"] = group_records(path, schema, hashes, before)
                    info["digest"] = groups_digest(info["groups"]) if info["groups"] else info["digest"]
            where = f"{rel} {'line' if kind == 'csv' else 'row'} "
            frame = frame.with_columns((pl.lit(where) + pl.col(_AT).cast(pl.String)).alias(ORIGIN)).drop(_AT)
            if "symbol" in frame.columns:
                frame, groups = _symbol_groups(frame, rel, universe, problems)
            elif name is None:
                problems.append(InputProblem(rel, f"file name is not a symbol: {naming}", "file skipped",
                                             "file_name_not_symbol"))
                continue
            else:
                frame, groups = frame.with_columns(pl.lit(0, pl.UInt32).alias(_GROUP)), {0: name}
            info["symbols"].update(sym.symbol for sym in groups.values())
            if hour:
                for sym, part in _split(frame, groups):
                    names.setdefault(sym.symbol, sym)
                    hourly.setdefault(sym.symbol, []).append((rel, self._hourly_rows(part, rel, sym.symbol, problems)))
                continue
            for sym, part in _daily_parts(frame, groups, rel, warnings, problems):
                names.setdefault(sym.symbol, sym)
                parts.setdefault(sym.symbol, []).append((rel, part))
        # A symbol in two files, or named by two values of one file, is merged from its parts: not followed.
        records = self._records(seen, len(problems), len(warnings)) if all(len(f) == 1 for f in parts.values()) else None
        at_close = self._equity_close_bars(hourly, parts, names, failed_files, warnings)
        by_symbol, conflicts = self._merge(parts)
        by_symbol.update(at_close)
        failed = {s: v for s, v in failed_files.items() if s not in by_symbol}
        for sym, (rel, other, detail) in conflicts.items():
            refused = self.on_conflict == "refuse"
            action = ("symbol not published (XASSET_FILES_ON_CONFLICT=first-path lets the earlier --path win)"
                      if refused else f"{rel} wins on shared dates (XASSET_FILES_ON_CONFLICT=first-path)")
            problems.append(InputProblem(other, f"{sym} disagrees with {rel}: {detail}", action, "symbol_conflict", sym))
            if refused:
                failed[sym] = ("error", f"{rel} and {other} disagree: {detail}")
        if conflicts:
            listed = "; ".join(f"{s} ({r} vs {o}: {d})" for s, (r, o, d) in conflicts.items())
            warnings.append(
                f"{len(conflicts)} symbol(s) are in more than one file and disagree: {listed}. "
                + ("Not published; set XASSET_FILES_ON_CONFLICT=first-path to let the file of the earlier --path win."
                   if self.on_conflict == "refuse" else "The file of the earlier --path wins on shared dates.")
            )
        for sym in [s for s, f in by_symbol.items() if f.is_empty()]:
            del by_symbol[sym]
            failed.setdefault(sym, ("error", "every row was held back (see the quarantine table)"))
        if not by_symbol:
            # The problems are the only explanation: put them in the error.
            why = "; ".join(clip(p.text(), 160) for p in problems[:5]) + (
                f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise SourceError(
                f"no price history found under {', '.join(map(str, self.paths))}" + (f" ({why})" if why else "")
            )
        meta = [self._asset(names[sym], universe) for sym in by_symbol]
        # Symbols in the order found, each by date (as ``conform_bars`` sorts one symbol's frame).
        bars = pl.concat([self._bars(sym, f) for sym, f in by_symbol.items()])
        return FilesRead(bars, conform_assets(pl.DataFrame(meta, schema=ASSET_SCHEMA)), warnings, problems, failed,
                         records=records)

    def _records(self, seen: list[dict], problems: int, warnings: int) -> list[FileRecord] | None:
        """What an input cursor records of each file read (``seen``), or None if it cannot follow this input:
        crypto sampled at the equity close, or a symbol in more than one file (their merge needs every row).

        A file whose rows all passed (no problem, no warning) is followed row by row; any other
        must stay byte for byte as it is for the cursor to hold."""
        if self.crypto_close != "utc_midnight" or self.cursor is None:
            return None
        owners: dict[str, int] = {}
        for info in seen:
            for sym in info["symbols"]:
                owners[sym] = owners.get(sym, 0) + 1
        if any(n > 1 for n in owners.values()):
            return None
        records = []
        for k, info in enumerate(seen):
            after = seen[k + 1] if k + 1 < len(seen) else {"problems": problems, "warnings": warnings}
            clean = info["problems"] == after["problems"] and info["warnings"] == after["warnings"]
            path, rel, symbols = info["path"], info["rel"], sorted(info["symbols"])
            if clean and info["digest"] is not None:
                records.append(FileRecord(str(path), rel, "rows", info["digest"], info["rows"], symbols, info["groups"]))
            else:
                try:
                    records.append(FileRecord(str(path), rel, "bytes", bytes_digest(path), 0, symbols))
                except OSError:
                    return None
        return records

    @staticmethod
    def _hourly_rows(part: pl.DataFrame, rel: str, symbol: str, problems: list[InputProblem]) -> pl.DataFrame:
        """An hourly file's valid candles (``_TS``, prices, ``origin``); every other row is a problem."""
        part = _refuse_missing(part).with_columns(
            _why(pl.when(pl.col(_TS).is_null()).then(pl.lit("no time of day: an hourly file needs timestamps"))).alias(_WHY)
        )
        for r in part.filter(pl.col(_WHY).is_not_null()).select(ORIGIN, "date", _WHY).iter_rows(named=True):
            problems.append(InputProblem(rel, r[_WHY], "row held back", _row_kind(r[_WHY]), symbol,
                                         _line_of(r[ORIGIN], rel), r["date"]))
        part = _complete(part.filter(pl.col(_WHY).is_null()).drop(_WHY))
        values = [c for c in part.columns if c not in (ORIGIN, "date")]
        part = part.unique(values, keep="first", maintain_order=True)
        clash = part.filter(pl.col(_TS).is_duplicated())
        for r in clash.sort(_TS).iter_rows(named=True):
            problems.append(InputProblem(
                rel, f"hour {r[_TS]:%Y-%m-%d %H:%M} UTC appears more than once with different values (close {r['close']})",
                "every version of the hour held back", "duplicate_date_conflict", symbol, _line_of(r[ORIGIN], rel),
                r["date"],
            ))
        return part.filter(~pl.col(_TS).is_duplicated())

    def _equity_close_bars(
        self, hourly: dict[str, list[tuple[str, pl.DataFrame]]], parts: dict[str, list[tuple[str, pl.DataFrame]]],
        names: dict[str, SymbolName], failed: dict[str, tuple[str, str]], warnings: list[str],
    ) -> dict[str, pl.DataFrame]:
        """Crypto daily bars sampled at the equity close from the hourly files, when the setting asks for them.

        Removes crypto symbols' daily parts from ``parts`` then (never two conventions in one history).
        """
        if self.crypto_close != "equity_close":
            if hourly:
                files = sorted({rel for found in hourly.values() for rel, _ in found})
                warnings.append(
                    f"{len(files)} hourly file(s) not used ({', '.join(files[:5])}{' ...' if len(files) > 5 else ''}): "
                    "hourly candles feed crypto bars only with XASSET_CRYPTO_CLOSE=equity_close"
                )
            return {}
        from flows.calendar import equity_closes
        from transforms.crypto_close import HOURLY_SCHEMA, bar_spans, equity_close_bars

        out: dict[str, pl.DataFrame] = {}
        for sym, found in hourly.items():
            # The first file holding an hour wins; the others add the hours it lacks.
            merged = pl.concat([f for _, f in found], how="diagonal_relaxed").unique(_TS, keep="first", maintain_order=True)
            if merged.is_empty():
                failed.setdefault(sym, ("error", "every row of its hourly file(s) was held back"))
                continue
            candles = merged.with_columns(pl.lit(sym).alias("symbol"), pl.col(_TS).alias("ts"))
            first = candles["ts"].min().date() - timedelta(days=1)
            closes = equity_closes(first, candles["ts"].max().date() + timedelta(days=1), self.calendar)
            bars = equity_close_bars(candles.select(list(HOURLY_SCHEMA)), closes)
            # Each bar comes from its closing candle's file and row.
            at = bar_spans(closes).select("date", (pl.col("close_at") - timedelta(hours=1)).alias("ts"))
            origin = at.join(candles.select("ts", ORIGIN), on="ts").select("date", ORIGIN)
            if bars.is_empty():
                failed.setdefault(sym, ("error", f"its hourly candles ({candles['ts'].min():%Y-%m-%d %H:%M}.."
                                                 f"{candles['ts'].max():%Y-%m-%d %H:%M} UTC) hold no candle ending at "
                                                 "an equity close"))
                continue
            out[sym] = bars.join(origin, on="date", how="left").drop("symbol")
            if sym in parts:
                files = ", ".join(rel for rel, _ in parts.pop(sym))
                warnings.append(f"{sym}: daily file(s) {files} not used: with XASSET_CRYPTO_CLOSE=equity_close its "
                                "bars are sampled at the equity close from its hourly file(s)")
        for sym in [s for s in parts if s not in out and names[s].asset_class in ("crypto", "index_crypto")]:
            files = ", ".join(rel for rel, _ in parts.pop(sym))
            failed[sym] = ("error", f"no hourly file: XASSET_CRYPTO_CLOSE=equity_close samples crypto at the equity "
                                    f"close from hourly candles (e.g. {sym}_USDT-1h.json); daily file(s) {files} not used")
        return out

    def _merge(self, parts: dict[str, list[tuple[str, pl.DataFrame]]]):
        """One history per symbol from every file holding it; files that disagree are conflicts."""
        by_symbol: dict[str, pl.DataFrame] = {}
        conflicts: dict[str, tuple[str, str, str]] = {}
        for sym, found in parts.items():
            first_rel, merged = found[0]
            for rel, part in found[1:]:
                detail = _disagreement(merged, part, self.overlap_rel_tol)
                if detail is not None and sym not in conflicts:
                    conflicts[sym] = (first_rel, rel, detail)
                if detail is not None and self.on_conflict == "refuse":
                    continue
                new = part.filter(~pl.col("date").is_in(merged["date"].implode()))
                merged = pl.concat([merged, new], how="diagonal_relaxed").sort("date")
            if sym in conflicts and self.on_conflict == "refuse":
                continue
            by_symbol[sym] = merged
        return by_symbol, conflicts

    def last_date(self, universe: Universe) -> date:
        """The last date the inputs cover."""
        return self.read(universe).last_date

    def fetch(
        self,
        universe: Universe,
        start: date,
        as_of: date,
        last_dates: dict[str, date],
        stored_tail: pl.DataFrame,
    ) -> SourceBatch:
        done = self.read(universe)
        if done.old is not None and (done.old.start != start.isoformat() or as_of < done.last_date):
            # The cursor's counts are of the bars from its start through the inputs' last date.
            self.cursor.not_used("the run reads %s..%s, the cursor counts from %s through %s",
                     start, as_of, done.old.start, done.last_date)
            done = self._read_full(universe)
            self._memo = (universe, done)
        # An index keeps its whole record before ``start``: all-time highs
        # look back over all of it (the transform uses it for milestones only).
        indices = done.assets.filter(pl.col("asset_class") == "index")["symbol"].implode()
        bars = done.bars.filter(
            pl.col("date").is_between(start, as_of) | ((pl.col("date") < start) & pl.col("symbol").is_in(indices))
        )
        warnings = list(done.warnings)
        if done.problems:
            files = len({p.file for p in done.problems})
            warnings.append(
                f"{len(done.problems)} input problem(s) in {files} file(s) worked around (files skipped, rows held "
                "back): see the input problems table and the quarantine table"
            )
        for w in warnings:
            log.warning(w)
        # Rows and date span of every symbol in one pass (not one scan of the bars per symbol).
        span = {
            sym: (n, first, last) for sym, n, first, last in bars.group_by("symbol").agg(
                pl.len(), pl.col("date").min().alias("first"), pl.col("date").max().alias("last")
            ).iter_rows()
        }
        state = None
        if done.records is not None and done.last_date is not None and as_of >= done.last_date:
            # Every bar read is in ``bars`` but the non-index ones before ``start``: the summary says how many.
            summary = summarize(done.bars, start)
            if done.old is not None:
                summary = combine(done.old.summary, summary)
                index = set(done.assets.filter(pl.col("asset_class") == "index")["symbol"])
                span = {
                    sym: (n_all, first_all, last) if sym in index else (n_in, first_in, last if n_in else None)
                    for sym, n_all, first_all, n_in, first_in, last in summary.iter_rows()
                }
                span = {sym: v for sym, v in span.items() if v[0]}
            state = CursorState(self.cursor_key(universe), start.isoformat(), done.records, summary, done.assets,
                                done.warnings, done.problems, done.failed)
        outcomes = []
        for sym in done.assets["symbol"]:
            n, first, last = span.get(sym, (0, None, None))
            outcomes.append(
                SymbolOutcome(
                    symbol=sym,
                    source=self.name,
                    status="ok" if n else "skipped",
                    rows=n,
                    first_date=first,
                    last_date=last,
                    error=None if n else f"no rows between {start} and {as_of}",
                )
            )
        for sym, (status, why) in sorted(done.failed.items()):
            outcomes.append(SymbolOutcome(symbol=sym, source=self.name, status=status, error=clip(why, 500)))
        cursor = CursorLanding(self.cursor, state, delta=done.old is not None) if self.cursor is not None else None
        return SourceBatch(bars=bars, assets=done.assets, outcomes=outcomes, warnings=warnings, problems=done.problems,
                           cursor=cursor)


def _row_kind(why: str) -> str:
    if why.startswith("Adj Close"):
        return "adj_close_missing"
    if why in ("no close", "an empty row (no price)") or "is NaN" in why:
        return "price_missing"
    return "row_unreadable"


def check_paths(paths: list[Path]) -> None:
    """The one-line error for --path values that cannot be read, before any work starts."""
    if not paths:
        raise SourceError("the files source needs at least one --path")
    for p in map(Path, paths):
        if not p.exists():
            raise SourceError(f"--path {p}: no such file or directory")
        if p.is_file() and p.suffix.lower() not in SUFFIXES:
            raise SourceError(
                f"--path {p}: not a price file (expected a folder or a {', '.join(sorted(SUFFIXES))} file)"
            )
        if not os.access(p, os.R_OK) or (p.is_dir() and not os.access(p, os.X_OK)):
            raise SourceError(f"--path {p}: not readable")


__all__ = ["FilesSource", "FileFormatError", "NotAPriceHistory", "symbol_from_filename", "check_paths", "BAR_SCHEMA"]
