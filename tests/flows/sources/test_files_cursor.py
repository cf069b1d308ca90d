"""The files source's input cursor: a landing that reads only the new rows equals one that reads everything.

Two lakes are landed night after night from the same input folder, as the flow
lands them (fetch, ``Lake.upsert_bars``/``upsert_assets``, the ``withdraw_absent``
stage): one by a source with the cursor (the production source: it has a lake),
one by a source without (today's full read). After every night their stored bar
files, withdrawn bars, outcomes, problems, warnings, assets and rows written
must be equal, and the cursor must have been used where the input only grew.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from flows.run import RunSummary
from flows.sources.base import empty_bars
from flows.sources.files import FilesSource
from flows.stages.extract import withdraw_absent
from flows.universe import Asset, Universe
from warehouse.lake import Lake

START = date(2023, 11, 1)
LONG = ["AAA", "BBB", "^RUT"]
UNIVERSE = Universe(benchmarks=(), assets=(
    Asset(symbol="AAA", name="A Inc", asset_class="equity", sector="Technology"),
    Asset(symbol="^RUT", name="Russell 2000", asset_class="index"),
))


def days(n: int) -> list[date]:
    return [START + timedelta(days=i) for i in range(n)]


def long_frame(n: int, symbols=LONG) -> pl.DataFrame:
    """Date-major, as a file one appends a day to grows (bench/e2e.py)."""
    rows = [
        {"symbol": s, "date": d, "open": 10.0 + i + k, "high": 11.0 + i + k, "low": 9.0 + i + k,
         "close": 10.5 + i + k, "adj_close": 10.4 + i + k, "volume": 1000.0 + i}
        for i, d in enumerate(days(n)) for k, s in enumerate(symbols)
    ]
    return pl.DataFrame(rows)


def csv_text(n: int) -> str:
    lines = ["Date,Open,High,Low,Close,Adj Close,Volume"]
    lines += [f"{d},{5 + i},{6 + i},{4 + i},{5.5 + i},{5.4 + i},{700 + i}" for i, d in enumerate(days(n))]
    return "\n".join(lines) + "\n"


def write(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    long_frame(n).write_parquet(folder / "equities.parquet")
    (folder / "CCC.csv").write_text(csv_text(n))


class Nights:
    """The same input landed into a lake with the cursor and into one without, compared after each night."""

    def __init__(self, tmp: Path, start: date = START) -> None:
        self.start = start
        self.folder = tmp / "in"
        self.roots = {"cursor": tmp / "with", "full": tmp / "without"}
        self.night = 0

    def land(self, which: str) -> dict:
        root = self.roots[which]
        lake = Lake(root, "files")
        src = FilesSource([self.folder], lake=lake if which == "cursor" else None)
        as_of = src.last_date(UNIVERSE)
        batch = src.fetch(UNIVERSE, self.start, as_of, {}, empty_bars())
        now = datetime(2024, 6, 1, tzinfo=UTC) + timedelta(days=self.night)
        written = lake.upsert_bars(batch.bars, now)
        lake.upsert_assets(batch.assets)
        run = RunSummary(run_id="r", source="files", as_of=as_of, status="running")
        withdrawn, gone = withdraw_absent(batch, lake, (self.start, as_of), now, run, logging.getLogger("test"))
        self.said = batch.cursor.describe(batch.bars.height) if batch.cursor is not None else None
        return {
            "delta": bool(batch.cursor is not None and batch.cursor.delta), "handed_on": batch.bars.height,
            "written": written, "outcomes": batch.outcomes, "problems": batch.problems, "warnings": batch.warnings,
            "assets": batch.assets, "withdrawn": withdrawn.sort("symbol", "date"), "gone": gone,
            "run_warnings": run.warnings, "as_of": as_of,
        }

    def step(self) -> dict:
        """One night in both lakes; returns the cursor's landing after checking it equals the full one."""
        self.night += 1
        got = self.land("cursor")
        self.said_by_cursor = self.said
        want = self.land("full")
        for key in ("written", "outcomes", "problems", "warnings", "gone", "run_warnings", "as_of"):
            assert got[key] == want[key], key
        assert got["assets"].equals(want["assets"])
        assert got["withdrawn"].equals(want["withdrawn"])
        assert stored(self.roots["cursor"]) == stored(self.roots["full"])
        assert not want["delta"]
        return got


def stored(root: Path) -> dict[str, bytes]:
    """Every bar file and the withdrawn file, byte for byte (not the index and cursor, which only one lake has)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*.parquet")) if p.relative_to(root).parts[0] != "index"
    }


@pytest.fixture
def nights(tmp_path) -> Nights:
    n = Nights(tmp_path)
    write(n.folder, 60)
    first = n.step()
    assert not first["delta"] and first["handed_on"] == 4 * 60
    return n


def test_next_days_read_only_the_new_rows_and_land_as_a_full_read(nights):
    for n in (61, 62, 65):
        write(nights.folder, n)
        got = nights.step()
        assert got["delta"], n
        assert got["handed_on"] == 4 * (n - (62 if n == 65 else n - 1)), "only the new rows are handed on"
    # The outcomes count every row of the input, not only the new ones.
    rows = {o.symbol: o.rows for o in got["outcomes"]}
    assert rows == {"AAA": 65, "BBB": 65, "CCC": 65, "^RUT": 65}


def test_an_unchanged_input_hands_on_nothing(nights):
    got = nights.step()
    assert got["delta"] and got["handed_on"] == 0 and got["written"] == 0
    assert nights.said_by_cursor.startswith("input cursor: only the 0 row(s) after")


def test_a_corrected_old_row_falls_back_to_the_full_read(nights):
    frame = long_frame(61).with_columns(
        close=pl.when((pl.col("symbol") == "BBB") & (pl.col("date") == START + timedelta(days=3)))
        .then(99.0).otherwise(pl.col("close"))
    )
    frame.write_parquet(nights.folder / "equities.parquet")
    got = nights.step()
    assert not got["delta"] and got["written"] == 1 + 3
    # The cursor's lake was landed first: the line says why its run read everything.
    assert "equities.parquet: its first 180 rows changed" in nights.said_by_cursor
    write(nights.folder, 62)  # the correction undone and a day more: the full read again, then the cursor
    assert not nights.step()["delta"]
    write(nights.folder, 63)
    assert nights.step()["delta"]


def test_a_removed_row_is_withdrawn_as_by_a_full_read(nights):
    frame = long_frame(61).filter(~((pl.col("symbol") == "AAA") & (pl.col("date") == START + timedelta(days=10))))
    frame.write_parquet(nights.folder / "equities.parquet")
    got = nights.step()
    assert not got["delta"] and got["withdrawn"].height == 1


def test_a_removed_last_row_is_withdrawn(nights):
    # The file shrinks: its recorded rows are no longer all there.
    long_frame(60).head(3 * 60 - 1).write_parquet(nights.folder / "equities.parquet")
    got = nights.step()
    assert not got["delta"] and got["withdrawn"]["symbol"].to_list() == ["^RUT"]


def test_a_file_replaced_by_another_falls_back(nights):
    long_frame(61, symbols=["AAA", "DDD", "^RUT"]).write_parquet(nights.folder / "equities.parquet")
    got = nights.step()
    assert not got["delta"]
    assert {o.symbol for o in got["gone"]} == {"BBB"}


def test_a_new_file_and_a_deleted_file_fall_back(nights):
    (nights.folder / "EEE.csv").write_text(csv_text(61))
    assert not nights.step()["delta"]
    write(nights.folder, 61)
    assert nights.step()["delta"]
    (nights.folder / "CCC.csv").unlink()
    got = nights.step()
    assert not got["delta"] and {o.symbol for o in got["gone"]} == {"CCC"}


def test_a_corrupt_or_foreign_cursor_falls_back(nights):
    cursor = nights.roots["cursor"] / "index" / "input-source=files.json"
    assert cursor.exists()
    for damage in (b"{not json", b'{"version": 999}', cursor.read_bytes()[: len(cursor.read_bytes()) // 2]):
        cursor.write_bytes(damage)
        write(nights.folder, 60 + nights.night)
        assert not nights.step()["delta"]
    write(nights.folder, 60 + nights.night + 1)
    assert nights.step()["delta"]


def test_csv_appended_is_followed_and_csv_edited_in_the_middle_falls_back(nights):
    (nights.folder / "CCC.csv").write_text(csv_text(61))
    got = nights.step()
    assert got["delta"] and got["handed_on"] == 1
    assert got["outcomes"][[o.symbol for o in got["outcomes"]].index("CCC")].rows == 61
    text = csv_text(61).replace(f"{START + timedelta(days=5)},10,", f"{START + timedelta(days=5)},10.25,")
    (nights.folder / "CCC.csv").write_text(text)
    got = nights.step()
    assert not got["delta"] and got["written"] == 1


def test_new_rows_with_a_problem_fall_back_and_the_file_is_then_followed_whole(nights):
    text = csv_text(61).replace(f"{START + timedelta(days=60)},65,66,64,65.5,", f"{START + timedelta(days=60)},65,66,64,NaN,")
    (nights.folder / "CCC.csv").write_text(text)
    got = nights.step()
    assert not got["delta"] and [p.kind for p in got["problems"]] == ["price_missing"]
    # Unchanged: its problem is the recorded one.
    got = nights.step()
    assert got["delta"] and [p.kind for p in got["problems"]] == ["price_missing"]
    # Changed: a file with a problem must stay byte for byte the same for the cursor to hold.
    (nights.folder / "CCC.csv").write_text(text + f"{START + timedelta(days=61)},1,2,0.5,1.5,1.5,9\n")
    assert not nights.step()["delta"]


def test_new_rows_dated_before_their_symbols_last_date_fall_back(nights):
    extra = long_frame(60).filter((pl.col("symbol") == "AAA") & (pl.col("date") == START + timedelta(days=59)))
    pl.concat([long_frame(60), extra.with_columns(close=pl.lit(1.0))]).write_parquet(nights.folder / "equities.parquet")
    got = nights.step()
    assert not got["delta"] and {p.kind for p in got["problems"]} == {"duplicate_date_conflict"}


def test_a_lake_changed_by_hand_is_repaired_by_the_full_read(nights):
    for root in nights.roots.values():  # both lakes alike
        year = root / "bars" / "source=files" / "AAA" / "2023.parquet"
        (year.parent / "notes.txt").write_text("not a year file")
        pl.read_parquet(year).head(3).write_parquet(year)
    write(nights.folder, 61)
    got = nights.step()
    assert not got["delta"]
    write(nights.folder, 62)
    assert nights.step()["delta"]


def test_another_start_or_as_of_falls_back(nights, tmp_path):
    write(nights.folder, 61)
    lake = Lake(nights.roots["cursor"], "files")
    src = FilesSource([nights.folder], lake=lake)
    batch = src.fetch(UNIVERSE, START + timedelta(days=1), START + timedelta(days=60), {}, empty_bars())
    assert not batch.cursor.delta and batch.bars.height == 4 * 60 + 1  # ^RUT keeps its first day (an index)
    src = FilesSource([nights.folder], lake=lake)
    batch = src.fetch(UNIVERSE, START, START + timedelta(days=59), {}, empty_bars())
    assert not batch.cursor.delta and batch.cursor.state is None


def test_a_symbol_in_two_files_is_never_followed(nights):
    (nights.folder / "AAA.csv").write_text(csv_text(60))
    nights.step()
    got = nights.step()
    assert not got["delta"]


# Section A of SOURCES.md (as tests/flows/sources/test_files.py): whether the cursor can follow each folder.
REAL = {
    "alitalbi-storage_data_fy": True, "pratham093-AEGIS": True, "xjcarter-data": True,
    "nascimento-fisica-Poeira_Cantor_Bin": True, "mimibotx-sketch-clawd": True, "djienne-3EMA_SRSI_ATR": True,
    "danielarroyave28-principia-bot": True, "Harthor-marketlab": True,
}


@pytest.mark.parametrize("folder", sorted(REAL))
def test_real_folders_land_through_the_cursor_as_without_it(real_data, tmp_path, folder):
    n = Nights(tmp_path, start=date(1980, 1, 1))
    shutil.copytree(real_data / folder, n.folder)
    assert n.step()["handed_on"] > 0
    got = n.step()  # unchanged: the cursor holds, whatever problems the folder has
    assert got["delta"] is REAL[folder] and got["handed_on"] == 0


def test_two_values_naming_one_symbol_are_never_followed(nights):
    # "BTC-USD" and "BTC" are both BTC: the full read merges them as two files' parts.
    frame = long_frame(61, symbols=["AAA", "BBB", "^RUT", "BTC-USD"])
    frame = pl.concat([frame, frame.filter(pl.col("symbol") == "BTC-USD").with_columns(
        symbol=pl.lit("BTC"), date=pl.col("date") + timedelta(days=100))])
    frame.write_parquet(nights.folder / "equities.parquet")
    assert not nights.step()["delta"]
    pl.concat([frame, long_frame(62, symbols=["AAA"]).tail(1)]).write_parquet(nights.folder / "equities.parquet")
    assert not nights.step()["delta"]


def hold_back_last_row(folder: Path) -> None:
    """Each daily file of ``folder`` without its last row: the input as it was the day before."""
    import json

    from flows.sources.files import is_hourly

    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not is_hourly(p)):
        suffix = path.suffix.lower()
        if suffix == ".csv":
            lines = path.read_bytes().rstrip(b"\r\n").split(b"\n")
            path.write_bytes(b"\n".join(lines[:-1]) + b"\n")
        elif suffix == ".json":
            rows = json.loads(path.read_text())
            path.write_text(json.dumps(rows[:-1]))
        elif suffix == ".parquet":
            frame = pl.read_parquet(path)
            frame.head(frame.height - 1).write_parquet(path)
        elif suffix in (".feather", ".arrow", ".ipc"):
            frame = pl.read_ipc(path)
            frame.head(frame.height - 1).write_ipc(path)


@pytest.mark.parametrize("folder", sorted(REAL))
def test_real_folders_a_day_later_land_through_the_cursor_as_without_it(real_data, tmp_path, folder):
    n = Nights(tmp_path, start=date(1980, 1, 1))
    shutil.copytree(real_data / folder, n.folder)
    hold_back_last_row(n.folder)
    n.step()
    shutil.rmtree(n.folder)
    shutil.copytree(real_data / folder, n.folder)  # the real files as they are: one more row each
    got = n.step()
    # xjcarter-data's us_market_holidays.csv is no price history (a file skipped): the cursor needs it
    # unchanged, and this test cut a row of it too, so that night reads everything.
    assert got["delta"] is (folder != "xjcarter-data")
    assert got["handed_on"] > 0 if got["delta"] else True


def write_grouped(folder: Path, frame: pl.DataFrame) -> None:
    """The long file in row groups of 32 rows (3 a day): a day more leaves all but the last as they were."""
    frame.write_parquet(folder / "equities.parquet", row_group_size=32)


def test_parquet_row_groups_as_recorded_are_not_decoded(nights, monkeypatch):
    import flows.sources.files as files

    skips: list[int] = []
    follow = files.follow_parquet

    def spied(path: Path, rec, decode):
        def counted(p: Path, skip: int) -> pl.DataFrame:
            skips.append(skip)
            return decode(p, skip)
        return follow(path, rec, counted)

    monkeypatch.setattr(files, "follow_parquet", spied)  # the cursor's decoding only
    write_grouped(nights.folder, long_frame(60))  # the same rows in other row groups: checked row by row
    got = nights.step()
    assert got["delta"] and got["handed_on"] == 0 and skips == [0]
    write_grouped(nights.folder, long_frame(61))
    got = nights.step()
    # 180 rows were 5 row groups of 32 and one of 20: the 5 are byte for byte as recorded, the 20 rows
    # after them are decoded and hashed with the 3 new ones.
    assert got["delta"] and got["handed_on"] == 3 and skips[-1] == 160
    write_grouped(nights.folder, long_frame(62))
    got = nights.step()
    assert got["delta"] and got["handed_on"] == 3 and skips[-1] == 160
    rows = {o.symbol: o.rows for o in got["outcomes"]}
    assert rows == {"AAA": 62, "BBB": 62, "CCC": 60, "^RUT": 62}


@pytest.mark.parametrize("row", [40, 170], ids=["in a row group vouched for by its bytes", "in a row group decoded"])
def test_a_changed_row_of_a_parquet_file_followed_by_row_group_falls_back(nights, row):
    write_grouped(nights.folder, long_frame(61))
    nights.step()
    write_grouped(nights.folder, long_frame(62))
    assert nights.step()["delta"]
    path = nights.folder / "equities.parquet"
    before = path.stat()
    frame = long_frame(63).with_row_index("i").with_columns(
        close=pl.when(pl.col("i") == row).then(pl.col("close") + 0.01).otherwise(pl.col("close"))
    ).drop("i")
    # Rewritten in place (same file, its old modification time): only its content tells.
    buffer = io.BytesIO()
    frame.write_parquet(buffer, row_group_size=32)
    with path.open("r+b") as fh:
        fh.write(buffer.getvalue())
        fh.truncate()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_ino == before.st_ino
    got = nights.step()
    assert not got["delta"] and got["written"] == 1 + 3
    assert "equities.parquet: its first 186 rows changed" in nights.said_by_cursor
    write_grouped(nights.folder, long_frame(64))  # corrected back, a day more: read whole, then followed
    assert not nights.step()["delta"]
    write_grouped(nights.folder, long_frame(65))
    assert nights.step()["delta"]


def test_a_parquet_file_whose_row_groups_all_moved_is_hashed_whole_but_parsed_only_from_its_new_rows(
    nights, monkeypatch
):
    import flows.sources.files as files

    path = nights.folder / "equities.parquet"
    long_frame(60).write_parquet(path, row_group_size=45)
    assert nights.step()["delta"]
    parsed: list[tuple[int, int]] = []
    parse = files._from_table

    def spied(frame: pl.DataFrame, at: Path, keep_time: bool = False, skipped: int = 0) -> pl.DataFrame:
        if at.name == path.name:
            parsed.append((frame.height, skipped))
        return parse(frame, at, keep_time, skipped)

    monkeypatch.setattr(files, "_from_table", spied)
    # As Polars cuts one frame written whole into row groups of equal size: a day more moves every
    # boundary, so no row group is vouched for by its bytes and every stored row is hashed.
    long_frame(61).write_parquet(path, row_group_size=61)
    got = nights.step()
    assert got["delta"] and got["handed_on"] == 3
    # The cursor's lake parsed the 3 new rows alone (numbered after the 180 old ones); the full read all 183.
    assert parsed == [(3, 180), (183, 0)]
    changed = long_frame(62).with_columns(
        volume=pl.when(pl.int_range(pl.len()) == 100).then(pl.col("volume") + 1).otherwise(pl.col("volume")))
    changed.write_parquet(path, row_group_size=62)
    got = nights.step()
    assert not got["delta"] and "equities.parquet: its first 183 rows changed" in nights.said_by_cursor
