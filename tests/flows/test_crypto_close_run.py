"""XASSET_CRYPTO_CLOSE end to end (issue 18, item 4): the sample market sampled at the equity close,
recorded with the run, kept apart in the lake, and a switch of convention rebuilds every mart."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from flows.nightly import nightly
from flows.sources.sample import SampleSource
from flows.universe import load_universe
from warehouse.lake import Lake

pytestmark = pytest.mark.usefixtures("prefect_harness")

START, D1 = date(2015, 6, 1), date(2016, 3, 31)
# Long enough that the next night's changed range is past the correlations'
# look-back (max window + margin, 386 sessions): only then is a run incremental.
LONG_START = date(2014, 6, 2)


def query(data: Path, sql: str) -> pl.DataFrame:
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


@pytest.fixture
def crypto_close(monkeypatch):
    from flows.settings import get_settings

    def use(value: str) -> None:
        monkeypatch.setenv("XASSET_CRYPTO_CLOSE", value)
        get_settings.cache_clear()

    yield use
    monkeypatch.undo()
    get_settings.cache_clear()


def test_equity_close_runs_the_sample_market_and_records_the_convention(tmp_path, crypto_close):
    crypto_close("equity_close")
    run = nightly(source="sample", start=START, as_of=D1, data_dir=str(tmp_path))
    assert run.status == "succeeded"
    runs = query(tmp_path, "SELECT run_id, crypto_close FROM pipeline_runs")
    assert runs.rows() == [(run.run_id, "equity_close")]
    manifest = json.loads((tmp_path / "marts" / "mart_rolling_correlation.manifest.json").read_text())
    assert manifest["crypto_close"] == "equity_close"
    # The report names it, on the page and under every chart.
    from flows.report import write_report

    report = write_report(tmp_path / "warehouse.duckdb", tmp_path / "reports")
    assert report.crypto_close == "equity_close"
    html = report.html_path.read_text()
    assert 'data-crypto-close="equity_close"' in html and "crypto sampled at the equity close" in html
    # Its own lake: nothing landed where the utc_midnight bars live.
    assert (tmp_path / "lake" / "crypto_close=equity_close" / "bars" / "source=sample").is_dir()
    assert not (tmp_path / "lake" / "bars").exists()
    # The published crypto bars are the ones sampled at the equity close, not the daily candles.
    universe = load_universe(None)
    expected = SampleSource(crypto_close="equity_close").fetch(universe, START, D1, {}, pl.DataFrame())
    midnight = SampleSource().fetch(universe, START, D1, {}, pl.DataFrame())
    btc = query(tmp_path, "SELECT date, close FROM fact_prices WHERE symbol = 'BTC' ORDER BY date")
    want = expected.bars.filter(pl.col("symbol") == "BTC").select("date", "close")
    assert btc.height == want.height
    assert btc["close"].to_list() == pytest.approx(want["close"].to_list(), rel=1e-12)
    other = midnight.bars.filter(pl.col("symbol") == "BTC")["close"].to_list()
    assert btc["close"].to_list() != pytest.approx(other, rel=1e-6)
    # Equity bars are the same under both conventions.
    rut = query(tmp_path, "SELECT close FROM fact_prices WHERE symbol = '^RUT' ORDER BY date")["close"].to_list()
    assert rut == pytest.approx(midnight.bars.filter(pl.col("symbol") == "^RUT")["close"].to_list(), rel=1e-12)


def test_switching_the_convention_rebuilds_everything_and_never_mixes_bars(tmp_path, crypto_close):
    first = nightly(source="sample", start=LONG_START, as_of=D1, data_dir=str(tmp_path))
    assert first.status == "succeeded"
    crypto_close("equity_close")
    switched = nightly(source="sample", start=LONG_START, as_of=D1 + timedelta(days=3), data_dir=str(tmp_path))
    assert switched.status == "succeeded"
    assert switched.incremental_from is None, "another convention's tables must not seed this run"
    # The next night under the same convention builds on it again.
    again = nightly(source="sample", start=LONG_START, as_of=D1 + timedelta(days=5), data_dir=str(tmp_path))
    assert again.incremental_from is not None
    # The two lakes hold their own bars: BTC's close differs on every shared date.
    midnight = Lake(tmp_path / "lake", "sample").read_bars(["BTC"])
    at_close = Lake(tmp_path / "lake" / "crypto_close=equity_close", "sample").read_bars(["BTC"])
    assert midnight["date"].max() == D1 and at_close["date"].max() == D1 + timedelta(days=5)
    both = midnight.join(at_close, on="date", suffix="_eq")
    assert both.height > 500 and (both["close"] != both["close_eq"]).all()
    runs = query(tmp_path, "SELECT crypto_close FROM pipeline_runs ORDER BY started_at")["crypto_close"].to_list()
    assert runs == ["utc_midnight", "equity_close", "equity_close"]
    from flows.report import crypto_close_of, Warehouse

    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        assert crypto_close_of(Warehouse(con, D1)) == "equity_close"
    finally:
        con.close()
    # And back: the default convention's published tables were replaced, so it rebuilds in full too.
    crypto_close("utc_midnight")
    back = nightly(source="sample", start=START, as_of=D1 + timedelta(days=6), data_dir=str(tmp_path))
    assert back.status == "succeeded" and back.incremental_from is None


def test_a_run_log_written_before_the_column_existed_reads_it_as_null(tmp_path):
    from datetime import UTC, datetime

    from warehouse.files import atomic_write_parquet
    from warehouse.runs import RunLog
    from contracts.tables import PIPELINE_RUNS

    old_schema = {k: v for k, v in PIPELINE_RUNS.polars_schema.items() if k != "crypto_close"}
    old = pl.DataFrame([{"run_id": "r1", "started_at": datetime(2026, 1, 2, tzinfo=UTC), "source": "sample",
                         "as_of": date(2026, 1, 1), "status": "succeeded"}], schema=old_schema)
    atomic_write_parquet(old, tmp_path / "state" / "pipeline_runs.parquet")
    log = RunLog(tmp_path)
    assert log.runs()["crypto_close"].to_list() == [None]
    log.record_run({"run_id": "r2", "started_at": datetime(2026, 1, 3, tzinfo=UTC), "source": "sample",
                    "as_of": date(2026, 1, 2), "status": "running", "crypto_close": "equity_close"})
    assert log.runs()["crypto_close"].to_list() == [None, "equity_close"]
