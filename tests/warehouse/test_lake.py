"""The lake keeps where each bar came from (``origin``), and still reads files written before it did."""

from __future__ import annotations

from datetime import UTC, date, datetime
from urllib.parse import unquote

import polars as pl

from warehouse.lake import BARS_SCHEMA, Lake, symbol_dir
from contracts.tables import FACT_PRICES

T1, T2 = datetime(2024, 1, 10, tzinfo=UTC), datetime(2024, 1, 11, tzinfo=UTC)


def bars(*rows: tuple[str, date, float, str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"symbol": s, "date": d, "open": c, "high": c, "low": c, "close": c, "adj_close": c, "volume": 1.0, "origin": o}
         for s, d, c, o in rows],
        schema={k: v for k, v in BARS_SCHEMA.items() if k not in ("source", "ingested_at")},
    )


def test_origin_is_stored_and_read_back(tmp_path):
    lake = Lake(tmp_path, "files")
    lake.upsert_bars(bars(("BTC", date(2024, 1, 2), 10.0, "BTC-USD.csv line 2")), T1)
    got = lake.read_bars()
    assert got.schema == pl.Schema(BARS_SCHEMA)
    assert got["origin"].to_list() == ["BTC-USD.csv line 2"]
    assert lake.tail(5).columns == FACT_PRICES.column_names, "the tail handed to sources is fact_prices' columns"


def test_files_written_before_origin_existed_read_as_null_and_take_one_on_the_next_landing(tmp_path):
    lake = Lake(tmp_path, "files")
    old_file = lake.bars_dir / symbol_dir("BTC") / "2023.parquet"
    old_file.parent.mkdir(parents=True)
    FACT_PRICES.conform(
        bars(("BTC", date(2023, 12, 29), 9.0, None)).with_columns(pl.lit("files").alias("source"), pl.lit(T1).alias("ingested_at"))
    ).write_parquet(old_file)
    assert "origin" not in pl.read_parquet(old_file).columns
    lake.upsert_bars(bars(("BTC", date(2024, 1, 2), 10.0, "BTC-USD.csv line 3")), T1)

    got = lake.read_bars()  # an old file and a new one together
    assert got["origin"].to_list() == [None, "BTC-USD.csv line 3"]
    assert lake.tail(5).height == 2

    # Landed again unchanged, now with its origin: the origin is filled in, nothing else moves.
    assert lake.upsert_bars(bars(("BTC", date(2023, 12, 29), 9.0, "BTC-USD.csv line 2")), T2) == 0
    again = lake.read_bars().filter(pl.col("date") == date(2023, 12, 29)).row(0, named=True)
    assert again["origin"] == "BTC-USD.csv line 2" and again["ingested_at"] == T1


def test_a_year_file_of_another_column_type_is_read_cast_as_the_others(tmp_path):
    """read_bars scans every file at once; a file that scan cannot take (an older writer's Int64
    volume) is read file by file and cast, so the result is the same."""
    lake = Lake(tmp_path, "files")
    lake.upsert_bars(bars(("BTC", date(2024, 1, 2), 10.0, "BTC-USD.csv line 3")), T1)
    scanned = lake.read_bars()
    old_file = lake.bars_dir / symbol_dir("BTC") / "2023.parquet"
    FACT_PRICES.conform(
        bars(("BTC", date(2023, 12, 29), 9.0, None)).with_columns(pl.lit("files").alias("source"), pl.lit(T1).alias("ingested_at"))
    ).with_columns(pl.col("volume").cast(pl.Int64)).write_parquet(old_file)
    got = lake.read_bars()
    assert got.schema == pl.Schema(BARS_SCHEMA)
    assert got["date"].to_list() == [date(2023, 12, 29), date(2024, 1, 2)] and got["volume"].to_list() == [1.0, 1.0]
    assert got.tail(1).equals(scanned)


def test_same_bars_from_the_same_place_leave_the_files_untouched(tmp_path):
    lake = Lake(tmp_path, "files")
    batch = bars(("BTC", date(2024, 1, 2), 10.0, "BTC-USD.csv line 2"), ("BTC", date(2024, 1, 3), 11.0, "BTC-USD.csv line 3"))
    lake.upsert_bars(batch, T1)
    (path,) = lake.bars_dir.glob("*/*.parquet")
    before = path.read_bytes()
    assert lake.upsert_bars(batch, T2) == 0
    assert path.read_bytes() == before


def test_a_revised_bar_takes_its_new_origin_and_time_a_moved_one_only_its_origin(tmp_path):
    lake = Lake(tmp_path, "files")
    lake.upsert_bars(bars(("BTC", date(2024, 1, 2), 10.0, "BTC-USD.csv line 2"), ("BTC", date(2024, 1, 3), 11.0, "BTC-USD.csv line 3")), T1)
    # A line was inserted above both; the second bar's value was also revised.
    written = lake.upsert_bars(
        bars(("BTC", date(2024, 1, 2), 10.0, "BTC-USD.csv line 3"), ("BTC", date(2024, 1, 3), 12.0, "BTC-USD.csv line 4")), T2)
    assert written == 1
    got = lake.read_bars().select("date", "close", "origin", "ingested_at").rows()
    assert got == [(date(2024, 1, 2), 10.0, "BTC-USD.csv line 3", T1), (date(2024, 1, 3), 12.0, "BTC-USD.csv line 4", T2)]


def test_a_source_without_origins_does_not_erase_a_known_one(tmp_path):
    lake = Lake(tmp_path, "files")
    lake.upsert_bars(bars(("BTC", date(2024, 1, 2), 10.0, "BTC-USD.csv line 2")), T1)
    lake.upsert_bars(bars(("BTC", date(2024, 1, 2), 10.0, None)).drop("origin"), T2)
    assert lake.read_bars()["origin"].to_list() == ["BTC-USD.csv line 2"]


def test_withdraw_absent_judges_each_symbol_by_its_own_dates(tmp_path):
    # Another symbol's bar on a date is no reason to keep this one's; a symbol gone from the
    # input loses every bar in the range; bars outside the range stay.
    d1, d2, d3 = date(2023, 12, 29), date(2024, 1, 2), date(2024, 1, 3)
    lake = Lake(tmp_path, "files")
    lake.upsert_bars(bars(*[(s, d, 1.0, None) for s in ("A", "B", "C") for d in (d1, d2, d3)]), T1)
    present = bars(("A", d1, 1.0, None), ("A", d2, 1.0, None), ("A", d3, 1.0, None), ("B", d2, 1.0, None))
    gone = lake.withdraw_absent(present, d2, d3, T2)
    assert gone.select("symbol", "date").rows() == [("B", d3), ("C", d2), ("C", d3)]
    assert lake.read_bars().select("symbol", "date").sort("symbol", "date").rows() == [
        ("A", d1), ("A", d2), ("A", d3), ("B", d1), ("B", d2), ("C", d1)]
    assert lake.read_withdrawn().height == 3


def test_year_files_are_read_in_symbol_and_date_order_whatever_order_they_are_named_in(tmp_path):
    # Path order is not symbol order ("BRK-B/" sorts before "BRK/"), and the caller's list may be in any order.
    lake = Lake(tmp_path, "files")
    rows = [
        (s, d, 1.0 + i, None)
        for i, (s, d) in enumerate(
            (s, d)
            for s in ("A", "BRK", "BRK-B", "^RUT", "a b")
            for d in (date(2023, 12, 28), date(2023, 12, 29), date(2024, 1, 2), date(2025, 1, 2))
        )
    ]
    lake.upsert_bars(bars(*rows), T1)
    paths = lake.bar_files()["path"].to_list()
    assert len(paths) == 15
    expected = bars(*rows).sort("symbol", "date")
    for order in (paths, paths[::-1], sorted(paths)):
        got = lake.read_bar_files(order)
        assert got["symbol"].flags["SORTED_ASC"]
        assert got.select(expected.columns).equals(expected.with_columns(pl.col("origin").cast(got["origin"].dtype)))


def _symbol_year_lake(tmp_path):
    lake = Lake(tmp_path, "files")
    rows = [
        (s, d, 1.0 + i, None)
        for i, (s, d) in enumerate(
            (s, d) for s in ("A", "BRK", "BRK-B", "^RUT") for d in (date(2023, 12, 29), date(2024, 1, 2), date(2024, 1, 3))
        )
    ]
    lake.upsert_bars(bars(*rows), T1)
    return lake, bars(*rows).sort("symbol", "date")


def test_year_files_read_in_symbol_order_are_not_sorted_again(tmp_path, monkeypatch):
    # Read in (symbol, year) order, the files' bars are already sorted: no sort of the whole
    # read (0.25 s of the next day's transform at 2,000 equities), the same frame and flag.
    lake, expected = _symbol_year_lake(tmp_path)
    paths = lake.bar_files()["path"].to_list()
    sorts = []
    real_sort = pl.DataFrame.sort
    monkeypatch.setattr(pl.DataFrame, "sort", lambda self, *a, **k: sorts.append(a) or real_sort(self, *a, **k))
    for order in (paths, paths[::-1]):
        got = lake.read_bar_files(order)
        assert got["symbol"].flags["SORTED_ASC"]
        assert got.select(expected.columns).equals(expected.with_columns(pl.col("origin").cast(got["origin"].dtype)))
    assert sorts == []


def test_a_year_file_out_of_date_order_is_still_read_sorted(tmp_path):
    lake, expected = _symbol_year_lake(tmp_path)
    path = next(p for p in lake.bar_files()["path"].to_list() if "/BRK/2024" in p)
    stored = pl.read_parquet(path)
    stored.reverse().write_parquet(path)  # out of date order (as an older writer might have left it)
    got = lake.read_bar_files(lake.bar_files()["path"].to_list())
    assert got["symbol"].flags["SORTED_ASC"]
    assert got.select(expected.columns).equals(expected.with_columns(pl.col("origin").cast(got["origin"].dtype)))


def test_bar_files_lists_what_the_glob_of_the_year_files_lists(tmp_path):
    # ``bar_files`` lists with os.scandir instead of globbing ``*/*.parquet`` and stat-ing each Path:
    # the same rows in the same order, odd entries included (a dot-name, a directory named like a
    # year file, a link to a symbol directory, a dangling link, files that are not year files).
    lake, _ = _symbol_year_lake(tmp_path)
    (lake.bars_dir / "A" / ".hidden.parquet").write_bytes(b"x")
    (lake.bars_dir / "A" / "notes.txt").write_bytes(b"x")
    (lake.bars_dir / "A" / "2019.parquet.tmp").write_bytes(b"x")
    (lake.bars_dir / "BRK" / "2030.parquet").mkdir()
    (lake.bars_dir / "BRK" / "gone.parquet").symlink_to(tmp_path / "nowhere")
    (lake.bars_dir / "top.parquet").write_bytes(b"x")
    (lake.bars_dir / "ZZ").symlink_to(lake.bars_dir / "A", target_is_directory=True)
    globbed = [p for p in sorted(lake.bars_dir.glob("*/*.parquet")) if p.exists()]
    listed = lake.bar_files()
    assert listed["path"].to_list() == [str(p) for p in globbed]
    stats = [p.stat() for p in globbed]
    assert listed.select("ctime_ns", "size", "mtime_ns", "ino").rows() == [
        (s.st_ctime_ns, s.st_size, s.st_mtime_ns, s.st_ino) for s in stats
    ]
    assert listed["year"].to_list() == [int(p.stem) if p.stem.isdigit() else None for p in globbed]
    assert listed["symbol"].to_list() == [unquote(p.parent.name) for p in globbed]
    assert "ZZ" in listed["symbol"].to_list() and None in listed["year"].to_list()
    assert Lake(tmp_path / "none", "files").bar_files().is_empty()
