"""The files source's hourly candle files for crypto sampled at the equity close (issue 18, item 4)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from flows.sources.files import FilesSource, is_hourly, symbol_from_filename
from flows.universe import load_universe

UNIVERSE = load_universe()
START = datetime(2024, 11, 26, tzinfo=UTC)  # Thanksgiving week: Nov 28 closed, Nov 29 closes at 13:00


def price(k: int) -> float:
    return 500.0 + k  # the candle opening k hours after START closes at 500 + k


def write_hourly_csv(path, hours: int, bad_line_at: int | None = None) -> None:
    lines = ["Date,Open,High,Low,Close,Volume"]
    for k in range(hours):
        t = START + timedelta(hours=k)
        stamp = t.astimezone(ZoneInfo("America/New_York")).isoformat()  # offsets -05:00
        close = "oops" if k == bad_line_at else f"{price(k)}"
        lines.append(f"{stamp},{price(k) - 1},{price(k) + 1},{price(k) - 2},{close},3")
    path.write_text("\n".join(lines) + "\n")


def test_hourly_file_names():
    for name in ("BTC_USDT-1h.json", "BTC-USD_1h.csv", "ETH_USDT-60m.feather", "SOL-USD-hourly.csv"):
        p = Path(name)
        assert is_hourly(p), name
        assert symbol_from_filename(p, UNIVERSE).asset_class == "crypto", name
    assert symbol_from_filename(Path("BTC_USDT-1h.json"), UNIVERSE).symbol == "BTC"
    assert not is_hourly(Path("BTC_USDT-1d.json"))


def test_equity_close_bars_from_an_hourly_csv_with_offsets_across_an_early_close(tmp_path):
    write_hourly_csv(tmp_path / "BTC-USD_1h.csv", 24 * 6, bad_line_at=24 * 3 + 15)  # Nov 29 15:00 UTC: not the close
    (tmp_path / "BTC-USD.csv").write_text("Date,Open,High,Low,Close,Volume\n2024-11-27,1,1,1,1,1\n")
    (tmp_path / "^RUT.csv").write_text(
        "Date,Open,High,Low,Close,Volume\n2024-11-27,2400,2410,2390,2405,1\n2024-11-29,2405,2420,2400,2415,1\n"
    )
    src = FilesSource([tmp_path], crypto_close="equity_close")
    batch = src.fetch(UNIVERSE, date(2024, 11, 1), date(2024, 12, 31), {}, pl.DataFrame())
    btc = batch.bars.filter(pl.col("symbol") == "BTC").sort("date")
    closes = dict(btc.select("date", "close").iter_rows())

    def at(t: datetime) -> float:  # the close of the candle ending at t
        return price(int((t - START) / timedelta(hours=1)) - 1)

    assert closes[date(2024, 11, 27)] == at(datetime(2024, 11, 27, 21, tzinfo=UTC))
    assert date(2024, 11, 28) in closes  # Thanksgiving: no session, 16:00 New York
    assert closes[date(2024, 11, 29)] == at(datetime(2024, 11, 29, 18, tzinfo=UTC))  # early close, 13:00 New York
    assert closes[date(2024, 11, 30)] == at(datetime(2024, 11, 30, 21, tzinfo=UTC))
    # The bad row is held back with its file and line; the bar of its day is built without it.
    (problem,) = [p for p in batch.problems if p.symbol == "BTC"]
    assert problem.file == "BTC-USD_1h.csv" and problem.line == f"line {24 * 3 + 15 + 2}"
    assert "not a number" in problem.problem
    # Each bar names its closing candle's file and line.
    origin = dict(btc.select("date", "origin").iter_rows())
    assert origin[date(2024, 11, 29)] == f"BTC-USD_1h.csv line {24 * 3 + 17 + 2}"  # the candle 17:00-18:00 UTC
    # The daily crypto file is not mixed in; equities come from their daily files as always.
    assert closes.get(date(2024, 11, 27)) != 1.0
    assert any("BTC: daily file(s) BTC-USD.csv not used" in w for w in batch.warnings)
    assert batch.bars.filter(pl.col("symbol") == "^RUT").height == 2


def test_kraken_recorded_candles_as_a_freqtrade_hourly_file(tmp_path, real_data):
    """Real hourly candles (ccxt's recorded Kraken payload) in freqtrade's JSON, written to a temp dir."""
    excerpt = json.loads((real_data / "ccxt" / "kraken.fetchOHLCV.excerpt.json").read_text())
    parsed = excerpt["methods"]["fetchOHLCV"][0]["parsedResponse"]
    (tmp_path / "BTC_USDT-1h.json").write_text(json.dumps(parsed))
    (tmp_path / "^RUT.csv").write_text("Date,Open,High,Low,Close,Volume\n2024-01-30,1950,1960,1940,1955,1\n")
    src = FilesSource([tmp_path], crypto_close="equity_close")
    batch = src.fetch(UNIVERSE, date(2024, 1, 1), date(2024, 12, 31), {}, pl.DataFrame())
    # 2024-01-30 16:00..19:00 UTC: before that day's 16:00 EST (21:00 UTC) close, so no bar, and the reason.
    assert batch.bars["symbol"].to_list() == ["^RUT"]
    (btc,) = [o for o in batch.outcomes if o.symbol == "BTC"]
    assert btc.status == "error" and "2024-01-30 16:00..2024-01-30 18:00 UTC) hold no candle ending at" in btc.error
    # Shifted so the last candle ends at the close (21:00 UTC), the bar's close is its close.
    shift = (datetime(2024, 1, 30, 21, tzinfo=UTC) - datetime.fromtimestamp(parsed[-1][0] / 1000 + 3600, UTC))
    moved = [[c[0] + shift.total_seconds() * 1000, *c[1:]] for c in parsed]
    (tmp_path / "BTC_USDT-1h.json").write_text(json.dumps(moved))
    bars = FilesSource([tmp_path], crypto_close="equity_close").fetch(
        UNIVERSE, date(2024, 1, 1), date(2024, 12, 31), {}, pl.DataFrame()).bars
    (bar,) = bars.filter((pl.col("date") == date(2024, 1, 30)) & (pl.col("symbol") == "BTC")).iter_rows(named=True)
    assert bar["close"] == pytest.approx(parsed[-1][4]) and bar["open"] == pytest.approx(parsed[0][1])
    assert bar["volume"] == pytest.approx(sum(c[5] for c in parsed))
    assert bar["origin"] == "BTC_USDT-1h.json row 3"


def test_default_convention_leaves_hourly_files_unused_and_says_so(tmp_path):
    write_hourly_csv(tmp_path / "BTC-USD_1h.csv", 48)
    (tmp_path / "BTC-USD.csv").write_text("Date,Open,High,Low,Close,Volume\n2024-11-27,1,1,1,1,1\n")
    batch = FilesSource([tmp_path]).fetch(UNIVERSE, date(2024, 11, 1), date(2024, 12, 31), {}, pl.DataFrame())
    assert batch.bars["close"].to_list() == [1.0]
    assert any("1 hourly file(s) not used (BTC-USD_1h.csv)" in w for w in batch.warnings)


def test_a_crypto_symbol_without_hourly_file_is_not_published_under_equity_close(tmp_path):
    (tmp_path / "ETH-USD.csv").write_text("Date,Open,High,Low,Close,Volume\n2024-11-27,1,1,1,1,1\n")
    (tmp_path / "^RUT.csv").write_text("Date,Open,High,Low,Close,Volume\n2024-11-27,2400,2410,2390,2405,1\n")
    batch = FilesSource([tmp_path], crypto_close="equity_close").fetch(
        UNIVERSE, date(2024, 11, 1), date(2024, 12, 31), {}, pl.DataFrame())
    assert batch.bars["symbol"].to_list() == ["^RUT"]
    (eth,) = [o for o in batch.outcomes if o.symbol == "ETH"]
    assert eth.status == "error" and "no hourly file" in eth.error and "ETH-USD.csv not used" in eth.error


def test_hourly_file_of_an_equity_is_skipped_with_a_reason(tmp_path):
    write_hourly_csv(tmp_path / "MSFT-1h.csv", 30)
    write_hourly_csv(tmp_path / "BTC-USD_1h.csv", 30)
    batch = FilesSource([tmp_path], crypto_close="equity_close").fetch(
        UNIVERSE, date(2024, 11, 1), date(2024, 12, 31), {}, pl.DataFrame())
    (p,) = [p for p in batch.problems if p.file == "MSFT-1h.csv"]
    assert p.action == "file skipped" and "not a crypto pair" in p.problem
