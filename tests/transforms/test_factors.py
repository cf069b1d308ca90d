"""Alpha Score transforms: hand-built cases, and against the oracle.

``tests/oracles/alpha.py`` re-derives the scores from docs/alpha_score.md with
plain loops (it shares no code or Polars idiom with transforms/factors.py);
the cases below pin what the doc promises on small, hand-checked inputs.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import polars as pl
import pytest

from contracts.tables import MART_FACTOR_SCORES
from flows.sources.sample_fundamentals import sample_fundamentals
from tests.oracles import alpha as oracle
from transforms.factors import (
    DEFAULT_MIN_CROSS_SECTION,
    FAMILIES,
    METRICS,
    LabelThresholds,
    _score_rows,
    build_factor_marts,
)

EQUAL = dict.fromkeys(FAMILIES, 1.0)


def assert_matches_reference(prices, assets, sessions, fund, weights=None):
    # The golden panels are a handful of stocks: the formulas are checked here
    # without the minimum cross-section (test_thin_cross_section_is_not_scored).
    got = build_factor_marts(
        prices, assets, pl.Series(sessions, dtype=pl.Date), fund, weights=weights, min_cross_section=1
    )
    oracle.assert_equal(got, oracle.alpha_score(prices, assets, sessions, fund, weights=weights, min_cross_section=1))
    return got


def scores_of(sub_scores: pl.DataFrame, assets: pl.DataFrame, *, weights=None, thresholds=LabelThresholds()):
    """mart_factor_scores rows from given sub-scores: the scoring step of build_factor_marts alone."""
    names = assets.filter(pl.col("asset_class") == "equity").select("symbol", "name").unique("symbol")
    frame = sub_scores.sort("date", "symbol").with_columns(
        pl.struct("symbol", "sector").rank("dense").cast(pl.Int64).alias("__stock")
    )
    return _score_rows(frame, names, weights, thresholds, headline_key="__stock")


# ---------------------------------------------------------------- golden frame


def weekdays(start: date, n: int) -> list[date]:
    out, d = [], start
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return out


SESSIONS = weekdays(date(2020, 1, 1), 300)


def _bars(symbol: str, dates: list[date], closes) -> list[dict]:
    return [{"symbol": symbol, "date": d, "adj_close": float(c)} for d, c in zip(dates, closes, strict=True)]


def _snap(symbol, as_of, **kw):
    base = dict.fromkeys(
        [
            "trailing_pe",
            "price_to_book",
            "return_on_equity",
            "profit_margin",
            "gross_margin",
            "debt_to_equity",
            "recommendation_mean",
            "short_percent_of_float",
        ]
    )
    base.update(kw)
    return {"symbol": symbol, "as_of": as_of, "sector": None, "industry": None, "number_of_analyst_opinions": 5, **base}


@pytest.fixture(scope="module")
def golden():
    rng = np.random.default_rng(11)
    n = len(SESSIONS)
    tech = [f"T{i}" for i in range(1, 7)]
    energy = ["E1", "E2", "E3"]
    rows = []
    for sym in tech + energy:
        rows += _bars(sym, SESSIONS, 50 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, n))))
    # T6 duplicates T5's path exactly: tied momentum.
    t5 = [r["adj_close"] for r in rows if r["symbol"] == "T5"]
    rows = [r for r in rows if r["symbol"] != "T6"] + _bars("T6", SESSIONS, t5)
    # L1 lists mid-history (session 120): momentum null until it has 252 sessions.
    rows += _bars("L1", SESSIONS[120:], 20 * np.exp(np.cumsum(rng.normal(0, 0.02, n - 120))))
    # E2 has a gap: no bars for sessions 20..40, so lags landing there are null.
    rows = [r for r in rows if not (r["symbol"] == "E2" and SESSIONS[20] <= r["date"] <= SESSIONS[40])]
    # An ETF and an off-calendar bar must both be ignored.
    rows += _bars("SPY", SESSIONS, np.linspace(100, 200, n))
    rows.append({"symbol": "T1", "date": date(2020, 1, 4), "adj_close": 1e9})  # a Saturday
    prices = pl.DataFrame(rows).with_columns(
        open=pl.col("adj_close"), high=pl.col("adj_close"), low=pl.col("adj_close"), close=pl.col("adj_close"), volume=1.0
    )

    assets = pl.DataFrame(
        [
            {"symbol": s, "name": f"{s} Corp", "asset_class": "equity", "sector": "Information Technology"}
            for s in tech + ["L1"]
        ]
        + [{"symbol": s, "name": f"{s} Energy Inc.", "asset_class": "equity", "sector": "Energy"} for s in energy]
        + [{"symbol": "SPY", "name": "SPDR S&P 500 ETF Trust", "asset_class": "etf", "sector": "ETF"}]
    )

    d0, d_late = SESSIONS[0], SESSIONS[270]
    snaps = []
    for i, s in enumerate(tech):
        snaps.append(
            _snap(
                s,
                d0,
                trailing_pe=[25.0, -10.0, 0.0, 25.0, 40.0, 15.0][i],  # negative, zero, tie
                price_to_book=[5.0, 6.0, 7.0, 5.0, None, 3.0][i],  # missing
                return_on_equity=[0.2, 0.2, 0.3, None, None, 0.1][i],  # only 4 with ROE -> 'all'
                profit_margin=[0.1, 0.2, 0.3, 0.1, 0.05, 0.15][i],
                debt_to_equity=[1.0, 0.5, 0.5, 2.0, 1.5, 0.2][i],
                recommendation_mean=[1.5, 2.0, 2.5, 3.0, 1.5, 2.2][i],
                short_percent_of_float=[0.02, 0.03, 0.05, 0.02, 0.1, 0.01][i],
            )
        )
    # A later T1 snapshot (as_of after most sessions) with a very different P/E,
    # and one dated after the last session: neither may leak backwards.
    snaps.append(_snap("T1", d_late, trailing_pe=5.0, price_to_book=5.0, return_on_equity=0.2, profit_margin=0.1))
    snaps.append(_snap("T2", SESSIONS[-1] + timedelta(days=3), trailing_pe=1.0, return_on_equity=9.0))
    # L1: fundamentals only from session 150.
    snaps.append(_snap("L1", SESSIONS[150], trailing_pe=30.0, price_to_book=4.0, return_on_equity=0.25))
    # Energy: E1, E2 have snapshots, E3 none at all (momentum-only).
    snaps.append(_snap("E1", d0, trailing_pe=10.0, price_to_book=1.5, debt_to_equity=0.4, recommendation_mean=2.0))
    snaps.append(_snap("E2", d0, trailing_pe=12.0, price_to_book=1.2, debt_to_equity=0.4, recommendation_mean=3.0))
    fund = pl.DataFrame(snaps, schema_overrides={"number_of_analyst_opinions": pl.Int64}).with_columns(
        pl.col(
            "trailing_pe",
            "price_to_book",
            "return_on_equity",
            "profit_margin",
            "gross_margin",
            "debt_to_equity",
            "recommendation_mean",
            "short_percent_of_float",
        ).cast(pl.Float64)
    )
    return prices, assets, fund


def test_golden_matches_reference(golden):
    prices, assets, fund = golden
    assert_matches_reference(prices, assets, SESSIONS, fund)


def test_golden_matches_reference_with_weights(golden):
    prices, assets, fund = golden
    assert_matches_reference(prices, assets, SESSIONS, fund, weights={"momentum": 3.0, "value": 1.0, "quality": 0.5})


def test_golden_specific_cases(golden):
    prices, assets, fund = golden
    scores, metrics = build_factor_marts(prices, assets, pl.Series(SESSIONS), fund, min_cross_section=1)

    def metric(d, sym, m):
        rows = metrics.filter((pl.col("date") == d) & (pl.col("symbol") == sym) & (pl.col("metric") == m))
        return rows.to_dicts()[0] if rows.height else None

    d = SESSIONS[260]
    # Not an equity: never scored. Off-calendar bar: ignored (T1 momentum stays sane).
    assert scores.filter(pl.col("symbol") == "SPY").is_empty()
    assert abs(metric(d, "T1", "momentum_12_1")["value"]) < 5
    # Negative P/E gives a negative earnings yield (the lowest); zero P/E gives none.
    assert metric(d, "T2", "earnings_yield")["value"] == pytest.approx(-0.1)
    assert metric(d, "T3", "earnings_yield") is None
    # Tech has 6 names (+L1) with earnings yield -> sector scope; T1 and T4 tie.
    ey = {s: metric(d, s, "earnings_yield") for s in ("T1", "T4", "T2")}
    assert ey["T1"]["rank_scope"] == "sector"
    assert ey["T1"]["rank_pct"] == ey["T4"]["rank_pct"]
    assert ey["T2"]["rank_pct"] == pytest.approx(100 * 1 / 6)  # T1,T2,T4,T5,T6,L1
    # Only 5 Tech names have ROE (T1,T2,T3,T6,L1) -> still sector scope.
    assert metric(d, "T1", "return_on_equity")["rank_scope"] == "sector"
    # Before L1's first snapshot only 4 Tech names have ROE -> all-stock scope.
    assert metric(SESSIONS[140], "T1", "return_on_equity")["rank_scope"] == "all"
    # Energy has 3 names: always ranked across all stocks.
    assert metric(d, "E1", "book_to_price")["rank_scope"] == "all"
    # Lower is better: T6 has the lowest debt-to-equity in Tech -> top rank.
    assert metric(d, "T6", "debt_to_equity")["rank_pct"] == 100.0
    # Point in time: T1's later snapshot (P/E 5) is used only from its as_of on.
    assert metric(SESSIONS[269], "T1", "earnings_yield")["value"] == pytest.approx(1 / 25)
    assert metric(SESSIONS[270], "T1", "earnings_yield")["value"] == pytest.approx(1 / 5)
    # T2's snapshot dated after the last session is never used.
    assert metric(SESSIONS[-1], "T2", "earnings_yield")["value"] == pytest.approx(-0.1)
    assert metric(SESSIONS[-1], "T2", "return_on_equity")["value"] == pytest.approx(0.2)
    # Mid-history listing: no momentum before 252 sessions of its own history.
    assert metric(SESSIONS[-1], "L1", "momentum_12_1") is None
    assert metric(SESSIONS[120 + 126], "L1", "momentum_6_1") is not None
    assert metric(SESSIONS[120 + 125], "L1", "momentum_6_1") is None
    # L1 has no sub-score at all before its first snapshot and before 126 sessions.
    l1 = scores.filter(pl.col("symbol") == "L1")
    assert l1["date"].min() == SESSIONS[150]
    # E3 has no fundamentals: momentum only, coverage 1.
    e3 = scores.filter((pl.col("symbol") == "E3") & (pl.col("date") == d)).to_dicts()[0]
    assert e3["coverage"] == 1 and e3["value_score"] is None and e3["momentum_score"] is not None
    # Stocks appear only from the session where some sub-score exists (E3: 6-1 momentum).
    assert scores.filter(pl.col("symbol") == "E3")["date"].min() == SESSIONS[126]
    # Tied momentum paths tie in rank.
    t5 = metric(d, "T5", "momentum_12_1")
    t6 = metric(d, "T6", "momentum_12_1")
    assert t5["rank_pct"] == t6["rank_pct"] and t5["value"] == t6["value"]


def test_fundamentals_tolerance_drops_stale_snapshots(golden):
    prices, assets, fund = golden
    _, metrics = build_factor_marts(
        prices, assets, pl.Series(SESSIONS), fund, fundamentals_tolerance=timedelta(days=60), min_cross_section=1
    )
    ey = metrics.filter((pl.col("date") == SESSIONS[275]) & (pl.col("metric") == "earnings_yield"))
    at = dict(zip(ey["symbol"], ey["value"], strict=True))
    assert at["T1"] == pytest.approx(1 / 5)  # snapshot 5 sessions old
    assert "T2" not in at  # only a ~1-year-old snapshot
    assert set(at) == {"T1"}  # every other snapshot is older than 60 days there


def test_gap_nulls_lags_instead_of_stretching(golden):
    prices, assets, fund = golden
    # E2 has no bars on sessions 20..40: it keeps its rows there (its fundamentals
    # still count), and a lag landing in the gap is missing, not a longer window.
    _, metrics = build_factor_marts(prices, assets, pl.Series(SESSIONS), fund, min_cross_section=1)
    e2 = {(r["date"], r["metric"]): r["value"] for r in metrics.filter(pl.col("symbol") == "E2").to_dicts()}
    assert e2[(SESSIONS[30], "earnings_yield")] == pytest.approx(1 / 12)
    assert (SESSIONS[30 + 126], "momentum_6_1") not in e2
    px = dict(prices.filter(pl.col("symbol") == "E2").select("date", "adj_close").iter_rows())
    t = 41 + 126  # the base is the first bar after the gap, 126 sessions (not rows) back
    assert e2[(SESSIONS[t], "momentum_6_1")] == px[SESSIONS[t - 21]] / px[SESSIONS[41]] - 1


# ---------------------------------------------------------------- scores/text


def _panel(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "date": pl.Date,
            "symbol": pl.String,
            "sector": pl.String,
            "momentum_score": pl.Float64,
            "value_score": pl.Float64,
            "quality_score": pl.Float64,
            "sentiment_score": pl.Float64,
        },
    )


ASSETS = pl.DataFrame(
    {
        "symbol": ["AAPL", "XOM", "JPM", "NONE", "MYST"],
        "name": ["Apple Inc.", "Exxon Mobil Corporation", "JPMorgan Chase & Co.", "Nothing Ltd", None],
        "asset_class": ["equity"] * 5,
        "sector": ["Information Technology", "Energy", "Financials", "Utilities", None],
    }
)


def test_summary_and_headline_strings():
    d = date(2024, 5, 1)
    panel = _panel(
        [
            # 80, 74.5 -> 75 (half-up, Strong), 39.5 -> 40 (Moderate), 10 -> mean 51
            {"date": d, "symbol": "AAPL", "sector": "Information Technology", "momentum_score": 80.0,
             "value_score": 74.5, "quality_score": 39.5, "sentiment_score": 10.0},
            {"date": d, "symbol": "XOM", "sector": "Energy", "momentum_score": 90.0},
            {"date": d, "symbol": "JPM", "sector": "Financials", "momentum_score": 90.0, "value_score": 20.0},
            {"date": d, "symbol": "NONE", "sector": "Utilities"},
            {"date": d, "symbol": "MYST", "sector": None, "quality_score": 74.5},
        ]
    )  # fmt: skip
    # Equal weights keep the arithmetic in the comments simple.
    out = {r["symbol"]: r for r in scores_of(panel, ASSETS, weights=EQUAL).to_dicts()}
    assert set(out) == {"AAPL", "XOM", "JPM", "MYST"}  # no sub-score -> no row
    assert out["AAPL"]["alpha_score"] == 51 and out["AAPL"]["coverage"] == 4
    assert out["AAPL"]["summary"] == (
        "Alpha Score of 51 reflects moderate overall profile with strong momentum, strong value, "
        "moderate quality, weak sentiment."
    )
    assert out["AAPL"]["headline"] == (
        "Apple Inc. (AAPL) maintains an Alpha Score of 51/100, categorized as Moderate within the "
        "Information Technology sector."
    )
    assert out["XOM"]["summary"] == "Alpha Score of 90 reflects strong overall profile with strong momentum."
    assert out["XOM"]["coverage"] == 1
    assert out["JPM"]["summary"] == "Alpha Score of 55 reflects moderate overall profile with strong momentum, weak value."
    assert out["JPM"]["headline"] == (
        "JPMorgan Chase & Co. (JPM) maintains an Alpha Score of 55/100, categorized as Moderate within the "
        "Financials sector."
    )
    assert out["MYST"]["alpha_score"] == 75 and out["MYST"]["alpha_label"] == "Strong"
    assert out["MYST"]["headline"] == (
        "MYST (MYST) maintains an Alpha Score of 75/100, categorized as Strong within the Unclassified sector."
    )
    assert out["MYST"]["summary"] == "Alpha Score of 75 reflects strong overall profile with strong quality."


def test_every_row_gets_its_own_stocks_headline():
    # The name is joined to one row per (stock, Alpha Score), not to every row:
    # every row must still read its own stock's name, sector and score (names
    # shared by two symbols, a stock without a name, stocks listed but unscored).
    rng = np.random.default_rng(3)
    symbols = [f"S{i:02d}" for i in range(12)]
    names = ["Twin Corp", "Twin Corp", None, *[f"Company {i}" for i in range(3, 12)]]
    sectors = ["Energy", "Financials", None, *(["Utilities", "Energy", "Materials"] * 3)]
    assets = pl.DataFrame(
        {
            "symbol": [*symbols, "UNSCORED"],
            "name": [*names, "Never Seen"],
            "asset_class": "equity",
            "sector": [*sectors, "Energy"],
        }
    )
    rows = []
    for k in range(40):
        for i, sym in enumerate(symbols):
            m = rng.choice([None, float(rng.integers(0, 101))], p=[0.1, 0.9])
            q = rng.choice([None, float(rng.integers(0, 101))], p=[0.5, 0.5])
            rows.append({"date": date(2024, 1, 1) + timedelta(days=k), "symbol": sym, "sector": sectors[i],
                         "momentum_score": m, "quality_score": q})  # fmt: skip
    out = scores_of(_panel(rows), assets, weights=EQUAL)
    assert out.height > 300
    name_of = dict(zip(symbols, names, strict=True))
    for r in out.to_dicts():
        want = (
            f"{name_of[r['symbol']] or r['symbol']} ({r['symbol']}) maintains an Alpha Score of "
            f"{r['alpha_score']}/100, "
            f"categorized as {r['alpha_label']} within the {r['sector'] or 'Unclassified'} sector."
        )
        assert r["headline"] == want


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ((74.5,), 75),  # half-up, not banker's (which gives 74)
        ((73.5,), 74),
        ((74.49,), 74),
        ((39.5,), 40),
        ((0.1 + 0.2 + 74.2, ), 75),  # 74.5 with float noise
        ((74.4, 74.6), 75),
        ((100.0, 0.0), 50),
        ((100.0,), 100),
    ],
)
def test_alpha_rounding_half_up(scores, expected):
    cols = ["momentum_score", "value_score"]
    row = {"date": date(2024, 1, 2), "symbol": "AAPL", "sector": "Information Technology"}
    row.update(dict(zip(cols, scores, strict=False)))
    out = scores_of(_panel([row]), ASSETS, weights=EQUAL)
    assert out["alpha_score"].item() == expected


def test_labels_thresholds_and_weights():
    d = date(2024, 1, 2)
    panel = _panel(
        [{"date": d, "symbol": "AAPL", "sector": "X", "momentum_score": 80.0, "value_score": 20.0, "quality_score": None,
          "sentiment_score": 60.0}]
    )  # fmt: skip
    # Default weights 30/25/25/20, quality's 25 spread over the rest:
    # (30*80 + 25*20 + 20*60) / 75 = 54.67 -> 55 Moderate
    r = scores_of(panel, ASSETS).to_dicts()[0]
    assert (r["alpha_score"], r["alpha_label"], r["coverage"]) == (55, "Moderate", 3)
    r = scores_of(panel, ASSETS, weights=dict.fromkeys(FAMILIES, 1.0)).to_dicts()[0]
    assert r["alpha_score"] == 53  # equal weights: (80 + 20 + 60) / 3
    # Weights renormalise over available families: quality's weight drops out.
    r = scores_of(panel, ASSETS, weights={"momentum": 2, "value": 1, "quality": 5, "sentiment": 1}).to_dicts()[0]
    assert r["alpha_score"] == round((2 * 80 + 20 + 60) / 4)
    # Custom thresholds change labels, including sub-score labels in the summary.
    r = scores_of(panel, ASSETS, thresholds=LabelThresholds(strong=50, moderate=20)).to_dicts()[0]
    assert r["alpha_label"] == "Strong"
    assert r["summary"].endswith("with strong momentum, moderate value, strong sentiment.")
    with pytest.raises(ValueError):
        LabelThresholds(strong=30, moderate=40)
    with pytest.raises(ValueError):
        scores_of(panel, ASSETS, weights={"momentum": -1})
    with pytest.raises(ValueError):
        scores_of(panel, ASSETS, weights={"size": 1})


def test_metric_declarations_are_consistent():
    declared = {m.name: (m.family, m.higher_is_better) for m in METRICS}
    assert declared == {m.name: (m.family, m.higher_is_better) for m in oracle.METRICS}
    assert {m.family for m in METRICS} == set(FAMILIES)


def test_no_fundamentals_gives_momentum_only(golden):
    prices, assets, _ = golden
    scores, metrics = build_factor_marts(prices, assets, pl.Series(SESSIONS), None, min_cross_section=1)
    assert set(metrics["metric"].unique()) == {"momentum_12_1", "momentum_6_1"}
    assert scores["coverage"].max() == 1
    assert scores["value_score"].null_count() == scores.height
    # Families without any rank take a short cut to their null column: same frame as the reference's.
    assert scores.schema == MART_FACTOR_SCORES.polars_schema
    oracle.assert_equal((scores, metrics), oracle.alpha_score(prices, assets, SESSIONS, None, min_cross_section=1))


# ---------------------------------------------------------------- larger panel


def random_walk_prices(symbols: list[str], sessions: list[date], seed: int, listing: dict[str, int]) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for sym in symbols:
        ds = sessions[listing.get(sym, 0) :]
        closes = 30 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, len(ds))))
        frames.append(pl.DataFrame({"symbol": sym, "date": ds, "adj_close": closes}))
    return pl.concat(frames).with_columns(
        open=pl.col("adj_close"), high=pl.col("adj_close"), low=pl.col("adj_close"), close=pl.col("adj_close"), volume=1e6
    )


def test_generated_panel_matches_reference():
    sessions = weekdays(date(2019, 1, 1), 400)
    sectors = ["Financials"] * 8 + ["Information Technology"] * 7 + ["Energy"] * 5 + ["Utilities"] * 4
    sectors += ["Health Care"] * 3 + ["Materials"] * 2 + [None]
    symbols = [f"S{i:02d}" for i in range(len(sectors))]
    assets = pl.DataFrame(
        {
            "symbol": symbols,
            "name": [f"Company {s}" for s in symbols],
            "asset_class": "equity",
            "sector": sectors,
            "industry": "Misc",
        },
        schema_overrides={"sector": pl.String},
    )
    prices = random_walk_prices(symbols, sessions, seed=5, listing={"S03": 150, "S10": 90, "S21": 300})
    fund = sample_fundamentals(assets, prices, seed=3, start=sessions[0], end=sessions[-1])
    assert fund.height > 300
    scores, metrics = assert_matches_reference(prices, assets, sessions, fund)
    assert set(metrics["rank_scope"].unique()) == {"sector", "all"}
    assert scores["alpha_score"].min() >= 0 and scores["alpha_score"].max() <= 100
    assert set(scores["coverage"].unique()) <= {1, 2, 3, 4}


def test_every_metric_ranked_within_sectors_matches_reference():
    # Sectors all large enough: every rank is a sector rank (the across-all
    # rank is then not computed at all), still the reference's.
    sessions = weekdays(date(2019, 1, 1), 300)
    sectors = ["Financials"] * 6 + ["Energy"] * 5 + ["Utilities"] * 4
    symbols = [f"S{i:02d}" for i in range(len(sectors))]
    assets = pl.DataFrame(
        {"symbol": symbols, "name": symbols, "asset_class": "equity", "sector": sectors, "industry": "Misc"}
    )
    prices = random_walk_prices(symbols, sessions, seed=8, listing={"S03": 120})
    fund = sample_fundamentals(assets, prices, seed=2, start=sessions[0], end=sessions[-1])
    got = build_factor_marts(prices, assets, pl.Series(sessions), fund, min_sector_size=2, min_cross_section=1)
    oracle.assert_equal(
        got, oracle.alpha_score(prices, assets, sessions, fund, min_sector_size=2, min_cross_section=1)
    )
    assert set(got[1]["rank_scope"].unique()) == {"sector"}
    assert set(got[1]["metric"].unique()) == {m.name for m in METRICS}


# ---------------------------------------------------------------- who is scored


def _stock_panel(n: int, days: int = 300) -> tuple[pl.DataFrame, pl.DataFrame, list[date]]:
    rng = np.random.default_rng(n)
    sessions = [d for d in (date(2020, 1, 1) + timedelta(days=i) for i in range(days * 2)) if d.weekday() < 5][:days]
    symbols = [f"T{i:02d}" for i in range(n)]
    prices = pl.concat(
        pl.DataFrame({"symbol": s, "date": sessions, "adj_close": 20 * np.exp(np.cumsum(rng.normal(0, 0.02, days)))})
        for s in symbols
    )
    assets = pl.DataFrame({"symbol": symbols, "name": symbols, "asset_class": "equity", "sector": "X", "industry": "Y"})
    return prices, assets, sessions


@pytest.mark.parametrize(("n", "scored"), [(1, False), (3, False), (9, False), (10, True)])
def test_thin_cross_section_is_not_scored(n, scored):
    # One stock used to be "Alpha Score of 100 ... strong": a rank among too
    # few is not a score. DEFAULT_MIN_CROSS_SECTION (10) is the documented floor.
    assert DEFAULT_MIN_CROSS_SECTION == 10
    prices, assets, sessions = _stock_panel(n)
    scores, metrics = build_factor_marts(prices, assets, pl.Series(sessions), None)
    assert (scores.height > 0) == scored
    assert (metrics.height > 0) == scored
    if scored:
        assert scores["alpha_score"].null_count() == 0
    loose, _ = build_factor_marts(prices, assets, pl.Series(sessions), None, min_cross_section=1)
    assert loose.height > 0  # the floor, not the data, is what withheld the scores


def test_real_futures_etfs_and_indices_are_not_scored(real_data):
    # The issue's universe: RTY=F, QQQ, DIA, IWM, SPY (and ^RUT) from the real
    # files, classified from their names as the files source does.
    from flows.sources.files import symbol_from_filename

    files = [
        real_data / "alitalbi-storage_data_fy" / "RTY=F.csv",
        real_data / "alitalbi-storage_data_fy" / "^RUT.csv",
        *[real_data / "pratham093-AEGIS" / f"{s}.csv" for s in ("QQQ", "DIA", "IWM", "SPY")],
    ]
    classes = {symbol_from_filename(f).symbol: symbol_from_filename(f).asset_class for f in files}
    assert classes == {"RTY=F": "future", "^RUT": "index", "QQQ": "etf", "DIA": "etf", "IWM": "etf", "SPY": "etf"}
    frames = []
    for f in files:
        skip = [1] if "pratham093" in str(f) else []
        pdf = pd.read_csv(f, skiprows=skip)
        frames.append(
            pl.DataFrame({"symbol": symbol_from_filename(f).symbol, "date": pd.to_datetime(pdf["Date"]).dt.date,
                          "adj_close": pdf["Close"].astype(float)})  # fmt: skip
        )
    prices = pl.concat(frames).filter(pl.col("date") >= date(2021, 1, 1))
    assets = pl.DataFrame(
        {"symbol": list(classes), "name": list(classes), "asset_class": list(classes.values()),
         "sector": None, "industry": None}, schema_overrides={"sector": pl.String, "industry": pl.String},
    )  # fmt: skip
    sessions = pl.Series(sorted(set(prices.filter(pl.col("symbol") == "SPY")["date"].to_list())), dtype=pl.Date)
    scores, metrics = build_factor_marts(prices, assets, sessions, None)
    assert scores.is_empty() and metrics.is_empty()
    # A future is not held to the XNYS calendar by the quality screen: RTY=F
    # trades on NYSE holidays (the real file has 2023-11-23 and 2025-07-04).
    from warehouse.quality import rule_inputs

    rty = prices.filter(pl.col("symbol") == "RTY=F")["date"]
    assert {date(2023, 11, 23), date(2025, 7, 4)} <= set(rty.to_list())
    on_sessions = rule_inputs(date(2026, 2, 23), sessions, assets).session_symbols
    assert "RTY=F" not in on_sessions and {"QQQ", "DIA", "^RUT"} <= set(on_sessions)
    # An explicit universe entry wins over the name.
    from flows.universe import Asset, Universe

    u = Universe(benchmarks=(), assets=(Asset(symbol="DIA", name="Treated as a stock", asset_class="equity"),))
    assert symbol_from_filename(files[3], u).asset_class == "equity"


def test_session_major_order_is_the_key_sort_whatever_the_input_order():
    # _metric_values lays the symbol-major grid out session by session with a stable sort on
    # the session alone, the strings looked up per stock; a frame in any other order falls
    # back to the key sort. Either way: the (session_idx, sym) sort of the frame.
    from transforms.factors import _session_major

    rng = np.random.default_rng(3)
    rows = [
        (s, sess, f"S{s:02d}", None if s == 2 else f"sector {s % 3}", float(rng.normal()))
        for s in range(7)
        for sess in range(s, 40 + 3 * s)
    ]
    grid = pl.DataFrame(rows, schema={"sym": pl.Int32, "session_idx": pl.Int64, "symbol": pl.String,
                                      "sector": pl.String, "x": pl.Float64}, orient="row")  # fmt: skip
    frame = grid.select("session_idx", "sym", "symbol", "sector", "x")
    want = frame.sort("session_idx", "sym")
    assert not frame.equals(want)
    assert _session_major(frame).equals(want)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=5)
    assert _session_major(shuffled).equals(want)
    assert _session_major(frame.head(0)).equals(want.head(0))


@pytest.mark.parametrize("start_idx", [0, 1, 7, 21])
def test_dense_grid_of_symbol_sorted_bars_equals_that_of_any_order(start_idx):
    # Bars sorted by symbol (as the lake keeps them) find their stock and bounds from the runs
    # of equal symbols; any other order hashes the symbols. Same grid either way: late and
    # early listings, a gap, bars off the calendar, a stock ended before start_idx, dates
    # unsorted within a stock.
    from transforms.factors import _calendar, _dense_grid

    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(40)]
    sessions = [d for d in days if d.weekday() < 5]
    cal = _calendar(pl.Series(sessions))
    rng = np.random.default_rng(11)
    rows = []
    for k, (lo, hi) in enumerate([(0, len(sessions)), (5, 20), (0, 4), (10, len(sessions)), (2, 25)]):
        for i in range(lo, hi):
            if k == 3 and 14 <= i < 18:
                continue  # a gap
            rows.append((f"S{k}", sessions[i], float(rng.uniform(1, 50))))
    rows.append(("S1", date(2024, 1, 6), 3.0))  # a Saturday: off the calendar
    rows.append(("S4", date(2023, 12, 30), 4.0))  # before the calendar
    prices = pl.DataFrame(rows, schema={"symbol": pl.String, "date": pl.Date, "adj_close": pl.Float64}, orient="row")
    by_symbol = prices.sort("symbol").sample(fraction=1.0, shuffle=True, seed=2).sort("symbol", maintain_order=True)
    shuffled = prices.sample(fraction=1.0, shuffle=True, seed=3)
    assert by_symbol["symbol"].is_sorted() and not shuffled["symbol"].is_sorted()
    symbols = ["S0", "S1", "S2", "S3", "S4"]
    want = _dense_grid(shuffled, cal, symbols, start_idx)
    assert want.height and (start_idx < 4 or "S2" not in set(want["symbol"]))
    assert _dense_grid(by_symbol, cal, symbols, start_idx).equals(want)
    assert _dense_grid(by_symbol, cal, ["S1", "S3"], start_idx).equals(_dense_grid(shuffled, cal, ["S1", "S3"], start_idx))
