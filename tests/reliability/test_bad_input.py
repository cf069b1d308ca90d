"""Bad input files: each is a clear error naming the file (or a skip saying why),
never a silent guess, and nothing already stored is lost.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from flows.policy import PolicyFileError, load_policy
from flows.sources.base import SourceError
from flows.sources.files import FilesSource
from flows.universe import UniverseError, load_universe
from warehouse.lake import Lake, symbol_dir

UNIVERSE = load_universe()
START, AS_OF = date(2000, 1, 1), date(2030, 1, 1)
HEADER = "Date,Open,High,Low,Close,Volume\n"


def bar(d: str, close: float) -> str:
    return f"{d},{close},{close + 1},{close - 0.5},{close},100\n"


def fetch(*paths: Path):
    return FilesSource(list(paths)).fetch(UNIVERSE, START, AS_OF, {}, pl.DataFrame())


def write(folder: Path, name: str, text: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_bytes(text) if isinstance(text, bytes) else p.write_text(text)
    return p


def test_duplicate_date_with_different_values_holds_back_every_version_and_keeps_the_rest(tmp_path):
    write(tmp_path, "AAA.csv", HEADER + bar("2024-01-02", 10) + bar("2024-01-03", 11) + bar("2024-01-02", 12))
    batch = fetch(tmp_path)
    assert batch.bars["date"].to_list() == [date(2024, 1, 3)]
    assert [p.text() for p in batch.problems] == [
        f"AAA.csv line {n}: AAA: date 2024-01-02 appears 2 times with different values (close {c}); mixed time "
        "zones can map two timestamps to one date; every version of the date held back (1 date(s)), the rest of "
        "the file kept"
        for n, c in ((2, 10.0), (4, 12.0))
    ]


def test_exact_duplicate_rows_collapse_with_a_warning(tmp_path):
    write(tmp_path, "AAA.csv", HEADER + bar("2024-01-02", 10) + bar("2024-01-03", 11) + bar("2024-01-02", 10))
    batch = fetch(tmp_path)
    assert batch.bars["date"].to_list() == [date(2024, 1, 2), date(2024, 1, 3)]
    assert any("AAA.csv" in w and "1 exact duplicate" in w for w in batch.warnings)


def test_unsorted_dates_are_sorted(tmp_path):
    write(tmp_path, "AAA.csv", HEADER + bar("2024-01-04", 12) + bar("2024-01-02", 10) + bar("2024-01-03", 11))
    batch = fetch(tmp_path)
    assert batch.bars["date"].to_list() == [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)]
    assert batch.bars["close"].to_list() == [10, 11, 12]


def test_daylight_saving_offsets_keep_each_rows_written_date(tmp_path):
    # New York midnights across the March DST change: -05:00 then -04:00.
    text = HEADER + bar("2024-03-08 00:00:00-05:00", 10) + bar("2024-03-11 00:00:00-04:00", 11) + bar("2024-03-12T00:00:00Z", 12)
    write(tmp_path, "AAA.csv", text)
    assert fetch(tmp_path).bars["date"].to_list() == [date(2024, 3, 8), date(2024, 3, 11), date(2024, 3, 12)]


def test_mixed_time_zones_that_collide_on_a_date_are_held_back(tmp_path):
    # The same session written once in UTC and once in New York time, with different closes.
    text = HEADER + bar("2024-03-12 00:00:00-04:00", 10) + bar("2024-03-12T04:00:00Z", 10.5) + bar("2024-03-13", 11)
    write(tmp_path, "AAA.csv", text)
    batch = fetch(tmp_path)
    assert batch.bars["date"].to_list() == [date(2024, 3, 13)]
    assert [p.line for p in batch.problems] == ["line 2", "line 3"]
    assert all("date 2024-03-12 appears 2 times" in p.problem and "mixed time zones" in p.problem for p in batch.problems)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("BBB.csv", "", "empty file"),
        ("BBB.csv", HEADER, "no row with a date"),
        ("BBB.csv", "foo,bar\n1,2\n", "no date, open, high, low, close column"),
        ("BBB.csv", "Date,Open,High,Low,Volume\n2024-01-02,1,2,0.5,10\n", "no close column"),
    ],
    ids=["empty", "header-only", "wrong-columns", "no-close"],
)
def test_files_that_are_not_price_histories_are_skipped_saying_why(tmp_path, name, content, reason):
    write(tmp_path / "in", name, content)
    write(tmp_path / "in", "AAA.csv", HEADER + bar("2024-01-02", 10))
    batch = fetch(tmp_path / "in")
    assert set(batch.bars["symbol"]) == {"AAA"}
    [p] = batch.problems
    assert (p.file, p.symbol, p.action, p.kind) == (name, "BBB", "file skipped", "file_not_price_history")
    assert reason in p.problem
    assert next(o for o in batch.outcomes if o.symbol == "BBB").status == "skipped"
    # Alone, the skip reason is the error: "no price history found" would not say why.
    with pytest.raises(SourceError, match=rf"no price history found under .*{name}.*{reason}"):
        fetch(tmp_path / "in" / name)


@pytest.mark.parametrize("suffix", [".parquet", ".feather"])
def test_truncated_binary_file_is_skipped_naming_it(tmp_path, suffix):
    frame = pl.DataFrame({"date": [date(2024, 1, 2), date(2024, 1, 3)], "open": [1.0, 1.0], "high": [2.0, 2.0],
                          "low": [0.5, 0.5], "close": [1.0, 1.1]})
    path = tmp_path / f"DDD{suffix}"
    frame.write_parquet(path) if suffix == ".parquet" else frame.write_ipc(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    write(tmp_path, "AAA.csv", HEADER + bar("2024-01-02", 10))
    batch = fetch(tmp_path)
    assert set(batch.bars["symbol"]) == {"AAA"}
    [p] = batch.problems
    assert (p.file, p.symbol, p.kind, p.action) == (f"DDD{suffix}", "DDD", "file_unreadable", "file skipped")
    assert p.problem.startswith("unreadable") and str(tmp_path) not in p.problem
    failed = next(o for o in batch.outcomes if o.symbol == "DDD")
    assert failed.status == "error" and failed.error.startswith(f"DDD{suffix}: unreadable")


@pytest.mark.parametrize(
    "symbol",
    ["../../etc/passwd", "a/b", "BTC'; DROP TABLE fact_prices;--", 'x" OR "1"="1', "two words", "..", "", "C:\\x"],
)
def test_hostile_symbol_in_a_long_file_names_file_and_row(tmp_path, symbol):
    good = {"symbol": "AAA", "date": date(2024, 1, 2), "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.0}
    pl.DataFrame([good, {**good, "symbol": symbol}]).write_parquet(tmp_path / "long.parquet")
    batch = fetch(tmp_path)
    assert set(batch.bars["symbol"]) == {"AAA"}
    [p] = batch.problems
    assert (p.file, p.line, p.action) == ("long.parquet", "row 2", "row held back")
    assert p.problem.startswith("column 'symbol': invalid symbol")


@pytest.mark.parametrize(
    "stem", ["BTC'; DROP TABLE fact_prices;--", "two words", 'q"uote', "..hidden", "%2e%2e"]
)
def test_hostile_file_names_are_skipped_and_never_stored(tmp_path, stem):
    write(tmp_path / "in", f"{stem}.csv", HEADER + bar("2024-01-02", 10))
    write(tmp_path / "in", "AAA.csv", HEADER + bar("2024-01-02", 10))
    batch = fetch(tmp_path / "in")
    assert set(batch.bars["symbol"]) == {"AAA"}
    [p] = batch.problems
    assert (p.file, p.kind, p.symbol) == (f"{stem}.csv", "file_name_not_symbol", None)
    assert "invalid symbol" in p.problem


def test_symbols_with_legal_punctuation_stay_inside_the_lake(tmp_path):
    # Real tickers carry ^ . = - ; the lake percent-encodes them into one directory level.
    lake = Lake(tmp_path / "lake", "files")
    symbols = ["^RUT", "BRK.B", "ES=F", "BTC-USD"]
    bars = pl.DataFrame(
        {"symbol": symbols, "date": [date(2024, 1, 2)] * 4, **{c: [1.0] * 4 for c in ("open", "high", "low", "close", "adj_close", "volume")}}
    )
    lake.upsert_bars(bars, datetime(2024, 1, 3, tzinfo=UTC))
    stored = sorted(p.relative_to(lake.bars_dir) for p in lake.bars_dir.rglob("*.parquet"))
    assert [p.parent.name for p in stored] == sorted(symbol_dir(s) for s in symbols)
    assert all(len(p.parts) == 2 for p in stored)
    assert set(lake.read_bars()["symbol"]) == set(symbols)


@pytest.mark.parametrize("symbol", ["..", "."])
def test_lake_never_maps_a_symbol_to_a_relative_path_component(symbol):
    assert symbol_dir(symbol) not in (".", "..")


def test_a_bad_file_loses_nothing_already_stored(tmp_path):
    lake = Lake(tmp_path / "lake", "files")
    good = write(tmp_path / "good", "AAA.csv", HEADER + bar("2024-01-02", 10) + bar("2024-01-03", 11))
    lake.upsert_bars(fetch(good.parent).bars, datetime(2024, 1, 4, tzinfo=UTC))
    before = lake.read_bars()
    write(tmp_path / "bad", "AAA.csv", HEADER + bar("2024-01-04", 12) + bar("2024-01-04", 13))
    with pytest.raises(SourceError, match=r"no price history found .*AAA\.csv line 2: AAA: date 2024-01-04 appears 2"):
        fetch(tmp_path / "bad")  # every row held back: the flow lands nothing when extraction raises
    assert lake.read_bars().equals(before)


def test_universe_with_an_unknown_key_names_it(tmp_path):
    path = write(tmp_path, "u.yaml", "benchmarks: ['^RUT']\nassets:\n  - {symbol: '^RUT', name: R, asset_class: index, sektor: x}\n")
    with pytest.raises(UniverseError, match=r"u\.yaml: assets\.0\.sektor: Extra inputs are not permitted"):
        load_universe(path)


def test_universe_with_a_hostile_symbol_is_refused(tmp_path):
    path = write(tmp_path, "u.yaml", "benchmarks: []\nassets:\n  - {symbol: '../x', name: X, asset_class: equity}\n")
    with pytest.raises(UniverseError, match=r"invalid symbol '\.\./x'"):
        load_universe(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ([("band_max: 0.60", "band_mx: 0.60")], "band_mx"),
        ([("band_min: 0.40", "band_min: 0.70")], "band"),
        # core at most 20%: the maxima add up to 90%.
        ([("band_min: 0.40", "band_min: 0.10"), ("band_max: 0.60", "band_max: 0.20")], "band"),
    ],
    ids=["unknown-key", "min-above-max", "bands-cannot-hold-100pct"],
)
def test_policy_with_unknown_keys_or_impossible_bands_is_refused(tmp_path, change, message):
    from flows.policy import DEFAULT_POLICY_PATH

    text = DEFAULT_POLICY_PATH.read_text()
    for old, new in change:
        assert old in text
        text = text.replace(old, new, 1)
    path = write(tmp_path, "policy.yaml", text)
    with pytest.raises(PolicyFileError, match=message) as err:
        load_policy(path)
    assert "policy.yaml" in str(err.value)
