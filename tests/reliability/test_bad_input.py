"""Bad input files: each is a clear error naming the file (or a skip saying why),
never a silent guess, and nothing already stored is lost.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
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


# Values the row rules cannot see are held back by the parser, naming file and line (issue 19, items 6 and 9).

ADJ_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"


def held(batch, file: str) -> dict[str, str]:
    return {p.line: p.problem for p in batch.problems if p.file == file}


@pytest.mark.parametrize("blank", ["", "NaN", "null", "nan"])
def test_a_blank_or_nan_adj_close_is_held_back_not_replaced_by_the_raw_close(tmp_path, blank):
    write(tmp_path, "SPY.csv", ADJ_HEADER + "2005-01-03,120,121,119,120,90,100\n" + f"2005-01-04,121,122,120,121,{blank},100\n")
    batch = fetch(tmp_path)
    assert batch.bars.select("date", "close", "adj_close").rows() == [(date(2005, 1, 3), 120.0, 90.0)]
    why = held(batch, "SPY.csv")["line 3"]
    assert why in ("Adj Close is blank; the raw close is not an adjusted close", "column 'adj_close' is NaN, not a price")


def test_a_row_with_an_extra_field_is_held_back_not_shifted(tmp_path):
    write(tmp_path, "SPY.csv", HEADER + bar("2024-01-02", 10) + "2024-01-03,11,12,10.5,11,,100\n" + bar("2024-01-04", 12))
    batch = fetch(tmp_path)
    assert batch.bars["date"].to_list() == [date(2024, 1, 2), date(2024, 1, 4)]
    assert held(batch, "SPY.csv") == {"line 3": "7 fields where the header has 6 (a shifted row)"}


def test_a_row_with_a_missing_field_is_held_back(tmp_path):
    write(tmp_path, "SPY.csv", HEADER + bar("2024-01-02", 10) + "2024-01-03,11,12,10.5,100\n")
    assert held(fetch(tmp_path), "SPY.csv") == {"line 3": "5 fields where the header has 6 (a shifted row)"}


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("true", "close is True, not a number"),
        ('"108"', "close is '108', not a number"),
        ("NaN", "close is nan, not a price"),
        ("null", "no close"),
        ("1" + "0" * 400, "close is 1000000000000000000000000000000000000000... (401 characters), out of range"),
    ],
)
def test_a_json_price_that_is_not_a_number_is_held_back(tmp_path, value, why):
    good = "[1704067200000, 108, 110, 107, 109, 5]"
    write(tmp_path, "BTC_USDT-1d.json", f"[{good}, [1704153600000, 108, 110, 107, {value}, 5]]")
    batch = fetch(tmp_path)
    assert batch.bars["close"].to_list() == [109.0]
    assert held(batch, "BTC_USDT-1d.json") == {"row 2": why}


@pytest.mark.parametrize(
    "ms", ["1e300", "99999999999999999999999", "-99999999999999", "true", '"2024-01-02"', "1704153600000.5", "NaN"]
)
def test_a_json_timestamp_out_of_range_is_held_back_naming_the_row(tmp_path, ms):
    write(tmp_path, "BTC_USDT-1d.json", f"[[1704067200000, 1, 2, 0.5, 1.5, 9], [{ms}, 1, 2, 0.5, 1.5, 9]]")
    batch = fetch(tmp_path)
    assert batch.bars["date"].to_list() == [date(2024, 1, 1)]
    [(line, why)] = held(batch, "BTC_USDT-1d.json").items()
    assert line == "row 2" and why.startswith("timestamp ") and why.endswith("is not milliseconds between 1900 and 2100")


def test_a_json_timestamp_written_as_an_integral_float_is_read(tmp_path):
    write(tmp_path, "BTC_USDT-1d.json", "[[1704067200000.0, 1, 2, 0.5, 1.5, 9]]")
    batch = fetch(tmp_path)
    assert batch.bars["date"].to_list() == [date(2024, 1, 1)] and not batch.problems


def test_the_text_nan_and_an_empty_row_never_replace_a_valid_bar(tmp_path):
    lake = Lake(tmp_path / "lake", "files")
    write(tmp_path / "v1", "AAA.csv", HEADER + bar("2024-01-02", 10) + bar("2024-01-03", 11))
    lake.upsert_bars(fetch(tmp_path / "v1").bars, datetime(2024, 1, 4, tzinfo=UTC))
    # The next version of the file: the text NaN on one date, an all-empty row on another
    # (and, inside the file, an empty row next to a valid bar of the same date).
    write(tmp_path / "v2", "AAA.csv", HEADER + "2024-01-02,NaN,NaN,NaN,NaN,NaN\n" + "2024-01-03,,,,,\n"
          + bar("2024-01-04", 12) + "2024-01-04,,,,,\n")
    batch = fetch(tmp_path / "v2")
    assert batch.bars["date"].to_list() == [date(2024, 1, 4)]
    assert held(batch, "AAA.csv") == {
        "line 2": "column 'open' is NaN, not a price", "line 3": "an empty row (no price)", "line 5": "an empty row (no price)",
    }
    lake.upsert_bars(batch.bars, datetime(2024, 1, 5, tzinfo=UTC))
    stored = lake.read_bars().sort("date")
    assert stored.select("date", "close").rows() == [(date(2024, 1, 2), 10.0), (date(2024, 1, 3), 11.0), (date(2024, 1, 4), 12.0)]


def test_invalid_utf8_skips_only_that_file_naming_it_and_the_line(tmp_path):
    write(tmp_path, "BAD.csv", (HEADER + bar("2024-01-02", 10)).encode() + b"2024-01-03,1\xff,2,0.5,1.5,10\n")
    write(tmp_path, "AAA.csv", HEADER + bar("2024-01-02", 10))
    batch = fetch(tmp_path)
    assert set(batch.bars["symbol"]) == {"AAA"}
    [p] = batch.problems
    assert p.text() == "BAD.csv: BAD: line 3: not UTF-8 text (byte 0xff at offset 72); file skipped"


def test_string_prices_and_bad_dates_in_parquet_hold_back_their_rows(tmp_path):
    pl.DataFrame(
        {"date": ["2024-01-02", "yesterday", "2024-01-04"], "open": ["1", "1", "1"], "high": ["2", "2", "2"],
         "low": ["0.5", "0.5", "0.5"], "close": ["1.5", "1.6", "one"]}
    ).write_parquet(tmp_path / "AAA.parquet")
    pl.DataFrame({"date": [date(2024, 1, 2)], "open": [True], "high": [True], "low": [True], "close": [True]}).write_parquet(
        tmp_path / "BBB.parquet"
    )
    batch = fetch(tmp_path)
    assert batch.bars.select("date", "close").rows() == [(date(2024, 1, 2), 1.5)]
    assert held(batch, "AAA.parquet") == {"row 2": "cannot read date 'yesterday'", "row 3": "column 'close' is not a number: 'one'"}
    assert held(batch, "BBB.parquet") == {None: "column 'open' holds Boolean, not numbers"}


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("NUL.csv", b"\x00" * 5_000_000),
        ("LONG.csv", b"Date," + b"x" * 5_000_000 + b"\n1,2\n"),
        ("WIDE.csv", (HEADER.strip() + "," + "y" * 3_000_000 + "\n" + bar("2024-01-02", 10)).encode()),
        ("JSON_USDT-1d.json", b"[[" + b"1" * 3_000_000 + b"]"),
    ],
    ids=["nul-bytes", "huge-field", "huge-header", "huge-json"],
)
def test_errors_about_huge_files_are_bounded_and_skip_only_that_file(tmp_path, name, content):
    write(tmp_path, name, content)
    write(tmp_path, "AAA.csv", HEADER + bar("2024-01-02", 10))
    batch = fetch(tmp_path)
    assert set(batch.bars["symbol"]) == {"AAA"}
    [p] = batch.problems
    assert p.file == name and p.action in ("file skipped", "row held back")
    assert len(p.text()) < 400, p.text()[:500]
    assert all(len(o.error or "") < 600 for o in batch.outcomes)


# The whole run, as a user runs it (issue 15): every kind of bad file at once, next to real good files.

SQL_NAME = "x'; DROP TABLE fact_prices;--"
BAD_FILES = ("NEG.csv", "NANC.csv", "DUPDT.csv", "EMPTY.csv", "WRONGCOL.csv", "TRUNC.parquet", f"{SQL_NAME}.csv",
             "RAGGED.csv", "NOADJ.csv")


def bad_folder(folder: Path) -> None:
    days = ("2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05")
    ok = lambda i: bar(days[i], 50 + i)  # noqa: E731
    write(folder, "NEG.csv", HEADER + ok(0) + "2024-01-03,5,6,4,-5,100\n" + ok(2))
    write(folder, "NANC.csv", HEADER + ok(0) + "2024-01-03,5,6,4,NaN,100\n" + ok(2))
    write(folder, "DUPDT.csv", HEADER + ok(0) + ok(1) + bar(days[1], 77) + ok(3))
    write(folder, "EMPTY.csv", "")
    write(folder, "WRONGCOL.csv", "when,what\n2024-01-02,1\n")
    pl.DataFrame({"date": [date(2024, 1, 2)], "open": [1.0], "high": [2.0], "low": [0.5], "close": [1.5]}).write_parquet(
        folder / "TRUNC.parquet"
    )
    (folder / "TRUNC.parquet").write_bytes((folder / "TRUNC.parquet").read_bytes()[:60])
    write(folder, f"{SQL_NAME}.csv", HEADER + ok(0))
    write(folder, "RAGGED.csv", HEADER + ok(0) + "2024-01-03,5,6,4,5,,100\n")
    write(folder, "NOADJ.csv", ADJ_HEADER + "2024-01-02,5,6,4,5,4.5,100\n2024-01-03,5,6,4,5,,100\n")


@pytest.mark.slow
def test_a_folder_of_every_kind_of_bad_file_never_sinks_the_run(real_data, tmp_path, prefect_home):
    from reliability_harness import REPO, START_TIMEOUT, cli_env, xasset_cmd

    good = real_data / "pratham093-AEGIS"
    bad = tmp_path / "bad"
    bad_folder(bad)
    data = tmp_path / "data"
    proc = subprocess.run(
        xasset_cmd("run", "--source", "files", "--path", str(good), "--path", str(bad), "--data-dir", str(data)),
        env=cli_env(prefect_home, COLUMNS="400"), cwd=REPO, capture_output=True, text=True, timeout=START_TIMEOUT + 300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    table = proc.stdout[proc.stdout.index("Input problems"):]
    for name in BAD_FILES:
        assert f"bad/{name}" in table, name
    # The inputs' last date is the as-of: pratham093-AEGIS's crypto ends on 2025-06-14.
    assert "as of 2025-06-14" in proc.stdout

    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        run_id = con.execute("SELECT run_id FROM pipeline_runs WHERE status = 'succeeded'").fetchall()[0][0]
        quarantine = con.sql(f"SELECT key, rule, detail FROM quarantine WHERE run_id = '{run_id}'").pl()
        ingest = con.sql(f"SELECT symbol, status, error FROM ingest_log WHERE run_id = '{run_id}'").pl()
        prices = con.sql("SELECT symbol, date, open, high, low, close, adj_close, volume FROM fact_prices").pl()
    finally:
        con.close()
    recorded = " ".join(quarantine["key"].to_list() + quarantine["detail"].to_list() + ingest["error"].drop_nulls().to_list())
    for name in BAD_FILES:
        assert f"bad/{name}" in recorded, name
    assert dict(ingest.select("symbol", "status").iter_rows())["TRUNC"] == "error"

    # Good symbols are published unchanged.
    want = FilesSource([good]).read(UNIVERSE).bars.select(prices.columns)
    got = prices.filter(pl.col("symbol").is_in(want["symbol"].unique().implode())).sort("symbol", "date")
    assert got.equals(want.sort("symbol", "date"))
    # No bad price stored; the rest of each partly bad file is.
    assert prices.filter(~pl.col("close").is_finite() | (pl.col("close") <= 0)).is_empty()
    dates = lambda s: prices.filter(pl.col("symbol") == s)["date"].sort().to_list()  # noqa: E731
    d = [date(2024, 1, n) for n in (2, 3, 4, 5)]
    assert dates("NEG") == dates("NANC") == [d[0], d[2]]
    assert dates("DUPDT") == [d[0], d[3]]
    assert dates("RAGGED") == dates("NOADJ") == [d[0]]
    assert not set(prices["symbol"]) & {"EMPTY", "WRONGCOL", "TRUNC", SQL_NAME, "x"}


@pytest.mark.parametrize(
    ("args", "first_line"),
    [
        (["--path", "README.md"], "error: --path README.md: not a price file (expected a folder or a .arrow, .csv, "
         ".feather, .ipc, .json, .parquet file)"),
        (["--path", "no/such/folder"], "error: --path no/such/folder: no such file or directory"),
        ([], "error: the files source needs --path DIR (repeatable)"),
    ],
    ids=["not-a-price-file", "missing-folder", "no-path"],
)
@pytest.mark.process
def test_bad_paths_are_one_line_errors_before_prefect_starts(tmp_path, args, first_line):
    from reliability_harness import REPO

    data = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--source", "files", *args, "--data-dir", str(data)],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300"},
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == first_line
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (data / ".prefect").exists(), "refused before Prefect was prepared"
