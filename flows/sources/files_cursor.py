"""The files source's input cursor: what the last landed run read, so the next reads only what is new.

The files source's input is a snapshot folder, rewritten whole every night with
one more day appended. Without a cursor every run checks every row of every
file and hands every bar to the land, which compares them all with the lake.
With it, the run that landed writes (atomically, after its land and withdrawal
succeeded) ``<lake>/index/input-source=files.json``: per input file what was
read, and per symbol what was landed. The next run

- decodes each file as before, and hashes its rows in order (a row's place
  is its number: each bar's ``origin`` stays the same; a Parquet file's rows
  as stored, ``read_hashed``): when the first rows hash as the recorded ones,
  only the rows after them are checked and handed on (``mode="rows"``, files
  whose last read found nothing wrong); a Parquet file is followed by row
  group (``follow_parquet``): the leading row groups whose bytes, metadata
  and file schema are as recorded are not decoded, the rows of the others are
  decoded and hashed as above;
- hashes the bytes of every other file (one skipped, one with held-back rows,
  an hourly file): it must be unchanged, and its problems are the recorded ones;
- takes everything a check needs of the old rows (each symbol's row count,
  first and last date, the run's problems, warnings, failed symbols and
  assets) from the cursor, not by reading them again.

Anything else falls back to the full read of today (``FilesSource._read_full``),
which writes a new cursor after its land: a changed earlier row, a removed
row, a new, vanished or renamed file, another ``--path``, another setting that
changes parsing (conflict policy, tolerance, crypto close, calendar), another
universe, start date or code or Polars version, new rows with any problem or
warning, new rows not after their symbol's recorded last date, a symbol found
in two files, a cursor that cannot be read, or a lake the cursor does not
describe (its index rewritten since, or any year file not the one the index
recorded: a lake changed by hand is repaired by the full read as before).

The new rows' bars are the batch (``SourceBatch.cursor`` says so): the land
upserts them, and ``withdraw_absent`` compares only stored bars dated after
each symbol's recorded last date (the unchanged rows' bars are in the lake as
the last run left them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from flows.sources.base import InputProblem
from warehouse.files import atomic_write_text
from warehouse.lake import Lake

log = logging.getLogger(__name__)

# Changes with the state's layout; a cursor of another version is not used.
CURSOR_VERSION = 1
# Row hashes are Polars' (stable only within one version: the version is part of the key).
_ROW_SEED = 0x63757273
# Per-symbol summary columns: every bar, and the bars from the run's start on.
SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(), "n_all": pl.Int64(), "first_all": pl.Date(), "n_in": pl.Int64(),
    "first_in": pl.Date(), "last": pl.Date(),
}
_CODE = [Path(__file__), *(Path(__file__).with_name(n) for n in ("files.py", "base.py")),
         Path(__file__).parents[1] / "universe.py"]


def code_digest() -> str:
    """The code that reads and checks the files: another version re-reads everything."""
    h = hashlib.blake2b(digest_size=16)
    for p in _CODE:
        h.update(p.read_bytes())
    return h.hexdigest()


def bytes_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=32)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def row_hashes(frame: pl.DataFrame) -> bytes:
    """Each decoded row's hash, 8 bytes a row in row order (a row's hash is of its values alone)."""
    return frame.hash_rows(seed=_ROW_SEED).to_numpy().tobytes() if frame.height else b""


def digest_rows(schema: pl.Schema, hashes: bytes | memoryview) -> str:
    h = hashlib.blake2b(digest_size=32)
    h.update(str(schema).encode())
    h.update(hashes)
    return h.hexdigest()


# A followed Parquet file, row group by row group (``FileRecord.groups``). The nightly snapshot is
# rewritten whole with a day appended. A writer that appends (or cuts fixed-size row groups:
# pyarrow's) leaves the row groups as the night before but for the last one or two: a row group
# whose bytes (and metadata, and the file's schema) are those recorded decodes to the rows
# recorded, so only the row groups from the first other one on are decoded and hashed row by row
# (the full check cost ~1.2 s of a next day's 1.6 s extract at 2,000 symbols: decoding 8.8 M rows
# and hashing each; the bytes hash at ~1 GB/s). One frame written whole by Polars is cut into
# row groups of equal size (Polars 2.1: ~123 k rows each): a day more moves every boundary, and
# the file is decoded and hashed whole, as without row groups, plus the bytes hash (~0.3 s).
_SPAN_CHUNK = 8 << 20


@dataclass
class ParquetLayout:
    """A Parquet file's row groups as its footer describes them."""

    rows: list[int]
    spans: list[tuple[int, int]]  # each row group's bytes: (start, end), every column chunk inside
    heads: list[bytes]  # what besides those bytes decides how each row group decodes

    @property
    def total(self) -> int:
        return sum(self.rows)


def parquet_layout(fh) -> ParquetLayout:
    """The row groups of the open Parquet file ``fh`` (raises what pyarrow raises on a bad footer)."""
    import pyarrow.parquet as pq

    md = pq.read_metadata(fh)
    # The decoding depends on the Parquet schema and the Arrow schema Polars restores types from,
    # not on other key-value metadata (pandas writes its index's length there: it changes nightly).
    columns = [repr(md.schema.column(i)) for i in range(len(md.schema))]  # (str(md.schema) holds an address)
    schema = repr((columns, md.created_by, (md.metadata or {}).get(b"ARROW:schema"))).encode()
    rows, spans, heads = [], [], []
    for i in range(md.num_row_groups):
        group = md.row_group(i)
        starts, ends = [], []
        for c in range(group.num_columns):
            chunk = group.column(c)
            # Every reading of where a chunk starts (its dictionary page, else its first data page)
            # and ends: the span covers whichever bytes a reader takes for it.
            offsets = [o for o in (chunk.dictionary_page_offset, chunk.data_page_offset) if o is not None]
            starts.append(min(offsets))
            ends.append(max(offsets) + chunk.total_compressed_size)
        rows.append(group.num_rows)
        spans.append((min(starts), max(ends)) if starts else (0, 0))
        heads.append(schema + json.dumps(group.to_dict(), default=str, sort_keys=True).encode())
    return ParquetLayout(rows, spans, heads)


def _span_digest(fd: int, span: tuple[int, int], head: bytes) -> str:
    h = hashlib.sha256(head)  # hashlib drops the GIL on large updates: row groups hash in parallel
    buf = bytearray(_SPAN_CHUNK)
    view = memoryview(buf)
    at, end = span
    while at < end:
        n = os.preadv(fd, [view[: min(_SPAN_CHUNK, end - at)]], at)
        if n <= 0:
            raise OSError(f"short read at byte {at}")
        h.update(view[:n])
        at += n
    return h.hexdigest()


def group_digests(fd: int, layout: ParquetLayout, which: range) -> list[str]:
    """The bytes digests of row groups ``which`` of the open file ``fd``."""
    if len(which) <= 1:
        return [_span_digest(fd, layout.spans[i], layout.heads[i]) for i in which]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(len(which), os.cpu_count() or 1, 4)) as pool:
        return list(pool.map(lambda i: _span_digest(fd, layout.spans[i], layout.heads[i]), which))


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (
        b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns, b.st_ctime_ns)


def group_records(path: Path, schema: pl.Schema, hashes: bytes, before: os.stat_result) -> list[list] | None:
    """``FileRecord.groups`` of a Parquet file whose decoded rows hash to ``hashes``, decoded while it
    was as ``before`` (its stat): None when it is not that file any more, or its footer does not
    count those rows."""
    try:
        with path.open("rb") as fh:
            layout = parquet_layout(fh)
            if layout.total * 8 != len(hashes):
                return None
            digests = group_digests(fh.fileno(), layout, range(len(layout.rows)))
            if not _same_file(before, os.fstat(fh.fileno())) or not _same_file(before, os.stat(path)):
                return None
    except Exception:  # noqa: BLE001 - an unreadable footer: the file is followed by its decoded rows alone
        return None
    return _groups(layout, digests, schema, memoryview(hashes), 0)


def _groups(layout: ParquetLayout, digests: list[str], schema: pl.Schema, hashes: memoryview, first: int) -> list[list]:
    """Records of row groups ``first``.. (``digests``: their bytes), ``hashes`` the rows' from ``first`` on."""
    out, at = [], 0
    for rows, digest in zip(layout.rows[first:], digests, strict=True):
        out.append([rows, digest, digest_rows(schema, hashes[8 * at : 8 * (at + rows)])])
        at += rows
    return out


def groups_digest(groups: list[list]) -> str:
    """A followed Parquet file's ``FileRecord.digest``: of its row groups' records."""
    return hashlib.blake2b(json.dumps(groups).encode(), digest_size=32).hexdigest()


@dataclass
class Grown:
    """A followed Parquet file read from its first row group not as recorded on."""

    frame: pl.DataFrame  # the decoded rows from ``skipped`` on
    skipped: int  # rows vouched for by their row groups' bytes
    groups: list[list]  # the file's ``FileRecord.groups`` now


def follow_parquet(path: Path, rec: FileRecord, decode) -> Grown | None:
    """The rows of a Parquet file ``rec`` follows by row group, decoded (``decode(path, skip)``) only from
    its first row group whose bytes are not as recorded; None if any row ``rec`` recorded is not as it was.

    Raises what ``decode`` raises (the file no longer reads)."""
    old = rec.groups or []
    with path.open("rb") as fh:
        fd = fh.fileno()
        before = os.fstat(fd)
        try:
            layout = parquet_layout(fh)
        except Exception:  # noqa: BLE001 - not readable as Parquet: the full read says why
            return None
        candidates = 0  # leading row groups of the recorded sizes: may be the recorded ones
        while candidates < min(len(old), len(layout.rows)) and layout.rows[candidates] == old[candidates][0]:
            candidates += 1
        digests = group_digests(fd, layout, range(candidates))
        same = next((i for i, d in enumerate(digests) if d != old[i][1]), candidates)
        skipped = sum(layout.rows[:same])
        frame = decode(path, skipped)
        hashes = memoryview(row_hashes(frame))
        tail = group_digests(fd, layout, range(same, len(layout.rows)))
        # Decoded, hashed and measured from one file: rewritten meanwhile, it is read whole.
        if not _same_file(before, os.fstat(fd)) or not _same_file(before, os.stat(path)):
            return None
    if skipped + frame.height != layout.total or layout.total < rec.rows:
        return None
    at = 0
    for rows, _, digest in old[same:]:  # the recorded rows after the vouched ones, row by row
        if digest_rows(frame.schema, hashes[8 * at : 8 * (at + rows)]) != digest:
            return None
        at += rows
    if skipped + at != rec.rows:
        return None
    return Grown(frame, skipped, old[:same] + _groups(layout, tail, frame.schema, hashes, same))


def summarize(bars: pl.DataFrame, start: date) -> pl.DataFrame:
    """Per symbol of ``bars`` (``symbol``, ``date``): ``SUMMARY_SCHEMA``."""
    d, inside = pl.col("date"), pl.col("date") >= start
    return bars.group_by("symbol").agg(
        pl.len().cast(pl.Int64).alias("n_all"), d.min().alias("first_all"),
        inside.sum().cast(pl.Int64).alias("n_in"), d.filter(inside).min().alias("first_in"), d.max().alias("last"),
    ).select(list(SUMMARY_SCHEMA)).cast(SUMMARY_SCHEMA).sort("symbol")


def combine(old: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """Summaries of two sets of bars of which ``new`` is dated after ``old`` per symbol."""
    both = pl.concat([old, new])
    return both.group_by("symbol").agg(
        pl.col("n_all").sum(), pl.col("first_all").min(), pl.col("n_in").sum(), pl.col("first_in").min(),
        pl.col("last").max(),
    ).select(list(SUMMARY_SCHEMA)).cast(SUMMARY_SCHEMA).sort("symbol")


@dataclass
class FileRecord:
    """What the last read found of one input file."""

    path: str
    rel: str
    mode: str  # "rows": clean, decoded rows hashed (may grow); "bytes": must be unchanged
    digest: str
    rows: int = 0
    symbols: list[str] = field(default_factory=list)
    # A Parquet file followed by row group (``follow_parquet``): per row group [rows, digest of its bytes,
    # digest of its decoded rows]; ``digest`` is then of these. None: followed by its decoded rows alone.
    groups: list[list] | None = None


@dataclass
class CursorState:
    key: dict
    start: str
    files: list[FileRecord]
    summary: pl.DataFrame
    assets: pl.DataFrame
    warnings: list[str]
    problems: list[InputProblem]
    failed: dict[str, tuple[str, str]]
    # The lake index's stat after the land this state describes, and that run's last date (set by ``save``).
    lake: list | None = None
    as_of: str | None = None

    def to_json(self) -> str:
        return json.dumps({
            "version": CURSOR_VERSION, "key": self.key, "start": self.start, "lake": self.lake, "as_of": self.as_of,
            "files": [asdict(f) for f in self.files],
            "summary": self.summary.to_dict(as_series=False),
            "assets": self.assets.to_dicts(),
            "warnings": self.warnings,
            "problems": [asdict(p) for p in self.problems],
            "failed": {s: list(v) for s, v in self.failed.items()},
        }, default=str)

    @classmethod
    def from_json(cls, text: str, asset_schema: dict) -> CursorState:
        raw = json.loads(text)
        if raw.get("version") != CURSOR_VERSION:
            raise ValueError(f"cursor version {raw.get('version')!r}")
        texts = {c: pl.String if t == pl.Date else t for c, t in SUMMARY_SCHEMA.items()}
        summary = pl.DataFrame(raw["summary"], schema=texts).with_columns(
            pl.col(c).str.to_date("%Y-%m-%d") for c, t in SUMMARY_SCHEMA.items() if t == pl.Date
        )
        problems = [
            InputProblem(**{**p, "date": date.fromisoformat(p["date"]) if p["date"] else None}) for p in raw["problems"]
        ]
        return cls(
            key=raw["key"], start=raw["start"], lake=raw["lake"], as_of=raw["as_of"],
            files=[FileRecord(**f) for f in raw["files"]],
            summary=summary,
            assets=pl.DataFrame(raw["assets"], schema=asset_schema) if raw["assets"] else pl.DataFrame(schema=asset_schema),
            warnings=list(raw["warnings"]), problems=problems,
            failed={s: (v[0], v[1]) for s, v in raw["failed"].items()},
        )


class InputCursor:
    """Where the cursor of one lake lives, and whether it may be trusted."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.why: str | None = None  # why the last read did not go through the cursor

    def not_used(self, why: str, *args) -> None:
        self.why = why % args if args else why
        log.info("input cursor not used: %s", self.why)

    @property
    def path(self) -> Path:
        return self.lake.root / "index" / f"input-source={self.lake.source}.json"

    def load(self, key: dict, asset_schema: dict) -> CursorState | None:
        """The recorded state if it describes these inputs' settings and this lake as it is; else None (why logged)."""
        if not self.path.exists():
            self.why = "none recorded yet"
            return None
        try:
            state = CursorState.from_json(self.path.read_text(), asset_schema)
        except Exception as exc:  # corrupt or foreign: the full read, which writes a new one
            self.not_used("unreadable (%s)", str(exc)[:200])
            return None
        if state.key != key:
            changed = sorted(k for k in set(key) | set(state.key) if key.get(k) != state.key.get(k))
            self.not_used("%s changed", ", ".join(changed))
            return None
        why = (self.lake.landed_unchanged(state.lake, date.fromisoformat(state.as_of)) if state.as_of
               else "it records no landing")
        if why:
            self.not_used(why)
            return None
        self.why = None
        return state

    def save(self, state: CursorState, as_of: date) -> None:
        """After the land and the withdrawal of the run through ``as_of``: the state, with the lake
        index's stat as they left it."""
        state.lake, state.as_of = self.lake.index_token(), as_of.isoformat()
        atomic_write_text(state.to_json(), self.path)

    def discard(self) -> None:
        """After a land it does not describe: gone, so it is never trusted."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


@dataclass
class CursorLanding:
    """What the files source hands the land with its batch: whether the bars are only the new rows
    (``delta``), and the state to record once they are landed (None: remove the old one)."""

    cursor: InputCursor
    state: CursorState | None
    delta: bool

    def describe(self, rows: int) -> str:
        """One line for the run log: whether only the new rows were read, else why everything was."""
        if self.delta:
            return f"input cursor: only the {rows} row(s) after those the last landed run read were checked and landed"
        return f"input cursor not used ({self.cursor.why or 'not recorded'}): every input row was read"

    def landed(self, as_of: date) -> None:
        if self.state is not None:
            self.cursor.save(self.state, as_of)
        else:
            self.cursor.discard()
