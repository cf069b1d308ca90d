"""The next day reads only the lake's recent year files (``flows.rebuild_plan.lake_read_plan``):
the earlier bars and their quarantine rows are the published run's, and every table still equals
a full rebuild's, also when a correction, a withdrawal or a new symbol reaches into an old year."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flows.nightly import nightly
from flows.rebuild_plan import LAKE_LISTED
from tests.flows.test_incremental_run import assert_same_tables
from warehouse.lake import Lake

pytestmark = pytest.mark.usefixtures("prefect_harness")

# Five years of history (the sample market starts in 2014), so the recent years are a part of the lake.
START = date(2014, 1, 2)
D0, D1, D2 = date(2018, 9, 25), date(2018, 9, 28), date(2018, 10, 3)


@pytest.fixture
def runs(monkeypatch):
    """Each transform the flow runs, with the year files it read (``Lake.read_bar_files``).

    Its ``quarantine`` as the transform returned it (the publish replaces it with the run log's).
    """
    import flows.nightly

    built, reads = [], []
    real = flows.nightly.transform

    def recorded(*args, **kwargs):
        out = real(*args, **kwargs)
        out.screened = out.tables["quarantine"].clone()
        built.append(out)
        return out

    monkeypatch.setattr(flows.nightly, "transform", recorded)
    real_read = Lake.read_bar_files
    monkeypatch.setattr(Lake, "read_bar_files", lambda self, files: reads.append(list(files)) or real_read(self, files))
    return built, reads


def full_run_on_a_copy(data: Path, tmp_path: Path, runs) -> Path:
    """A full run as of D2 over a copy of ``data``'s lake (nothing to land: the same bars)."""
    whole = tmp_path / "whole"
    shutil.copytree(data / "lake", whole / "lake")
    run = nightly(source="sample", start=START, as_of=D2, data_dir=str(whole))
    assert run.incremental_from is None
    assert runs[0][-1].lake_read.startswith("read the whole lake"), runs[0][-1].lake_read
    return whole


def assert_same_quarantine(got: pl.DataFrame, want: pl.DataFrame) -> None:
    """The screen's quarantine rows of the bounded run are the full run's, in the same order."""
    assert_frame_equal(got, want, check_exact=True)


def equity(data: Path, n: int = 0) -> str:
    assets = Lake(data / "lake", "sample").read_assets()
    return assets.filter(pl.col("asset_class") == "equity")["symbol"].sort()[n]


def land(data: Path, bars: pl.DataFrame) -> None:
    Lake(data / "lake", "sample").upsert_bars(bars.drop("source", "ingested_at"), datetime.now(UTC))


def stored_bar(data: Path, symbol: str, day: date) -> pl.DataFrame:
    """``symbol``'s first stored bar on or after ``day``."""
    bar = Lake(data / "lake", "sample").read_bars([symbol]).filter(pl.col("date") >= day).head(1)
    assert bar.height == 1
    return bar


def test_the_next_day_reads_only_the_recent_year_files_and_publishes_what_a_full_run_does(tmp_path, runs):
    built, reads = runs
    data = tmp_path / "data"
    nightly(source="sample", start=START, as_of=D0, data_dir=str(data))
    stock = equity(data)
    # Before the next night, in old years: a correction of a stock's bar (2016), a Saturday bar
    # (quarantined by the calendar rule), and a new listing served with its history since 2016
    # (another stock's bars) that holds a 2017 spike its next bar reverts (quarantined by the jump rules).
    corrected = stored_bar(data, stock, date(2016, 5, 6))
    land(data, corrected.with_columns(pl.col("close", "adj_close", "high") * 1.01))
    friday = stored_bar(data, stock, date(2016, 3, 11))
    assert friday["date"][0].weekday() == 4
    land(data, friday.with_columns((pl.col("date") + timedelta(days=1)).alias("date")))
    lake = Lake(data / "lake", "sample")
    listing = lake.read_bars([equity(data, 1)]).filter(pl.col("date") >= date(2016, 1, 4))
    spike = pl.col("date") == stored_bar(data, equity(data, 1), date(2017, 6, 13))["date"][0]
    prices = ["open", "high", "low", "close", "adj_close"]
    land(data, listing.with_columns(pl.lit("NEWCO").alias("symbol"),
                                    *[pl.when(spike).then(pl.col(c) * 10).otherwise(pl.col(c)).alias(c) for c in prices]))
    assets = lake.read_assets()
    lake.upsert_assets(assets.filter(pl.col("symbol") == equity(data, 1)).with_columns(pl.lit("NEWCO").alias("symbol")))
    reads.clear()
    d1 = nightly(source="sample", start=START, as_of=D1, data_dir=str(data))
    # The bound reaches the old correction: read from the year before it.
    assert "nothing landed or withdrawn before 2016-01-01" in built[-1].lake_read, built[-1].lake_read
    assert d1.incremental_from == listing["date"][0]
    assert min(int(Path(p).stem) for p in reads[-1] if "%5E" not in p) == 2015

    reads.clear()
    d2 = nightly(source="sample", start=START, as_of=D2, data_dir=str(data))
    assert d2.incremental_from == D1 + timedelta(days=1)
    bounded = built[-1]
    assert "nothing landed or withdrawn before 2018-01-01" in bounded.lake_read, bounded.lake_read
    [files] = reads
    everything = list((data / "lake" / "bars" / "source=sample").glob("*/*.parquet"))
    # Index assets are read whole (their bars before the history start feed the milestones); every
    # other symbol only from the year before the first one anything landed in.
    index_symbols = set(Lake(data / "lake", "sample").read_assets().filter(pl.col("asset_class") == "index")["symbol"])
    from urllib.parse import unquote

    others = [p for p in files if unquote(Path(p).parent.name) not in index_symbols]
    assert others and {int(Path(p).stem) for p in others} == {2017, 2018}
    assert len(files) < len(everything) / 2
    quarantine = bounded.screened
    assert set(quarantine.filter(pl.col("key").str.contains(f'"{stock}"'))["rule"]) == {"not_a_session"}
    assert set(quarantine.filter(pl.col("key").str.contains('"NEWCO"'))["rule"]) == {
        "close_jump_confirmed", "adj_close_jump_confirmed"}
    assert "NEWCO" in bounded.tables["dim_asset"]["symbol"].to_list()

    whole = full_run_on_a_copy(data, tmp_path, runs)
    assert_same_tables(data, whole)
    assert_same_quarantine(bounded.screened, built[-1].screened)
    # What the next night's run reads the lake by: the listing of this one.
    state = json.loads((data / "current" / "run.json").read_text())
    assert isinstance(state[LAKE_LISTED], int)


def test_a_withdrawn_old_bar_moves_the_bound_back_to_its_year(tmp_path, runs):
    built, _ = runs
    data = tmp_path / "data"
    nightly(source="sample", start=START, as_of=D1, data_dir=str(data))
    stock = equity(data, 1)
    lake = Lake(data / "lake", "sample")
    year = lake.read_bars().filter(pl.col("date").dt.year() == 2016)
    gone = stored_bar(data, stock, date(2016, 7, 1)).select("symbol", "date")
    lake.withdraw_absent(year.join(gone, on=["symbol", "date"], how="anti"), date(2016, 1, 1), date(2016, 12, 31),
                         datetime.now(UTC))
    assert lake.read_withdrawn().height == 1
    nightly(source="sample", start=START, as_of=D2, data_dir=str(data))
    assert "nothing landed or withdrawn before 2016-01-01" in built[-1].lake_read, built[-1].lake_read
    bounded = built[-1]
    whole = full_run_on_a_copy(data, tmp_path, runs)
    assert_same_tables(data, whole)
    assert_same_quarantine(bounded.screened, built[-1].screened)


def test_a_published_run_without_a_lake_listing_makes_the_next_day_read_the_whole_lake(tmp_path, runs):
    built, reads = runs
    data = tmp_path / "data"
    nightly(source="sample", start=START, as_of=D1, data_dir=str(data))
    state_path = data / "current" / "run.json"
    state = json.loads(state_path.read_text())
    del state[LAKE_LISTED]  # as an older version wrote it
    state_path.write_text(json.dumps(state))
    reads.clear()
    run = nightly(source="sample", start=START, as_of=D2, data_dir=str(data))
    assert run.incremental_from == D1 + timedelta(days=1), "still incremental: only the lake read is whole"
    assert built[-1].lake_read.startswith("read the whole lake") and "did not record" in built[-1].lake_read
    assert len(reads[-1]) == len(list((data / "lake" / "bars" / "source=sample").glob("*/*.parquet")))
    bounded = built[-1]
    whole = full_run_on_a_copy(data, tmp_path, runs)
    assert_same_tables(data, whole)
    assert_same_quarantine(bounded.screened, built[-1].screened)


def test_real_files_the_next_day_reads_the_recent_years_and_equals_a_full_run(real_data, tmp_path, runs):
    """Real price files (^RUT since 1987, SPY since 1993, IWM, RTY=F, ^VIX; six coins since 2024-10):
    the second night reads only 2025-2026 of the ETFs, the future and the coins, the indices whole,
    and publishes a full run's tables."""
    built, reads = runs
    folders = [real_data / "alitalbi-storage_data_fy", real_data / "Harthor-marketlab"]
    for folder in folders:
        if not folder.exists():
            pytest.skip(f"{folder} absent (see ../shared/data/real/SOURCES.md)")
    paths = [str(f) for f in folders]
    data = tmp_path / "data"
    first, second = date(2026, 1, 26), date(2026, 1, 28)
    nightly(source="files", paths=paths, as_of=first, data_dir=str(data))
    reads.clear()
    run = nightly(source="files", paths=paths, as_of=second, data_dir=str(data))
    assert run.incremental_from == first + timedelta(days=1)
    bounded = built[-1]
    assert "nothing landed or withdrawn before 2026-01-01" in bounded.lake_read, bounded.lake_read
    # The published bars merged in only from the graph's look-back on (``NarrowRead``): ^RUT's
    # bars from 1987 on (its history before the start) and the coins whole, the others from it.
    assert "published bars from 2024-" in bounded.lake_read, bounded.lake_read
    lake = Lake(data / "lake", "files")
    index = set(lake.read_assets().filter(pl.col("asset_class") == "index")["symbol"])
    from urllib.parse import unquote

    years = {int(Path(p).stem) for p in reads[-1] if unquote(Path(p).parent.name) not in index}
    assert years == {2025, 2026}
    whole = tmp_path / "whole"
    shutil.copytree(data / "lake", whole / "lake")
    full = nightly(source="files", paths=paths, as_of=second, data_dir=str(whole))
    assert full.incremental_from is None and built[-1].lake_read.startswith("read the whole lake")
    assert_same_tables(data, whole)
    # The real files' bad bars (RTY=F closes outside the day's range, a ^VIX bar on Labor Day).
    assert bounded.screened.height >= 4
    assert_same_quarantine(bounded.screened, built[-1].screened)
