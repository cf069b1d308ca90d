"""Issue 14 item 1 on the real files: a two-year hole in every coin.

Binance daily candles from ``djienne-3EMA_SRSI_ATR`` end on 2022-10-10 and
those from ``Harthor-marketlab`` start on 2024-10-01. Stitched together, every
coin has no price for 721 days. Before the fix the ALTS index stayed flat
across the hole (929.75 -> 888.41 while its members rose ~111% on average),
its 2024 return read +152% and the allocation mixes booked the whole move as
one day (+217.8% on 2024-10-01).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from flows.policy import load_policy
from transforms.allocation import simulate_mixes
from transforms.indices import build_crypto_indices
from transforms.milestones import mart_market_milestones, mart_period_returns

COINS = ("BTC", "ETH", "ADA", "XRP", "DOGE", "SOL")
ALTS = ("ADA", "DOGE", "SOL", "XRP")
LAST_BEFORE, FIRST_AFTER = date(2022, 10, 10), date(2024, 10, 1)


def _bars(real: Path) -> pl.DataFrame:
    frames = []
    for coin in COINS:
        rows = json.loads((real / "djienne-3EMA_SRSI_ATR" / f"{coin}_USDT-1d.json").read_text())
        old = pl.DataFrame(rows, schema=["ts", "open", "high", "low", "close", "volume"], orient="row").select(
            pl.from_epoch("ts", time_unit="ms").dt.date().alias("date"), "open", "high", "low", "close", "volume"
        )
        new = pl.read_ipc(real / "Harthor-marketlab" / f"{coin}_USDT-1d.feather").select(
            pl.col("date").dt.date(), "open", "high", "low", "close", "volume"
        )
        frames.append(pl.concat([old, new]).with_columns(pl.lit(coin).alias("symbol")))
    return (
        pl.concat(frames)
        .with_columns(pl.col("close").alias("adj_close"))
        .select("symbol", "date", "open", "high", "low", "close", "adj_close", "volume")
        .cast({c: pl.Float64 for c in ("open", "high", "low", "close", "adj_close", "volume")})
        .sort("symbol", "date")
    )


def _assets() -> pl.DataFrame:
    return pl.DataFrame(
        {"symbol": list(COINS), "name": list(COINS), "asset_class": "crypto", "sector": None, "industry": None,
         "quote_currency": "USDT", "source": "files", "source_symbol": [f"{c}_USDT" for c in COINS]},
        schema_overrides={"sector": pl.String, "industry": pl.String},
    )  # fmt: skip


@pytest.fixture(scope="module")
def real(real_data: Path):
    bars = _bars(real_data)
    assert bars.filter(pl.col("date").is_between(date(2022, 10, 11), date(2024, 9, 30))).is_empty()
    return bars, build_crypto_indices(bars, _assets())


def test_index_is_bridged_across_the_hole_not_flat(real):
    bars, idx = real
    alts = idx.bars.filter(pl.col("symbol") == "ALTS").sort("date")
    # No bar inside the hole.
    assert alts.filter(pl.col("date").is_between(date(2022, 10, 11), date(2024, 9, 30))).is_empty()
    before = alts.filter(pl.col("date") == LAST_BEFORE)["close"].item()
    after = alts.filter(pl.col("date") == FIRST_AFTER)["close"].item()
    px = bars.filter(pl.col("symbol").is_in(ALTS)).pivot(on="date", index="symbol", values="close")
    moves = (px[str(FIRST_AFTER)] / px[str(LAST_BEFORE)] - 1.0).to_list()
    bridged = sum(moves) / len(moves)
    assert after / before - 1.0 == pytest.approx(bridged, rel=1e-12)
    assert bridged > 0.5  # the members' ~+111% average, not a flat line
    # The first day back follows from the bridged level (no one-day jump later).
    nxt = alts.filter(pl.col("date") == date(2024, 10, 2))["close"].item()
    assert abs(nxt / after - 1.0) < 0.2


def test_dollar_volume_index_keeps_its_holdings_across_the_hole(real):
    bars, idx = real
    dv = idx.bars.filter(pl.col("symbol") == "ALTS_DV").sort("date")
    before = dv.filter(pl.col("date") <= LAST_BEFORE).tail(1)
    after = dv.filter(pl.col("date") >= FIRST_AFTER).head(1)
    assert before["date"].item() == LAST_BEFORE and after["date"].item() == FIRST_AFTER
    # Buy-and-hold of the October 2022 holdings: the level moves with the
    # members across the hole (ALTS' members about doubled), it is not flat.
    assert after["close"].item() / before["close"].item() - 1.0 > 0.5


@pytest.mark.parametrize("since", [FIRST_AFTER, date(2024, 10, 5), date(2024, 11, 3), date(2022, 10, 10)])
def test_incremental_index_equals_full_across_the_hole(real, since):
    bars, idx = real
    previous = build_crypto_indices(bars.filter(pl.col("date") < since), _assets()).bars
    again = build_crypto_indices(bars, _assets(), previous_bars=previous, since=since)
    assert again.bars.equals(idx.bars)


def test_milestones_and_period_returns_spanning_the_hole_are_null(real):
    bars, idx = real
    prices = pl.concat([bars, idx.bars])
    ms = mart_market_milestones(prices, ["ALTS"], daily_symbols=["ALTS"]).sort("date")
    back = ms.filter(pl.col("date") == FIRST_AFTER).row(0, named=True)
    assert back["gap_days"] == (FIRST_AFTER - LAST_BEFORE).days - 1
    assert back["ret_1d"] == pytest.approx(
        back["close"] / ms.filter(pl.col("date") == LAST_BEFORE)["close"].item() - 1.0, rel=1e-12
    )
    late_2024 = ms.filter(pl.col("date").is_between(FIRST_AFTER, date(2024, 12, 31)))
    assert late_2024["ret_ytd"].null_count() == late_2024.height  # base 2022-10-10 is across the hole
    assert late_2024["ret_1y"].null_count() == late_2024.height
    assert ms.filter(pl.col("date") == date(2025, 3, 31))["ret_ytd"].item() is not None
    assert ms.filter(pl.col("date") == date(2025, 10, 2))["ret_1y"].item() is not None
    low = ms.filter(pl.col("date").is_between(FIRST_AFTER, date(2024, 10, 20)))["low_21d"]
    assert low.null_count() == low.len()
    pr = mart_period_returns(prices, ["ALTS"], benchmark="BTC", daily_symbols=["ALTS", "BTC"])
    y2024 = pr.filter((pl.col("period") == "year") & (pl.col("period_end").dt.year() == 2024)).row(0, named=True)
    assert y2024["spans_gap"] and y2024["return"] is None and y2024["benchmark_return"] is None
    # 2022 stops on 2022-10-10 with the hole after it: not a year's return either.
    y2022 = pr.filter((pl.col("period") == "year") & (pl.col("period_end") == LAST_BEFORE)).row(0, named=True)
    assert y2022["spans_gap"] and y2022["return"] is None
    oct22 = pr.filter((pl.col("period") == "month") & (pl.col("period_end") == LAST_BEFORE)).row(0, named=True)
    assert oct22["spans_gap"]
    sep22 = pr.filter((pl.col("period") == "month") & (pl.col("period_end") == date(2022, 9, 30))).row(0, named=True)
    assert not sep22["spans_gap"] and sep22["return"] is not None
    y2025 = pr.filter((pl.col("period") == "year") & (pl.col("period_end").dt.year() == 2025)).row(0, named=True)
    assert not y2025["spans_gap"] and y2025["return"] is not None


def test_mixes_do_not_book_the_hole_as_one_day(real):
    bars, idx = real
    # The default policy (regime_tilt is skipped: no correlations given).
    res = simulate_mixes(load_policy(), pl.concat([bars, idx.bars]))
    perf = res.performance
    mixes = set(perf["mix"].unique())
    assert {"policy_mid", "inverse_vol", "btc_only", "btc_eth_60_40"} <= mixes
    hole = perf.filter(pl.col("date").is_between(date(2022, 10, 11), date(2024, 9, 30)))
    assert hole.height > 0 and hole["daily_return"].null_count() == hole.height
    back = perf.filter(pl.col("date") == FIRST_AFTER)
    assert back["spans_gap"].all()
    # Every other return is one day's, and none of those is a two-year move.
    one_day = perf.filter(~pl.col("spans_gap"))["daily_return"].drop_nulls()
    assert one_day.abs().max() < 0.6
    # One bridged day per mix, the first day back: none silently anywhere else.
    assert perf.filter(pl.col("spans_gap")).height == len(mixes)
