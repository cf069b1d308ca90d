"""The lake's index lets a land read only the year files that changed, and is never trusted when stale.

The reference is the same lake landed with no index at all (deleted before
every call), which compares every year file as the lake always did: every
stored file must be byte for byte the same.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import polars as pl
import pytest

import warehouse.lake as lake_module
from warehouse.files import AtomicBatch
from warehouse.lake import BARS_SCHEMA, INDEX_SCHEME, Lake, LakeIndex, digests, symbol_dir

START = date(2022, 11, 1)
SYMBOLS = ["AAA", "BBB", "^RUT"]


def history(through: date, origin: str = "in.csv") -> pl.DataFrame:
    days = [START + timedelta(days=i) for i in range((through - START).days + 1)]
    rows = [
        {"symbol": s, "date": d, "open": 1.0 + i, "high": 2.0 + i, "low": 0.5 + i, "close": 1.5 + i,
         "adj_close": 1.5 + i, "volume": 100.0 + k, "origin": f"{s}.csv line {i + 2}" if origin else None}
        for k, s in enumerate(SYMBOLS) for i, d in enumerate(days)
    ]
    return pl.DataFrame(rows, schema={k: v for k, v in BARS_SCHEMA.items() if k not in ("source", "ingested_at")})


def stored_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*.parquet")) if p.relative_to(root).parts[0] != "index"
    }


class Reads:
    """Which files the lake reads (``read_stored_parquet`` and the multi-file ``scan_stored`` wrapped)."""

    def __init__(self, monkeypatch) -> None:
        self.paths: list[Path] = []
        real, real_scan = lake_module.read_stored_parquet, lake_module.scan_stored

        def counted(path, *a, **k):
            self.paths.append(Path(path))
            return real(path, *a, **k)

        def scanned(paths):
            self.paths.extend(Path(p) for p in paths)
            return real_scan(paths)

        monkeypatch.setattr(lake_module, "read_stored_parquet", counted)
        monkeypatch.setattr(lake_module, "scan_stored", scanned)

    def take(self) -> list[str]:
        out = sorted(f"{p.parent.name}/{p.name}" for p in self.paths if p.parent.parent.name.startswith("source="))
        self.paths.clear()
        return out


D1, D2, D3, D4 = date(2024, 1, 30), date(2024, 1, 31), date(2024, 2, 1), date(2024, 2, 2)


def steps() -> list[tuple[str, pl.DataFrame, date]]:
    base = history(D2)
    deep = (pl.col("symbol") == "AAA") & (pl.col("date") == date(2023, 3, 1))
    recent = pl.col("date") == date(2024, 1, 15)
    return [
        ("full", history(D1), D1),
        ("next day", base, D2),
        ("same again", base, D2),
        ("historical correction", base.with_columns(pl.when(deep).then(9.0).otherwise("close").alias("close")), D2),
        # Lines inserted above every bar of BBB: the same values from elsewhere (origin only).
        ("origins moved", base.with_columns(
            pl.when(pl.col("symbol") == "BBB").then(pl.col("origin") + " (moved)").otherwise("origin").alias("origin")), D2),
        ("a source without origins", base.with_columns(pl.lit(None, pl.String).alias("origin")), D2),
        ("a bar withdrawn", base.filter(~deep), D2),
        ("a symbol gone", base.filter(pl.col("symbol") != "BBB"), D2),
        ("both back", base, D2),
        ("-0.0 and NaN", base.with_columns(
            pl.when(deep).then(float("nan")).otherwise("open").alias("open"),
            pl.when(pl.col("date") == date(2023, 5, 1)).then(-0.0).otherwise("volume").alias("volume")), D2),
        ("0.0 for -0.0", base.with_columns(
            pl.when(deep).then(float("nan")).otherwise("open").alias("open"),
            pl.when(pl.col("date") == date(2023, 5, 1)).then(0.0).otherwise("volume").alias("volume")), D2),
        # A new day with, in the same year file, a revised bar (AAA) or a moved one (BBB): not only appended.
        ("a new day and a revision", history(D3).with_columns(
            pl.when(recent & (pl.col("symbol") == "AAA")).then(8.0).otherwise("close").alias("close"),
            pl.when(recent & (pl.col("symbol") == "BBB")).then(pl.col("origin") + "!").otherwise("origin").alias("origin"),
        ), D3),
        ("a new day and a bar gone", history(D4).filter(~(recent & (pl.col("symbol") == "^RUT"))), D4),
    ]


def land(lake: Lake, bars: pl.DataFrame, as_of: date, i: int) -> tuple[int, list]:
    now = datetime(2024, 2, 1, tzinfo=UTC) + timedelta(days=i)
    written = lake.upsert_bars(bars, now)
    # From the first year of the lake, as a files run withdraws from history_start.
    gone = lake.withdraw_absent(bars, date(2022, 11, 1), as_of, now)
    return written, gone.select("symbol", "date").rows()


def test_every_landing_stores_what_the_lake_without_an_index_stores(tmp_path):
    indexed, reference = Lake(tmp_path / "indexed", "files", writers=4), Lake(tmp_path / "reference", "files")
    for i, (name, bars, as_of) in enumerate(steps()):
        got = land(indexed, bars, as_of, i)
        reference.index_path.unlink(missing_ok=True)
        want = land(reference, bars, as_of, i)
        reference.index_path.unlink(missing_ok=True)
        assert got == want, name
        assert stored_files(indexed.root) == stored_files(reference.root), name
    assert indexed.read_withdrawn().height == 2 + history(D2).filter(pl.col("symbol") == "BBB").height


def test_a_landing_reads_only_the_year_files_that_changed(tmp_path, monkeypatch):
    lake = Lake(tmp_path, "files")
    reads = Reads(monkeypatch)
    land(lake, history(D1), D1, 0)
    assert reads.take() == [], "a new lake: nothing to compare"
    land(lake, history(D2), D2, 1)
    # The new day's files only: upsert compares them, withdraw_absent trusts the index it just wrote.
    assert reads.take() == ["%5ERUT/2024.parquet", "AAA/2024.parquet", "BBB/2024.parquet"]
    land(lake, history(D2), D2, 2)
    assert reads.take() == [], "nothing changed: nothing read"
    deep = (pl.col("symbol") == "AAA") & (pl.col("date") == date(2023, 3, 1))
    land(lake, history(D2).with_columns(pl.when(deep).then(9.0).otherwise("close").alias("close")), D2, 3)
    assert reads.take() == ["AAA/2023.parquet"]
    land(lake, history(D2).filter(~deep), D2, 4)
    # The one file whose bars (upsert) and dates (withdrawal) differ from the input's.
    assert reads.take() == ["AAA/2023.parquet", "AAA/2023.parquet"]


def check_falls_back(lake: Lake, reference: Lake, bars: pl.DataFrame, i: int, reads: Reads, counts: bool = True) -> list[str]:
    got = land(lake, bars, D2, i)
    read = reads.take()
    want = land(reference, bars, D2, i)
    reads.take()
    reference.index_path.unlink(missing_ok=True)
    assert got == want or not counts
    assert stored_files(lake.root) == stored_files(reference.root)
    return read


def two_lakes(tmp_path) -> tuple[Lake, Lake]:
    lake, reference = Lake(tmp_path / "lake", "files"), Lake(tmp_path / "reference", "files")
    for x in (lake, reference):
        land(x, history(D2), D2, 0)
    reference.index_path.unlink()
    return lake, reference


def revised(close: float) -> pl.DataFrame:
    return history(D2).with_columns(
        pl.when((pl.col("symbol") == "AAA") & (pl.col("date") == D1)).then(close).otherwise("close").alias("close"))


@pytest.mark.parametrize("damage", ["missing", "not parquet", "empty file", "wrong columns"])
def test_a_missing_or_unreadable_index_reads_every_file_and_is_rebuilt(tmp_path, monkeypatch, damage):
    lake, reference = two_lakes(tmp_path)
    if damage == "missing":
        lake.index_path.unlink()
    elif damage == "not parquet":
        lake.index_path.write_bytes(b"PAR1" + b"\x00" * 64)
    elif damage == "empty file":
        lake.index_path.write_bytes(b"")
    else:
        pl.DataFrame({"symbol": ["AAA"]}).write_parquet(lake.index_path)
    reads = Reads(monkeypatch)
    every_file = sorted(f"{p.parent.name}/{p.name}" for p in lake.bars_dir.glob("*/*.parquet"))
    assert check_falls_back(lake, reference, revised(7.0), 1, reads) == every_file
    assert check_falls_back(lake, reference, revised(7.0), 2, reads) == [], "the rebuilt index is trusted"


def test_a_crash_between_the_file_and_the_index_write_is_never_trusted(tmp_path, monkeypatch):
    # The index describes the file before a revision (the run died before writing the index): its
    # digest matches bars that are no longer stored, and the file's stat tells.
    lake, reference = two_lakes(tmp_path)
    before = lake.index_path.read_bytes()
    for x in (lake, reference):
        land(x, revised(7.0), D2, 1)
    reference.index_path.unlink()
    lake.index_path.write_bytes(before)
    reads = Reads(monkeypatch)
    assert "AAA/2024.parquet" in check_falls_back(lake, reference, history(D2), 2, reads)
    assert lake.read_bars().filter((pl.col("symbol") == "AAA") & (pl.col("date") == D1))["close"].to_list() == [
        history(D2).filter((pl.col("symbol") == "AAA") & (pl.col("date") == D1))["close"][0]
    ], "the original bar is back: the stale entry was not trusted"


def test_a_year_file_changed_behind_the_index_is_read(tmp_path, monkeypatch):
    lake, reference = two_lakes(tmp_path)
    # Written in place (same inode): the size and times tell.
    for x in (lake, reference):
        path = x.bars_dir / "AAA" / "2024.parquet"
        frame = pl.read_parquet(path).with_columns(pl.lit(5.0).alias("close"))
        with path.open("r+b") as fh:
            fh.truncate(0)
            frame.write_parquet(fh)
    reads = Reads(monkeypatch)
    assert check_falls_back(lake, reference, history(D2), 1, reads) == ["AAA/2024.parquet"]


def test_an_index_of_another_scheme_is_ignored(tmp_path, monkeypatch):
    # Polars' hashes are stable within one version only: an index written under another is not trusted,
    # even where it (wrongly) claims a file holds the incoming bars.
    lake, reference = two_lakes(tmp_path)
    for x in (lake, reference):
        land(x, revised(7.0), D2, 1)
    reference.index_path.unlink()
    claim = digests(history(D2)).filter(pl.col("symbol") == "AAA", pl.col("year") == 2024)
    index = pl.read_parquet(lake.index_path)
    aaa = (pl.col("symbol") == "AAA") & (pl.col("year") == 2024)
    forged = index.with_columns(
        *[pl.when(aaa).then(pl.lit(claim[c][0], index.schema[c])).otherwise(c).alias(c) for c in ("digest", "digest2")])
    forged.with_columns(pl.lit("0/polars-0.0").alias("scheme")).write_parquet(lake.index_path)
    reads = Reads(monkeypatch)
    assert "AAA/2024.parquet" in check_falls_back(lake, reference, history(D2), 2, reads)
    assert INDEX_SCHEME in pl.read_parquet(lake.index_path)["scheme"].to_list()
    # The same forgery under this version's scheme would be trusted: the check above is what stops it.
    for x in (lake, reference):
        land(x, revised(7.0), D2, 3)
    reference.index_path.unlink()
    index = pl.read_parquet(lake.index_path)
    index.with_columns(
        *[pl.when(aaa).then(pl.lit(claim[c][0], index.schema[c])).otherwise(c).alias(c) for c in ("digest", "digest2")]
    ).write_parquet(lake.index_path)
    lake.upsert_bars(history(D2), datetime(2024, 3, 1, tzinfo=UTC))
    assert lake.read_bars().filter((pl.col("symbol") == "AAA") & (pl.col("date") == D1))["close"].to_list() == [7.0]


@pytest.mark.parametrize("writers", [1, 4])
def test_a_land_that_fails_midway_leaves_an_index_the_next_land_can_use(tmp_path, monkeypatch, writers):
    lake, reference = two_lakes(tmp_path)
    lake.writers = writers
    real = AtomicBatch.write_parquet
    calls = []

    def fail_second(self, frame, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real(self, frame, path)

    bumped = history(D2).with_columns(pl.col("close") + 1)
    monkeypatch.setattr(AtomicBatch, "write_parquet", fail_second)
    with pytest.raises(OSError, match="disk full"):
        lake.upsert_bars(bumped, datetime(2024, 2, 2, tzinfo=UTC))  # land()'s time for i=1
    monkeypatch.setattr(AtomicBatch, "write_parquet", real)
    landed = {f"{p.parent.name}/{p.name}" for p in calls[:1] + calls[2:]}
    assert landed and len(landed) < 9
    assert not list(lake.root.rglob(".tmp-*")), "no temp file is left behind"
    # The index is saved after a failure too: it describes the files written before it.
    index = LakeIndex(lake.index_path)
    assert all(index.trusted(unquote(p.parent.name), int(p.stem), p) is not None for p in calls[:1] + calls[2:])
    reads = Reads(monkeypatch)
    # The files written before the failure are trusted (their entries were saved), the rest compared;
    # the bars written count fewer (those files had them already).
    read = check_falls_back(lake, reference, bumped, 1, reads, counts=False)
    assert set(read).isdisjoint(landed) and len(read) == 9 - len(landed)


def test_last_dates_come_from_the_index_while_it_describes_the_files(tmp_path, monkeypatch):
    lake = Lake(tmp_path, "files")
    land(lake, history(D2), D2, 0)
    reads = Reads(monkeypatch)
    assert lake.last_dates() == {s: D2 for s in SYMBOLS}
    assert reads.take() == []
    # A last year file changed behind the index is read.
    path = lake.bars_dir / "AAA" / "2024.parquet"
    pl.read_parquet(path).filter(pl.col("date") < D1).write_parquet(path)
    assert lake.last_dates() == {"AAA": D1 - timedelta(days=1), "BBB": D2, "^RUT": D2}
    assert reads.take() == ["AAA/2024.parquet"]
    lake.index_path.unlink()
    assert lake.last_dates() == {"AAA": D1 - timedelta(days=1), "BBB": D2, "^RUT": D2}
    assert len(reads.take()) == 3


def test_real_histories_land_through_the_index_as_without_it(tmp_path, real_data, monkeypatch):
    """The files source's bars of real yfinance histories (^RUT since 1987 and four more, 149 year files):
    a full land, the next day, a revised and a withdrawn historical bar store what the lake without an
    index stores, and the next day reads only the last year's files."""
    from flows.settings import Settings
    from flows.sources.registry import make_source
    from flows.universe import Asset, Universe

    folder = real_data / "alitalbi-storage_data_fy"
    if not folder.is_dir():
        pytest.skip(f"{folder} absent (see ../shared/data/real/SOURCES.md)")
    classes = {"IWM": "etf", "SPY": "etf", "RTY=F": "future", "^RUT": "index", "^VIX": "index"}
    universe = Universe(benchmarks=("^RUT",), assets=tuple(Asset(symbol=s, name=s, asset_class=c) for s, c in classes.items()))
    settings = Settings()
    src = make_source("files", settings, [folder])
    start = date(1985, 1, 1)
    bars = src.fetch(universe, start, src.last_date(universe), {}, pl.DataFrame()).bars
    assert bars["symbol"].n_unique() == 5 and bars["origin"].is_not_null().all()
    last = bars["date"].max()
    deep = (pl.col("symbol") == "^RUT") & (pl.col("date") == date(2000, 3, 1))
    assert bars.filter(deep).height == 1
    indexed, reference = Lake(tmp_path / "indexed", "files", writers=4), Lake(tmp_path / "reference", "files")
    reads = Reads(monkeypatch)
    for i, (bars_, end) in enumerate([
        (bars.filter(pl.col("date") < last), last - timedelta(days=1)),
        (bars, last),
        (bars.with_columns(pl.when(deep).then(pl.col("close") * 1.01).otherwise("close").alias("close")), last),
        (bars.filter(~deep), last),
    ]):
        now = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(days=i)
        got = indexed.upsert_bars(bars_, now), indexed.withdraw_absent(bars_, start, end, now).height
        read = reads.take()
        reference.index_path.unlink(missing_ok=True)
        want = reference.upsert_bars(bars_, now), reference.withdraw_absent(bars_, start, end, now).height
        reads.take()
        assert got == want
        assert stored_files(indexed.root) == stored_files(reference.root)
        if i == 1:
            assert got == (5, 0) and read == sorted(f"{symbol_dir(s)}/{last.year}.parquet" for s in classes)
        if i == 3:
            assert got == (0, 1) and read == ["%5ERUT/2000.parquet"] * 2


def new_days(through: date, after: date) -> pl.DataFrame:
    """Only the bars dated after ``after``: what the files source's input cursor (or a live fetch) hands on."""
    return history(through).filter(pl.col("date") > after)


def test_the_new_days_bars_alone_append_as_the_comparison_writes_them_after_one_scan(tmp_path, monkeypatch):
    """A land of only the bars after the stored ones (the cursor's next day): every file it writes is
    byte for byte what the lake without an index writes, the files it appends to are read in one
    multi-file scan and none on its own, and the index then describes them (nothing read again)."""
    indexed, reference = Lake(tmp_path / "indexed", "files", writers=4), Lake(tmp_path / "reference", "files")
    scans = []
    real_scan = lake_module.scan_stored
    monkeypatch.setattr(lake_module, "scan_stored", lambda paths: scans.append(len(paths)) or real_scan(paths))
    for x in (indexed, reference):
        x.upsert_bars(history(D1), datetime(2024, 2, 1, tzinfo=UTC))
    reference.index_path.unlink()
    reads = Reads(monkeypatch)
    scans.clear()
    for i, (through, after) in enumerate([(D2, D1), (D4, D2)], start=1):
        now = datetime(2024, 2, 1, tzinfo=UTC) + timedelta(days=i)
        bars = new_days(through, after)
        assert indexed.upsert_bars(bars, now) == bars.height
        read = reads.take()
        assert reference.upsert_bars(bars, now) == bars.height
        reference.index_path.unlink()
        reads.take()
        assert stored_files(indexed.root) == stored_files(reference.root)
        assert read == ["%5ERUT/2024.parquet", "AAA/2024.parquet", "BBB/2024.parquet"]
        assert scans == [3] * i, "one scan for the three files, none read on their own"
    reads.take()
    assert indexed.upsert_bars(history(D4), datetime(2024, 3, 1, tzinfo=UTC)) == 0
    assert reads.take() == [], "the appended files are described by the index"


def test_files_past_the_scan_budget_are_read_one_by_one_and_store_the_same(tmp_path, monkeypatch):
    indexed, reference = Lake(tmp_path / "indexed", "files", writers=2), Lake(tmp_path / "reference", "files")
    for x in (indexed, reference):
        x.upsert_bars(history(D1), datetime(2024, 2, 1, tzinfo=UTC))
    reference.index_path.unlink()
    scans = []
    real_scan = lake_module.scan_stored
    monkeypatch.setattr(lake_module, "scan_stored", lambda paths: scans.append(len(paths)) or real_scan(paths))
    monkeypatch.setattr(Lake, "SCAN_ROWS", 40)  # a 2024 file holds 29 rows: one file read ahead
    reads = Reads(monkeypatch)
    indexed.upsert_bars(new_days(D2, D1), datetime(2024, 2, 2, tzinfo=UTC))
    assert scans == [1] and len(reads.take()) == 3, "one file scanned, two read on their own"
    reference.upsert_bars(new_days(D2, D1), datetime(2024, 2, 2, tzinfo=UTC))
    reference.index_path.unlink()
    assert stored_files(indexed.root) == stored_files(reference.root)


@pytest.mark.parametrize("odd", ["volume stored as integers", "rows not in date order", "no origin column"])
def test_a_described_file_the_scan_or_the_append_cannot_take_is_merged_as_before(tmp_path, monkeypatch, odd):
    """A year file another writer left (an integer column, rows out of date order, no ``origin``),
    then described by the index after a land compared it: the next day's bars are merged into it as
    the lake without an index merges them (cast, sorted, origin null), never appended unsorted or lost."""
    indexed, reference = Lake(tmp_path / "indexed", "files", writers=4), Lake(tmp_path / "reference", "files")
    for x in (indexed, reference):
        x.upsert_bars(history(D1), datetime(2024, 2, 1, tzinfo=UTC))
        path = x.bars_dir / "AAA" / "2024.parquet"
        frame = pl.read_parquet(path)
        if odd == "volume stored as integers":
            frame = frame.with_columns(pl.col("volume").cast(pl.Int64))
        elif odd == "rows not in date order":
            frame = frame.reverse()
        else:
            frame = frame.drop("origin")
        frame.write_parquet(path)
    bars = history(D1) if odd != "no origin column" else history(D1).with_columns(
        pl.when((pl.col("symbol") == "AAA") & (pl.col("date").dt.year() == 2024)).then(None).otherwise("origin")
        .alias("origin"))
    reference.index_path.unlink()
    reads = Reads(monkeypatch)
    # The same bars again: the changed file is compared, nothing written, and its entry rebuilt.
    assert indexed.upsert_bars(bars, datetime(2024, 2, 2, tzinfo=UTC)) == 0
    assert reads.take() == ["AAA/2024.parquet"]
    assert indexed.upsert_bars(bars, datetime(2024, 2, 2, tzinfo=UTC)) == 0
    assert reads.take() == [], "the odd file is now described"
    for x in (indexed, reference):
        x.upsert_bars(new_days(D2, D1), datetime(2024, 2, 3, tzinfo=UTC))
    reference.index_path.unlink()
    assert stored_files(indexed.root) == stored_files(reference.root)
    stored = indexed.read_bars(["AAA"])
    assert stored["date"].is_sorted() and stored.height == history(D2).filter(pl.col("symbol") == "AAA").height


def test_the_index_is_decoded_once_per_content_and_never_kept_past_an_edit(tmp_path, monkeypatch):
    """A night reads the index up to three times in one process: the second read of the same bytes
    takes the entries decoded before; any other bytes (an edit in place, whatever its stat) are decoded."""
    lake = Lake(tmp_path, "files")
    land(lake, history(D2), D2, 0)
    first = LakeIndex(lake.index_path).entries
    decoded = []
    real = pl.read_parquet
    monkeypatch.setattr(lake_module.pl, "read_parquet", lambda *a, **k: decoded.append(1) or real(*a, **k))
    again = LakeIndex(lake.index_path)
    assert again.entries == first and not decoded, "the same bytes: not decoded again"
    again.entries.clear()  # the kept entries are a copy
    assert LakeIndex(lake.index_path).entries == first
    stat = os.stat(lake.index_path)
    index = real(lake.index_path)
    forged = index.with_columns(pl.when(pl.col("symbol") == "AAA").then(pl.col("rows") + 1).otherwise("rows").alias("rows"))
    with lake.index_path.open("r+b") as fh:  # in place, the times put back: only the bytes tell
        fh.truncate(0)
        forged.write_parquet(fh)
    os.utime(lake.index_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = LakeIndex(lake.index_path).entries
    assert decoded and changed != first
    assert {k: v[0] for k, v in changed.items() if k[0] == "AAA"} == {k: v[0] + 1 for k, v in first.items() if k[0] == "AAA"}


def test_a_land_looks_up_no_year_file_the_index_or_the_lake_listing_answers(tmp_path, monkeypatch):
    """A full land into an empty lake (no symbol directory) and a night whose files the index
    describes ask the filesystem about none of their year files before writing them; a file the
    index does not describe in a symbol directory that exists is looked up (it may be there)."""
    looked_up: list[str] = []
    real_exists = Path.exists

    def exists(self, *a, **k):
        if self.suffix == ".parquet" and self.parent.parent.name.startswith("source="):
            looked_up.append(f"{self.parent.name}/{self.name}")
        return real_exists(self, *a, **k)

    monkeypatch.setattr(Path, "exists", exists)
    lake = Lake(tmp_path, "files", writers=4)
    land(lake, history(D1), D1, 0)
    assert looked_up == []
    land(lake, history(D2), D2, 1)
    assert looked_up == []
    lake.index_path.unlink()
    land(lake, history(D3), D3, 2)
    assert sorted(set(looked_up)) == sorted(f"{p.parent.name}/{p.name}" for p in lake.bars_dir.glob("*/*.parquet"))
