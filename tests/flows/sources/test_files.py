"""The files source: every real price-history folder imports; odd inputs are named."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from flows.sources.files import FilesSource, symbol_from_filename
from flows.sources.base import SourceError, empty_bars
from flows.universe import Asset, Universe, load_universe

UNIVERSE = load_universe()


def read_all(source: FilesSource, universe) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """(bars, assets, warnings) over every file; every problem is one of the warnings."""
    done = source.read(universe)
    return done.bars, done.assets, done.warnings + [p.text() for p in done.problems]

# Section A of SOURCES.md: folder -> {symbol: rows}
REAL_FOLDERS = {
    "alitalbi-storage_data_fy": {"^RUT": 9686, "IWM": 6473, "SPY": 8323, "RTY=F": 2173, "^VIX": 9103},
    "pratham093-AEGIS": {"IWM": 1117, "QQQ": 1117, "BTC": 1626, "LTC": 1626, "BNB": 1626},
    "xjcarter-data": {"^GSPC": 5759, "^RUT": 5759, "IWM": 5658, "SPY": 5759},
    "nascimento-fisica-Poeira_Cantor_Bin": {"BTC": 3438, "ETH": 2289, "SOL": 1406},
    "mimibotx-sketch-clawd": {"BTC": 1096, "SOL": 1096},
    "djienne-3EMA_SRSI_ATR": {"BTC": 1881, "ADA": 1638, "XRP": 1621, "DOGE": 1194, "SOL": 791},
    "danielarroyave28-principia-bot": {"BTC": 1200, "SOL": 981},
    "Harthor-marketlab": {"BTC": 488, "ETH": 486, "ADA": 491},
}


@pytest.mark.parametrize("folder", sorted(REAL_FOLDERS))
def test_every_real_price_folder_imports(real_data, folder):
    bars, assets, warnings = read_all(FilesSource([real_data / folder]), UNIVERSE)
    counts = dict(bars.group_by("symbol").len().iter_rows())
    for symbol, rows in REAL_FOLDERS[folder].items():
        assert counts[symbol] == rows, symbol
    assert bars.select(pl.col("close").is_null().sum()).item() == 0
    assert not bars.select(["symbol", "date"]).is_duplicated().any()
    classes = dict(assets.select("symbol", "asset_class").iter_rows())
    if "BTC" in classes:
        assert classes["BTC"] == "crypto"
    if "^RUT" in classes:
        assert classes["^RUT"] == "index"


def test_yfinance_shapes_parse_to_the_right_values(real_data):
    bars, assets, _ = read_all(FilesSource([real_data / "pratham093-AEGIS"]), UNIVERSE)
    iwm = bars.filter(pl.col("symbol") == "IWM").sort("date")
    # First data line after the two header lines: 2021-01-04,186.9155...,...,183.0928...
    assert iwm["date"][0] == date(2021, 1, 4)
    assert iwm["close"][0] == pytest.approx(183.09280395507812)
    assert iwm["adj_close"][0] == iwm["close"][0], "auto-adjusted file: adj_close is the close"
    meta = assets.filter(pl.col("symbol") == "BTC").row(0, named=True)
    assert meta["quote_currency"] == "USD" and meta["source_symbol"] == "BTC-USD"

    tz, _, _ = read_all(FilesSource([real_data / "mimibotx-sketch-clawd"]), UNIVERSE)
    assert tz.filter(pl.col("symbol") == "BTC")["date"].min() == date(2023, 2, 2), "tz-aware stamps keep their own date"

    xj, _, warnings = read_all(FilesSource([real_data / "xjcarter-data"]), UNIVERSE)
    gspc = xj.filter(pl.col("symbol") == "^GSPC").sort("date")
    assert (gspc["close"][0], gspc["adj_close"][0], gspc["volume"][0]) == pytest.approx((1455.21997, 1455.21997, 931800000.0))
    assert any("us_market_holidays.csv" in w and "not a price history" in w for w in warnings)

    js, _, _ = read_all(FilesSource([real_data / "djienne-3EMA_SRSI_ATR"]), UNIVERSE)
    btc = js.filter(pl.col("symbol") == "BTC").sort("date")
    assert btc["date"][0] == date(2017, 8, 17) and btc["open"][0] == pytest.approx(4261.48)


def test_same_symbol_in_two_folders_that_agree_is_merged(real_data):
    bars, _, _ = read_all(FilesSource([real_data / "pratham093-AEGIS", real_data / "alitalbi-storage_data_fy"]), UNIVERSE)
    assert bars.filter(pl.col("symbol") == "IWM").height == 6473


@pytest.mark.parametrize(
    "name,symbol,cls,quote",
    [
        ("^RUT.csv", "^RUT", "index", "USD"),
        ("BTC-USD.csv", "BTC", "crypto", "USD"),
        ("BTC_USDT-1d.json", "BTC", "crypto", "USDT"),
        ("ETH_USDT-1d.feather", "ETH", "crypto", "USDT"),
        ("IWM.csv", "IWM", "etf", None),
        ("ZZZZ.csv", "ZZZZ", "equity", "USD"),
    ],
)
def test_symbol_from_filename(name, symbol, cls, quote):
    s = symbol_from_filename(Path(name), UNIVERSE)
    assert (s.symbol, s.asset_class) == (symbol, cls)
    if quote:
        assert s.quote_currency == quote


def conflict_folders(tmp_path: Path, factor: float, days: int = 10) -> tuple[Path, Path]:
    """Two folders holding IWM and SPY; b's closes are a's times ``factor``, QQQ agrees."""
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, f in ((a, 1.0), (b, factor)):
        folder.mkdir()
        for sym, k in (("IWM", f), ("SPY", f), ("QQQ", 1.0)):
            rows = "".join(f"2024-01-{d + 2:02d},1,2,0.5,{(10 + d) * k},10\n" for d in range(days))
            (folder / f"{sym}.csv").write_text("Date,Open,High,Low,Close,Volume\n" + rows)
    return a, b


def test_every_conflicting_symbol_is_named_at_once_with_its_likely_cause(tmp_path):
    a, b = conflict_folders(tmp_path, 0.97)
    done = FilesSource([a, b]).read(UNIVERSE)
    [warning] = [w for w in done.warnings if "disagree" in w]
    assert warning.startswith("2 symbol(s) are in more than one file and disagree: IWM (a/IWM.csv vs b/IWM.csv: ")
    assert "SPY (a/SPY.csv vs b/SPY.csv" in warning and "QQQ" not in warning
    assert "close ratio roughly constant (1.0309" in warning and "adjusted vs raw" in warning
    assert "XASSET_FILES_ON_CONFLICT=first-path" in warning
    # Refused: neither version is published, the rest is, and each conflict is a failed symbol.
    assert set(done.bars["symbol"]) == {"QQQ"}
    assert done.failed["IWM"][0] == "error" and "b/IWM.csv" in done.failed["IWM"][1]
    assert {(p.symbol, p.kind) for p in done.problems} == {("IWM", "symbol_conflict"), ("SPY", "symbol_conflict")}


def test_the_first_path_wins_when_the_user_says_so(tmp_path):
    a, b = conflict_folders(tmp_path, 0.97)
    (b / "IWM.csv").write_text((b / "IWM.csv").read_text() + "2024-02-01,1,2,0.5,99,10\n")
    bars = FilesSource([a, b], on_conflict="first-path").read(UNIVERSE).bars
    iwm = bars.filter(pl.col("symbol") == "IWM").sort("date")
    assert iwm["close"].to_list()[:10] == [10.0 + d for d in range(10)], "a's bars on shared dates"
    assert iwm.row(-1, named=True)["close"] == 99 and iwm["origin"][-1] == "b/IWM.csv line 12"
    # The order of --path decides.
    bars = FilesSource([b, a], on_conflict="first-path").read(UNIVERSE).bars
    assert bars.filter(pl.col("symbol") == "IWM").sort("date")["close"][0] == pytest.approx(9.7)


def test_adjusted_vs_raw_is_recognised_from_the_adj_close_column(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    raw = "".join(f"2024-01-{d + 2:02d},1,2,0.5,{10 + d},{(10 + d) * 0.9 - d * 0.01},10\n" for d in range(8))
    adj = "".join(f"2024-01-{d + 2:02d},1,2,0.5,{(10 + d) * 0.9 - d * 0.01},10\n" for d in range(8))
    (a / "IWM.csv").write_text("Date,Open,High,Low,Close,Adj Close,Volume\n" + raw)
    (b / "IWM.csv").write_text("Date,Open,High,Low,Close,Volume\n" + adj)
    (b / "QQQ.csv").write_text("Date,Open,High,Low,Close,Volume\n" + adj)
    [w] = FilesSource([a, b]).read(UNIVERSE).warnings
    assert "the first file's Adj Close tracks the second's close (ratio 1.0000, 1.0000..1.0000)" in w
    assert w.endswith("adjusted vs raw prices). Not published; set XASSET_FILES_ON_CONFLICT=first-path to let the file "
                      "of the earlier --path win.")


def test_real_raw_and_auto_adjusted_downloads_are_told_apart(real_data):
    """xjcarter-data has raw Close and Adj Close (2022); alitalbi's closes are adjusted (2026)."""
    done = FilesSource([real_data / "xjcarter-data", real_data / "alitalbi-storage_data_fy"]).read(UNIVERSE)
    [w] = [w for w in done.warnings if "disagree" in w]
    assert w.startswith("2 symbol(s) are in more than one file and disagree: IWM (xjcarter-data/IWM.csv vs "
                        "alitalbi-storage_data_fy/IWM.csv: close on 2000-05-26: 45.71875 vs 32.929141998291016; "
                        "5658 of 5658 shared dates differ; the first file's Adj Close tracks the second's close (ratio 1.04")
    assert "SPY (xjcarter-data/SPY.csv vs alitalbi-storage_data_fy/SPY.csv" in w and "^RUT" not in w
    assert {"IWM", "SPY"} == set(done.failed) and "^RUT" in set(done.bars["symbol"])


def test_a_malformed_value_holds_back_its_row_naming_file_line_and_column(tmp_path):
    f = tmp_path / "SPY.csv"
    f.write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,1,2,0.5,1.5,10\n2024-01-03,1,2,0.5,abc,10\n")
    done = FilesSource([tmp_path]).read(UNIVERSE)
    assert done.bars["date"].to_list() == [date(2024, 1, 2)]
    [p] = done.problems
    assert p.text() == "SPY.csv line 3: SPY: column 'close' is not a number: 'abc'; row held back"


def test_yfinance_three_line_header_and_long_parquet(tmp_path):
    (tmp_path / "A.csv").write_text(
        "Price,Close,High,Low,Open,Volume\nTicker,A,A,A,A,A\nDate,,,,,\n2024-01-02,10,11,9,9.5,100\n2024-01-03,10.5,11,9,10,200\n"
    )
    pl.DataFrame(
        {
            "symbol": ["ETH-USD", "ETH-USD", "^GSPC"],
            "date": [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 2)],
            "open": [1.0, 2.0, 3.0], "high": [1.0, 2.0, 3.0], "low": [1.0, 2.0, 3.0],
            "close": [1.0, 2.0, 3.0], "adj_close": [1.0, 2.0, 3.0], "volume": [1.0, 2.0, 3.0],
        }
    ).write_parquet(tmp_path / "long.parquet")
    (tmp_path / "notes.json").write_text(json.dumps({"hello": "world"}))
    bars, assets, warnings = read_all(FilesSource([tmp_path]), UNIVERSE)
    assert dict(bars.group_by("symbol").len().iter_rows()) == {"A": 2, "ETH": 2, "^GSPC": 1}
    assert dict(assets.select("symbol", "asset_class").iter_rows()) == {"A": "equity", "ETH": "crypto", "^GSPC": "index"}
    assert any("notes.json" in w for w in warnings)


def test_a_sector_first_seen_after_a_hundred_symbols_without_one_is_kept(tmp_path):
    # Polars infers a column's type from the first 100 rows: 120 coins (no sector) read before
    # the stocks made the asset frame fail with "could not append value" and sank the run.
    coins = [f"C{i:03d}" for i in range(120)]
    universe = Universe(benchmarks=("^GSPC",), assets=(
        Asset(symbol="^GSPC", name="S&P 500", asset_class="index"),
        *(Asset(symbol=c, name=c, asset_class="crypto", quote_currency="USDT") for c in coins),
        Asset(symbol="ZZZ", name="Z Corp", asset_class="equity", sector="Technology"),
    ))
    symbols = [*coins, "ZZZ", "^GSPC"]
    pl.DataFrame({
        "symbol": symbols, "date": [date(2024, 1, 2)] * len(symbols),
        **{c: [1.0] * len(symbols) for c in ("open", "high", "low", "close", "adj_close", "volume")},
    }).write_parquet(tmp_path / "long.parquet")
    _, assets, _ = read_all(FilesSource([tmp_path]), universe)
    assert assets.height == len(symbols)
    assert assets.filter(pl.col("symbol") == "ZZZ")["sector"].to_list() == ["Technology"]
    assert assets.filter(pl.col("sector").is_not_null()).height == 1


def test_folder_with_no_price_history_is_an_error(real_data):
    with pytest.raises(SourceError, match="no price history"):
        read_all(FilesSource([real_data / "ccxt"]), UNIVERSE)


def origins(bars: pl.DataFrame, symbol: str) -> dict[str, str]:
    return {str(d): o for d, o in bars.filter(pl.col("symbol") == symbol).select("date", "origin").iter_rows()}


def test_every_bar_names_its_file_relative_to_the_path_and_its_line_or_row(tmp_path):
    (tmp_path / "eq").mkdir()
    # yfinance's multi-index export: three header lines, so the first bar is on line 4.
    (tmp_path / "eq" / "A.csv").write_text(
        "Price,Close,High,Low,Open,Volume\nTicker,A,A,A,A,A\nDate,,,,,\n2024-01-02,10,11,9,9.5,100\n2024-01-03,10.5,11,9,10,200\n"
    )
    # Out of date order, with an exact repeat: each bar keeps the line it was read from.
    (tmp_path / "SPY.csv").write_text(
        "Date,Open,High,Low,Close,Volume\n2024-01-03,1,2,0.5,1.5,10\n2024-01-02,1,2,0.5,1.4,10\n2024-01-03,1,2,0.5,1.5,10\n"
    )
    pl.DataFrame(
        {"symbol": ["ETH-USD", "^GSPC", "ETH-USD"], "date": [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 2)],
         **{c: [1.0, 2.0, 3.0] for c in ("open", "high", "low", "close", "volume")}}
    ).write_parquet(tmp_path / "long.parquet")
    (tmp_path / "SOL_USDT-1d.json").write_text(json.dumps([[1704067200000, 1, 2, 0.5, 1.5, 9], [1704153600000, 1, 2, 0.5, 1.6, 9]]))

    bars, _, warnings = read_all(FilesSource([tmp_path]), UNIVERSE)

    assert origins(bars, "A") == {"2024-01-02": "eq/A.csv line 4", "2024-01-03": "eq/A.csv line 5"}
    assert origins(bars, "SPY") == {"2024-01-02": "SPY.csv line 3", "2024-01-03": "SPY.csv line 2"}
    assert any("SPY" in w and "1 exact duplicate" in w for w in warnings)
    assert origins(bars, "ETH") == {"2024-01-01": "long.parquet row 1", "2024-01-02": "long.parquet row 3"}
    assert origins(bars, "^GSPC") == {"2024-01-02": "long.parquet row 2"}
    assert origins(bars, "SOL") == {"2024-01-01": "SOL_USDT-1d.json row 1", "2024-01-02": "SOL_USDT-1d.json row 2"}
    assert not bars["origin"].str.contains(str(tmp_path), literal=True).any(), "no absolute (temp) paths"


def test_a_long_file_is_checked_per_symbol_in_one_pass(tmp_path):
    # Date-major, as a file one appends a day to: each symbol's rows are spread over the file.
    rows = [  # row: symbol, date, close
        ("AAA", 3, 3.0), ("BBB", 3, 30.0), ("AAA", 2, 2.0), ("BBB", 2, 20.0),
        ("AAA", 3, 3.0),  # row 5: an exact repeat of row 1
        ("BBB", 2, 21.0),  # row 6: the date of row 4 again, another close
        ("bad sym!", 2, 1.0), ("AAA", 4, None), ("CCC", 2, None), ("BBB", 4, float("nan")), ("DDD", 2, 5.0),
    ]
    pl.DataFrame(
        {"symbol": [r[0] for r in rows], "date": [date(2024, 1, r[1]) for r in rows],
         **{c: [1.0] * len(rows) for c in ("open", "high", "low", "volume")}, "close": [r[2] for r in rows]}
    ).write_parquet(tmp_path / "long.parquet")
    source = FilesSource([tmp_path])
    done = source.read(UNIVERSE)

    # Symbols in the order first seen, each by date, each bar naming its row.
    assert done.bars.select("symbol", pl.col("date").dt.day(), "origin").rows() == [
        ("AAA", 2, "long.parquet row 3"), ("AAA", 3, "long.parquet row 1"),
        ("BBB", 3, "long.parquet row 2"), ("DDD", 2, "long.parquet row 11"),
    ]
    assert done.warnings == ["long.parquet: AAA: 1 exact duplicate row(s) collapsed"]
    # The bad symbol's rows first, then per symbol as first seen: its held-back rows by row, then its clashes.
    assert [(p.line, p.symbol, p.kind) for p in done.problems] == [
        ("row 7", None, "row_unreadable"), ("row 8", "AAA", "price_missing"), ("row 10", "BBB", "price_missing"),
        ("row 4", "BBB", "duplicate_date_conflict"), ("row 6", "BBB", "duplicate_date_conflict"),
        ("row 9", "CCC", "price_missing"),
    ]
    assert done.problems[3].text() == (
        "long.parquet row 4: BBB: date 2024-01-02 appears 2 times with different values (close 20.0); mixed time "
        "zones can map two timestamps to one date; every version of the date held back (1 date(s)), the rest of "
        "the file kept"
    )
    assert done.failed == {"CCC": ("error", "every row was held back (see the quarantine table)")}

    batch = source.fetch(UNIVERSE, date(2024, 1, 3), date(2024, 1, 10), {}, empty_bars())
    assert [(o.symbol, o.status, o.rows, o.first_date, o.last_date) for o in batch.outcomes] == [
        ("AAA", "ok", 1, date(2024, 1, 3), date(2024, 1, 3)), ("BBB", "ok", 1, date(2024, 1, 3), date(2024, 1, 3)),
        ("DDD", "skipped", 0, None, None), ("CCC", "error", 0, None, None),
    ]
    assert batch.outcomes[2].error == "no rows between 2024-01-03 and 2024-01-10"


def test_a_file_given_directly_is_named_by_its_file_name(tmp_path):
    f = tmp_path / "SPY.csv"
    f.write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,1,2,0.5,1.5,10\n")
    bars, _, _ = read_all(FilesSource([f]), UNIVERSE)
    assert bars["origin"].to_list() == ["SPY.csv line 2"]


def test_merged_folders_keep_the_origin_of_the_bar_that_was_kept(tmp_path):
    for folder, days in (("a", (2, 3)), ("b", (3, 4))):
        (tmp_path / folder).mkdir()
        rows = "".join(f"2024-01-0{d},1,2,0.5,1.5,10\n" for d in days)
        (tmp_path / folder / "SPY.csv").write_text("Date,Open,High,Low,Close,Volume\n" + rows)
    bars, _, _ = read_all(FilesSource([tmp_path / "a", tmp_path / "b"]), UNIVERSE)
    # Two paths: each file is named from its path's parent, so the two SPY.csv stay apart.
    assert origins(bars, "SPY") == {"2024-01-02": "a/SPY.csv line 2", "2024-01-03": "a/SPY.csv line 3", "2024-01-04": "b/SPY.csv line 3"}


# The files source in the flow: its as-of, its failure policy, staleness (issues 14 and 15).


def test_default_as_of_of_real_folders_is_the_last_date_they_cover(real_data):
    from flows.nightly import default_as_of

    today = date(2026, 12, 5)
    both = FilesSource([real_data / "pratham093-AEGIS", real_data / "alitalbi-storage_data_fy"])
    assert default_as_of("files", today, both.last_date(UNIVERSE)) == date(2026, 2, 23)
    crypto = FilesSource([real_data / "pratham093-AEGIS"])
    assert default_as_of("files", today, crypto.last_date(UNIVERSE)) == date(2025, 6, 14)
    # Never later than today; the other sources cover the last complete day.
    assert default_as_of("files", date(2025, 6, 1), crypto.last_date(UNIVERSE)) == date(2025, 6, 1)
    assert default_as_of("live", today) == default_as_of("sample", today) == date(2026, 12, 4)


def outcome(symbol: str, status: str = "ok", error: str | None = None):
    from flows.sources.base import SymbolOutcome

    return SymbolOutcome(symbol, "files", status, rows=1 if status == "ok" else 0, error=error)


def check(outcomes, share: float = 0.2):
    from flows.stages.extract import check_failures
    from flows.run import RunSummary
    from flows.settings import Settings
    from flows.sources.base import SourceBatch
    from flows.sources.live_config import LiveSettings

    settings = Settings(live=LiveSettings(max_failed_share=share))
    run = RunSummary(run_id="r", source="files", as_of=date(2024, 1, 5), status="running")
    batch = SourceBatch(bars=pl.DataFrame(), assets=pl.DataFrame(), outcomes=outcomes)
    check_failures(batch, "files", settings, UNIVERSE, run)
    return run


def test_files_follow_the_live_failure_policy_with_one_setting():
    from flows.run import PipelineError

    good = [outcome(s) for s in ("^RUT", "BTC", "ETH", "SOL", "IWM", "SPY", "QQQ", "DIA", "ADA")]
    # One failed symbol of ten: published, with a warning naming it.
    run = check([*good, outcome("TRUNC", "error", "TRUNC.parquet: unreadable Parquet")])
    assert run.warnings == ["stale (no usable input, previous data kept): TRUNC (TRUNC.parquet: unreadable Parquet)"]
    # Skipped files (not price histories) are not failures; a benchmark absent from the files is none either.
    check([*good, outcome("notes", "skipped", "not a price history")])
    # A benchmark whose files are all unusable stops the run, so does a failed share above the setting.
    with pytest.raises(PipelineError, match=r"not publishing: benchmark failed \(\^RUT: \^RUT.csv: unreadable"):
        check([*good[1:], outcome("^RUT", "error", "^RUT.csv: unreadable")])
    three = [outcome(s, "error", "bad") for s in ("A", "B", "C")]
    with pytest.raises(PipelineError, match=r"not publishing: 3/12 symbols failed \(25%\) > 20% allowed: A, B, C"):
        check([*good, *three])
    check([*good, *three], share=0.3)


def test_staleness_is_judged_against_the_as_of_for_every_asset_class():
    from flows.artifacts import stale_symbols, stale_warning
    from flows.calendar import sessions

    as_of = date(2024, 3, 28)
    prices = pl.DataFrame({
        "symbol": ["BTC", "ETH", "^RUT", "IWM", "ALTS"],
        "date": [date(2024, 3, 28), date(2024, 3, 20), date(2024, 3, 20), date(2024, 3, 21), date(2024, 1, 1)],
        "source": ["files", "files", "files", "files", "derived"],
    })
    assets = pl.DataFrame({"symbol": ["BTC", "ETH", "^RUT", "IWM", "ALTS"],
                           "asset_class": ["crypto", "crypto", "index", "etf", "index_crypto"]})
    stale = stale_symbols(prices, assets, as_of, sessions(date(2024, 3, 1), as_of), 5)
    # ETH: 8 days behind; ^RUT: 6 sessions (3/21, 22, 25, 26, 27, 28); IWM: 5 sessions, not more than 5.
    assert stale == [
        {"symbol": "ETH", "status": "stale", "detail": "last bar 2024-03-20, 8 day(s) before the as-of 2024-03-28"},
        {"symbol": "^RUT", "status": "stale", "detail": "last bar 2024-03-20, 6 session(s) before the as-of 2024-03-28"},
    ]
    assert stale_warning(stale, 5, as_of) == (
        "stale: 2 asset(s) end more than 5 session(s) before the as-of 2024-03-28: ETH (last bar 2024-03-20, 8 day(s)); "
        "^RUT (last bar 2024-03-20, 6 session(s))"
    )


def test_input_problems_table_lists_source_problems_and_screened_rows_per_file():
    from flows.artifacts import input_problems
    from flows.sources.base import InputProblem, problems_frame
    from warehouse.quality import screen

    problems = [
        InputProblem("bad/EMPTY.csv", "not a price history (empty file)", "file skipped", "file_not_price_history", "EMPTY"),
        *[InputProblem("bad/R.csv", "7 fields where the header has 6 (a shifted row)", "row held back", "row_unreadable",
                       "R", f"line {n}") for n in (3, 9)],
    ]
    bars = pl.DataFrame({
        "symbol": ["NEG", "NEG"], "date": [date(2024, 1, 2), date(2024, 1, 3)], "open": [1.0, 1.0], "high": [2.0, 2.0],
        "low": [0.5, 0.5], "close": [1.5, -5.0], "adj_close": [1.5, -5.0], "volume": [1.0, 1.0], "source": ["files"] * 2,
        "ingested_at": [datetime(2024, 1, 5, tzinfo=UTC)] * 2, "origin": ["bad/NEG.csv line 2", "bad/NEG.csv line 3"],
    })
    _, screened = screen("fact_prices", bars, date(2024, 1, 5))
    quarantine = pl.concat([problems_frame(problems), screened]).with_columns(pl.lit("r").alias("run_id"))
    rows = input_problems(problems, quarantine, "r")
    assert rows == [
        {"file": "bad/EMPTY.csv", "symbol": "EMPTY", "problem": "not a price history (empty file)", "action": "file skipped"},
        {"file": "bad/NEG.csv", "symbol": "NEG", "problem": "line 3: adj_close > 0", "action": "row held back"},
        # -5 also lies below the bar's own low (0.5): the OHLC range rule names it too.
        {"file": "bad/NEG.csv", "symbol": "NEG", "problem": "line 3: low <= close <= high (within 1e-09 relative)",
         "action": "row held back"},
        {"file": "bad/NEG.csv", "symbol": "NEG", "problem": "line 3: close > 0", "action": "row held back"},
        {"file": "bad/R.csv", "symbol": "R", "problem": "7 fields where the header has 6 (a shifted row) (2 lines: 3, 9)", "action": "row held back"},
    ]


def test_bars_come_symbol_by_symbol_in_the_order_found_each_by_date(tmp_path):
    """A long, date-major file's symbols, one merged from a second folder, and one whose every row is
    held back: the bars are each symbol's history by date, symbols in the order first found."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    rows = []
    for day in (5, 3, 4):  # dates out of order too
        for symbol, close in (("QQQ", 3.0), ("SPY", 1.0), ("IWM", float("nan"))):
            rows.append({"symbol": symbol, "date": date(2024, 1, day), "open": close, "high": close,
                         "low": close, "close": close, "volume": 10.0})
    pl.DataFrame(rows).write_parquet(tmp_path / "a" / "long.parquet")
    (tmp_path / "b" / "SPY.csv").write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,1,1,1,1,10\n2024-01-03,1,1,1,1,10\n")
    source = FilesSource([tmp_path / "a", tmp_path / "b"])
    done = source.read(UNIVERSE)
    got = [(s, d.day) for s, d in done.bars.select("symbol", "date").iter_rows()]
    assert got == [("QQQ", 3), ("QQQ", 4), ("QQQ", 5), ("SPY", 2), ("SPY", 3), ("SPY", 4), ("SPY", 5)]
    assert done.assets["symbol"].to_list() == ["QQQ", "SPY"]
    assert done.failed["IWM"][1] == "every row was held back (see the quarantine table)"
