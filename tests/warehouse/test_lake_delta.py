"""The lake's deltas: a night's appends land as one file, and every reader sees year file + deltas as one.

Each test lands the same steps into a lake that writes deltas and into one that does not (the
rewrite of each year file, as before): every reader must give the same answer on both, and once
the deltas are folded every year file must hold the very bytes of the other lake's.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from warehouse.files import StoredFileError
from warehouse.lake import BARS_SCHEMA, DIGEST_COLUMNS, Lake, LakeIndex, delta_files

SYMBOLS = ["A", "B", "^RUT"]
NIGHTS = [date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)]


def bars(symbols: list[str], days: list[date], scale: float = 1.0) -> pl.DataFrame:
    rows = [
        {"symbol": s, "date": d, "open": c, "high": c, "low": c, "close": c, "adj_close": c, "volume": 1.0,
         "origin": f"{s}.csv line {i}"}
        for s in symbols
        for i, d in enumerate(days)
        for c in [scale * (i + 1 + len(s))]
    ]
    return pl.DataFrame(rows, schema={k: v for k, v in BARS_SCHEMA.items() if k not in ("source", "ingested_at")})


def history() -> list[date]:
    day, out = date(2023, 11, 1), []
    while day < NIGHTS[0]:
        if day.weekday() < 5:
            out.append(day)
        day += timedelta(days=1)
    return out


def at(i: int) -> datetime:
    return datetime(2030, 1, 1, tzinfo=UTC) + timedelta(days=i)


def year_files(lake: Lake) -> dict[str, bytes]:
    return {str(p.relative_to(lake.bars_dir)): p.read_bytes() for p in sorted(lake.bars_dir.rglob("*.parquet"))}


def digests(lake: Lake) -> dict:
    return {k: e[: len(DIGEST_COLUMNS)] for k, e in LakeIndex(lake.index_path, lake.delta_dir).entries.items()}


def assert_read_alike(lake: Lake, other: Lake) -> None:
    assert lake.read_bars().equals(other.read_bars())
    files = lake.bar_files()
    assert files.select("symbol", "year").equals(other.bar_files().select("symbol", "year"))
    assert lake.read_bar_files(files["path"].to_list()).equals(other.read_bar_files(other.bar_files()["path"].to_list()))
    old = files.filter(pl.col("year") == 2023)["path"].to_list()
    assert lake.read_bar_files(old).equals(other.read_bar_files(other.bar_files().filter(pl.col("year") == 2023)["path"].to_list()))
    assert lake.last_dates() == other.last_dates()
    assert lake.tail(3).sort("symbol", "date").equals(other.tail(3).sort("symbol", "date"))


@pytest.fixture
def lakes(tmp_path):
    delta, plain = Lake(tmp_path / "delta", "files", deltas=5), Lake(tmp_path / "plain", "files")
    for lake in (delta, plain):
        lake.upsert_bars(bars(SYMBOLS, history()), at(0))
    return delta, plain


def nights(lakes, n: int = len(NIGHTS)) -> None:
    for i, night in enumerate(NIGHTS[:n], start=1):
        for lake in lakes:
            assert lake.upsert_bars(bars(SYMBOLS, [night]), at(i)) == len(SYMBOLS)


def test_a_night_of_appends_is_one_delta_file_and_every_reader_sees_the_rewrite(lakes):
    delta, plain = lakes
    before = year_files(delta)
    nights(lakes)
    assert len(delta_files(delta.delta_dir)) == len(NIGHTS), "one delta per night"
    assert year_files(delta) == before, "no year file rewritten"
    assert_read_alike(delta, plain)
    assert digests(delta) == digests(plain), "the index describes each year file with its deltas"
    assert delta.fold_deltas() == len(SYMBOLS)
    assert delta_files(delta.delta_dir) == []
    assert year_files(delta) == year_files(plain), "folded year files hold the nightly rewrite's bytes"
    assert digests(delta) == digests(plain)
    assert_read_alike(delta, plain)


def test_the_land_after_n_deltas_folds_them(tmp_path):
    delta, plain = Lake(tmp_path / "delta", "files", deltas=2), Lake(tmp_path / "plain", "files")
    for lake in (delta, plain):
        lake.upsert_bars(bars(SYMBOLS, history()), at(0))
    nights((delta, plain), 2)
    assert len(delta_files(delta.delta_dir)) == 2
    before = year_files(delta)
    for lake in (delta, plain):
        lake.upsert_bars(bars(SYMBOLS, NIGHTS[2:]), at(3))
    # The third night folded the two (the year files changed) and is the first of the next deltas.
    assert [f.name for f in delta_files(delta.delta_dir)] == ["20300104T000000000000Z.parquet"]
    assert year_files(delta) != before
    assert_read_alike(delta, plain)
    delta.fold_deltas()
    assert year_files(delta) == year_files(plain)


@pytest.mark.parametrize("step", ["revision", "same_again", "new_year", "new_symbol", "withdrawal"])
def test_any_other_land_folds_first_and_ends_as_the_rewrite(lakes, step):
    delta, plain = lakes
    nights(lakes, 2)
    assert len(delta_files(delta.delta_dir)) == 2
    for lake in lakes:
        if step == "revision":  # a stored bar revised (in a delta and in a year file)
            lake.upsert_bars(bars(["A"], [NIGHTS[1], date(2024, 1, 3)], scale=2.0), at(5))
        elif step == "same_again":  # a night landed again: not an append (folded, then nothing new)
            assert lake.upsert_bars(bars(SYMBOLS, [NIGHTS[1]]), at(5)) == 0
        elif step == "new_year":
            lake.upsert_bars(bars(SYMBOLS, [date(2025, 1, 2)]), at(5))
        elif step == "new_symbol":
            lake.upsert_bars(bars(["C"], [NIGHTS[2]]), at(5))
        else:  # the snapshot no longer holds A's last bar (in a delta) nor B's first
            present = bars(SYMBOLS, [*history(), *NIGHTS[:2]]).filter(
                ~(((pl.col("symbol") == "A") & (pl.col("date") == NIGHTS[1]))
                  | ((pl.col("symbol") == "B") & (pl.col("date") == history()[0])))
            )
            withdrawn = lake.withdraw_absent(present, history()[0], NIGHTS[1], at(5))
            assert withdrawn.height == 2
    assert delta_files(delta.delta_dir) == []
    assert year_files(delta) == year_files(plain)
    assert_read_alike(delta, plain)
    if step == "withdrawal":
        assert delta.read_withdrawn().drop("withdrawn_at").equals(plain.read_withdrawn().drop("withdrawn_at"))


def test_bar_files_dates_a_year_by_its_latest_delta(lakes):
    delta, _ = lakes
    listed = delta.bar_files()["ctime_ns"].max()
    nights(lakes, 1)
    files = delta.bar_files()
    changed = files.filter(pl.col("ctime_ns") > listed)
    assert sorted(changed["symbol"].to_list()) == sorted(SYMBOLS) and changed["year"].unique().to_list() == [2024]
    # The year files themselves were not written: only the delta holds the change, from its first date.
    assert (changed["file_ctime_ns"] <= listed).all()
    listing = delta.delta_listing()
    assert listing.select("symbol", "year", "first").sort("symbol").rows() == [(s, 2024, NIGHTS[0]) for s in sorted(SYMBOLS)]
    assert (listing["ctime_ns"] > listed).all()
    delta.upsert_bars(bars(SYMBOLS, [NIGHTS[1]]), at(2))
    later = delta.delta_listing().filter(pl.col("ctime_ns") > listing["ctime_ns"].max())
    assert later["first"].unique().to_list() == [NIGHTS[1]]


def test_landed_unchanged_holds_after_a_delta_and_not_once_a_delta_changes(lakes):
    delta, _ = lakes
    nights(lakes, 1)
    token = delta.index_token()
    assert delta.landed_unchanged(token, NIGHTS[0]) is None
    assert "after" in delta.landed_unchanged(token, NIGHTS[0] - timedelta(days=1)), "the delta's bars count"
    (night,) = delta_files(delta.delta_dir)
    night.write_bytes(night.read_bytes())  # rewritten in place: not the delta the index recorded
    assert delta.landed_unchanged(token, NIGHTS[0]) is not None


def test_a_delta_the_index_never_recorded_is_read_and_folded(lakes):
    """A crash after a delta's rename and before the index: its bars are there, no entry is trusted."""
    delta, plain = lakes
    nights(lakes, 1)
    saved = delta.index_path.read_bytes()
    for lake in lakes:
        assert lake.upsert_bars(bars(SYMBOLS, [NIGHTS[1]]), at(2)) == len(SYMBOLS)
    assert len(delta_files(delta.delta_dir)) == 2
    delta.index_path.write_bytes(saved)  # the index as before the second night's delta
    assert_read_alike(delta, plain)
    assert LakeIndex(delta.index_path, delta.delta_dir).entries == {}
    for lake in lakes:
        lake.upsert_bars(bars(SYMBOLS, [NIGHTS[2]]), at(7))
    # Folded (nothing trusted to append to), then the night is the next delta.
    assert [f.name for f in delta_files(delta.delta_dir)] == ["20300108T000000000000Z.parquet"]
    assert_read_alike(delta, plain)
    delta.fold_deltas()
    assert year_files(delta) == year_files(plain)


def test_a_fold_cut_short_shows_every_bar_once(lakes, tmp_path):
    """A crash after the fold's renames and before its deltas are removed: the year files hold the
    deltas' bars, the deltas are still there, and no reader sees a bar twice."""
    delta, plain = lakes
    nights(lakes)
    kept = tmp_path / "kept"
    shutil.copytree(delta.delta_dir, kept)
    index = delta.index_path.read_bytes()
    delta.fold_deltas()
    shutil.copytree(kept, delta.delta_dir, dirs_exist_ok=True)
    delta.index_path.write_bytes(index)
    assert_read_alike(delta, plain)
    delta.fold_deltas()
    assert delta_files(delta.delta_dir) == [] and year_files(delta) == year_files(plain)


def test_a_writers_temp_file_left_in_the_delta_directory_is_not_a_delta(lakes):
    """A crash mid-write leaves ``.tmp-*.parquet`` beside the deltas: not read, and the index still trusted."""
    delta, plain = lakes
    nights(lakes, 1)
    (delta.delta_dir / ".tmp-abcd1234.parquet").write_bytes(b"half a file")
    assert len(delta_files(delta.delta_dir)) == 1
    assert LakeIndex(delta.index_path, delta.delta_dir).entries, "the index is still trusted"
    assert_read_alike(delta, plain)


def test_a_damaged_delta_is_named_and_no_stored_bar_is_lost(lakes):
    delta, _ = lakes
    nights(lakes, 2)
    first, second = delta_files(delta.delta_dir)
    second.write_bytes(b"PAR1 not a parquet file")
    before = year_files(delta)
    with pytest.raises(StoredFileError, match=second.name):
        delta.read_bars()
    with pytest.raises(StoredFileError, match=second.name):
        delta.upsert_bars(bars(SYMBOLS, [date(2025, 1, 2)]), at(5))  # a land that must fold first
    assert year_files(delta) == before and first.exists() and second.exists(), "nothing stored was touched"


def test_splice_and_after_stored_give_what_a_filter_and_a_sort_give():
    """The binary-search paths against the plain ones: the delta rows after each (symbol, year)'s
    last stored date, placed after each symbol's bars; a delta row of an earlier year than its
    symbol's last bar read (never written so, but readable) and one of a year not read are handled."""
    from warehouse.lake import after_stored, conform_stored, splice

    def full(frame: pl.DataFrame) -> pl.DataFrame:
        return conform_stored(frame.with_columns(pl.lit("files").alias("source"), pl.lit(at(0)).alias("ingested_at")))

    stored = full(bars(["A", "B", "C"], history()))
    stored = stored.filter(~((pl.col("symbol") == "B") & (pl.col("date").dt.year() == 2024)))  # B: 2023 only
    extra = full(bars(["A", "B", "D"], NIGHTS))
    extra = pl.concat([extra, stored.filter(pl.col("symbol") == "A").tail(2)]).sort("symbol", "date")
    year = pl.col("date").dt.year()
    last = stored.group_by("symbol", year.alias("y")).agg(pl.col("date").max().alias("last"))
    want = (
        extra.with_columns(year.alias("y")).join(last, on=["symbol", "y"])
        .filter(pl.col("date") > pl.col("last")).drop("y", "last").sort("symbol", "date")
    )
    got = after_stored(extra, stored)
    assert got.equals(want) and got["symbol"].unique().to_list() == ["A"]  # B's 2024 and D not read
    assert splice(stored, got).equals(pl.concat([stored, want]).sort("symbol", "date"))
    # A delta row of 2023 while B's last bar read is of 2023 too, and one of 2023 for A (last read 2024).
    early = extra.filter(pl.col("symbol") == "A").with_columns(pl.col("date") - pl.duration(days=120))
    early = early.filter(pl.col("date").dt.year() == 2023)
    got = after_stored(early, stored)
    assert got.height == 0  # all before A's last 2023 bar
