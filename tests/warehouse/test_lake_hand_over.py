"""The full run's transform takes the bars its land just wrote (``Lake.hand_over``) instead of
reading the whole lake back: only when the lake's year files are exactly the ones that land
wrote new, each still as its rename left it; the frame is the read's (columns, dtypes, values,
order, sortedness flags). Any doubt: None, and the transform reads the files."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from warehouse.files import atomic_write_parquet
from warehouse.lake import BARS_SCHEMA, Lake, symbol_dir

T1, T2 = datetime(2024, 1, 10, tzinfo=UTC), datetime(2024, 1, 11, tzinfo=UTC)
SYMBOLS = ("A", "BRK", "BRK-B", "^RUT", "a b", "BTC-USD")
DATES = (date(2022, 12, 30), date(2023, 1, 3), date(2023, 12, 29), date(2024, 1, 2), date(2024, 1, 3))


def bars(symbols=SYMBOLS, dates=DATES, shuffle: bool = True) -> pl.DataFrame:
    rows = [
        {"symbol": s, "date": d, "open": 1.0 + i, "high": 2.0 + i, "low": 0.5 + i, "close": 1.5 + i,
         "adj_close": float("nan") if i == 7 else 1.4 + i, "volume": None if i == 3 else 10.0 * i,
         "origin": None if i == 5 else f"{s}.csv line {i}"}
        for i, (s, d) in enumerate((s, d) for s in symbols for d in dates)
    ]
    frame = pl.DataFrame(rows, schema={k: v for k, v in BARS_SCHEMA.items() if k not in ("source", "ingested_at")})
    # In no particular order, as a source may hand them (the land sorts them).
    return frame.sample(fraction=1.0, shuffle=True, seed=3) if shuffle else frame.sort("symbol", "date")


def assert_same_frame(got: pl.DataFrame, want: pl.DataFrame) -> None:
    assert got.schema == want.schema
    assert_frame_equal(got, want, check_exact=True)
    for c in want.columns:  # Polars steers its algorithms by these: the read's, no more, no less
        assert got[c].flags == want[c].flags, (c, got[c].flags, want[c].flags)


@pytest.mark.parametrize("shuffle", [False, True])
def test_the_land_hands_over_the_frame_the_read_of_the_lake_gives(tmp_path, shuffle):
    lake = Lake(tmp_path, "files", writers=2)
    assert lake.upsert_bars(bars(shuffle=shuffle), T1) == len(SYMBOLS) * len(DATES)
    files = lake.bar_files()
    assert files.height == len(SYMBOLS) * 3
    got = lake.hand_over(files)
    assert got is not None
    want = lake.read_bar_files(files["path"].to_list())
    assert_same_frame(got, want)
    assert got["ingested_at"].unique().to_list() == [T1] and got["source"].unique().to_list() == ["files"]
    assert lake.hand_over(files) is None, "taken once: the lake keeps no copy"


def _replace_by_hand(lake: Lake, files: pl.DataFrame) -> None:
    path = Path(files["path"][0])
    atomic_write_parquet(pl.read_parquet(path), path)  # the same bars, a new file


def _touch(lake: Lake, files: pl.DataFrame) -> None:
    path = files["path"][0]
    os.utime(path, ns=(1, 1))  # the content as it was, the stat not


def _remove(lake: Lake, files: pl.DataFrame) -> None:
    os.unlink(files["path"][0])


def _extra_file(lake: Lake, files: pl.DataFrame) -> None:
    path = lake.bars_dir / symbol_dir("A") / "notes.parquet"  # listed and read by the lake, not a year file
    pl.read_parquet(files["path"][0]).write_parquet(path)


def _withdraw(lake: Lake, files: pl.DataFrame) -> None:
    present = bars().filter(~((pl.col("symbol") == "BRK") & (pl.col("date") == DATES[-1])))
    assert lake.withdraw_absent(present, DATES[0], DATES[-1], T2).height == 1


def _land_another_symbol(lake: Lake, files: pl.DataFrame) -> None:
    # A second land (a backfill's next chunk, another source call): its own files are new, the first's are not its.
    lake.upsert_bars(bars(symbols=("ZZ",)), T2)


@pytest.mark.parametrize(
    "after_land", [_replace_by_hand, _touch, _remove, _extra_file, _withdraw, _land_another_symbol]
)
def test_a_lake_changed_after_the_land_is_read(tmp_path, after_land):
    lake = Lake(tmp_path, "files")
    lake.upsert_bars(bars(), T1)
    after_land(lake, lake.bar_files())
    assert lake.hand_over(lake.bar_files()) is None


def test_a_listing_taken_before_a_change_is_not_trusted(tmp_path):
    lake = Lake(tmp_path, "files")
    lake.upsert_bars(bars(), T1)
    listed = lake.bar_files()
    _remove(lake, listed)
    assert lake.hand_over(lake.bar_files()) is None
    lake.upsert_bars(bars(symbols=("ZZ",)), T2)
    assert lake.hand_over(listed) is None, "a listing of other files (the first land's) proves nothing"


def _file_of_another_symbol(lake: Lake) -> None:
    lake.upsert_bars(bars(symbols=("OLD",)), T1)  # in the lake, not in the next input


def _same_bars_already_stored(lake: Lake) -> None:
    lake.upsert_bars(bars(), T1)  # the next land writes nothing: the stored bars keep their ingested_at


def _some_bars_stored(lake: Lake) -> None:
    # The next land appends to these files: their stored bars keep T1, the input's are stamped T2.
    lake.upsert_bars(bars().filter(pl.col("date") == DATES[1]), T1)


def _a_year_of_other_bars(lake: Lake) -> None:
    lake.upsert_bars(bars().with_columns(pl.col("close") + 1), T1)  # every file revised


@pytest.mark.parametrize(
    "before_land", [_file_of_another_symbol, _same_bars_already_stored, _some_bars_stored, _a_year_of_other_bars]
)
def test_a_land_into_a_lake_that_held_bars_hands_over_nothing(tmp_path, before_land):
    lake = Lake(tmp_path, "files")
    before_land(lake)
    lake.upsert_bars(bars(), T2)
    assert lake.hand_over(lake.bar_files()) is None


def test_an_empty_land_drops_what_an_earlier_one_handed_over(tmp_path):
    lake = Lake(tmp_path, "files")
    lake.upsert_bars(bars(), T1)
    lake.upsert_bars(bars().clear(), T2)
    assert lake.hand_over(lake.bar_files()) is None


def test_duplicate_bars_in_the_input_are_handed_over_as_stored(tmp_path):
    # The land keeps the last of a (symbol, date) landed twice: the frame is the files', not the input's.
    lake = Lake(tmp_path, "files")
    twice = pl.concat([bars(shuffle=False), bars(shuffle=False).with_columns(pl.col("close") * 2)])
    lake.upsert_bars(twice, T1)
    files = lake.bar_files()
    got = lake.hand_over(files)
    assert got is not None
    want = lake.read_bar_files(files["path"].to_list())
    assert_same_frame(got, want)
    assert want.height == len(SYMBOLS) * len(DATES)
    assert want.filter(pl.col("symbol") == "A")["close"][0] == 2 * bars(shuffle=False)["close"][0]


def test_a_year_whose_file_name_sorts_out_of_date_order_is_read(tmp_path):
    # "999.parquet" sorts after "2022.parquet": the read sorts what it reads, so it is the read's frame.
    lake = Lake(tmp_path, "files")
    lake.upsert_bars(bars(dates=(date(999, 6, 1), *DATES)), T1)
    files = lake.bar_files()
    assert lake.hand_over(files) is None
    read = lake.read_bar_files(files["path"].to_list())
    assert read.equals(read.sort("symbol", "date")) and read["date"].min() == date(999, 6, 1)
