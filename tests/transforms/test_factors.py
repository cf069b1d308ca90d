"""Alpha Score transforms against an independent pandas computation.

The reference below is deliberately naive (Python loops over stocks and
sessions, bisect for point-in-time snapshots, pandas ``groupby().rank(pct=True)``)
so it shares no code or Polars idiom with transforms/factors.py.
"""

from __future__ import annotations

import bisect
import math
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd
import polars as pl
import pytest

from flows.sources.sample_fundamentals import sample_fundamentals
from transforms.factors import (
    DEFAULT_MIN_CROSS_SECTION,
    FAMILIES,
    METRICS,
    LabelThresholds,
    build_factor_marts,
    factor_panel,
    mart_factor_metrics,
    mart_factor_scores,
    session_grid,
)

# ---------------------------------------------------------------- reference

REF_METRICS = {
    # name: (family, higher_is_better)
    "momentum_12_1": ("momentum", True),
    "momentum_6_1": ("momentum", True),
    "earnings_yield": ("value", True),
    "book_to_price": ("value", True),
    "return_on_equity": ("quality", True),
    "profit_margin": ("quality", True),
    "debt_to_equity": ("quality", False),
    "recommendation_mean": ("sentiment", False),
    "short_percent_of_float": ("sentiment", False),
}


def _nan(x):
    return np.nan if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _recip(x):
    x = _nan(x)
    return np.nan if np.isnan(x) or x == 0 else 1.0 / x


EQUAL = dict.fromkeys(FAMILIES, 1.0)


def reference_metrics(prices: pl.DataFrame, assets: pl.DataFrame, sessions: list[date], fund: pl.DataFrame | None):
    """Long pandas frame: date, symbol, sector, metric, value, rank_pct, rank_scope."""
    stocks = {r["symbol"]: r["sector"] for r in assets.to_dicts() if r["asset_class"] == "equity"}
    sess_set = set(sessions)
    by_sym: dict[str, dict[date, float]] = {}
    for r in prices.to_dicts():
        if r["symbol"] in stocks and r["date"] in sess_set:
            by_sym.setdefault(r["symbol"], {})[r["date"]] = r["adj_close"]
    snaps: dict[str, list[dict]] = {}
    if fund is not None:
        for r in sorted(fund.to_dicts(), key=lambda r: r["as_of"]):
            snaps.setdefault(r["symbol"], []).append(r)

    rows = []
    for sym, px in by_sym.items():
        span = [d for d in sessions if min(px) <= d <= max(px)]
        closes = [px.get(d, np.nan) for d in span]
        sn = snaps.get(sym, [])
        as_ofs = [s["as_of"] for s in sn]
        for i, d in enumerate(span):

            def lag(k, closes=closes, i=i):
                return closes[i - k] if i - k >= 0 else np.nan

            def mom(recent, base):
                b = lag(base)
                return lag(recent) / b - 1 if b > 0 else np.nan

            j = bisect.bisect_right(as_ofs, d) - 1
            s = sn[j] if j >= 0 else {}
            vals = {
                "momentum_12_1": mom(21, 252),
                "momentum_6_1": mom(21, 126),
                "earnings_yield": _recip(s.get("trailing_pe")),
                "book_to_price": _recip(s.get("price_to_book")),
                "return_on_equity": _nan(s.get("return_on_equity")),
                "profit_margin": _nan(s.get("profit_margin")),
                "debt_to_equity": _nan(s.get("debt_to_equity")),
                "recommendation_mean": _nan(s.get("recommendation_mean")),
                "short_percent_of_float": _nan(s.get("short_percent_of_float")),
            }
            for m, v in vals.items():
                if not np.isnan(v):
                    rows.append({"date": d, "symbol": sym, "sector": stocks[sym], "metric": m, "value": v})
    df = pd.DataFrame(rows)
    df["oriented"] = [v if REF_METRICS[m][1] else -v for m, v in zip(df["metric"], df["value"], strict=True)]
    by_all = df.groupby(["date", "metric"])["oriented"]
    by_sector = df.groupby(["date", "metric", "sector"])["oriented"]  # NaN sectors drop out
    df["pct_all"] = by_all.rank(pct=True) * 100
    df["pct_sector"] = by_sector.rank(pct=True) * 100
    df["n_sector"] = by_sector.transform("count")
    use_sector = df["sector"].notna() & (df["n_sector"] >= 5)
    df["rank_pct"] = np.where(use_sector, df["pct_sector"], df["pct_all"])
    df["rank_scope"] = np.where(use_sector, "sector", "all")
    return df[["date", "symbol", "sector", "metric", "value", "rank_pct", "rank_scope"]]


def half_up(x: float) -> int:
    return int(Decimal(repr(round(float(x), 9))).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def ref_label(score: int, strong=75, moderate=40) -> str:
    return "Strong" if score >= strong else "Moderate" if score >= moderate else "Weak"


def reference_scores(ref_metrics: pd.DataFrame, assets: pl.DataFrame, weights=None) -> dict:
    names = {r["symbol"]: r["name"] for r in assets.to_dicts()}
    weights = weights or {"momentum": 30.0, "value": 25.0, "quality": 25.0, "sentiment": 20.0}
    df = ref_metrics.copy()
    df["family"] = [REF_METRICS[m][0] for m in df["metric"]]
    fam = df.groupby(["date", "symbol", "sector", "family"], dropna=False)["rank_pct"].mean().unstack("family")
    out = {}
    for (d, sym, sector), row in fam.iterrows():
        subs = {f: row.get(f, np.nan) for f in FAMILIES}
        avail = {f: v for f, v in subs.items() if not np.isnan(v)}
        wsum = sum(weights.get(f, 0.0) for f in avail)
        alpha = half_up(sum(weights.get(f, 0.0) * v for f, v in avail.items()) / wsum)
        label = ref_label(alpha)
        parts = ", ".join(f"{ref_label(half_up(v)).lower()} {f}" for f, v in avail.items())
        sector_txt = sector if isinstance(sector, str) else "Unclassified"
        out[(d, sym)] = {
            "sector": sector if isinstance(sector, str) else None,
            **{f"{f}_score": subs[f] for f in FAMILIES},
            "alpha_score": alpha,
            "alpha_label": label,
            "coverage": len(avail),
            "summary": f"Alpha Score of {alpha} reflects {label.lower()} overall profile with {parts}.",
            "headline": f"{names[sym]} ({sym}) maintains an Alpha Score of {alpha}/100, "
            f"categorized as {label} within the {sector_txt} sector.",
        }
    return out


def assert_matches_reference(prices, assets, sessions, fund, weights=None):
    # The golden panels are a handful of stocks: the formulas are checked here
    # without the minimum cross-section (test_thin_cross_section_is_not_scored).
    scores, metrics = build_factor_marts(
        prices, assets, pl.Series(sessions, dtype=pl.Date), fund, weights=weights, min_cross_section=1
    )
    ref = reference_metrics(prices, assets, sessions, fund)

    got = pd.DataFrame(metrics.to_dicts()).set_index(["date", "symbol", "metric"]).sort_index()
    exp = ref.set_index(["date", "symbol", "metric"]).sort_index()
    assert len(got) == len(exp)
    assert got.index.equals(exp.index)
    np.testing.assert_allclose(got["value"].to_numpy(), exp["value"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(got["rank_pct"].to_numpy(), exp["rank_pct"].to_numpy(), rtol=1e-12)
    assert (got["rank_scope"].to_numpy() == exp["rank_scope"].to_numpy()).all()

    ref_scores = reference_scores(ref, assets, weights)
    got_rows = {(r["date"], r["symbol"]): r for r in scores.to_dicts()}
    assert set(got_rows) == set(ref_scores)
    for key, e in ref_scores.items():
        g = got_rows[key]
        for f in FAMILIES:
            ev, gv = e[f"{f}_score"], g[f"{f}_score"]
            if np.isnan(ev):
                assert gv is None, (key, f)
            else:
                assert gv == pytest.approx(ev, rel=1e-12), (key, f)
        for c in ("sector", "alpha_score", "alpha_label", "coverage", "summary", "headline"):
            assert g[c] == e[c], (key, c, g[c], e[c])
    return scores, metrics


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
    panel = factor_panel(prices, assets, pl.Series(SESSIONS), fund, min_cross_section=1)
    metrics = mart_factor_metrics(panel)
    scores = mart_factor_scores(panel, assets)

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
    panel = factor_panel(prices, assets, pl.Series(SESSIONS), fund, fundamentals_tolerance=timedelta(days=60))
    at = {r["symbol"]: r for r in panel.filter(pl.col("date") == SESSIONS[275]).to_dicts()}
    assert at["T1"]["earnings_yield"] == pytest.approx(1 / 5)  # snapshot 5 sessions old
    assert at["T2"]["earnings_yield"] is None  # only a ~1-year-old snapshot


def test_gap_nulls_lags_instead_of_stretching(golden):
    prices, assets, fund = golden
    grid = session_grid(prices, pl.Series(SESSIONS))
    e2 = grid.filter(pl.col("symbol") == "E2")
    assert e2.height == len(SESSIONS)  # dense on the calendar
    assert e2.filter(pl.col("date") == SESSIONS[30])["adj_close"].item() is None
    panel = factor_panel(prices, assets, pl.Series(SESSIONS), fund)
    row = panel.filter((pl.col("symbol") == "E2") & (pl.col("date") == SESSIONS[30 + 126]))
    assert row["momentum_6_1"].item() is None


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
    out = {r["symbol"]: r for r in mart_factor_scores(panel, ASSETS, weights=EQUAL).to_dicts()}
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
    out = mart_factor_scores(_panel([row]), ASSETS, weights=EQUAL)
    assert out["alpha_score"].item() == expected


def test_labels_thresholds_and_weights():
    d = date(2024, 1, 2)
    panel = _panel(
        [{"date": d, "symbol": "AAPL", "sector": "X", "momentum_score": 80.0, "value_score": 20.0, "quality_score": None,
          "sentiment_score": 60.0}]
    )  # fmt: skip
    # Default weights 30/25/25/20, quality's 25 spread over the rest:
    # (30*80 + 25*20 + 20*60) / 75 = 54.67 -> 55 Moderate
    r = mart_factor_scores(panel, ASSETS).to_dicts()[0]
    assert (r["alpha_score"], r["alpha_label"], r["coverage"]) == (55, "Moderate", 3)
    r = mart_factor_scores(panel, ASSETS, weights=dict.fromkeys(FAMILIES, 1.0)).to_dicts()[0]
    assert r["alpha_score"] == 53  # equal weights: (80 + 20 + 60) / 3
    # Weights renormalise over available families: quality's weight drops out.
    r = mart_factor_scores(panel, ASSETS, weights={"momentum": 2, "value": 1, "quality": 5, "sentiment": 1}).to_dicts()[0]
    assert r["alpha_score"] == round((2 * 80 + 20 + 60) / 4)
    # Custom thresholds change labels, including sub-score labels in the summary.
    r = mart_factor_scores(panel, ASSETS, thresholds=LabelThresholds(strong=50, moderate=20)).to_dicts()[0]
    assert r["alpha_label"] == "Strong"
    assert r["summary"].endswith("with strong momentum, moderate value, strong sentiment.")
    with pytest.raises(ValueError):
        LabelThresholds(strong=30, moderate=40)
    with pytest.raises(ValueError):
        mart_factor_scores(panel, ASSETS, weights={"momentum": -1})
    with pytest.raises(ValueError):
        mart_factor_scores(panel, ASSETS, weights={"size": 1})


def test_metric_declarations_are_consistent():
    assert {m.name: (m.family, m.higher_is_better) for m in METRICS} == REF_METRICS
    assert {m.family for m in METRICS} == set(FAMILIES)


def test_no_fundamentals_gives_momentum_only(golden):
    prices, assets, _ = golden
    scores, metrics = build_factor_marts(prices, assets, pl.Series(SESSIONS), None, min_cross_section=1)
    assert set(metrics["metric"].unique()) == {"momentum_12_1", "momentum_6_1"}
    assert scores["coverage"].max() == 1
    assert scores["value_score"].null_count() == scores.height


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
