"""The nightly flow end to end: sample market, real files, re-runs and failures."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest

from flows.nightly import nightly
from contracts.tables import TABLES

pytestmark = pytest.mark.usefixtures("prefect_harness")

SAMPLE_AS_OF = date(2019, 6, 28)
LOGS = {"pipeline_runs", "ingest_log"}


def table(db: Path, name: str) -> pl.DataFrame:
    con = duckdb.connect(str(db), read_only=True)
    try:
        key = ", ".join(TABLES[name].key)
        return con.sql(f"SELECT * FROM {name} ORDER BY {key}").pl()
    finally:
        con.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mart_files(marts: Path) -> dict[str, str]:
    """Digest of every published Parquet file, keyed by table and path inside the version."""
    out = {}
    for name in sorted(os.listdir(marts)):
        if name.startswith("."):
            continue
        version = (marts / name).resolve()
        for p in sorted(version.rglob("*.parquet")):
            out[f"{name}/{p.relative_to(version)}"] = digest(p)
    return out


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    data = tmp_path_factory.mktemp("sample")
    summary = nightly(source="sample", as_of=SAMPLE_AS_OF, data_dir=str(data))
    return data, summary


def test_sample_run_fills_the_warehouse(sample_run):
    data, summary = sample_run
    assert summary.status == "succeeded" and summary.synthetic
    db = data / "warehouse.duckdb"
    assets = table(db, "dim_asset")
    listed_later = {"SOL", "DOT", "AVAX"}  # 2020 listings, after SAMPLE_AS_OF
    from flows.universe import load_universe

    derived = {"ALTS", "MAJORS", "ALTS_DV"}
    assert set(assets["symbol"]) == ({a.symbol for a in load_universe().assets} - listed_later) | derived
    assert assets["name"].str.contains("[synthetic]", literal=True).all()
    prices = table(db, "fact_prices")
    assert prices["date"].max() == SAMPLE_AS_OF
    assert prices.filter(pl.col("symbol") == "BTC").height == (SAMPLE_AS_OF - date(2015, 1, 2)).days + 1
    corr = table(db, "mart_rolling_correlation")
    crypto = set(assets.filter(pl.col("asset_class") == "crypto")["symbol"])
    assert set(corr["asset"]) >= crypto
    assert set(corr["benchmark"]) == {"^RUT", "^GSPC"}
    assert set(corr["window_days"]) == {30, 90, 180, 365}
    assert corr["correlation"].drop_nulls().is_between(-1, 1).all()
    runs = table(db, "pipeline_runs")
    assert runs.filter(pl.col("run_id") == summary.run_id)["status"].item() == "succeeded"
    # Every published mart reads back with the same rows.
    for name, t in TABLES.items():
        if t.publish:
            n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{data}/marts/{name}/**/*.parquet')").fetchall()[0][0]
            assert n == table(db, name).height, name


def test_rerun_changes_nothing(sample_run):
    data, first = sample_run
    db = data / "warehouse.duckdb"
    before = {n: table(db, n) for n in TABLES if n not in LOGS}
    marts_before = mart_files(data / "marts")
    second = nightly(source="sample", as_of=SAMPLE_AS_OF, data_dir=str(data))
    assert second.rows_written == 0, "identical bars are not re-landed"
    for name, frame in before.items():
        assert table(db, name).equals(frame), name
    assert mart_files(data / "marts") == marts_before, "Parquet marts are byte-identical"
    runs = table(db, "pipeline_runs")
    assert runs.height == 2 and set(runs["status"]) == {"succeeded"}


def test_failed_run_leaves_published_warehouse_untouched(sample_run, tmp_path):
    data, _ = sample_run
    db = data / "warehouse.duckdb"
    before = digest(db)
    link = os.readlink(data / "current")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "^RUT.csv").write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,1,2,0.5,oops,10\n")
    with pytest.raises(Exception, match=r"\^RUT.csv line 2: \^RUT: column 'close' is not a number"):
        nightly(source="files", paths=[str(bad)], data_dir=str(data))
    assert digest(db) == before
    assert os.readlink(data / "current") == link
    last = pl.read_parquet(data / "state" / "pipeline_runs.parquet").sort("started_at").row(-1, named=True)
    assert last["status"] == "failed" and "^RUT.csv line 2" in last["error"]
    assert not list(data.glob(".tmp-*")) and not list((data / ".runs").glob(".tmp-*")), "no staging left behind"


def test_files_acceptance_against_independent_computation(real_data, tmp_path):
    """The acceptance command: pratham093 + alitalbi; every crypto vs ^RUT matches pandas."""
    folders = [real_data / "pratham093-AEGIS", real_data / "alitalbi-storage_data_fy"]
    summary = nightly(source="files", paths=[str(p) for p in folders], data_dir=str(tmp_path), start=date(1980, 1, 1))
    assert summary.status == "succeeded"
    assert any("^GSPC" in w for w in summary.warnings), "a missing benchmark is a warning"
    corr = table(tmp_path / "warehouse.duckdb", "mart_rolling_correlation").filter(pl.col("benchmark") == "^RUT")

    import exchange_calendars as xcals

    rut = pd.read_csv(folders[1] / "^RUT.csv", index_col="Date", parse_dates=True)["Close"]
    sessions = xcals.get_calendar("XNYS", start="1987-01-01").sessions_in_range(rut.index.min(), rut.index.max())
    coins = sorted(p.name.removesuffix("-USD.csv") for p in folders[0].glob("*-USD.csv"))
    assert set(corr["asset"]) == set(coins) | {"ALTS", "MAJORS", "ALTS_DV"}
    y = np.log(rut.reindex(sessions)).diff()
    for coin in coins:
        px = pd.read_csv(folders[0] / f"{coin}-USD.csv", skiprows=[1], index_col="Date", parse_dates=True)["Close"]
        x = np.log(px.reindex(sessions)).diff()
        for w in (30, 90, 180, 365):
            expected = x.rolling(w, min_periods=w).corr(y).dropna()
            got = dict(corr.filter((pl.col("asset") == coin) & (pl.col("window_days") == w)).drop_nulls("correlation").select("date", "correlation").iter_rows())
            assert len(got) == len(expected), (coin, w)
            for d, v in expected.items():
                assert got[d.date()] == pytest.approx(v, abs=1e-9), (coin, w, d)


@pytest.fixture
def mirror_url(tmp_path, monkeypatch):
    from flows.settings import get_settings

    url = (tmp_path / "bucket").as_uri()
    monkeypatch.setenv("XASSET_MARTS_MIRROR_URL", url)
    get_settings.cache_clear()
    yield url
    monkeypatch.undo()
    get_settings.cache_clear()


def test_nightly_mirrors_what_it_published(mirror_url, tmp_path):
    data = tmp_path / "data"
    run = nightly(source="sample", start=date(2015, 6, 1), as_of=date(2016, 3, 31), data_dir=str(data))
    assert run.status == "succeeded" and "mirror" in run.stage_seconds
    pointer = json.loads((tmp_path / "bucket" / "_current.json").read_text())
    assert pointer["run_id"] == run.run_id
    local = pl.read_parquet(data / "marts" / "mart_rolling_correlation" / "**" / "*.parquet", hive_partitioning=True)
    remote_dir = tmp_path / "bucket" / "runs" / run.run_id / "mart_rolling_correlation"
    remote = pl.read_parquet(remote_dir / "**" / "*.parquet", hive_partitioning=True)
    assert remote.sort(remote.columns).equals(local.sort(local.columns))


def test_a_failed_mirror_is_a_warning_not_a_failed_run(tmp_path, monkeypatch):
    from flows.settings import get_settings

    monkeypatch.setenv("XASSET_MARTS_MIRROR_URL", "nosuchprotocol://bucket/marts")
    get_settings.cache_clear()
    try:
        run = nightly(source="sample", start=date(2015, 6, 1), as_of=date(2016, 3, 31), data_dir=str(tmp_path))
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert run.status == "succeeded"
    assert any(w.startswith("marts not mirrored to nosuchprotocol://bucket/marts") for w in run.warnings), run.warnings
    assert (tmp_path / "marts" / "mart_rolling_correlation.manifest.json").exists()


def test_the_run_keeps_the_exchange_calendar_for_the_next(sample_run):
    # The next night's run reads the sessions instead of building the calendar (flows.calendar.cache_sessions_in).
    data, _ = sample_run
    kept = list((data / "cache" / "calendar").glob("sessions-XNYS-*.parquet"))
    assert len(kept) == 1 and pl.read_parquet(kept[0])["session_date"].is_sorted()
