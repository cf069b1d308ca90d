"""The next day merges in the published bars only from the mart graph's look-back on
(``flows.rebuild_plan.NarrowRead``, ``transforms.graph.prices_from``): of every symbol the graph
does not read whole, its first bar and its bars from the look-back on. Every table still equals a
full rebuild's: a stock delisted long before the look-back (no bar in it) stays in dim_asset; a
stock back after a gap longer than the look-back keeps its factor grid and is compared from the
bound; and a first changed date that needs earlier bars (an old fundamentals snapshot) makes the
run read them all."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from contracts.tables import TABLES
from flows.nightly import nightly
from tests.flows.test_bounded_lake_read import (  # noqa: F401  (``runs`` is a fixture)
    D0,
    D1,
    D2,
    START,
    assert_same_quarantine,
    equity,
    full_run_on_a_copy,
    land,
    runs,
)
from tests.flows.test_incremental_run import assert_same_tables
from warehouse.lake import Lake

pytestmark = pytest.mark.usefixtures("prefect_harness")

NARROW = "published bars from"


def _copy_stock(data, source: str, name: str, keep: pl.Expr) -> pl.DataFrame:
    """A new stock ``name``: ``source``'s asset row and those of its stored bars ``keep`` selects."""
    lake = Lake(data / "lake", "sample")
    bars = lake.read_bars([source]).filter(keep).with_columns(pl.lit(name).alias("symbol"))
    land(data, bars)
    assets = lake.read_assets()
    lake.upsert_assets(assets.filter(pl.col("symbol") == source).with_columns(pl.lit(name).alias("symbol")))
    return bars


def test_the_next_day_merges_published_bars_only_from_the_look_back_and_equals_a_full_run(tmp_path, runs):  # noqa: F811
    built, _ = runs
    data = tmp_path / "data"
    nightly(source="sample", start=START, as_of=D0, data_dir=str(data))
    # Before the next night: DEADCO, a stock whose bars stop in 2015 (none in the look-back), and
    # GAPCO, one with bars up to 2015 and in February 2017 that is back after D1 (a gap longer than
    # the rebuild plan's neighbour search: it is compared with the published bars over its whole
    # history, which the narrow read does not hold, so from the bound on).
    dead = _copy_stock(data, equity(data, 2), "DEADCO", pl.col("date") < date(2016, 1, 1))
    gap = _copy_stock(data, equity(data, 3), "GAPCO", (pl.col("date") < date(2016, 1, 1))
                      | pl.col("date").is_between(date(2017, 2, 1), date(2017, 2, 28)))
    assert dead.height and gap.height
    d1 = nightly(source="sample", start=START, as_of=D1, data_dir=str(data))
    assert d1.incremental_from is None, "new symbols in old years: a full run"
    back = Lake(data / "lake", "sample").read_bars([equity(data, 3)]).filter(pl.col("date") == D1)
    assert back.height == 1
    land(data, back.with_columns(pl.lit("GAPCO").alias("symbol"), (pl.col("date") + timedelta(days=3)).alias("date")))
    d2 = nightly(source="sample", start=START, as_of=D2, data_dir=str(data))
    assert d2.incremental_from == D1 + timedelta(days=1)
    narrow = built[-1]
    assert NARROW in narrow.lake_read, narrow.lake_read
    bars_from = date.fromisoformat(narrow.lake_read.split(NARROW)[1].strip(" )")[:10])
    assert bars_from < date(2018, 1, 1)
    # Held through the build: DEADCO's first bar only, GAPCO's first and its new one.
    assert {"DEADCO", "GAPCO"} <= set(narrow.tables["dim_asset"]["symbol"].to_list())

    whole = full_run_on_a_copy(data, tmp_path, runs)
    assert_same_tables(data, whole)
    assert_same_quarantine(narrow.screened, built[-1].screened)


def test_a_first_changed_date_before_the_bounded_bars_reads_every_published_bar(tmp_path, runs, monkeypatch):  # noqa: F811
    built, _ = runs
    data = tmp_path / "data"
    nightly(source="sample", start=START, as_of=D1, data_dir=str(data))
    # A fundamentals snapshot dated in 2016 lands: the run rebuilds from its date, and its factors
    # read the stocks' bars from 252 sessions before it, long before the narrow read's bound.
    lake = Lake(data / "lake", "sample")
    stock = equity(data)
    contract = TABLES["fact_fundamentals"]
    snapshot = pl.DataFrame(
        {"symbol": [stock], "as_of": [date(2016, 6, 15)], "trailing_pe": [15.0], "price_to_book": [2.0]}
    )
    lake.upsert_fundamentals(contract.conform(snapshot.with_columns(
        *[pl.lit(None, dtype=t).alias(c) for c, t in contract.polars_schema.items() if c not in snapshot.columns]
    )))
    import flows.stages.transform as stage

    narrows: list[bool] = []
    real = stage.transform

    def recorded(*args, **kwargs):
        narrows.append(kwargs.get("narrow", True))
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "transform", recorded)
    run = nightly(source="sample", start=START, as_of=D2, data_dir=str(data))
    assert run.incremental_from == date(2016, 6, 15)
    # (The flow's own call is not the module's name: only the stage's call of itself is recorded.)
    assert narrows == [False], "the stage read narrow, then called itself to read every published bar"
    assert NARROW not in built[-1].lake_read, built[-1].lake_read
    bounded = built[-1]
    whole = full_run_on_a_copy(data, tmp_path, runs)
    assert_same_tables(data, whole)
    assert_same_quarantine(bounded.screened, built[-1].screened)
