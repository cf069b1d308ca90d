"""The Alpha Score's outputs are pinned to the implementation they replaced.

``bench/legacy_alpha.py`` is a frozen copy of ``transforms/factors.py`` and
``transforms/factor_eval.py`` from before the performance rework. On a
generated panel with every awkward case (late listings, price gaps, a zero
price, tied paths, a stock without sector, a thin sector, fundamentals with
missing values and snapshots dated after the last session) the current code
must give the same frames: same rows, same order, same values bit for bit.
The IC columns are Pearson correlations and means summed in whatever order a
multithreaded group-by visits a session's rows, so the old code itself is only
reproducible to a few ulps there; those two float columns are compared to
1e-12 and everything else exactly.
"""

from __future__ import annotations

import importlib.util
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flows.sources.sample_fundamentals import sample_fundamentals
from transforms.factor_eval import evaluate_factors
from transforms.factors import (
    METRICS,
    Metric,
    build_factor_marts,
    factor_panel,
    mart_factor_metrics,
)

LEGACY_PATH = Path(__file__).resolve().parents[2] / "bench" / "legacy_alpha.py"


def _load_legacy():
    name = "xasset_legacy_alpha"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, LEGACY_PATH)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # dataclasses look their module up here
        spec.loader.exec_module(mod)
    return sys.modules[name]


legacy = _load_legacy()


def weekdays(start: date, n: int) -> list[date]:
    out, d = [], start
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return out


SESSIONS = weekdays(date(2017, 1, 2), 560)


def make_panel(seed: int = 21):
    rng = np.random.default_rng(seed)
    sectors = (
        ["Financials"] * 9 + ["Information Technology"] * 8 + ["Energy"] * 6 + ["Utilities"] * 5
        + ["Health Care"] * 4 + ["Materials"] * 3 + [None, None]
    )  # fmt: skip
    symbols = [f"S{i:02d}" for i in range(len(sectors))]
    assets = pl.DataFrame(
        {"symbol": symbols, "name": [f"Company {s}" for s in symbols], "asset_class": "equity",
         "sector": sectors, "industry": "Misc"},
        schema_overrides={"sector": pl.String},
    )  # fmt: skip
    # Not equities: must be ignored by the scores but present in prices.
    assets = pl.concat(
        [assets, pl.DataFrame({"symbol": ["SPY", "BTC"], "name": ["SPY", "Bitcoin"], "asset_class": ["etf", "crypto"],
                               "sector": [None, None], "industry": [None, None]}, schema=assets.schema)]
    )  # fmt: skip
    listing = {"S03": 150, "S10": 90, "S21": 300, "S30": 400, "S36": 20}
    delisting = {"S05": 480, "S12": 530}
    frames = []
    for sym in symbols + ["SPY"]:
        ds = SESSIONS[listing.get(sym, 0) : delisting.get(sym, len(SESSIONS))]
        closes = 30 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, len(ds))))
        frames.append(pl.DataFrame({"symbol": sym, "date": ds, "adj_close": closes}))
    prices = pl.concat(frames)
    # S07 copies S06's path: tied momentum. Gaps in S08 and S15, a zero and a
    # negative price in S09, an off-calendar bar in S01, a crypto series.
    s06 = prices.filter(pl.col("symbol") == "S06").with_columns(symbol=pl.lit("S07"))
    prices = pl.concat([prices.filter(pl.col("symbol") != "S07"), s06])
    prices = prices.filter(
        ~((pl.col("symbol") == "S08") & pl.col("date").is_between(SESSIONS[200], SESSIONS[230]))
        & ~((pl.col("symbol") == "S15") & pl.col("date").is_in([SESSIONS[300], SESSIONS[427]]))
    )
    prices = prices.with_columns(
        pl.when((pl.col("symbol") == "S09") & (pl.col("date") == SESSIONS[250])).then(0.0)
        .when((pl.col("symbol") == "S09") & (pl.col("date") == SESSIONS[380])).then(-1.0)
        .otherwise(pl.col("adj_close")).alias("adj_close")
    )  # fmt: skip
    extra = pl.DataFrame(
        {"symbol": ["S01", *["BTC"] * 40], "date": [date(2017, 1, 7), *[SESSIONS[0] + timedelta(days=i) for i in range(40)]],
         "adj_close": [1e9, *np.linspace(1000, 2000, 40)]}
    )  # fmt: skip
    prices = pl.concat([prices, extra]).with_columns(
        open=pl.col("adj_close"), high=pl.col("adj_close"), low=pl.col("adj_close"), close=pl.col("adj_close"), volume=1e6
    )
    equities = assets.filter(pl.col("asset_class") == "equity")
    fund = sample_fundamentals(equities, prices.filter(pl.col("symbol").is_in(symbols)), seed=3,
                               start=SESSIONS[0], end=SESSIONS[-1])  # fmt: skip
    # A snapshot dated after the last session, a zero P/E, and a stock without any.
    late = fund.filter(pl.col("symbol") == "S02").tail(1).with_columns(
        pl.lit(SESSIONS[-1] + timedelta(days=10)).alias("as_of"), pl.lit(1.0).alias("trailing_pe")
    )
    fund = pl.concat([fund.filter(pl.col("symbol") != "S20"), late]).with_columns(
        pl.when((pl.col("symbol") == "S04") & (pl.col("as_of") > SESSIONS[100]) & (pl.col("as_of") < SESSIONS[200]))
        .then(0.0).otherwise(pl.col("trailing_pe")).alias("trailing_pe")
    )  # fmt: skip
    # Shuffled inputs: nothing may depend on the row order of the inputs.
    prices = prices.sample(fraction=1.0, shuffle=True, seed=seed)
    return prices, assets, pl.Series(SESSIONS, dtype=pl.Date), fund


@pytest.fixture(scope="module")
def panel():
    return make_panel()


FLOAT_NOISE_COLUMNS = (
    "ic", "top_minus_bottom", "top_minus_bottom_quintile_return", "mean_ic", "ic_std", "ic_tstat", "ic_tstat_naive"
)


def assert_same(got: pl.DataFrame, want: pl.DataFrame) -> None:
    assert got.schema == want.schema
    assert got.height == want.height
    exact = [c for c in got.columns if c not in FLOAT_NOISE_COLUMNS]
    assert_frame_equal(got.select(exact), want.select(exact), check_exact=True)
    for c in got.columns:
        if c in FLOAT_NOISE_COLUMNS:
            assert_frame_equal(got.select(c), want.select(c), check_exact=False, rel_tol=0, abs_tol=1e-12)


@pytest.mark.parametrize("with_fundamentals", [True, False])
def test_marts_equal_legacy(panel, with_fundamentals):
    prices, assets, sessions, fund = panel
    f = fund if with_fundamentals else None
    want_scores, want_metrics = legacy.build_factor_marts(prices, assets, sessions, f)
    got_scores, got_metrics = build_factor_marts(prices, assets, sessions, f)
    assert want_scores.height > 5000 and want_metrics.height > 5000
    assert_same(got_scores, want_scores)
    assert_same(got_metrics, want_metrics)


def test_marts_equal_legacy_with_options(panel):
    prices, assets, sessions, fund = panel
    kw = {
        "min_sector_size": 7,
        "weights": {"momentum": 2.0, "value": 0.5, "sentiment": 1.0},
        "thresholds": legacy.LabelThresholds(strong=60, moderate=30),
        "fundamentals_tolerance": timedelta(days=40),
    }
    want = legacy.build_factor_marts(prices, assets, sessions, fund, **kw)
    got = build_factor_marts(prices, assets, sessions, fund, **kw)
    for g, w in zip(got, want, strict=True):
        assert_same(g, w)


def test_custom_metrics_equal_legacy(panel):
    # A caller-declared metric set, including a formula reading the grid with
    # its own window expression, ranks the same as before.
    prices, assets, sessions, fund = panel
    px = pl.col("adj_close")

    def custom(metric_cls, momentum_6_1):
        return (
            momentum_6_1,
            metric_cls("reversal_5", "momentum", -(px / px.shift(5).over("symbol") - 1.0), True, "5-session reversal"),
            metric_cls("pe", "value", pl.col("trailing_pe"), False, "P/E"),
        )

    want = legacy.build_factor_marts(prices, assets, sessions, fund, metrics=custom(legacy.Metric, legacy.METRICS[1]))
    got = build_factor_marts(prices, assets, sessions, fund, metrics=custom(Metric, METRICS[1]))
    for g, w in zip(got, want, strict=True):
        assert_same(g, w)


def test_panel_and_metrics_equal_legacy(panel):
    prices, assets, sessions, fund = panel
    want = legacy.factor_panel(prices, assets, sessions, fund)
    got = factor_panel(prices, assets, sessions, fund)
    assert_same(got, want)
    assert_same(mart_factor_metrics(got), legacy.mart_factor_metrics(want))


def test_evaluation_equal_legacy(panel):
    prices, assets, sessions, fund = panel
    scores, _ = legacy.build_factor_marts(prices, assets, sessions, fund)
    want_ic, want_summary = legacy.evaluate_factors(scores, prices, sessions, horizons=(5, 21, 63))
    got_ic, got_summary = evaluate_factors(scores, prices, sessions, horizons=(5, 21, 63))
    assert want_ic.height > 1000
    # The published IC now carries the daily spread the legacy code kept to itself.
    assert_same(got_ic.drop("top_minus_bottom"), want_ic)
    assert got_ic["top_minus_bottom"].is_not_null().sum() > 1000
    assert_same(got_summary, want_summary)


def test_daily_stats_bucket_edges_equal_legacy():
    # Many sessions with 5..60 stocks and integer (tied) scores: quantile
    # edges fall exactly on 5 * rank / n, where evaluation order matters.
    rng = np.random.default_rng(5)
    rows_s, rows_f = [], []
    for k, d in enumerate(SESSIONS[:200]):
        n = 5 + k % 56
        syms = [f"S{i:02d}" for i in range(n)]
        score = rng.integers(0, 12, n).astype(float)
        fwd = np.round(rng.normal(0, 0.05, n), 3)
        rows_s += [{"date": d, "symbol": s, "alpha_score": v} for s, v in zip(syms, score, strict=True)]
        rows_f += [{"date": d, "symbol": s, "horizon_sessions": 21, "fwd_return": v} for s, v in zip(syms, fwd, strict=True)]
    scores, fwd = pl.DataFrame(rows_s), pl.DataFrame(rows_f)
    factors = {"alpha": "alpha_score"}
    from transforms.factor_eval import factor_daily_stats

    want = legacy.factor_daily_stats(scores, fwd, factors=factors)
    got = factor_daily_stats(scores.sample(fraction=1.0, shuffle=True, seed=1), fwd, factors=factors)
    assert want["top_minus_bottom"].null_count() < want.height
    cols = ["date", "factor", "horizon_sessions", "n"]
    assert_frame_equal(got.select(cols), want.select(cols), check_exact=True)
    for c in ("ic", "top_minus_bottom"):
        assert_frame_equal(got.select(c), want.select(c), check_exact=False, rel_tol=0, abs_tol=1e-12)


# ---------------------------------------------------------------- from_date


@pytest.fixture(scope="module")
def full_marts(panel):
    prices, assets, sessions, fund = panel
    return build_factor_marts(prices, assets, sessions, fund)


@pytest.mark.parametrize(
    "from_date",
    [
        SESSIONS[0],
        SESSIONS[126],  # first 6-1 momentum
        SESSIONS[215 + 252],  # its 252-session look-back starts inside S08's price gap
        SESSIONS[479],  # S05's last session
        SESSIONS[500] - timedelta(days=2),  # not a session (a weekend)
        SESSIONS[-1],  # the nightly case: one new session
        SESSIONS[-1] + timedelta(days=1),  # nothing to do
    ],
)
def test_marts_from_date_equal_full_filtered(panel, full_marts, from_date):
    prices, assets, sessions, fund = panel
    scores, metrics = build_factor_marts(prices, assets, sessions, fund, from_date=from_date)
    full_scores, full_metrics = full_marts
    assert_frame_equal(scores, full_scores.filter(pl.col("date") >= from_date), check_exact=True)
    assert_frame_equal(metrics, full_metrics.filter(pl.col("date") >= from_date), check_exact=True)
    if from_date <= SESSIONS[-1]:
        assert scores.height > 0


def test_marts_from_date_with_options(panel):
    prices, assets, sessions, fund = panel
    kw = {"min_sector_size": 7, "weights": {"momentum": 2.0, "quality": 1.0}, "fundamentals_tolerance": timedelta(days=40)}
    full = build_factor_marts(prices, assets, sessions, fund, **kw)
    d = SESSIONS[400]
    part = build_factor_marts(prices, assets, sessions, fund, from_date=d, **kw)
    for p, f in zip(part, full, strict=True):
        assert_frame_equal(p, f.filter(pl.col("date") >= d), check_exact=True)


@pytest.mark.parametrize("from_idx", [0, 40, 300, 500, len(SESSIONS) - 1])
def test_evaluation_from_date_equal_full_filtered(panel, full_marts, from_idx):
    prices, _, sessions, _ = panel
    scores, _ = full_marts
    horizons = (5, 21, 63)
    full_ic, _ = evaluate_factors(scores, prices, sessions, horizons=horizons)
    ic, _ = evaluate_factors(scores, prices, sessions, horizons=horizons, from_date=SESSIONS[from_idx])
    since = SESSIONS[max(from_idx - max(horizons), 0)]
    want = full_ic.filter(pl.col("date") >= since)
    assert ic.height == want.height > 0
    assert_frame_equal(ic, want, check_exact=True)


def test_evaluation_from_date_uses_only_recent_rows(panel, full_marts):
    # The incremental call needs only scores and prices from max(horizon)
    # sessions before from_date: older rows may be absent.
    prices, _, sessions, _ = panel
    scores, _ = full_marts
    since = SESSIONS[-1 - 63]
    full_ic, _ = evaluate_factors(scores, prices, sessions)
    ic, _ = evaluate_factors(
        scores.filter(pl.col("date") >= since), prices.filter(pl.col("date") >= since), sessions, from_date=SESSIONS[-1]
    )
    assert_frame_equal(ic, full_ic.filter(pl.col("date") >= since), check_exact=True)
