"""The full run's transform takes the bars its land just wrote into an empty lake
(``Lake.hand_over``) instead of reading every year file back, and publishes exactly what the
read would: every table and the screen's quarantine, bit for bit. Whenever the lake may hold
anything else, it reads."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from flows.nightly import nightly
from tests.flows.test_bounded_lake_read import D2, START, assert_same_quarantine, full_run_on_a_copy, runs  # noqa: F401
from tests.flows.test_incremental_run import assert_same_tables
from warehouse.lake import Lake

pytestmark = pytest.mark.usefixtures("prefect_harness")

HANDED_OVER = "as the land wrote them: not read back"


def test_the_full_run_takes_the_landed_bars_and_publishes_what_the_read_gives(tmp_path, runs, monkeypatch):  # noqa: F811
    built, reads = runs
    data = tmp_path / "data"
    taken = []
    real = Lake.hand_over
    monkeypatch.setattr(Lake, "hand_over", lambda self, files: taken.append(real(self, files)) or taken[-1])
    run = nightly(source="sample", start=START, as_of=D2, data_dir=str(data))
    assert run.incremental_from is None
    assert HANDED_OVER in built[-1].lake_read, built[-1].lake_read
    assert reads == [], "the whole lake is not read back"
    [frame] = taken
    assert frame is not None and frame.height > 0
    taken.clear()
    handed = built[-1]

    # The same bars in a copied lake: the land writes nothing, so the transform reads every file.
    whole = full_run_on_a_copy(data, tmp_path, runs)
    assert HANDED_OVER not in built[-1].lake_read and taken == [None]
    assert len(reads) == 1 and len(reads[0]) == len(list((data / "lake" / "bars" / "source=sample").glob("*/*.parquet")))
    assert_same_tables(data, whole)
    assert_same_quarantine(handed.screened, built[-1].screened)
    # What the first run handed over is what its lake holds now.
    lake = Lake(data / "lake", "sample")
    stored = lake.read_bar_files(lake.bar_files()["path"].to_list())
    assert frame.equals(stored) and frame.schema == stored.schema


def test_a_full_run_over_a_lake_with_other_files_reads_it(tmp_path, runs):  # noqa: F811
    """A year file the input does not cover (here: a symbol no longer in the universe) stays in the
    lake and in the read: the land's bars are not the lake, so nothing is handed over."""
    built, reads = runs
    data = tmp_path / "data"
    lake = Lake(data / "lake", "sample")
    bars = pl.DataFrame(
        {"symbol": ["GONE"], "date": [START], "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0],
         "adj_close": [1.0], "volume": [1.0], "origin": ["by hand"]},
    )
    lake.upsert_bars(bars, datetime(2014, 1, 3, tzinfo=UTC))
    nightly(source="sample", start=START, as_of=D2, data_dir=str(data))
    assert HANDED_OVER not in built[-1].lake_read, built[-1].lake_read
    [files] = reads
    assert any("/GONE/" in p for p in files)
