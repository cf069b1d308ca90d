from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from flows.sources.base import ASSET_SCHEMA, BAR_SCHEMA
from contracts.vocabulary import DEFAULT_STABLECOINS
from transforms.indices import (
    DOLLAR_VOLUME_MONTHLY,
    EQUAL_WEIGHT_DAILY,
    build_crypto_indices,
    dollar_volume_index,
    equal_weight_index,
    index_members,
)

COINS = ["BTC", "ETH", "SOL", "ADA", "XRP", "DOGE", "AVAX", "DOT", "LINK", "LTC", "BNB"]


def _aegis_crypto(real_data: Path) -> pd.DataFrame:
    frames = []
    for coin in COINS:
        d = pd.read_csv(real_data / "pratham093-AEGIS" / f"{coin}-USD.csv", skiprows=[1])
        frames.append(
            pd.DataFrame(
                {
                    "symbol": coin,
                    "date": pd.to_datetime(d["Date"]).dt.date,
                    "open": d["Open"].astype(float),
                    "high": d["High"].astype(float),
                    "low": d["Low"].astype(float),
                    "close": d["Close"].astype(float),
                    "adj_close": d["Close"].astype(float),
                    "volume": d["Volume"].astype(float),
                }
            )
        )
    bars = pd.concat(frames, ignore_index=True)
    # Make the real data exercise the edge cases: SOL lists mid-history, DOGE
    # misses one candle, AVAX misses a whole week.
    bars = bars[~((bars.symbol == "SOL") & (bars.date < date(2022, 3, 15)))]
    bars = bars[~((bars.symbol == "DOGE") & (bars.date == date(2023, 6, 1)))]
    bars = bars[~((bars.symbol == "AVAX") & (bars.date >= date(2024, 2, 1)) & (bars.date < date(2024, 2, 8)))]
    return bars


def _assets(symbols: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "symbol": symbols,
            "name": symbols,
            "asset_class": ["crypto"] * len(symbols),
            "sector": [None] * len(symbols),
            "industry": [None] * len(symbols),
            "quote_currency": ["USDT"] * len(symbols),
            "source": ["files"] * len(symbols),
            "source_symbol": symbols,
        },
        schema=ASSET_SCHEMA,
    )


def _reference_index(bars: pd.DataFrame, members: list[str]) -> pd.Series:
    """Straight loop: mean of members' day-over-day simple returns, chained from 100."""
    px = {s: dict(zip(g.date, g.adj_close)) for s, g in bars[bars.symbol.isin(members)].groupby("symbol")}
    days = sorted({d for m in px.values() for d in m})
    out: dict[date, float] = {}
    level = None
    for d in days:
        rets = [m[d] / m[d - timedelta(days=1)] - 1 for m in px.values() if d in m and d - timedelta(days=1) in m]
        if not rets:
            continue
        if level is None:
            level = 100.0
            out[d - timedelta(days=1)] = level
        level *= 1 + float(np.mean(rets))
        out[d] = level
    return pd.Series(out)


def test_alts_and_majors_match_reference_on_real_crypto(real_data: Path) -> None:
    bars = _aegis_crypto(real_data)
    result = build_crypto_indices(pl.from_pandas(bars), _assets(COINS + ["USDT", "USDC"]))

    for index_symbol, members in (
        ("ALTS", [c for c in COINS if c not in ("BTC", "ETH")]),
        ("MAJORS", ["BTC", "ETH"]),
    ):
        got = result.bars.filter(pl.col("symbol") == index_symbol).sort("date")
        want = _reference_index(bars, members)
        assert got["date"].to_list() == list(want.index)
        np.testing.assert_allclose(got["close"].to_numpy(), want.to_numpy(), rtol=1e-10)
        for col in ("open", "high", "low", "adj_close"):
            assert got[col].to_list() == got["close"].to_list()
        # Dollar volume: members with a bar that day, close x volume summed.
        m = bars[bars.symbol.isin(members)]
        dv = (m.close * m.volume).groupby(m.date).sum()
        np.testing.assert_allclose(got["volume"].to_numpy(), dv.loc[want.index].to_numpy(), rtol=1e-10)

    alts = result.bars.filter(pl.col("symbol") == "ALTS")
    assert alts["date"].min() == date(2021, 1, 1) and alts["close"][0] == 100.0
    # DOGE's missing candle: the day after the gap it sits out, the index still has a row.
    assert date(2023, 6, 2) in alts["date"].to_list()

    members = result.members
    assert set(members.filter(pl.col("index_symbol") == "ALTS")["member_symbol"]) == set(COINS) - {"BTC", "ETH"}
    assert set(members.filter(pl.col("index_symbol") == "MAJORS")["member_symbol"]) == {"BTC", "ETH"}
    assert set(members.filter(pl.col("index_symbol") != "ALTS_DV")["method"]) == {EQUAL_WEIGHT_DAILY}
    assert set(members.filter(pl.col("index_symbol") == "ALTS_DV")["method"]) == {DOLLAR_VOLUME_MONTHLY}
    assert result.assets.select("symbol", "asset_class", "source", "quote_currency").rows() == [
        ("ALTS", "index_crypto", "derived", "USDT"),
        ("ALTS_DV", "index_crypto", "derived", "USDT"),
        ("MAJORS", "index_crypto", "derived", "USDT"),
    ]


def _reference_dv_index(bars: pd.DataFrame, members: list[str]) -> pd.Series:
    """Loop: at each month end buy members by last month's dollar volume, hold, revalue daily."""
    m = bars[bars.symbol.isin(members)].sort_values("date")
    px = {s: dict(zip(g.date, g.adj_close)) for s, g in m.groupby("symbol")}
    months = sorted({(d.year, d.month) for d in m.date})
    out: dict[date, float] = {}
    level = None
    for prev, cur in zip(months[:-1], months[1:], strict=True):
        in_prev = m[[(d.year, d.month) == prev for d in m.date]]
        dv = (in_prev.close * in_prev.volume).groupby(in_prev.symbol).sum()
        dv = dv[dv > 0]
        if dv.empty:
            continue
        weights = dv / dv.sum()
        base = in_prev.groupby("symbol").adj_close.last()
        if level is None:
            level = 100.0
            out[max(in_prev.date)] = level
        last = dict(base)
        rel = 1.0
        for d in sorted({d for d in m.date if (d.year, d.month) == cur}):
            traded = [s for s in weights.index if d in px[s]]
            for s in traded:
                last[s] = px[s][d]
            rel = sum(weights[s] * last[s] / base[s] for s in weights.index)
            if traded:
                out[d] = level * rel
        level *= rel
    return pd.Series(out)


def test_dollar_volume_index_matches_reference_on_real_crypto(real_data: Path) -> None:
    bars = _aegis_crypto(real_data)
    members = [c for c in COINS if c not in ("BTC", "ETH")]
    got = dollar_volume_index(pl.from_pandas(bars), members, "ALTS_DV").sort("date")
    want = _reference_dv_index(bars, members)
    assert got["date"].to_list() == list(want.index)
    assert got["date"][0] == date(2021, 1, 31) and got["close"][0] == 100.0
    np.testing.assert_allclose(got["close"].to_numpy(), want.to_numpy(), rtol=1e-10)


def test_dollar_volume_index_golden() -> None:
    bars = _bars(
        [
            ("A", date(2024, 1, 30), 10.0, 1.0),
            ("A", date(2024, 1, 31), 10.0, 3.0),  # January dollar volume: A 40, B 20
            ("B", date(2024, 1, 31), 20.0, 1.0),
            ("A", date(2024, 2, 1), 11.0, 1.0),
            ("B", date(2024, 2, 1), 18.0, 1.0),
            ("A", date(2024, 2, 2), 12.0, 1.0),  # B has no candle: valued at 18
            ("B", date(2024, 2, 3), 22.0, 1.0),  # A has no candle: valued at 12
        ]
    )
    got = dollar_volume_index(bars, ["A", "B"], "X")
    assert got["date"].to_list() == [date(2024, 1, 31), date(2024, 2, 1), date(2024, 2, 2), date(2024, 2, 3)]
    wa, wb = 2 / 3, 1 / 3
    want = [100.0, 100 * (wa * 1.1 + wb * 0.9), 100 * (wa * 1.2 + wb * 0.9), 100 * (wa * 1.2 + wb * 1.1)]
    np.testing.assert_allclose(got["close"].to_numpy(), want, rtol=1e-12)


def _bars(rows: list[tuple[str, date, float | None, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "symbol": [r[0] for r in rows],
            "date": [r[1] for r in rows],
            "open": [r[2] for r in rows],
            "high": [r[2] for r in rows],
            "low": [r[2] for r in rows],
            "close": [r[2] for r in rows],
            "adj_close": [r[2] for r in rows],
            "volume": [r[3] for r in rows],
        },
        schema=BAR_SCHEMA,
    )


D = date(2024, 3, 1)


def day(n: int) -> date:
    return D + timedelta(days=n)


def test_listing_inside_history_gap_day_and_base_day() -> None:
    bars = _bars(
        [
            # A alone first: base day is day 0, the day before the first return.
            ("A", day(0), 10.0, 1.0),
            ("A", day(1), 11.0, None),
            ("A", day(2), 12.1, 2.0),
            # B lists on day 2; it contributes from day 3 on.
            ("B", day(2), 50.0, 4.0),
            ("B", day(3), 40.0, 1.0),
            ("A", day(3), 13.31, 1.0),
            # Day 4: nobody has a close: no bar. Day 5: A is back, but not
            # priced on day 4: day 5 is bridged from day 3 (the last bar) with
            # A's move across the gap, never a flat line.
            ("A", day(5), 20.0, 1.0),
            ("A", day(6), 22.0, 1.0),
        ]
    )
    got = equal_weight_index(bars, ["A", "B"], "X").sort("date")
    assert got["date"].to_list() == [day(0), day(1), day(2), day(3), day(5), day(6)]
    l3 = 121.0 * (1 + (0.1 + -0.2) / 2)
    levels = [100.0, 110.0, 121.0, l3, l3 * 20.0 / 13.31, l3 * 20.0 / 13.31 * 1.1]
    np.testing.assert_allclose(got["close"].to_numpy(), levels, rtol=1e-12)
    # Volume: sum of close x volume over members with a bar; null when none reports one.
    assert got["volume"].to_list()[:3] == [10.0, None, 12.1 * 2.0 + 50.0 * 4.0]


def test_no_index_without_two_closes_and_stablecoins_excluded() -> None:
    bars = _bars([("SOL", day(0), 1.0, 1.0), ("USDC", day(0), 1.0, 1.0), ("USDC", day(1), 1.0, 1.0)])
    assets = _assets(["BTC", "SOL", "USDC"])
    members = index_members(assets)
    assert members.filter(pl.col("index_symbol") == "ALTS")["member_symbol"].to_list() == ["SOL"]
    assert "USDC" in DEFAULT_STABLECOINS
    result = build_crypto_indices(bars, assets)
    # SOL has one close only and BTC none: neither index exists.
    assert result.bars.is_empty() and result.assets.is_empty()
    assert result.bars.columns == ["symbol", "date", "open", "high", "low", "close", "adj_close", "volume"]


def test_custom_stablecoins_and_majors_are_parameters() -> None:
    assets = _assets(["BTC", "ETH", "SOL", "XYZ"])
    m = index_members(assets, majors=["BTC"], stablecoins=["XYZ"])
    assert sorted(m.filter(pl.col("index_symbol") == "ALTS")["member_symbol"]) == ["ETH", "SOL"]
    assert m.filter(pl.col("index_symbol") == "MAJORS")["member_symbol"].to_list() == ["BTC"]


@pytest.mark.parametrize("base", [100.0, 1000.0])
def test_base_level(base: float) -> None:
    bars = _bars([("A", day(0), 2.0, None), ("A", day(1), 3.0, None)])
    got = equal_weight_index(bars, ["A"], "X", base_level=base)
    assert got["close"].to_list() == [base, base * 1.5]
