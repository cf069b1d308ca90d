"""A backfill extends history and never rewinds what analysts see.

Before: a backfill of an older range republished the warehouse as of its end
date, so analysts lost every later day until the next nightly run.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from flows.backfill import backfill, publish_as_of
from flows.nightly import nightly
from reliability_harness import read_table
from warehouse import snapshots

pytestmark = pytest.mark.usefixtures("prefect_harness")

NIGHTLY_START, NIGHTLY_AS_OF = date(2018, 1, 2), date(2019, 7, 31)
BACKFILL_START, BACKFILL_END = date(2016, 1, 4), date(2017, 12, 29)


def test_backfill_of_an_older_range_keeps_the_published_as_of_and_adds_the_history(tmp_path):
    data = tmp_path / "data"
    night = nightly(source="sample", start=NIGHTLY_START, as_of=NIGHTLY_AS_OF, data_dir=str(data))
    assert snapshots.published_state(data)["as_of"] == str(NIGHTLY_AS_OF)
    prices_before = read_table(data / "warehouse.duckdb", "fact_prices", drop=("ingested_at",))

    done = backfill(start=BACKFILL_START, end=BACKFILL_END, source="sample", data_dir=str(data))

    assert done.status == "succeeded" and done.run_id != night.run_id
    assert done.as_of == NIGHTLY_AS_OF
    assert any("extends history; the published as-of stays 2019-07-31" in w for w in done.warnings)
    assert snapshots.current_run(data) == done.run_id
    assert snapshots.published_state(data)["as_of"] == str(NIGHTLY_AS_OF)
    prices = read_table(data / "warehouse.duckdb", "fact_prices", drop=("ingested_at",))
    # Nothing analysts saw is gone ...
    assert prices["date"].max() == prices_before["date"].max() == NIGHTLY_AS_OF
    # Every bar analysts saw is still there with the same close. (A longer
    # history may add a few rows inside the old range: the first days of a
    # series no longer lack the previous session they are aligned against.)
    # Derived indices (ALTS, MAJORS) are rebased to 100 on their first date, which moves back.
    derived = read_table(data / "warehouse.duckdb", "dim_asset").filter(pl.col("source") == "derived")["symbol"]
    assert derived.len() > 0
    observed = prices_before.filter(~pl.col("symbol").is_in(derived.implode()))
    same = observed.join(prices, on=["symbol", "date"], how="left", suffix="_after")
    assert same["close_after"].null_count() == 0
    assert (same["close"] == same["close_after"]).all()
    # ... and the older history is there.
    assert prices["date"].min() <= date(2016, 1, 5)
    assert prices.filter(pl.col("date") <= BACKFILL_END).height > 0
    runs = pl.read_parquet(data / "state" / "pipeline_runs.parquet")
    row = runs.filter(pl.col("run_id") == done.run_id).row(0, named=True)
    assert (row["status"], row["as_of"]) == ("succeeded", NIGHTLY_AS_OF)
    correlations = read_table(data / "warehouse.duckdb", "mart_rolling_correlation")
    assert correlations["date"].max() == NIGHTLY_AS_OF


@pytest.mark.parametrize(
    ("published", "source", "end", "expected"),
    [
        (None, "live", date(2020, 1, 1), date(2020, 1, 1)),  # nothing published yet
        ({"source": "live", "as_of": "2024-05-31"}, "live", date(2020, 1, 1), date(2024, 5, 31)),
        ({"source": "live", "as_of": "2019-05-31"}, "live", date(2020, 1, 1), date(2020, 1, 1)),
        ({"source": "sample", "as_of": "2024-05-31"}, "live", date(2020, 1, 1), date(2020, 1, 1)),
        ({"source": "live"}, "live", date(2020, 1, 1), date(2020, 1, 1)),  # a run.json from before as_of was kept
    ],
    ids=["first", "older-range", "newer-range", "other-source", "no-as-of"],
)
def test_publish_as_of_is_the_later_of_the_published_one_and_the_end(published, source, end, expected):
    assert publish_as_of(published, source, end) == expected
