"""Factor IC evaluation against an independent pandas computation."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, timedelta

import numpy as np
import pandas as pd
import polars as pl
import pytest

from flows.sources.sample_fundamentals import sample_fundamentals
from transforms.factor_eval import (
    DAILY_SCHEMA,
    FACTOR_COLUMNS,
    _check_horizons,
    _daily_from_base,
    _forward_grid,
    evaluate_factors,
    factor_daily_stats_from_prices,
    factor_ic_summary,
    mart_factor_ic,
    quantile_bucket,
)
from transforms.factors import _calendar, build_factor_marts

# The IC step in two separate pieces, forward returns as a long frame first:
# slower than factor_daily_stats_from_prices, which evaluate_factors uses, but
# each piece can be checked (and fed) on its own.

FWD_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "symbol": pl.String(),
    "horizon_sessions": pl.Int64(),
    "fwd_return": pl.Float64(),
}


def forward_returns(
    prices: pl.DataFrame,
    sessions: pl.Series,
    horizons: Sequence[int] = (21, 63),
    symbols: Sequence[str] | None = None,
) -> pl.DataFrame:
    """``date, symbol, horizon_sessions, fwd_return`` = adj_close[t+h] / adj_close[t] - 1.

    ``h`` counts sessions on the calendar (not bars), so a missing bar at t or
    t+h, or a stock delisted before t+h, gives no row rather than a stretched
    window. Sorted by horizon, date, symbol.
    """
    _check_horizons(horizons)
    if not horizons:
        return pl.DataFrame(schema=FWD_SCHEMA)
    grid = _forward_grid(prices, _calendar(sessions), sorted(set(horizons)), symbols)
    n_sym = int(grid["sym"].max() or 0) + 1
    grid = grid.sort(pl.col("session_idx") * n_sym + pl.col("sym"))
    parts = [
        grid.lazy()
        .filter(pl.col(f"fwd_{h}").is_not_null())
        .select("date", "symbol", pl.lit(h, dtype=pl.Int64).alias("horizon_sessions"), pl.col(f"fwd_{h}").alias("fwd_return"))
        for h in sorted(horizons)
    ]
    out = pl.concat(pl.collect_all(parts))
    return out.select([pl.col(c).cast(t) for c, t in FWD_SCHEMA.items()])


def factor_daily_stats(
    scores: pl.DataFrame,
    fwd: pl.DataFrame,
    *,
    factors: Mapping[str, str] = FACTOR_COLUMNS,
    min_obs: int = 5,
    quantiles: int = 5,
) -> pl.DataFrame:
    """``factor_daily_stats_from_prices`` with the forward returns given (``forward_returns`` or made up)."""
    horizons = fwd["horizon_sessions"].unique().sort().to_list()
    if not horizons or not factors:
        return pl.DataFrame(schema=DAILY_SCHEMA)
    fwd_wide = (
        fwd.lazy()
        .group_by("date", "symbol")
        .agg([pl.col("fwd_return").filter(pl.col("horizon_sessions") == h).first().alias(f"fwd_{h}") for h in horizons])
    )
    # One join for every factor and horizon; each pairing then only filters.
    base = (
        scores.lazy()
        .select("date", "symbol", *[pl.col(c).cast(pl.Float64).alias(f) for f, c in factors.items()])
        .join(fwd_wide, on=["date", "symbol"], how="inner")
        .sort("date", "symbol")
        .collect()
    )
    return _daily_from_base(base, horizons, factors, min_obs, quantiles)


def weekdays(start: date, n: int) -> list[date]:
    out, d = [], start
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return out


def test_forward_returns_by_hand():
    sessions = weekdays(date(2024, 1, 1), 8)
    prices = pl.DataFrame(
        {
            "symbol": ["A"] * 8 + ["B"] * 5,
            "date": sessions + [sessions[i] for i in (0, 1, 3, 4, 5)],  # B misses session 2
            "adj_close": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 10.0, 11.0, 13.0, 14.0, 15.0],
        }
    )
    fwd = forward_returns(prices, pl.Series(sessions), horizons=(2,))
    got = {(r["symbol"], r["date"]): r["fwd_return"] for r in fwd.to_dicts()}
    # A: doubles every session -> +300% over two sessions, none for the last two.
    for i in range(6):
        assert got[("A", sessions[i])] == pytest.approx(3.0)
    assert ("A", sessions[6]) not in got and ("A", sessions[7]) not in got
    # B: counts sessions, not bars; the missing bar at t+2 or t gives no row.
    assert ("B", sessions[0]) not in got  # t+2 = session 2, missing
    assert got[("B", sessions[1])] == pytest.approx(13.0 / 11.0 - 1)
    assert ("B", sessions[2]) not in got
    assert got[("B", sessions[3])] == pytest.approx(15.0 / 13.0 - 1)
    assert ("B", sessions[4]) not in got  # beyond B's last bar
    with pytest.raises(ValueError):
        forward_returns(prices, pl.Series(sessions), horizons=(0,))


def ref_forward(prices: pd.DataFrame, sessions: list[date], h: int) -> pd.DataFrame:
    rows = []
    for sym, g in prices.groupby("symbol"):
        px = dict(zip(g["date"], g["adj_close"], strict=True))
        span = [d for d in sessions if min(px) <= d <= max(px)]
        for i, d in enumerate(span[:-h] if h < len(span) else []):
            a, b = px.get(d), px.get(span[i + h])
            if a is not None and b is not None:
                rows.append({"date": d, "symbol": sym, "fwd": b / a - 1})
    return pd.DataFrame(rows)


def ref_buckets(ranks: np.ndarray, quantiles: int) -> np.ndarray:
    """Balanced buckets by hand: the edges of pandas qcut on the ranks 1..n
    (1 + (n - 1) k / q), each rank in the first bin whose upper edge it does not exceed."""
    n = len(ranks)
    edges = [1 + (n - 1) * k / quantiles for k in range(1, quantiles + 1)]
    return np.array([next(k + 1 for k, e in enumerate(edges) if r <= e + 1e-12) for r in ranks])


def reference_daily(scores: pd.DataFrame, fwd: pd.DataFrame, factor_col: str, min_obs=5) -> dict:
    df = scores[["date", "symbol", factor_col]].merge(fwd, on=["date", "symbol"]).dropna()
    out = {}
    for d, g in df.groupby("date"):
        n = len(g)
        ic = g[[factor_col, "fwd"]].astype(float).corr(method="spearman").iloc[0, 1] if n >= min_obs else np.nan
        q = pd.Series(ref_buckets(g[factor_col].rank().to_numpy(), 5), index=g.index)
        top, bottom = g["fwd"][q == 5], g["fwd"][q == 1]
        spread = top.mean() - bottom.mean() if len(top) and len(bottom) else np.nan
        out[d] = (ic, n, spread)
    return out


@pytest.fixture(scope="module")
def panel():
    sessions = weekdays(date(2018, 1, 1), 420)
    sectors = ["Financials"] * 9 + ["Information Technology"] * 8 + ["Energy"] * 6 + ["Utilities"] * 3
    symbols = [f"Z{i:02d}" for i in range(len(sectors))]
    assets = pl.DataFrame(
        {"symbol": symbols, "name": symbols, "asset_class": "equity", "sector": sectors, "industry": "Misc"}
    )
    rng = np.random.default_rng(9)
    frames = []
    for k, sym in enumerate(symbols):
        ds = sessions[(100 if k == 4 else 0) :]
        closes = 10 * np.exp(np.cumsum(rng.normal(0.0, 0.02, len(ds))))
        frames.append(pl.DataFrame({"symbol": sym, "date": ds, "adj_close": closes}))
    prices = pl.concat(frames)
    fund = sample_fundamentals(assets, prices, seed=4, start=sessions[0], end=sessions[-1])
    scores, _ = build_factor_marts(prices, assets, pl.Series(sessions), fund)
    return sessions, prices, scores, assets, fund


def test_ic_and_spread_match_pandas(panel):
    sessions, prices, scores, _, _ = panel
    ic, summary = evaluate_factors(scores, prices, pl.Series(sessions), horizons=(21, 63))
    assert ic.columns == ["date", "factor", "horizon_sessions", "ic", "n", "top_minus_bottom"]
    assert summary.columns == [
        "factor",
        "horizon_sessions",
        "mean_ic",
        "ic_std",
        "ic_tstat",
        "ic_tstat_method",
        "ic_tstat_naive",
        "n_dates",
        "top_minus_bottom_quintile_return",
    ]
    assert set(ic["factor"].unique()) == set(FACTOR_COLUMNS)
    fwd = forward_returns(prices, pl.Series(sessions), (21, 63))
    daily = factor_daily_stats(scores, fwd)
    assert mart_factor_ic(daily).equals(ic)
    # The published daily rows are enough to rebuild the summary (an incremental run does).
    assert factor_ic_summary(ic).equals(summary)

    scores_pd = pd.DataFrame(scores.to_dicts())
    prices_pd = pd.DataFrame(prices.to_dicts())
    for h in (21, 63):
        fwd_ref = ref_forward(prices_pd, sessions, h)
        got_fwd = {(r["date"], r["symbol"]): r["fwd_return"] for r in fwd.filter(pl.col("horizon_sessions") == h).to_dicts()}
        assert len(got_fwd) == len(fwd_ref)
        for r in fwd_ref.itertuples():
            assert got_fwd[(r.date, r.symbol)] == pytest.approx(r.fwd, rel=1e-12)
        for factor, col in FACTOR_COLUMNS.items():
            ref = reference_daily(scores_pd, fwd_ref, col)
            got = daily.filter((pl.col("factor") == factor) & (pl.col("horizon_sessions") == h))
            assert got.height == len(ref) > 0
            for r in got.to_dicts():
                e_ic, e_n, e_spread = ref[r["date"]]
                assert r["n"] == e_n
                if np.isnan(e_ic):
                    assert r["ic"] is None
                else:
                    assert r["ic"] == pytest.approx(e_ic, abs=1e-12)
                if np.isnan(e_spread):
                    assert r["top_minus_bottom"] is None
                else:
                    assert r["top_minus_bottom"] == pytest.approx(e_spread, abs=1e-12)
            # Summary from the reference daily series.
            ics = np.array([v[0] for v in ref.values() if not np.isnan(v[0])])
            spreads = np.array([v[2] for v in ref.values() if not np.isnan(v[2])])
            s = summary.filter((pl.col("factor") == factor) & (pl.col("horizon_sessions") == h)).to_dicts()[0]
            assert s["n_dates"] == len(ics)
            assert s["mean_ic"] == pytest.approx(ics.mean(), abs=1e-12)
            assert s["ic_std"] == pytest.approx(ics.std(ddof=1), abs=1e-12)
            assert s["ic_tstat_naive"] == pytest.approx(ics.mean() / (ics.std(ddof=1) / math.sqrt(len(ics))), rel=1e-9)
            assert s["ic_tstat"] == pytest.approx(ref_newey_west(ics, h - 1), rel=1e-9)
            assert s["ic_tstat_method"] == "newey_west_h-1_lags"
            assert s["top_minus_bottom_quintile_return"] == pytest.approx(spreads.mean(), abs=1e-12)


def ref_newey_west(x: np.ndarray, lags: int) -> float:
    """Newey-West t-stat of a mean, written out as a double loop."""
    n, m = len(x), x.mean()
    e = x - m
    var = sum(e[t] * e[t] for t in range(n)) / n
    for j in range(1, lags + 1):
        var += 2 * (1 - j / (lags + 1)) * sum(e[t] * e[t - j] for t in range(j, n)) / n
    return m / math.sqrt(var / n)


@pytest.mark.parametrize("n", [5, 7, 10, 11, 33, 34, 50, 101])
def test_quintile_buckets_are_balanced_like_qcut(n):
    rng = np.random.default_rng(n)
    scores = rng.normal(size=n)
    ranks = pd.Series(scores).rank()
    got = pl.select(quantile_bucket(pl.Series(ranks.to_numpy()), pl.lit(n), 5)).to_series().cast(pl.Int64).to_list()
    assert got == list(pd.qcut(scores, 5, labels=False) + 1)
    sizes = np.bincount(got, minlength=6)[1:]
    assert sizes.max() - sizes.min() <= 1
    if n == 33:
        assert list(sizes) == [7, 6, 7, 6, 7]  # was 6 at the bottom and 7 at the top


def test_ic_tstat_accounts_for_overlapping_windows():
    # A persistent score with a small real edge and 21-session forward
    # windows: consecutive daily ICs share 20 of 21 days. The reference is the
    # t-stat on non-overlapping samples (every 21st session), averaged over
    # the 21 possible offsets so that one lucky offset cannot decide. The
    # Newey-West t-stat must land near it; the naive one is several times
    # larger (the issue saw 4-7x on real data).
    rng = np.random.default_rng(3)
    n_stocks, n_days, h = 40, 1500, 21
    sessions = weekdays(date(2015, 1, 1), n_days)
    skill = rng.normal(0, 1, n_stocks)
    rets = rng.normal(0.0002 * skill[:, None], 0.02, (n_stocks, n_days))
    closes = 10 * np.exp(np.cumsum(rets, axis=1))
    symbols = [f"S{i:02d}" for i in range(n_stocks)]
    prices = pl.DataFrame(
        {"symbol": np.repeat(symbols, n_days), "date": sessions * n_stocks, "adj_close": closes.ravel()}
    )
    score = np.broadcast_to(skill[:, None] + rng.normal(0, 1, (n_stocks, 1)), (n_stocks, n_days))
    scores = pl.DataFrame(
        {"date": sessions * n_stocks, "symbol": np.repeat(symbols, n_days), "alpha_score": score.ravel()}
    )
    ic, summary = evaluate_factors(
        scores, prices, pl.Series(sessions), horizons=(h,), factors={"alpha": "alpha_score"}
    )
    s = summary.row(0, named=True)
    ics = ic.sort("date")["ic"].drop_nulls().to_numpy()

    def plain_t(x: np.ndarray) -> float:
        return x.mean() / (x.std(ddof=1) / math.sqrt(len(x)))

    non_overlapping = float(np.mean([plain_t(ics[offset::h]) for offset in range(h)]))
    assert s["ic_tstat"] == pytest.approx(ref_newey_west(ics, h - 1), rel=1e-9)
    assert s["ic_tstat_naive"] == pytest.approx(plain_t(ics), rel=1e-9)
    assert non_overlapping > 2
    assert s["ic_tstat_naive"] > 3 * non_overlapping
    assert 1 / 1.5 < s["ic_tstat"] / non_overlapping < 1.5


def test_ic_ties_small_samples_and_perfect_signal():
    sessions = weekdays(date(2024, 1, 1), 30)
    d0, d1, d2 = sessions[0], sessions[1], sessions[2]
    syms = [f"S{i}" for i in range(10)]
    scores = pl.DataFrame(
        {
            "date": [d0] * 10 + [d1] * 10 + [d2] * 3,
            "symbol": syms + syms + syms[:3],
            "alpha_score": [float(i) for i in range(10)] + [5.0] * 5 + [7.0] * 5 + [1.0, 2.0, 3.0],
        }
    )
    fwd = pl.DataFrame(
        {
            "date": [d0] * 10 + [d1] * 10 + [d2] * 3,
            "symbol": syms + syms + syms[:3],
            "horizon_sessions": 5,
            "fwd_return": [i / 100 for i in range(10)] + [0.01 * i for i in range(10)] + [0.1, 0.2, 0.3],
        }
    )
    daily = factor_daily_stats(scores, fwd, factors={"alpha": "alpha_score"})
    by_date = {r["date"]: r for r in daily.to_dicts()}
    # Perfect monotone signal: IC 1, top quintile (S8,S9) minus bottom (S0,S1).
    assert by_date[d0]["ic"] == pytest.approx(1.0)
    assert by_date[d0]["top_minus_bottom"] == pytest.approx((0.085 - 0.005))
    # Two tied blocks: average ranks 3 and 8 -> Pearson with ranks 1..10.
    expected = pd.DataFrame({"x": [5.0] * 5 + [7.0] * 5, "y": range(10)}).corr(method="spearman").iloc[0, 1]
    assert by_date[d1]["ic"] == pytest.approx(expected)
    # Tied block shares a bucket: 5*3/10 = 1.5 -> 2 and 5*8/10 = 4: no top/bottom quintile.
    assert by_date[d1]["top_minus_bottom"] is None
    # Fewer than min_obs stocks: n reported, IC null.
    assert by_date[d2]["n"] == 3 and by_date[d2]["ic"] is None
    summary = factor_ic_summary(daily)
    assert summary["n_dates"].item() == 2


def test_ic_with_tied_returns_matches_pandas():
    d = date(2024, 3, 1)
    x = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    y = [0.01, 0.02, 0.02, -0.01, 0.02, 0.05, -0.01, 0.0]
    syms = [f"S{i}" for i in range(len(x))]
    scores = pl.DataFrame({"date": [d] * len(x), "symbol": syms, "value_score": x})
    fwd = pl.DataFrame({"date": [d] * len(x), "symbol": syms, "horizon_sessions": 21, "fwd_return": y})
    daily = factor_daily_stats(scores, fwd, factors={"value": "value_score"})
    expected = pd.DataFrame({"x": x, "y": y}).corr(method="spearman").iloc[0, 1]
    assert daily["ic"].item() == pytest.approx(expected, abs=1e-12)


def test_forward_returns_never_enter_scores(panel):
    # Scores depend only on data up to t: truncating prices after t leaves them unchanged.
    sessions, prices, scores, assets, fund = panel
    cut = sessions[300]
    truncated, _ = build_factor_marts(
        prices.filter(pl.col("date") <= cut), assets, pl.Series(sessions), fund.filter(pl.col("as_of") <= cut)
    )
    assert truncated.equals(scores.filter(pl.col("date") <= cut))


def test_the_full_build_shares_one_session_grid_and_gets_the_ic_of_separate_grids():
    # factor_marts builds the stocks' grid once for the metrics and the forward returns;
    # a stock without any score (here: listed too late for momentum) only adds rows nobody finds.
    from tests.panels import generate
    from transforms.marts import MartParams, factor_marts

    prices, assets, sessions = generate(40, 3, 2, date(2026, 11, 20), 11)
    late = assets.filter(pl.col("asset_class") == "equity")["symbol"][0]
    prices = prices.filter((pl.col("symbol") != late) | (pl.col("date") >= date(2026, 9, 1)))
    params = MartParams()
    got = factor_marts(prices, assets, sessions, params, None)
    stocks = prices.filter(pl.col("symbol").is_in(assets.filter(pl.col("asset_class") == "equity")["symbol"].implode()))
    scores, metrics = build_factor_marts(stocks, assets, sessions, None, min_sector_size=params.factor_min_sector_size,
                                         min_cross_section=params.factor_min_cross_section, weights=params.factor_weights,
                                         thresholds=params.factor_thresholds)  # fmt: skip
    ic, summary = evaluate_factors(scores, prices, sessions, horizons=params.factor_horizons)
    assert late not in set(scores["symbol"]) and scores.height and ic["ic"].drop_nulls().len()
    for name, want in zip(("mart_factor_scores", "mart_factor_metrics", "mart_factor_ic", "mart_factor_ic_summary"),
                          (scores, metrics, ic, summary), strict=True):  # fmt: skip
        assert got[name].equals(want), name


def _daily_one_rank_per_pair(base, horizons, factors, min_obs, quantiles):
    """``_daily_from_base`` as it was written before it shared ranks: every
    (factor, horizon) pair ranks its own rows on every session."""
    x, y = pl.col("x"), pl.col("y")
    bucket = quantile_bucket(pl.col("rx"), pl.col("n"), quantiles)
    parts = [
        base.lazy()
        .select(pl.col("date").set_sorted(), pl.col(name).alias("x"), pl.col(f"fwd_{h}").alias("y"))
        .filter(x.is_finite() & y.is_finite())
        .with_columns(
            x.rank("average").over("date").alias("rx"),
            y.rank("average").over("date").alias("ry"),
            pl.len().over("date").alias("n"),
        )
        .group_by("date", maintain_order=True)
        .agg(
            pl.corr("rx", "ry").alias("ic"),
            pl.len().alias("n"),
            (y.filter(bucket == quantiles).mean() - y.filter(bucket == 1).mean()).alias("top_minus_bottom"),
        )
        .select(
            "date",
            pl.lit(name).alias("factor"),
            pl.lit(h, dtype=pl.Int64).alias("horizon_sessions"),
            pl.when((pl.col("n") >= min_obs) & pl.col("ic").is_finite()).then(pl.col("ic")).alias("ic"),
            "n",
            "top_minus_bottom",
        )
        for h in horizons
        for name in factors
    ]
    out = pl.concat(pl.collect_all(parts)).sort("factor", "horizon_sessions", "date")
    return out.select([pl.col(c).cast(t) for c, t in DAILY_SCHEMA.items()])


def test_shared_session_ranks_give_the_ranks_of_each_pair_bit_for_bit():
    # Sessions where a pair keeps every row with a score (the shared ranks are
    # reused) and sessions where a missing or non-finite return or score drops
    # some (ranked again), with ties, NaN, inf and nulls on both sides, a factor
    # without any value and one whose rows are a superset of another's.
    rng = np.random.default_rng(7)
    n_dates, n_sym = 60, 40
    rows = n_dates * n_sym
    d = np.repeat(np.arange(n_dates), n_sym)

    def sprinkle(v, frac):
        v = v.copy()
        hit = rng.random(rows) < frac
        v[hit] = rng.choice([np.nan, np.inf, -np.inf], size=int(hit.sum()))
        return v

    mom = np.round(rng.normal(50, 20, rows), 0)  # rounded: ties
    alpha = mom + np.round(rng.normal(0, 5, rows), 0)
    fwd21 = np.round(rng.normal(0, 0.05, rows), 3)
    fwd63 = np.round(rng.normal(0, 0.1, rows), 3)

    def nulls(frac):
        return rng.random(rows) < frac

    base = pl.DataFrame(
        {
            "date": [date(2020, 1, 1) + timedelta(days=int(i)) for i in d],
            "momentum": pl.Series(sprinkle(mom, 0.01)).set(pl.Series(nulls(0.05)), None),
            "value": pl.Series([None] * rows, dtype=pl.Float64),
            "alpha": pl.Series(alpha).set(pl.Series(nulls(0.01)), None),
            # the last sessions of every stock have no forward return, as on the grid
            "fwd_21": pl.Series(sprinkle(fwd21, 0.005)).set(pl.Series((d >= n_dates - 5) | nulls(0.02)), None),
            "fwd_63": pl.Series(fwd63).set(pl.Series(d >= n_dates - 15), None),
        }
    )
    factors = {"momentum": "m", "value": "v", "alpha": "a"}
    got = _daily_from_base(base, [21, 63], factors, 5, 5)
    want = _daily_one_rank_per_pair(base, [21, 63], factors, 5, 5)
    assert got.schema == want.schema
    assert got.equals(want)
    # Both paths ran: some pair sessions keep every scored row, some do not.
    counted = base.group_by("date").agg(pl.col("momentum").is_finite().sum().alias("c"))
    kept = got.filter((pl.col("factor") == "momentum") & (pl.col("horizon_sessions") == 21)).join(counted, on="date")
    assert (kept["n"] == kept["c"]).any() and (kept["n"] != kept["c"]).any()


def test_score_rows_without_a_session_or_a_price_run_are_left_out(panel):
    # Each score row finds its session and its stock's run of the grid by position; a row on a
    # date off the calendar, or of a stock without prices, finds none and adds nothing (as
    # the inner joins that used to locate them did), wherever it sits in the frame.
    sessions, prices, scores, _, _ = panel
    cal = pl.Series(sessions)
    want = factor_daily_stats_from_prices(scores, prices, cal, horizons=(21, 63))
    row = scores.row(0, named=True)
    stray = pl.DataFrame(
        [
            {**row, "symbol": "ZZZ_NO_PRICES"},  # after every symbol with a run
            {**row, "symbol": "A_NO_PRICES"},  # before them
            {**row, "date": sessions[-1] + timedelta(days=1)},  # a Saturday, after the calendar
            {**row, "date": sessions[0] - timedelta(days=2)},  # before it
            {**row, "date": sessions[5] + timedelta(days=(5 - sessions[5].weekday()) % 7)},  # inside, a Saturday
        ],
        schema=scores.schema,
    )
    mixed = pl.concat([stray.head(2), scores, stray.tail(3)]).sort("date", "symbol", maintain_order=True)
    got = factor_daily_stats_from_prices(mixed, prices, cal, horizons=(21, 63))
    assert got.equals(want)
