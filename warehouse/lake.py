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

The index (``<lake>/index/bars-source=<source>.parquet``) makes landing cost
what changed, not the history: per (symbol, year) file it records the row
count, a digest of the stored bars (dates, values, ``origin``) and of their
dates, and the file's size, mtime, ctime and inode as written. An upsert
digests the incoming bars in one vectorized pass and reads only the year
files whose digest differs; ``withdraw_absent`` reads only those whose dates
differ from the input's. An entry is trusted only while the file on disk
still has the recorded stat (an atomic rewrite always gets a new inode), so a
missing, unreadable or stale index, a crash between a file write and the
index write, or a file changed by hand, falls back to reading that file (the
comparison of old) and rebuilds its entry. Digests are sums of Polars row
hashes with two seeds (128 bits); Polars keeps its hashes stable only within
one version, so the index records the version and is ignored under another.
The files an upsert reads and the index describes are read in a few multi-file
scans; a file that only gains bars after its stored ones (the nightly case) is
written as the stored bars followed by the new ones, its digests summed.

A land that writes every one of its year files new (the full run into an empty
lake) keeps the frame it wrote them from, and ``hand_over`` gives it to the
transform in place of ``read_bar_files`` of the whole lake, the same frame,
while the lake's listing is exactly those files with the stat their renames
left; otherwise, or once taken, it is dropped and the transform reads.

Deltas (``Lake(..., deltas=N)``, the setting ``lake_delta_nights``): a land
whose bars all follow the last stored date of their symbol's last year file
(an input cursor's night) writes them as ONE file,
``<lake>/delta/source=<source>/<ingested_at>.parquet``, instead of rewriting
each year file, while fewer than N deltas are stored. Every reader takes a
(symbol, year)'s bars as its year file followed by the deltas' bars of that
(symbol, year) dated after the year file's last date (so a fold cut short
by a crash never shows a bar twice); the index's entry of a (symbol, year)
describes both, and the index records each delta file's stat: an index whose
recorded deltas are not the ones on disk is trusted for nothing. Any other
land (a revision, a new symbol or year, a withdrawal, the N-th night) first
folds the deltas into their year files (``fold_deltas``), each written as the
bytes the nightly rewrites would have left, then removes them.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import polars as pl

from warehouse.files import TMP_PREFIX, AtomicBatch, atomic_write_parquet, read_stored_parquet
from contracts.schema import strictly_increasing
from contracts.tables import FACT_PRICES

VALUE_COLUMNS = ["open", "high", "low", "close", "adj_close", "volume"]
ORIGIN = "origin"
BARS_SCHEMA: dict[str, pl.DataType] = {**FACT_PRICES.polars_schema, ORIGIN: pl.String()}
WITHDRAWN_AT = "withdrawn_at"

# The index: one row per (symbol, year) file. ``scheme`` changes with the digest
# (and Polars' hash, stable only within one version): an index of another scheme is ignored.
INDEX_SCHEME = f"2/polars-{pl.__version__}"
DIGEST_COLUMNS = ["rows", "digest", "digest2", "dates", "last"]
STAT_COLUMNS = ["size", "mtime_ns", "ctime_ns", "ino"]
INDEX_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(), "year": pl.Int32(),
    "rows": pl.Int64(), "digest": pl.UInt64(), "digest2": pl.UInt64(), "dates": pl.UInt64(),
    "last": pl.Date(), **{c: pl.Int64() for c in STAT_COLUMNS}, "scheme": pl.String(),
}
_SEEDS = (0x6C616B65, 0x736B6970)
# An index row that records a delta file (``symbol`` = this mark + the file's name, ``rows``, its
# stat) rather than a year file: no symbol starts with a NUL.
DELTA_MARK = "\0delta/"


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


def digests(bars: pl.DataFrame) -> pl.DataFrame:
    """Per (symbol, year) of ``bars`` (unique per symbol and date): ``DIGEST_COLUMNS``.

    ``digest``/``digest2`` sum a hash of each bar's date, values and ``origin``
    (order-free, wrapping): equal exactly when the bars are, but for a 2**-128
    chance; ``dates`` does the same for the dates alone; ``last`` is the last
    date (``last_dates`` without reading the file). Floats hash as the
    upsert's joins compare them (``-0.0`` as ``0.0``, every NaN alike).
    """
    return bars.group_by("symbol", pl.col("date").dt.year().cast(pl.Int32).alias("year")).agg(_digest_exprs())


def _digest_exprs() -> list[pl.Expr]:
    row = pl.struct("date", *VALUE_COLUMNS, ORIGIN)
    return [
        pl.len().cast(pl.Int64).alias("rows"),
        row.hash(_SEEDS[0]).sum().alias("digest"),
        row.hash(_SEEDS[1]).sum().alias("digest2"),
        pl.col("date").hash(_SEEDS[0]).sum().alias("dates"),
        pl.col("date").max().alias("last"),
    ]


def unique_bars(bars: pl.DataFrame) -> pl.DataFrame:
    """``bars`` unique per (symbol, date), the last one kept, in order.

    A frame strictly sorted by symbol and date (what the sources hand over) is
    already that: checked in one vectorized pass instead of hashing every bar.
    """
    if ascending(bars):
        return bars
    return bars.unique(["symbol", "date"], keep="last", maintain_order=True)


def ascending(bars: pl.DataFrame) -> bool:
    """Whether ``bars`` is strictly sorted by symbol and date (one vectorized pass)."""
    return strictly_increasing(bars, ("symbol", "date"))


def appends_only(entry: tuple | None, digest: tuple, new: pl.DataFrame) -> bool:
    """Whether bars of digest ``digest`` are exactly the stored ones (index ``entry``) and ``new``,
    all dated after them: the digests add up (sums wrap at 2**64)."""
    if entry is None or new.is_empty():
        return False
    added = new.select(_digest_exprs()).row(0)
    return digest[0] == entry[0] + added[0] and all(digest[i] == (entry[i] + added[i]) % 2**64 for i in (1, 2, 3))


def _plus(entry: tuple, added: tuple) -> tuple:
    """The digests (``DIGEST_COLUMNS``) of a file's bars (index ``entry``) and bars of digests
    ``added``, all dated after them."""
    return (entry[0] + added[0], *((entry[i] + added[i]) % 2**64 for i in (1, 2, 3)), added[4])


def as_scanned(bars: pl.DataFrame) -> pl.DataFrame:
    """Strictly sorted ``bars`` with the sortedness flags ``read_bar_files`` gives its frame: the
    ``symbol`` column's (the sort's), no other. A multi-file scan sets none; a column built from a
    literal (``source``, ``ingested_at``) or by a sort carries one, cleared here without a copy
    (through Arrow). Flags steer Polars' algorithms, so the frame handed on keeps the read's."""
    return bars.with_columns(
        [pl.Series(c, bars[c].to_arrow(compat_level=pl.CompatLevel.newest())) for c in bars.columns
         if c != "symbol" and (bars[c].flags["SORTED_ASC"] or bars[c].flags["SORTED_DESC"])]
    ).with_columns(pl.col("symbol").set_sorted())


def file_stat(path: Path) -> tuple[int, int, int, int] | None:
    """What the index records of a file as written (``STAT_COLUMNS``); None if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def scan_stored(files: list[Path]) -> pl.DataFrame:
    """The bars of ``files`` (``BARS_SCHEMA``) in one multi-file scan, file after file; a file of
    another column type or a damaged one raises (read it on its own to name it)."""
    return pl.scan_parquet(files, schema=BARS_SCHEMA, missing_columns="insert", extra_columns="ignore").collect()


def default_delta_dir(index_path: Path) -> Path:
    """``<lake>/delta/source=<source>`` of the index ``<lake>/index/bars-source=<source>.parquet``."""
    return index_path.parent.parent / "delta" / index_path.stem.removeprefix("bars-")


def delta_files(directory: Path) -> list[Path]:
    """The delta files in ``directory``, oldest first (named by their land's ``ingested_at``); not
    a writer's temp file (a crash's is removed by the next run, ``remove_stale_temp_files``)."""
    try:
        return sorted(
            Path(e.path) for e in os.scandir(directory)
            if e.name.endswith(".parquet") and not e.name.startswith(TMP_PREFIX) and e.is_file()
        )
    except FileNotFoundError:
        return []


def read_sorted(files: list[Path]) -> pl.DataFrame:
    """The bars of lake ``files`` (``BARS_SCHEMA``; year files or deltas), sorted by symbol and
    date (not sorted again when the files hand them over so); a file that cannot be read raises
    ``StoredFileError`` naming it."""
    if not files:
        return pl.DataFrame(schema=BARS_SCHEMA)
    try:
        # One multi-file scan: ~3x less CPU than a read per file at 25,000 year files
        # (`python -m bench.lake_land --steps full,read`). Files written before ``origin``
        # existed get it as null.
        bars = scan_stored(files)
    except (Exception, pl.exceptions.PanicException):
        # A file the scan cannot take as it is (another type, damage): one at a time,
        # so a file that cannot be read is named, and one of another type is cast as before.
        bars = pl.concat([conform_stored(read_stored_parquet(f)) for f in files])
    return bars if ascending(bars) else bars.sort("symbol", "date")


def after_stored(extra: pl.DataFrame, bars: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``extra`` (delta bars) dated after the last of ``bars``' same (symbol, year):
    what a delta adds to its year file (bars a fold already wrote into it are not taken twice).
    Rows of a (symbol, year) ``bars`` lacks are dropped (their year file was not read)."""
    return _after_stored(extra, bars, ascending(bars))[0]


def _after_stored(extra: pl.DataFrame, bars: pl.DataFrame, bars_sorted: bool) -> tuple[pl.DataFrame, bool]:
    """``after_stored``, and whether each symbol's rows of it follow all of its ``bars``.

    A delta's (symbol, year) is its symbol's last year file, so with ``bars`` sorted by symbol
    and date (``bars_sorted``) its last date is that of the symbol's last row: found by a binary
    search of the delta's symbols, not by grouping every bar (~1 M a next day)."""
    if extra.is_empty():
        return extra, True
    year = pl.col("date").dt.year().cast(pl.Int32)
    symbols = extra["symbol"].unique(maintain_order=True)
    if bars_sorted and bars.height:
        # Each symbol's run of ``bars``: [first, end); its last row is end - 1 (read from the date
        # column made one chunk: the scan hands over a chunk per file, which makes gathers slow).
        first = bars["symbol"].search_sorted(symbols, side="left").to_numpy()
        end = bars["symbol"].search_sorted(symbols, side="right").to_numpy()
        held = end > first
        last = pl.DataFrame({
            "symbol": symbols.filter(pl.Series(held)),
            "_last": bars["date"].rechunk().gather(end[held] - 1),
        }).with_columns(pl.col("_last").dt.year().cast(pl.Int32).alias("_year"))
        keyed = extra.with_columns(year.alias("_year"))
        years = keyed.join(last.select("symbol", pl.col("_year").alias("_max")), on="symbol")
        if years.filter(pl.col("_year") < pl.col("_max")).is_empty():
            # Every row kept is dated after its symbol's last bar: it follows them.
            added = (
                keyed.join(last, on=["symbol", "_year"], how="inner", maintain_order="left")
                .filter(pl.col("date") > pl.col("_last"))
                .drop("_year", "_last")
            )
            return added, True
    # A delta of an earlier year than its symbol's last file read (not written so): grouped.
    last = (
        bars.filter(pl.col("symbol").is_in(symbols.implode()))
        .group_by("symbol", year.alias("_year"))
        .agg(pl.col("date").max().alias("_last"))
    )
    added = (
        extra.with_columns(year.alias("_year"))
        .join(last, on=["symbol", "_year"], how="inner", maintain_order="left")
        .filter(pl.col("date") > pl.col("_last"))
        .drop("_year", "_last")
    )
    return added, False


def splice(bars: pl.DataFrame, extra: pl.DataFrame) -> pl.DataFrame:
    """``bars`` and ``extra`` as one frame sorted by symbol and date: when both are and each
    symbol's ``extra`` rows follow its ``bars`` rows (a delta's), without a sort (``_splice``)."""
    if extra.is_empty():
        return bars
    if not (ascending(bars) and ascending(extra)):
        return pl.concat([bars, extra]).sort("symbol", "date")
    out = _splice(bars, extra)
    return out if ascending(out) else out.sort("symbol", "date")


def _splice(bars: pl.DataFrame, extra: pl.DataFrame) -> pl.DataFrame:
    """``bars`` and ``extra`` (both sorted by symbol and date, each symbol's ``extra`` rows dated
    after its ``bars`` rows) as one sorted frame: each symbol's rows of ``extra`` put after its
    run of ``bars`` (found by a binary search) and the slices copied once, not a sort of the
    whole (~1 M rows a next day: 0.35 CPU s)."""
    if extra.is_empty() or bars.is_empty():
        return extra if bars.is_empty() else bars
    runs = extra.select(pl.col("symbol").rle()).unnest("symbol")
    # Where each symbol's rows of ``extra`` go: after its run of ``bars`` (they end at ``ends``).
    ends = bars["symbol"].search_sorted(runs["value"], side="right").to_numpy().astype(np.int64)
    lens = runs["len"].to_numpy().astype(np.int64)
    n = bars.height
    # The output as segments, alternately of ``bars`` and of ``extra`` (rows from n on in the
    # concatenation), then the rest of ``bars``; one gather of the concatenation takes them.
    starts = np.empty(2 * len(ends) + 1, dtype=np.int64)
    sizes = np.empty_like(starts)
    starts[0:-1:2] = np.concatenate([[0], ends[:-1]])
    sizes[0:-1:2] = ends - starts[0:-1:2]
    starts[1:-1:2] = n + np.cumsum(lens) - lens
    sizes[1:-1:2] = lens
    starts[-1], sizes[-1] = ends[-1], n - ends[-1]
    at = np.repeat(starts - (np.cumsum(sizes) - sizes), sizes) + np.arange(sizes.sum())
    return pl.concat([bars, extra]).rechunk()[at]


# The entries of each index file this process last read or wrote, by a digest of the file's
# bytes: a night reads the index up to three times (the input cursor's lake check, the land, the
# withdrawal), ~25,000 rows at 2,000 equities, and decoding them into entries costs far more than
# reading and hashing the file. Used only for a file of exactly those bytes.
_LOADED: dict[Path, tuple[bytes, dict[tuple[str, int], tuple]]] = {}
_LOADED_LOCK = threading.Lock()


def _bytes_key(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


class LakeIndex:
    """The lake's index entries of one source, keyed by (symbol, year): ``DIGEST_COLUMNS`` + stat."""

    def __init__(self, path: Path, delta_dir: Path | None = None) -> None:
        self.path = path
        self.entries: dict[tuple[str, int], tuple] = {}
        # The delta files the entries include: name -> (rows, *stat).
        self.deltas: dict[str, tuple] = {}
        self.dirty = False
        self._load()
        self._split_deltas()
        on_disk = {f.name: (0, *file_stat(f)) for f in delta_files(delta_dir or default_delta_dir(path))}
        if {n: e[1:] for n, e in self.deltas.items()} != {n: e[1:] for n, e in on_disk.items()}:
            # Delta files the index does not describe (a crash between a delta and the index, or
            # between a fold's renames and the index): no entry is trusted; each file is read.
            self.entries, self.deltas, self.dirty = {}, {}, True

    def _split_deltas(self) -> None:
        for key in [k for k in self.entries if k[0].startswith(DELTA_MARK)]:
            entry = self.entries.pop(key)
            self.deltas[key[0][len(DELTA_MARK):]] = (entry[0], *entry[len(DIGEST_COLUMNS):])

    def _load(self) -> None:
        path = self.path
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError:  # unreadable: every file is read instead
            self.dirty = True
            return
        key = _bytes_key(data)
        with _LOADED_LOCK:
            loaded = _LOADED.get(path)
        if loaded is not None and loaded[0] == key:
            self.entries = dict(loaded[1])
            return
        try:
            frame = pl.read_parquet(io.BytesIO(data))
        except (Exception, pl.exceptions.PanicException):  # unreadable: every file is read instead
            frame, self.dirty = None, True
        if frame is None:
            return
        if frame.columns != list(INDEX_SCHEMA) or (frame.height and frame["scheme"].unique().to_list() != [INDEX_SCHEME]):
            self.dirty = True  # another version's digests: rebuilt as files are read
            return
        for row in frame.drop("scheme").iter_rows():
            self.entries[(row[0], row[1])] = row[2:]
        self._keep(key)

    def _keep(self, key: bytes | None) -> None:
        with _LOADED_LOCK:
            if key is None:
                _LOADED.pop(self.path, None)
            else:
                _LOADED[self.path] = (key, dict(self.entries))  # with the delta rows (split after)

    def trusted(self, symbol: str, year: int, path: Path) -> tuple | None:
        """The entry's digests if the file is still the one it describes, else None (read the file)."""
        entry = self.entries.get((symbol, year))
        if entry is None or entry[len(DIGEST_COLUMNS):] != file_stat(path):
            return None
        return entry[: len(DIGEST_COLUMNS)]

    def record(self, symbol: str, year: int, digest: tuple, path: Path) -> None:
        stat = file_stat(path)
        if stat is None:
            self.forget(symbol, year)
            return
        self.entries[(symbol, year)] = (*digest, *stat)
        self.dirty = True

    def record_frame(self, symbol: str, year: int, stored: pl.DataFrame, path: Path) -> None:
        """Record the file at ``path`` (``symbol``'s ``year``) as holding ``stored``."""
        self.record(symbol, year, stored.select(_digest_exprs()).row(0), path)

    def forget(self, symbol: str, year: int) -> None:
        if self.entries.pop((symbol, year), None) is not None:
            self.dirty = True

    def save(self) -> None:
        """Written after the files it describes; a crash before leaves stale entries, which are never trusted."""
        if not self.dirty:
            return
        entries = {**self.entries, **{(DELTA_MARK + n, 0): (e[0], 0, 0, 0, None, *e[1:]) for n, e in self.deltas.items()}}
        rows = [(s, y, *e, INDEX_SCHEME) for (s, y), e in sorted(entries.items())]
        self._keep(None)
        atomic_write_parquet(pl.DataFrame(rows, schema=INDEX_SCHEMA, orient="row"), self.path)
        self.dirty = False


@dataclass
class Landed:
    """What one land wrote: its bars as the lake keeps them (``BARS_SCHEMA``, strictly sorted by
    symbol and date, the ``symbol`` column flagged sorted: the frame ``Lake.read_bar_files`` gives
    for these files), each written as a new year file, and those files' stat as the rename left
    them (``STAT_COLUMNS``), by path."""

    bars: pl.DataFrame
    files: dict[str, tuple[int, int, int, int]]


class Lake:
    def __init__(self, root: Path, source: str, writers: int = 1, deltas: int = 0) -> None:
        self.root = Path(root)
        self.source = source
        # Year files compared and written at once (``lake_writers``): Polars' encoding and the writes release the GIL.
        self.writers = writers
        # The last land's bars when it wrote every one of its year files new (``upsert_bars``),
        # until ``hand_over`` takes them or another write to the bars drops them.
        self._landed: Landed | None = None
        # Deltas a land may leave stored before it folds them (``lake_delta_nights``; 0: none written).
        # Readers take the stored deltas whatever this is.
        self.deltas = deltas

    @property
    def delta_dir(self) -> Path:
        return self.root / "delta" / f"source={self.source}"

    def delta_bars(self) -> pl.DataFrame:
        """Every stored delta's bars (``BARS_SCHEMA``), sorted by symbol and date: as landed, before
        ``after_stored`` drops those a cut-short fold already wrote into their year file."""
        return read_sorted(delta_files(self.delta_dir))

    @property
    def bars_dir(self) -> Path:
        return self.root / "bars" / f"source={self.source}"

    @property
    def assets_path(self) -> Path:
        return self.root / "assets" / f"source={self.source}.parquet"

    @property
    def fundamentals_path(self) -> Path:
        return self.root / "fundamentals" / f"source={self.source}.parquet"

    @property
    def index_path(self) -> Path:
        return self.root / "index" / f"bars-source={self.source}.parquet"

    def index_token(self) -> list | None:
        """The index file's stat as the last land left it (an input cursor records it)."""
        stat = file_stat(self.index_path)
        return list(stat) if stat is not None else None

    def landed_unchanged(self, token: list | None, through: date) -> str | None:
        """None if the lake is as the land that left the index at ``token`` left it: the index not
        rewritten since, every year file the one its entry describes, and no bar dated after
        ``through`` (that land's last date); else why not."""
        if token is None or self.index_token() != token:
            return "the lake index changed since the cursor was written"
        index = LakeIndex(self.index_path, self.delta_dir)
        if index.dirty:
            return "the lake index is unreadable or of another version"
        seen = 0
        for sym_dir in os.scandir(self.bars_dir) if self.bars_dir.exists() else []:
            symbol = unquote(sym_dir.name)
            for f in os.scandir(sym_dir.path):
                if not f.name.endswith(".parquet"):
                    continue  # not a year file (the lake reads ``*/*.parquet``)
                year = f.name[: -len(".parquet")]
                entry = index.entries.get((symbol, int(year))) if year.isdigit() else None
                if entry is None:
                    return f"{symbol}/{f.name} has no index entry"
                st = f.stat()
                if entry[len(DIGEST_COLUMNS):] != (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino):
                    return f"{symbol}/{f.name} changed since the index described it"
                if entry[len(DIGEST_COLUMNS) - 1] is not None and entry[len(DIGEST_COLUMNS) - 1] > through:
                    return f"{symbol}/{f.name} holds bars after {through}"
                seen += 1
        if seen != len(index.entries):
            return "year files the index describes are gone"
        return None

    def _files(self) -> list[Path]:
        return [Path(path) for _, _, path in self._year_files()]

    def _year_files(self) -> list[tuple[str, str, str]]:
        """The year files, ``*/*.parquet`` under ``bars_dir``, as (symbol directory, file name, path),
        sorted as their paths sort (by directory, then name). Listed with ``os.scandir``, not a glob:
        no ``Path`` made, matched or compared per file (~0.1 of ``bar_files``' ~0.25 s for 25,063
        files). The glob's entries: a directory's (a link to one too) entries named ``*.parquet``,
        dot-names included."""
        root = str(self.bars_dir)
        try:
            with os.scandir(root) as top:
                dirs = sorted(e.name for e in top if e.is_dir())
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return []
        out = []
        for d in dirs:
            try:
                with os.scandir(os.path.join(root, d)) as entries:
                    names = sorted(e.name for e in entries if e.name.endswith(".parquet"))
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue  # gone since listed, as the glob skips it
            out += [(d, n, os.path.join(root, d, n)) for n in names]
        return out

    def read_bars(self, symbols: list[str] | None = None) -> pl.DataFrame:
        """Stored bars (``BARS_SCHEMA``: ``fact_prices``'s columns and ``origin``)."""
        files = self._files()
        if symbols is not None:
            wanted = {symbol_dir(s) for s in symbols}
            files = [f for f in files if f.parent.name in wanted]
        return self.read_bar_files(files)

    def bar_files(self, deltas: pl.DataFrame | None = None) -> pl.DataFrame:
        """Every year file of the bars: ``symbol``, ``year`` (null for a file not named by its
        year), ``path`` and ``ctime_ns``, the status-change time the index trusts a file by
        (``STAT_COLUMNS``; set by every write and rename, never copied along with a file), so
        a reader can tell the files written since it last listed them (``read_bar_files``);
        then the rest of its stat (``size``, ``mtime_ns``, ``ino``: ``hand_over``) and the year
        file's own status-change time (``file_ctime_ns``). ``deltas``: ``delta_listing`` as the
        caller took it a moment before (not read again)."""
        rows = []
        for d, name, path in self._year_files():
            stat = file_stat(path)
            if stat is not None:
                stem = name[: -len(".parquet")]
                rows.append((unquote(d), int(stem) if stem.isdigit() else None, path, stat[2],
                             stat[0], stat[1], stat[3], stat[2]))
        schema = {"symbol": pl.String(), "year": pl.Int32(), "path": pl.String(), "ctime_ns": pl.Int64(),
                  "size": pl.Int64(), "mtime_ns": pl.Int64(), "ino": pl.Int64(), "file_ctime_ns": pl.Int64()}
        listed = pl.DataFrame(rows, schema=schema, orient="row")
        # A delta changes the (symbol, year)s it holds bars of: their ``ctime_ns`` is the latest of
        # the year file's and those deltas' (a reader that trusts it reads the year file and them);
        # ``file_ctime_ns`` stays the year file's own (a reader tells a rewritten year file from
        # one that only gained a delta's bars: ``delta_listing`` dates those to the day).
        touched = self.delta_listing() if deltas is None else deltas
        if touched.height:
            latest = touched.group_by("symbol", "year").agg(pl.col("ctime_ns").max().alias("_delta_ctime"))
            listed = listed.join(latest, on=["symbol", "year"], how="left", maintain_order="left").select(
                "symbol", "year", "path", pl.max_horizontal("ctime_ns", "_delta_ctime").alias("ctime_ns"),
                "size", "mtime_ns", "ino", "file_ctime_ns",
            )
        return listed

    def delta_listing(self) -> pl.DataFrame:
        """Per stored delta file and (symbol, year) it holds bars of: ``symbol``, ``year``, the
        delta's ``ctime_ns`` (as ``bar_files``) and the first date of its bars there (``first``).
        A delta only appends bars after its year file's last (``_appends_to_last_years``), so a
        year file unchanged since a reader listed it, with deltas newer than that, differs from
        what the reader read only from those deltas' ``first`` on."""
        parts = []
        for f in delta_files(self.delta_dir):
            stat = file_stat(f)
            if stat is not None:
                parts.append(
                    read_sorted([f]).group_by("symbol", pl.col("date").dt.year().cast(pl.Int32).alias("year"))
                    .agg(pl.col("date").min().alias("first"))
                    .with_columns(pl.lit(stat[2], pl.Int64).alias("ctime_ns"))
                )
        schema = {"symbol": pl.String(), "year": pl.Int32(), "first": pl.Date(), "ctime_ns": pl.Int64()}
        if not parts:
            return pl.DataFrame(schema=schema)
        return pl.concat(parts).select(list(schema)).sort("symbol", "year", "ctime_ns")

    def hand_over(self, files: pl.DataFrame) -> pl.DataFrame | None:
        """The bars the last land wrote, if they are all the lake holds: ``read_bar_files`` of
        ``files`` (a ``bar_files`` listing) without reading them; else None (read them).

        They are when ``files`` are exactly the year files that land wrote new, each still with
        the stat its rename left (``STAT_COLUMNS``, which the index trusts a file by: any later
        write, rename over it, withdrawal or removal changes it, and a file written by anything
        else is not one of them). Taken once: the lake holds no copy afterwards, proven or not,
        so a caller that reads instead never holds two."""
        landed, self._landed = self._landed, None
        if landed is None or files.height != len(landed.files):
            return None
        for path, ctime, size, mtime, ino in files.select("path", "ctime_ns", "size", "mtime_ns", "ino").iter_rows():
            if landed.files.get(path) != (size, mtime, ctime, ino):
                return None
        return landed.bars

    def read_bar_files(self, files: list[Path]) -> pl.DataFrame:
        """The stored bars of the given year files (``bar_files``' paths), sorted by symbol and date.

        Read in (symbol, year) order, the files hand over their bars already sorted (each holds
        one symbol's year, by date): then they are not sorted again (a sort of the next day's
        1.0 M bars took 0.25 s, of the full run's whole lake several times that; path order is
        not symbol order: ``%5ERUT/`` sorts before ``A/``). Strictly sorted by symbol and date,
        the frame is the one the sort gives; any other is sorted as before."""
        files = sorted((Path(f) for f in files), key=lambda f: (unquote(f.parent.name), f.name))
        if not files:
            return pl.DataFrame(schema=BARS_SCHEMA)
        bars = read_sorted(files)
        extra = self.delta_bars()
        if extra.height:
            # The deltas' bars of the years read, after each year file's own (``after_stored``),
            # spliced in without a sort where they follow their symbol's bars (they always do as
            # written); ``read_sorted`` hands both over sorted.
            added, follows = _after_stored(extra, bars, bars_sorted=True)
            bars = _splice(bars, added) if follows else pl.concat([bars, added]).sort("symbol", "date")
        return bars.with_columns(pl.col("symbol").set_sorted())  # the flag the sort sets

    def last_dates(self) -> dict[str, date]:
        out: dict[str, date] = {}
        index = LakeIndex(self.index_path, self.delta_dir)
        # A delta's bars follow their symbol's last year file: they end it where the index does not.
        extra = self.delta_bars()
        delta_last = dict(extra.group_by("symbol").agg(pl.col("date").max()).iter_rows()) if extra.height else {}
        for sym_dir in self.bars_dir.iterdir() if self.bars_dir.exists() else []:
            years = sorted(sym_dir.glob("*.parquet"))
            if years:
                symbol, year = unquote(sym_dir.name), years[-1].stem
                entry = index.trusted(symbol, int(year), years[-1]) if year.isdigit() else None
                # The index's last date where it still describes the file (not rebuilt here: read-only).
                last = entry[-1] if entry is not None else read_stored_parquet(years[-1], columns=["date"])["date"].max()
                last = max((d for d in (last, delta_last.get(symbol)) if d is not None), default=None)
                if last is not None:
                    out[unquote(sym_dir.name)] = last
        return out

    def tail(self, n: int) -> pl.DataFrame:
        """The last ``n`` stored bars of every symbol (for revision checks)."""
        frames = []
        extra = self.delta_bars()
        by_symbol = extra.partition_by("symbol", as_dict=True) if extra.height else {}
        for sym_dir in self.bars_dir.iterdir() if self.bars_dir.exists() else []:
            years = sorted(sym_dir.glob("*.parquet"))[-2:]
            if years:
                stored = pl.concat([conform_stored(read_stored_parquet(y)) for y in years])
                added = by_symbol.get((unquote(sym_dir.name),))
                if added is not None:
                    stored = pl.concat([stored, after_stored(added, stored)])
                frames.append(stored.sort("date").tail(n))
        if not frames:
            return pl.DataFrame(schema=FACT_PRICES.polars_schema)
        return FACT_PRICES.conform(pl.concat(frames))

    def upsert_bars(self, bars: pl.DataFrame, ingested_at: datetime) -> int:
        """Merge bars into the lake; returns how many rows were new or revised.

        Only the (symbol, year) files whose stored bars may differ from the
        incoming ones are read: those without a trusted index entry of the
        same digest.
        """
        self._landed = None  # whatever an earlier land handed over is not the lake after this one
        if bars.is_empty():
            return 0
        incoming = unique_bars(conform_stored(bars.with_columns(
            pl.lit(self.source).alias("source"),
            pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")).alias("ingested_at"),
        )))
        index = LakeIndex(self.index_path, self.delta_dir)
        sums = digests(incoming)
        todo = self._todo(sums, index)
        # Whether every (symbol, year) of the input may go to a file of its own that file-name
        # order reads back in date order (``hand_over``, below).
        groups = sums.height
        four_digit_years = sums.height == 0 or bool(sums["year"].is_between(1000, 9999).fill_null(False).all())
        if todo and self._appends_to_last_years(todo, index, incoming):
            return self._land_delta(incoming, todo, index, ingested_at)
        if todo and (index.deltas or delta_files(self.delta_dir)):
            # Not a night's appends (or the deltas are many enough): the deltas go into their
            # year files first, and the land compares with those as it always has; a night's
            # appends that only found the deltas many enough start the next ones.
            self._fold(index)
            todo = self._todo(sums, index)
            if todo and self._appends_to_last_years(todo, index, incoming):
                return self._land_delta(incoming, todo, index, ingested_at)
        spans = {}
        if todo:
            # Each (symbol, year)'s bars are one run of rows of the frame sorted by symbol and date:
            # a zero-copy slice each, already in date order (a partition and a sort per file cost
            # more than writing it: `python -m bench.lake_land`).
            strict = True
            if not ascending(incoming):
                incoming = incoming.sort("symbol", "date")
                # Unique bars sort strictly but for a null date, which the read would sort again.
                strict = ascending(incoming)
            incoming = incoming.rechunk()
            wanted = pl.DataFrame([(s, y) for s, y, *_ in todo], schema={"symbol": pl.String, "year": pl.Int32}, orient="row")
            spans = {
                (s, y): (at, n)
                for s, y, at, n in incoming.select("symbol", pl.col("date").dt.year().cast(pl.Int32).alias("year"))
                .with_row_index("_at")
                .join(wanted, on=["symbol", "year"], how="semi")
                .group_by("symbol", "year")
                .agg(pl.col("_at").min().cast(pl.Int64), pl.len().cast(pl.Int64))
                .iter_rows()
            }
        # The files the index still describes, read in a few multi-file scans rather than one read each.
        stored = self._read_described([(symbol, year, path, entry) for symbol, year, _, path, entry in todo])
        # Every file is written to a temp file, all are made durable at once, then renamed, then the
        # renames made durable (``AtomicBatch``); the index records them after the renames.
        batch = AtomicBatch(renamers=self.writers)
        written: dict[Path, tuple[str, int, tuple]] = {}
        new_files: list[Path] = []
        renamed: list[Path] = []
        # Whether each file exists, where this land knows it without a stat: a trusted entry's file
        # was stat'd by ``_todo``; none of a symbol directory the lake has not got (a full land).
        present = set(os.listdir(self.bars_dir)) if todo and self.bars_dir.is_dir() else set()
        by_symbol: dict[str, list[tuple]] = {}
        for symbol, year, digest, path, entry in todo:
            exists = True if entry is not None else (None if path.parent.name in present else False)
            by_symbol.setdefault(symbol, []).append(
                (symbol, year, digest, path, incoming.slice(*spans[(symbol, year)]), index, entry, batch, written,
                 stored.get((symbol, year)), new_files, exists)
            )

        def upsert_symbol(files: list[tuple]) -> int:
            return sum(self._upsert_file(*args) for args in files)

        pool = ThreadPoolExecutor(self.writers, thread_name_prefix="lake-writer")
        try:
            # Each file on its own (atomic): the order they are written in changes nothing stored. A
            # symbol's files in one task: a task per file (~25,000 in a full land) costs the writer
            # threads more hand-overs of the GIL than the files' own Python.
            futures = [pool.submit(upsert_symbol, files) for files in by_symbol.values()]
            landed = sum(f.result() for f in futures)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            # Also after a failure: what was written is renamed and described (the rest is never trusted).
            try:
                for path in batch.commit():
                    index.record(*written[path], path)
                    renamed.append(path)
            finally:
                index.save()
        if todo and strict and four_digit_years and len(new_files) == len(todo) == groups == len(renamed):
            # Every (symbol, year) of the input went to a year file of its own that did not exist,
            # written as the input's slice: those files hold exactly ``incoming``, strictly sorted
            # by symbol and date, which ``read_bar_files`` reads back as it is (file after file in
            # (symbol, year) order), the symbol flagged sorted. Handed to the transform
            # (``hand_over``) when the lake holds nothing else by then.
            stats = {str(p): index.entries.get(written[p][:2], ())[len(DIGEST_COLUMNS):] for p in new_files}
            if all(len(stat) == len(STAT_COLUMNS) for stat in stats.values()):
                self._landed = Landed(as_scanned(incoming), stats)
        return landed

    def _todo(self, sums: pl.DataFrame, index: LakeIndex) -> list[tuple]:
        """The (symbol, year, digest, path, entry) of ``sums`` (``digests`` of the incoming bars)
        whose file may differ: those without a trusted entry of the same digest."""
        todo = []
        bars_dir, dirs = self.bars_dir, {}  # a symbol's directory made once for its year files
        for symbol, year, *digest in sums.iter_rows():
            directory = dirs.get(symbol)
            if directory is None:
                directory = dirs[symbol] = bars_dir / symbol_dir(symbol)
            path = directory / f"{year}.parquet"
            # Same digest: the file holds exactly these bars, so nothing would change.
            entry = index.trusted(symbol, year, path)
            if entry != tuple(digest):
                todo.append((symbol, year, tuple(digest), path, entry))
        return todo

    def _appends_to_last_years(self, todo: list[tuple], index: LakeIndex, incoming: pl.DataFrame) -> bool:
        """Whether the bars to land may go into a delta: deltas allowed and fewer than ``deltas``
        stored, and every (symbol, year) to change is its symbol's last year file, described by
        the index, and gains only bars dated after its last one."""
        if self.deltas <= 0 or len(index.deltas) >= self.deltas:
            return False
        last_year: dict[str, int] = {}
        for symbol, year in index.entries:
            if year > last_year.get(symbol, year - 1):
                last_year[symbol] = year
        for symbol, year, _, _, entry in todo:
            if entry is None or last_year.get(symbol) != year or entry[-1] is None:
                return False  # decided before the bars are grouped (a full land's millions)
        year = pl.col("date").dt.year().cast(pl.Int32).alias("year")
        firsts = {(s, y): d for s, y, d in incoming.group_by("symbol", year).agg(pl.col("date").min()).iter_rows()}
        return all(firsts[(symbol, year)] > entry[-1] for symbol, year, _, _, entry in todo)

    def _land_delta(self, incoming: pl.DataFrame, todo: list[tuple], index: LakeIndex, ingested_at: datetime) -> int:
        """The ``todo`` (symbol, year)s' bars written as one delta file (atomic and durable as a
        year file: ``AtomicBatch``), then the index: each entry's digests and last date summed
        with the delta's (its year file's stat unchanged), and the delta recorded."""
        wanted = pl.DataFrame([(s, y) for s, y, *_ in todo], schema={"symbol": pl.String, "year": pl.Int32}, orient="row")
        year = pl.col("date").dt.year().cast(pl.Int32).alias("year")
        bars = incoming.with_columns(year).join(wanted, on=["symbol", "year"], how="semi", maintain_order="left").drop("year")
        if not ascending(bars):
            bars = bars.sort("symbol", "date")
        path = self.delta_dir / f"{ingested_at.astimezone(UTC):%Y%m%dT%H%M%S%fZ}.parquet"
        if path.name in index.deltas or path.exists():
            raise FileExistsError(f"{path}: a delta of this land's ingested_at is stored already")
        batch = AtomicBatch()
        try:
            batch.write_parquet(bars, path)
        except BaseException:
            batch.discard()
            raise
        batch.commit()
        for symbol, year, digest, _, entry in todo:
            stat = index.entries[(symbol, year)][len(DIGEST_COLUMNS):]
            index.entries[(symbol, year)] = (*_plus(entry, digest), *stat)
        index.deltas[path.name] = (bars.height, *file_stat(path))
        index.dirty = True
        index.save()
        return bars.height

    def fold_deltas(self) -> int:
        """Fold the stored deltas into their year files now; returns how many year files were written."""
        index = LakeIndex(self.index_path, self.delta_dir)
        try:
            return self._fold(index)
        finally:
            index.save()

    def _fold(self, index: LakeIndex) -> int:
        """Write each (symbol, year) a delta holds bars of as its year file's bars followed by the
        deltas' (dated after them; ``after_stored``): the bytes the nightly rewrites would have
        left (``python -m bench.lake_land --steps ...,fold``). The year files are renamed (one
        ``AtomicBatch``) and recorded before the deltas are removed, and the index is saved
        after: a crash at any point leaves every bar readable once (``after_stored``)."""
        files = delta_files(self.delta_dir)
        extra = read_sorted(files)
        written = 0
        if extra.height:
            parts = extra.with_columns(pl.col("date").dt.year().cast(pl.Int32).alias("_year")).partition_by(
                "symbol", "_year", as_dict=True, include_key=True, maintain_order=True
            )
            batch = AtomicBatch(renamers=self.writers)
            done: dict[Path, tuple[str, int, tuple]] = {}
            stored = self._scan_by_file([self.bars_dir / symbol_dir(s) / f"{y}.parquet" for s, y in parts])

            def fold_one(symbol: str, year: int, mine: pl.DataFrame) -> None:
                path = self.bars_dir / symbol_dir(symbol) / f"{year}.parquet"
                old = stored.get(path)
                if old is None:  # not in the scan (absent, empty, or the scan failed): on its own, named
                    old = conform_stored(read_stored_parquet(path)) if path.exists() else pl.DataFrame(schema=BARS_SCHEMA)
                if not old["date"].is_sorted():
                    old = old.sort("date")
                new = mine.filter(pl.col("date") > old["date"].max()) if old.height else mine
                if new.is_empty():
                    return  # folded already (a fold cut short)
                frame = pl.concat([old, new])
                batch.write_parquet(frame, path)
                done[path] = (symbol, year, frame.select(_digest_exprs()).row(0))

            # Each year file on its own, on the writer threads (reads and encodes release the GIL).
            pool = ThreadPoolExecutor(self.writers, thread_name_prefix="lake-fold")
            try:
                for f in [pool.submit(fold_one, s, y, m.drop("_year")) for (s, y), m in parts.items()]:
                    f.result()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                batch.discard()
                raise
            pool.shutdown(wait=True)
            for path in batch.commit():
                index.record(*done[path], path)
                written += 1
        for f in files:
            f.unlink(missing_ok=True)
        if files or index.deltas:
            index.deltas = {}
            index.dirty = True
        return written

    @staticmethod
    def _scan_by_file(paths: list[Path]) -> dict[Path, pl.DataFrame]:
        """The bars of each of ``paths`` that exist, read in one multi-file scan (~0.2 ms a year
        file against ~1 ms for a read of its own); {} if the scan fails (each is read on its own)."""
        paths = [p for p in paths if p.exists()]
        if not paths:
            return {}
        try:
            bars = pl.scan_parquet(
                paths, schema=BARS_SCHEMA, missing_columns="insert", extra_columns="ignore", include_file_paths="_path"
            ).collect()
        except (Exception, pl.exceptions.PanicException):
            return {}
        runs = bars.select(pl.col("_path").rle()).unnest("_path")
        bars = bars.drop("_path")
        out, at = {}, 0
        for path, n in runs.select("value", "len").iter_rows():
            out[Path(path)] = bars.slice(at, n)
            at += n
        return out

    # Rows read ahead in one multi-file scan at most (``_read_described``): ~200 MB, twice a next
    # day's at 2,000 equities. A land that rewrites more of the lake reads the rest file by file
    # on the writer threads, as before, so it never holds much more than its input.
    SCAN_ROWS = 2_000_000

    @staticmethod
    def _read_described(files: list[tuple[str, int, Path, tuple | None]]) -> dict[tuple[str, int], pl.DataFrame]:
        """The stored bars (``conform_stored``) of the (symbol, year) files whose index entry still
        describes them, up to ``SCAN_ROWS`` rows, in one multi-file scan: ~0.2 ms a year file
        against ~0.8 ms for a read of its own (a next-day land reads ~2,100). If the scan fails (a
        file of another column type, damage), each file is read on its own, as before, and named
        if it cannot be."""
        chunk: list[tuple[str, int, Path, int]] = []
        rows = 0
        for symbol, year, path, entry in files:
            if entry is not None and rows + entry[0] <= Lake.SCAN_ROWS:
                chunk.append((symbol, year, path, entry[0]))
                rows += entry[0]
        if not chunk:
            return {}
        try:
            bars = scan_stored([p for _, _, p, _ in chunk])
        except (Exception, pl.exceptions.PanicException):
            return {}
        # The rows come file after file; each file holds its entry's row count (its stat is the one
        # the entry was written with), checked as a whole.
        if bars.height != rows:
            return {}
        out: dict[tuple[str, int], pl.DataFrame] = {}
        at = 0
        for symbol, year, _, n in chunk:
            out[(symbol, year)] = bars.slice(at, n)
            at += n
        return out

    @staticmethod
    def _upsert_file(
        symbol: str, year: int, digest: tuple, path: Path, part: pl.DataFrame, index: LakeIndex, entry: tuple | None,
        batch: AtomicBatch, written: dict[Path, tuple[str, int, tuple]], stored: pl.DataFrame | None = None,
        new_files: list[Path] | None = None, exists: bool | None = None,
    ) -> int:
        """Merge one (symbol, year)'s incoming bars (in date order) into its file; returns how many
        were new or revised.

        ``entry``: the index's digests of the file if it still describes it; ``stored``: the
        file's bars if already read (``_read_described``). A new file is written into ``batch``
        and its digests put in ``written`` (recorded once it is renamed); ``new_files`` gets its
        path when it did not exist and is written as ``part`` itself. ``exists``: whether the file
        exists if the caller knows (None: looked up).
        """

        def write(frame: pl.DataFrame, digest: tuple) -> None:
            batch.write_parquet(frame, path)
            written[path] = (symbol, year, digest)

        if stored is None and not (path.exists() if exists is None else exists):
            write(part, digest)
            if new_files is not None:
                new_files.append(path)  # the file is ``part`` as it is (``Landed``)
            return part.height
        old = stored if stored is not None else conform_stored(read_stored_parquet(path))
        last = entry[-1] if entry is not None else None
        if last is not None and part.height and part["date"][0] > last and old["date"].is_sorted():
            # Only bars dated after every stored one (an input cursor's new rows, the nightly case):
            # the comparison below would keep the stored bars and add these, and the digests add
            # up (``digest`` is these bars'). The stored bars are in date order, so both are too
            # (sorting would change no byte: ``python -m bench.lake_land`` compares the lakes).
            write(pl.concat([old, part]), _plus(entry, digest))
            return part.height
        new = part.filter(pl.col("date") > last) if last is not None else part.clear()
        if appends_only(entry, digest, new):
            # The nightly case: the stored bars as they were and new dates after them. The file
            # becomes both, as the comparison below would make it, without comparing bar by bar.
            write(pl.concat([old, new]).sort("date"), digest)
            return new.height
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
            index.record_frame(symbol, year, old, path)  # read anyway: its entry is rebuilt
            return 0
        replaced = pl.concat([changed, moved])
        merged = pl.concat([old.join(replaced, on="date", how="anti"), replaced])
        write(merged.sort("date"), merged.select(_digest_exprs()).row(0))
        return changed.height

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
        seen = unique_bars(present.select("symbol", pl.col("date").cast(pl.Date)))
        # A file whose dates are exactly the input's has none absent: not read (its index entry says so).
        seen_dates = {
            (s, y): (n, d)
            for s, y, n, d in seen.group_by("symbol", pl.col("date").dt.year().cast(pl.Int32).alias("year"))
            .agg(pl.len().cast(pl.Int64), pl.col("date").hash(_SEEDS[0]).sum())
            .iter_rows()
        }
        index = LakeIndex(self.index_path, self.delta_dir)
        try:
            if index.deltas or delta_files(self.delta_dir):
                self._fold(index)  # the year files compared are whole
            return self._withdraw_absent(seen, seen_dates, index, start, end, withdrawn_at, keep)
        finally:
            index.save()

    def _withdraw_absent(self, seen, seen_dates, index, start, end, withdrawn_at, keep) -> pl.DataFrame:
        # Each year file is compared with its own symbol's dates, not with every bar of the input
        # (that join cost grew with files x bars: 5 min at 500 stocks, bench e2e).
        seen_by_symbol = None  # partitioned when a first file is read
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
                entry = index.trusted(symbol, year, path)
                if entry is not None and seen_dates.get((symbol, year)) == (entry[0], entry[3]):
                    continue
                stored = conform_stored(read_stored_parquet(path))
                if seen_by_symbol is None:
                    seen_by_symbol = seen.partition_by("symbol", as_dict=True)
                in_range = pl.col("date").is_between(start, end)
                gone = stored.filter(in_range).join(
                    seen_by_symbol.get((symbol,), none_seen), on=["symbol", "date"], how="anti"
                )
                if gone.is_empty():
                    index.record_frame(symbol, year, stored, path)
                    continue
                out.append(gone)
                self._landed = None  # the lake is no longer what the land left (``hand_over``)
                kept = stored.join(gone.select("date"), on="date", how="anti")
                # The record first: a kill between the two writes leaves the
                # bar in both places (withdrawn again by the next run), never in neither.
                self._record_withdrawn(gone, withdrawn_at)
                if kept.is_empty():
                    path.unlink()
                    index.forget(symbol, year)
                else:
                    atomic_write_parquet(kept.sort("date"), path)
                    index.record_frame(symbol, year, kept, path)
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
