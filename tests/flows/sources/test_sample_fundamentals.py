"""Synthetic fundamentals: contract, determinism, end-independence, plausibility."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from flows.sources.base import FUNDAMENTALS_SCHEMA
from flows.sources.sample_fundamentals import sample_fundamentals


def weekdays(start: date, end: date) -> list[date]:
    out, d = [], start
    while d <= end:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return out


SESSIONS = weekdays(date(2016, 1, 1), date(2021, 12, 31))
SECTORS = ["Financials", "Information Technology", "Energy", "Health Care", "Utilities", None]
SYMBOLS = [f"Q{i:02d}" for i in range(36)]
# Q05 lists mid-month (a Wednesday), Q07 later.
LISTING = {"Q05": date(2017, 3, 15), "Q07": date(2019, 11, 4)}


def make_stocks() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "symbol": SYMBOLS + ["IWM"],
            "name": SYMBOLS + ["iShares Russell 2000 ETF"],
            "asset_class": ["equity"] * len(SYMBOLS) + ["etf"],
            "sector": [SECTORS[i % len(SECTORS)] for i in range(len(SYMBOLS))] + ["ETF"],
            "industry": "Misc",
        },
        schema_overrides={"sector": pl.String},
    )


def make_prices(seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for sym in SYMBOLS + ["IWM"]:
        ds = [d for d in SESSIONS if d >= LISTING.get(sym, SESSIONS[0])]
        closes = 40 * np.exp(np.cumsum(rng.normal(0.0002, 0.02, len(ds))))
        frames.append(pl.DataFrame({"symbol": sym, "date": ds, "adj_close": closes}))
    return pl.concat(frames)


@pytest.fixture(scope="module")
def full():
    return sample_fundamentals(make_stocks(), make_prices(), 42, SESSIONS[0], SESSIONS[-1])


def test_schema_and_rows(full):
    assert full.schema == pl.Schema(FUNDAMENTALS_SCHEMA)
    assert set(full["symbol"].unique()) == set(SYMBOLS)  # the ETF is not a stock
    # One snapshot per stock and month, sorted, on weekdays, inside [start, end].
    assert full.select(pl.struct("symbol", pl.col("as_of").dt.truncate("1mo")).is_unique().all()).item()
    assert full.equals(full.sort("symbol", "as_of"))
    assert full["as_of"].dt.weekday().max() <= 5
    assert full["as_of"].min() >= SESSIONS[0] and full["as_of"].max() <= SESSIONS[-1]
    per_symbol = full.group_by("symbol").agg(pl.len(), pl.col("as_of").min().alias("first"))
    months = (2021 - 2016 + 1) * 12
    assert per_symbol.filter(~pl.col("symbol").is_in(list(LISTING)))["len"].unique().to_list() == [months]
    first = dict(zip(per_symbol["symbol"], per_symbol["first"], strict=True))
    assert first["Q05"] == date(2017, 3, 15)  # listing day, not the 1st of the month
    assert first["Q07"] == date(2019, 11, 4)
    assert first["Q00"] == date(2016, 1, 1)
    # Sector and industry come from the stocks frame.
    q1 = full.filter(pl.col("symbol") == "Q01")
    assert q1["sector"].unique().to_list() == ["Information Technology"]
    assert q1["industry"].unique().to_list() == ["Misc"]


def test_value_ranges(full):
    rec = full["recommendation_mean"].drop_nulls()
    assert rec.min() >= 1.0 and rec.max() <= 5.0
    short = full["short_percent_of_float"].drop_nulls()
    assert short.min() >= 0.005 and short.max() <= 0.25
    assert full["number_of_analyst_opinions"].drop_nulls().min() >= 0
    assert full["debt_to_equity"].drop_nulls().min() > 0
    assert full["price_to_book"].drop_nulls().min() > 0
    gm, pm = full["gross_margin"], full["profit_margin"]
    both = full.drop_nulls(["gross_margin", "profit_margin"])
    assert (both["gross_margin"] >= both["profit_margin"]).all()
    assert gm.drop_nulls().max() <= 0.95 and pm.drop_nulls().max() < 1
    # ~3% missing per field, never whole rows.
    for col in ("trailing_pe", "price_to_book", "return_on_equity", "recommendation_mean", "short_percent_of_float"):
        rate = full[col].null_count() / full.height
        assert 0.01 < rate < 0.06, (col, rate)
    # Occasional negative P/E, but rare.
    neg = (full["trailing_pe"].drop_nulls() < 0).mean()
    assert 0.0 < neg < 0.10


def test_sector_typical_levels(full):
    med = dict(
        full.group_by("sector")
        .agg(pl.col("trailing_pe").filter(pl.col("trailing_pe") > 0).median().alias("pe"))
        .iter_rows()
    )
    pb = dict(full.group_by("sector").agg(pl.col("price_to_book").median()).iter_rows())
    assert 0.8 < pb["Financials"] < 1.8
    assert 20 < med["Information Technology"] < 42
    assert med["Information Technology"] > med["Financials"]
    assert pb["Information Technology"] > 2 * pb["Financials"]


def test_persistent_per_stock(full):
    # AR(1) around a stock level: month-to-month changes are small vs cross-section.
    roe = full.drop_nulls("return_on_equity").sort("symbol", "as_of")
    step = roe.select(pl.col("return_on_equity").diff().over("symbol").abs().median()).item()
    spread = roe.group_by("as_of").agg(pl.col("return_on_equity").std())["return_on_equity"].median()
    assert step < spread / 2


def test_deterministic_and_seeded(full):
    again = sample_fundamentals(make_stocks(), make_prices(), 42, SESSIONS[0], SESSIONS[-1])
    assert again.equals(full)
    other = sample_fundamentals(make_stocks(), make_prices(), 43, SESSIONS[0], SESSIONS[-1])
    assert not other.equals(full)


def test_history_does_not_depend_on_end_or_other_symbols(full):
    cut = date(2019, 6, 30)
    prices = make_prices().filter(pl.col("date") <= cut)
    short = sample_fundamentals(make_stocks(), prices, 42, SESSIONS[0], cut)
    assert short.height > 0
    assert short.equals(full.filter(pl.col("as_of") <= cut))
    # A later start only trims; a subset of stocks gets the same values.
    late = sample_fundamentals(make_stocks(), make_prices(), 42, date(2020, 1, 1), SESSIONS[-1])
    assert late.equals(full.filter(pl.col("as_of") >= date(2020, 1, 1)))
    few = sample_fundamentals(make_stocks().filter(pl.col("symbol").is_in(["Q03", "Q05"])), make_prices(), 42,
                              SESSIONS[0], SESSIONS[-1])  # fmt: skip
    assert few.equals(full.filter(pl.col("symbol").is_in(["Q03", "Q05"])))


def test_pe_follows_price():
    prices = make_prices()
    # Same draws, but Q02 rallies 60% over the last two months.
    bump = pl.when((pl.col("symbol") == "Q02") & (pl.col("date") >= date(2021, 11, 1))).then(1.6).otherwise(1.0)
    rallied = prices.with_columns(pl.col("adj_close") * bump)
    base = sample_fundamentals(make_stocks(), prices, 42, SESSIONS[0], SESSIONS[-1])
    up = sample_fundamentals(make_stocks(), rallied, 42, SESSIONS[0], SESSIONS[-1])
    key = (pl.col("symbol") == "Q02") & (pl.col("as_of") == date(2021, 12, 1))
    pe0, pe1 = base.filter(key)["trailing_pe"].item(), up.filter(key)["trailing_pe"].item()
    if pe0 is not None:
        assert abs(pe1) > abs(pe0) * 1.2
    # Everything before the rally is untouched.
    before = pl.col("as_of") < date(2021, 11, 1)
    assert base.filter(before).equals(up.filter(before))


def test_snapshot_reads_no_later_price():
    # Q02 has no bar on the 2021-11-01 snapshot day; a rally from the next day
    # on must not reach that snapshot (it reads the last bar on or before as_of).
    as_of = date(2021, 11, 1)
    prices = make_prices().filter(~((pl.col("symbol") == "Q02") & (pl.col("date") == as_of)))
    bump = pl.when((pl.col("symbol") == "Q02") & (pl.col("date") > as_of)).then(3.0).otherwise(1.0)
    base = sample_fundamentals(make_stocks(), prices, 42, SESSIONS[0], SESSIONS[-1])
    up = sample_fundamentals(make_stocks(), prices.with_columns(pl.col("adj_close") * bump), 42, SESSIONS[0],
                             SESSIONS[-1])  # fmt: skip
    key = pl.col("as_of") <= as_of
    assert base.filter(key).equals(up.filter(key))
    assert not base.equals(up)


def test_stocks_differ_within_a_sector(full):
    a = full.filter(pl.col("symbol") == "Q00")["return_on_equity"]
    b = full.filter(pl.col("symbol") == "Q06")["return_on_equity"]  # same sector, same listing
    assert not a.equals(b)


def test_empty_inputs():
    empty = sample_fundamentals(make_stocks(), make_prices().clear(), 1, SESSIONS[0], SESSIONS[-1])
    assert empty.is_empty() and empty.schema == pl.Schema(FUNDAMENTALS_SCHEMA)
