"""Allocation mixes under a policy: band projection, targets, drift, performance.

Everything is valued on the UTC daily calendar (crypto trades every day); the
session-dated inputs (correlations, ``^RUT``) are read as of the latest session
on or before each day. ``docs/allocation.md`` gives the formulas and the
choices made where the issue left one open.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from contracts.tables import (
    MART_ALLOCATION_WEIGHTS,
    MART_BAND_BREACHES,
    MART_BAND_COMPLIANCE,
    MART_MIX_PERFORMANCE,
    MART_MIX_SUMMARY,
)
from transforms.policy import CASH, Mix, Policy

# Drifted weights are compared with bands after float arithmetic; anything
# closer than this is rounding, not a breach.
BAND_TOLERANCE = 1e-9
DAYS_PER_YEAR = 365
REFERENCE_SLEEVE = "reference"


# --------------------------------------------------------------------------- projection


def project_to_bands(
    target: Sequence[float] | np.ndarray,
    band_min: Sequence[float] | np.ndarray,
    band_max: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """Euclidean projection of ``target`` onto {w : sum w = 1, band_min <= w <= band_max}.

    The KKT conditions give w_i = clip(t_i - lam, lo_i, hi_i) for one scalar lam;
    the sum of that is piecewise linear and non-increasing in lam with kinks at
    t_i - hi_i and t_i - lo_i, so lam is found exactly by evaluating the kinks
    and interpolating on the one segment that crosses 1.
    """
    t = np.asarray(target, dtype=float)
    lo = np.asarray(band_min, dtype=float)
    hi = np.asarray(band_max, dtype=float)
    if t.ndim != 1 or t.shape != lo.shape or t.shape != hi.shape or t.size == 0:
        raise ValueError("target, band_min and band_max must be 1-d arrays of one non-zero length")
    if not (np.isfinite(t).all() and np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError(f"projection needs finite numbers: target={t.tolist()}")
    if (lo > hi).any():
        raise ValueError(f"band_min above band_max: {lo.tolist()} > {hi.tolist()}")
    if lo.sum() > 1.0 + 1e-9 or hi.sum() < 1.0 - 1e-9:
        raise ValueError(
            f"bands cannot sum to 1: sum(band_min)={lo.sum():.6g}, sum(band_max)={hi.sum():.6g}"
        )

    if (lo <= t).all() and (t <= hi).all() and abs(t.sum() - 1.0) <= 1e-12:
        # Already feasible: it is its own projection, returned bit for bit.
        return t.copy()
    kinks = np.unique(np.concatenate([t - hi, t - lo]))
    totals = np.clip(t[None, :] - kinks[:, None], lo, hi).sum(axis=1)
    below = np.flatnonzero(totals <= 1.0)
    if below.size == 0:
        # Only reachable when sum(band_min) exceeds 1 by rounding: the floor is the answer.
        w = lo.copy()
    elif below[0] == 0:
        w = np.clip(t - kinks[0], lo, hi)
    else:
        k = below[0]
        a, b = kinks[k - 1], kinks[k]
        ga, gb = totals[k - 1], totals[k]
        lam = a + (ga - 1.0) * (b - a) / (ga - gb)
        w = np.clip(t - lam, lo, hi)
    # Put the last ulps of rounding on coordinates strictly inside their band,
    # where moving them keeps feasibility and (to first order) optimality.
    free = (w > lo) & (w < hi)
    residual = 1.0 - w.sum()
    if residual != 0.0 and free.any():
        w[free] += residual / free.sum()
        w = np.clip(w, lo, hi)
    return w


# --------------------------------------------------------------------------- calendar


def _period_starts(days: np.ndarray, frequency: str) -> np.ndarray:
    """True on the first listed day of each week (ISO, Monday-based), month or quarter."""
    if frequency == "weekly":
        # 1970-01-01 was a Thursday: shifting by 3 makes weeks start on Monday.
        key = (days.astype(np.int64) + 3) // 7
    elif frequency == "monthly":
        key = days.astype("datetime64[M]").astype(np.int64)
    elif frequency == "quarterly":
        key = days.astype("datetime64[M]").astype(np.int64) // 3
    else:
        raise ValueError(f"unknown rebalance frequency {frequency!r}")
    flags = np.ones(len(days), dtype=bool)
    flags[1:] = key[1:] != key[:-1]
    return flags


# --------------------------------------------------------------------------- market data


@dataclass(frozen=True)
class _Market:
    dates: np.ndarray  # datetime64[D], every UTC day from the first to the last price
    symbols: tuple[str, ...]  # columns of prices; the last one is CASH
    prices: np.ndarray  # T x N, forward-filled after listing, NaN before
    returns: np.ndarray  # T x N simple daily returns, NaN where undefined or not priced on both days
    fresh: np.ndarray  # T x N, True where the price is that day's own (not carried forward)

    def col(self, symbol: str) -> int:
        return self.symbols.index(symbol)


def _price(frame: pl.DataFrame) -> pl.Expr:
    px = pl.coalesce(
        [pl.col("adj_close"), pl.col("close")] if "adj_close" in frame.columns else [pl.col("close")]
    )
    # A non-positive or non-finite price cannot be a return base: treat as missing.
    return pl.when(px.is_finite() & (px > 0)).then(px).otherwise(None)


def _market(prices: pl.DataFrame, symbols: Sequence[str]) -> _Market:
    rows = prices.filter(pl.col("symbol").is_in(list(symbols))).select(
        "symbol", pl.col("date").cast(pl.Date), _price(prices).alias("px")
    )
    if rows.select(pl.struct("symbol", "date").is_duplicated().any()).item():
        raise ValueError("prices hold more than one row for a symbol and date")
    present = [s for s in symbols if s in set(rows["symbol"].unique().to_list())]
    if rows.is_empty():
        calendar = pl.DataFrame({"date": pl.Series([], dtype=pl.Date)})
    else:
        calendar = pl.DataFrame(
            {"date": pl.date_range(rows["date"].min(), rows["date"].max(), "1d", eager=True)}
        )
    wide = calendar
    cols = (*present, CASH)
    fresh = np.ones((calendar.height, len(cols)), dtype=bool)
    if present:
        pivot = rows.pivot(on="symbol", index="date", values="px")
        wide = calendar.join(pivot, on="date", how="left").sort("date")
        for j, s in enumerate(present):
            fresh[:, j] = wide[s].is_not_null().to_numpy()
        wide = wide.with_columns(pl.col(present).forward_fill())
    px = np.empty((wide.height, len(cols)))
    for j, s in enumerate(present):
        px[:, j] = wide[s].cast(pl.Float64).fill_null(np.nan).to_numpy()
    px[:, -1] = 1.0
    ret = np.full_like(px, np.nan)
    if len(px) > 1:
        ret[1:] = px[1:] / px[:-1] - 1.0
        # A carried price is not a move: no return unless priced on both days.
        ret[1:][~(fresh[1:] & fresh[:-1])] = np.nan
    return _Market(wide["date"].to_numpy().astype("datetime64[D]"), cols, px, ret, fresh)


def _asof(days: np.ndarray, frame: pl.DataFrame, value: str) -> np.ndarray:
    """``value`` from the latest ``frame`` row dated on or before each day."""
    left = pl.DataFrame({"date": pl.Series(days, dtype=pl.Date)})
    right = frame.select(pl.col("date").cast(pl.Date), pl.col(value).cast(pl.Float64)).sort("date")
    joined = left.join_asof(right, on="date", strategy="backward")
    return joined[value].fill_null(np.nan).to_numpy()


def _regime_signals(
    policy: Policy,
    days: np.ndarray,
    correlations: pl.DataFrame | None,
    benchmark_prices: pl.DataFrame | None,
) -> tuple[np.ndarray, np.ndarray] | str:
    """Per-day (correlation, momentum), or why the signal is unavailable."""
    rule = policy.regime
    assert rule is not None
    if correlations is None:
        return "no correlation frame was given"
    corr = correlations.filter(
        (pl.col("benchmark") == rule.benchmark)
        & (pl.col("asset") == rule.asset)
        & (pl.col("window_days") == rule.window_days)
    )
    if corr.is_empty():
        return (
            f"no correlation rows for asset {rule.asset!r} vs {rule.benchmark!r} "
            f"over {rule.window_days} sessions"
        )
    if benchmark_prices is None:
        return f"no {rule.benchmark!r} prices were given"
    bench = benchmark_prices.filter(pl.col("symbol") == rule.benchmark)
    if bench.is_empty():
        return f"no {rule.benchmark!r} rows in the benchmark prices"
    bench = (
        bench.select(pl.col("date").cast(pl.Date), _price(bench).alias("px"))
        .drop_nulls()
        .sort("date")
        .with_columns(
            momentum=pl.col("px") / pl.col("px").shift(rule.momentum_sessions) - 1.0
        )
    )
    return _asof(days, corr, "correlation"), _asof(days, bench, "momentum")


# --------------------------------------------------------------------------- targets


def _vols(window: np.ndarray, min_obs: int) -> np.ndarray:
    """Column-wise sample std of the finite entries; NaN with too few or zero."""
    ok = np.isfinite(window)
    n = ok.sum(axis=0)
    x = np.where(ok, window, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x.sum(axis=0) / n
        var = (np.where(ok, window - mean, 0.0) ** 2).sum(axis=0) / (n - 1)
    vol = np.sqrt(var)
    # Zero volatility (a pegged stablecoin) would take the whole sleeve: treat it as unknown.
    return np.where((n >= min_obs) & (vol > 0), vol, np.nan)


def _inverse(vols: np.ndarray) -> np.ndarray:
    """Inverse vols, with unknown ones set to the mean of the known; all unknown: equal."""
    inv = 1.0 / vols
    known = np.isfinite(inv)
    if not known.any():
        return np.ones_like(vols)
    return np.where(known, inv, inv[known].mean())


class _PolicyMix:
    """Targets for one banded mix on the market's columns."""

    def __init__(self, policy: Policy, mix: Mix, market: _Market, signals) -> None:
        self.policy, self.mix, self.market, self.signals = policy, mix, market, signals
        self.lo = np.array([s.band_min for s in policy.sleeves])
        self.hi = np.array([s.band_max for s in policy.sleeves])
        mids = np.array([s.midpoint for s in policy.sleeves])
        self.mids = mids / mids.sum()
        self.cols = [
            np.array(
                [market.col(CASH)] if s.is_cash else [market.col(m) for m in s.members if m in market.symbols],
                dtype=int,
            )
            for s in policy.sleeves
        ]
        self.reserve = np.array([s.reserve for s in policy.sleeves])
        self.sleeve_of_col = {int(c): j for j, cs in enumerate(self.cols) for c in cs}

    def listed(self, t: int, j: int) -> np.ndarray:
        cols = self.cols[j]
        return cols[np.isfinite(self.market.prices[t, cols])]

    def first_day(self) -> int | None:
        ok = np.ones(len(self.market.dates), dtype=bool)
        for cols in self.cols:
            ok &= np.isfinite(self.market.prices[:, cols]).any(axis=1)
        hits = np.flatnonzero(ok)
        return int(hits[0]) if hits.size else None

    def _window(self, t: int, cols: np.ndarray) -> np.ndarray:
        start = max(0, t - self.policy.vol_window + 1)
        return self.market.returns[start : t + 1][:, cols]

    def within(self, t: int, cols: np.ndarray) -> np.ndarray:
        if self.policy.within_sleeve == "equal" or len(cols) == 1:
            return np.full(len(cols), 1.0 / len(cols))
        inv = _inverse(_vols(self._window(t, cols), self.policy.min_vol_observations))
        return inv / inv.sum()

    def sleeve_targets(self, t: int, splits: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        method = self.mix.method
        if method == "policy_mid":
            return project_to_bands(self.mids, self.lo, self.hi)
        if method == "inverse_vol":
            return self._inverse_vol(t, splits)
        return self._regime_tilt(t)

    def _inverse_vol(self, t: int, splits: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        risky = np.flatnonzero(~self.reserve)
        baskets = np.full((min(t + 1, self.policy.vol_window), len(risky)), np.nan)
        for k, j in enumerate(risky):
            cols, w = splits[j]
            r = self._window(t, cols)
            ok = np.isfinite(r)
            weight = (ok * w).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                baskets[:, k] = np.where(ok, r, 0.0) @ w / weight
        inv = _inverse(_vols(baskets, self.policy.min_vol_observations))
        target = self.mids.copy()
        # The reserve is not a risk sleeve (cash has no volatility): it keeps its
        # midpoint share and the risky sleeves split the rest by inverse volatility.
        target[risky] = (1.0 - self.mids[self.reserve].sum()) * inv / inv.sum()
        return project_to_bands(target, self.lo, self.hi)

    def _regime_tilt(self, t: int) -> np.ndarray:
        rule = self.policy.regime
        j = self.policy.sleeve_index[rule.sleeve]
        corr, momentum = self.signals[0][t], self.signals[1][t]
        if corr > rule.correlation_level and momentum > 0:
            tilt = self.hi[j]
        elif corr < 0:
            tilt = self.lo[j]
        else:
            tilt = (self.lo[j] + self.hi[j]) / 2.0
        others = np.arange(len(self.lo)) != j
        target = self.mids.copy()
        target[others] *= (1.0 - tilt) / target[others].sum()
        target[j] = tilt
        lo, hi = self.lo.copy(), self.hi.copy()
        lo[j] = hi[j] = tilt
        if lo.sum() <= 1.0 + 1e-12 and hi.sum() >= 1.0 - 1e-12:
            return project_to_bands(target, lo, hi)
        # The other bands cannot absorb the tilt: fall back to the nearest feasible mix.
        return project_to_bands(target, self.lo, self.hi)

    def targets(self, t: int) -> np.ndarray:
        splits = []
        for j in range(len(self.cols)):
            cols = self.listed(t, j)
            splits.append((cols, self.within(t, cols)))
        sleeve_w = self.sleeve_targets(t, splits)
        out = np.zeros(len(self.market.symbols))
        for (cols, w), s in zip(splits, sleeve_w, strict=True):
            out[cols] = s * w
        return out


# --------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class AllocationResult:
    weights: pl.DataFrame  # mart_allocation_weights
    performance: pl.DataFrame  # mart_mix_performance
    summary: pl.DataFrame  # mart_mix_summary
    breaches: pl.DataFrame  # mart_band_breaches
    warnings: tuple[str, ...]
    compliance: pl.DataFrame  # mart_band_compliance


@dataclass
class _Path:
    start: int
    nav: np.ndarray
    weights: np.ndarray
    targets: np.ndarray
    held: np.ndarray  # bool: the symbol was in the target set of the last rebalance
    turnover: np.ndarray
    cost: np.ndarray
    reason: np.ndarray  # "calendar" or "band" on rebalance days after the first; None otherwise


def _simulate(
    targets: Callable[[int], np.ndarray],
    universe: np.ndarray,
    prices: np.ndarray,
    flags: np.ndarray,
    start: int,
    stop: int,
    cost_bps: float,
    bands: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> _Path:
    """Rebalance to ``targets(t)`` on flagged days; between them, holdings drift with prices.

    ``flags`` are the calendar's rebalance days (the first day always trades).
    With ``bands`` = (sleeve membership, an N x S 0/1 matrix; band_min; band_max),
    a sleeve outside its band at a close also triggers a rebalance at the next
    close: the decision reads that close only, never a later price.
    """
    n_days, n_cols = stop - start, prices.shape[1]
    nav = np.empty(n_days)
    weights = np.empty((n_days, n_cols))
    target_w = np.empty((n_days, n_cols))
    held = np.zeros((n_days, n_cols), dtype=bool)
    turnover = np.full(n_days, np.nan)
    cost = np.zeros(n_days)
    reason = np.full(n_days, None, dtype=object)
    calendar = [*(start + np.flatnonzero(flags[start + 1 : stop]) + 1), stop]
    value, base, hold, r, k = 1.0, start, None, start, 0
    while r < stop:
        tgt = targets(r)
        if hold is not None:
            drifted = value * hold * _growth(prices, hold, base, slice(r, r + 1))[0]
            pre = drifted.sum()
            turnover[r - start] = 0.5 * np.abs(tgt - drifted / pre).sum()
            cost[r - start] = turnover[r - start] * cost_bps / 1e4
            value = pre * (1.0 - cost[r - start])
        hold, base = tgt, r
        while calendar[k] <= r:
            k += 1
        end = calendar[k]
        values = value * hold * _growth(prices, hold, r, slice(r, end))
        seg_nav = values.sum(axis=1)
        seg_w = values / seg_nav[:, None]
        if bands is not None:
            member, lo, hi = bands
            sleeve_w = seg_w @ member
            out = ((sleeve_w < lo - BAND_TOLERANCE) | (sleeve_w > hi + BAND_TOLERANCE)).any(axis=1)
            hits = np.flatnonzero(out)
            if hits.size and r + hits[0] + 1 < end:
                end = r + hits[0] + 1
                reason[end - start] = "band"
        if end < stop and reason[end - start] is None:
            reason[end - start] = "calendar"
        seg, n = slice(r - start, end - start), end - r
        nav[seg] = seg_nav[:n]
        weights[seg] = seg_w[:n]
        target_w[seg] = tgt
        held[seg] = universe & np.isfinite(prices[r])
        r = end
    return _Path(start, nav, weights, target_w, held, turnover, cost, reason)


def _growth(prices: np.ndarray, hold: np.ndarray, base: int, rows: slice) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        g = prices[rows] / prices[base]
    # Unheld columns may be unlisted (NaN); their weight is zero either way.
    return np.where(hold > 0, g, 0.0)


def _frames(
    mix: str,
    path: _Path,
    market: _Market,
    sleeve_of_col: dict[int, tuple[str, float, float]],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    dates = market.dates[path.start : path.start + len(path.nav)]
    tt, cc = np.nonzero(path.held)
    sleeve = [sleeve_of_col[int(c)] for c in cc]
    weights = pl.DataFrame(
        {
            "date": pl.Series(dates[tt], dtype=pl.Date),
            "mix": pl.Series([mix] * len(tt), dtype=pl.String),
            "sleeve": pl.Series([s[0] for s in sleeve], dtype=pl.String),
            "symbol": pl.Series(np.array(market.symbols, dtype=object)[cc], dtype=pl.String),
            "target_weight": path.targets[tt, cc],
            "weight": path.weights[tt, cc],
            "band_min": pl.Series([s[1] for s in sleeve], dtype=pl.Float64),
            "band_max": pl.Series([s[2] for s in sleeve], dtype=pl.Float64),
        }
    )
    nav = path.nav
    daily, spans_gap = _measured_returns(nav, path.weights, market.fresh[path.start : path.start + len(nav)])
    performance = pl.DataFrame(
        {
            "date": pl.Series(dates, dtype=pl.Date),
            "mix": pl.Series([mix] * len(nav), dtype=pl.String),
            "nav": nav,
            "daily_return": pl.Series(daily).fill_nan(None),
            "drawdown": nav / np.maximum.accumulate(nav) - 1.0,
            "turnover": pl.Series(path.turnover).fill_nan(None),
            "cost": path.cost,
            "spans_gap": spans_gap,
            "rebalance_reason": pl.Series(path.reason.tolist(), dtype=pl.String),
        }
    )
    return weights, performance


def _measured_returns(nav: np.ndarray, weights: np.ndarray, fresh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(daily_return, spans_gap) of a NAV path. A day's return is measured when
    every member held into the day (weight > 0 the day before) has its own
    price that day; otherwise it is NaN (a carried price is not a move). The
    first measured day after unmeasured ones is **bridged**: its return is the
    NAV move since the last measured day, flagged ``spans_gap``, so a move
    across a gap is never booked silently as one day's."""
    n = len(nav)
    daily = np.full(n, np.nan)
    spans = np.zeros(n, dtype=bool)
    last = 0
    for t in range(1, n):
        held = weights[t - 1] > 0
        if not fresh[t, held].all():
            continue
        daily[t] = nav[t] / nav[last] - 1.0
        spans[t] = last != t - 1
        last = t
    return daily, spans


def _sleeve_weight() -> pl.Expr:
    return pl.col("weight").sum().over("date", "mix", "sleeve")


def _in_band(weight: pl.Expr) -> pl.Expr:
    return (weight >= pl.col("band_min") - BAND_TOLERANCE) & (
        weight <= pl.col("band_max") + BAND_TOLERANCE
    )


def band_breaches(weights: pl.DataFrame) -> pl.DataFrame:
    """One row per day, mix and sleeve whose drifted weight is outside its band."""
    return (
        weights.group_by("date", "mix", "sleeve", maintain_order=True)
        .agg(pl.col("weight").sum(), pl.col("band_min").first(), pl.col("band_max").first())
        .filter(~_in_band(pl.col("weight")))
        .pipe(MART_BAND_BREACHES.conform)
    )


def band_compliance(weights: pl.DataFrame) -> pl.DataFrame:
    """Per mix, sleeve and day: the sleeve against its band, and what it takes to comply.

    ``drift`` = weight - target_weight; ``days_out_of_band`` counts the
    consecutive days the sleeve has been out of its band up to and including
    this one (0 in band); ``trade_to_band`` is the smallest trade, in fraction
    of NAV, that puts the sleeve back in its band: the signed distance to the
    nearest band edge (positive: buy), 0 in band.
    """
    sleeves = (
        weights.group_by("mix", "sleeve", "date")
        .agg(
            pl.col("weight").sum(),
            pl.col("band_min").first(),
            pl.col("band_max").first(),
            pl.col("in_band").all(),
            pl.col("target_weight").sum(),
        )
        .sort("mix", "sleeve", "date")
    )
    spell = pl.col("in_band").cast(pl.Int64).cum_sum().over("mix", "sleeve")
    return (
        sleeves.with_columns(
            drift=pl.col("weight") - pl.col("target_weight"),
            days_out_of_band=(~pl.col("in_band")).cast(pl.Int64).cum_sum().over("mix", "sleeve", spell),
            trade_to_band=pl.when(pl.col("in_band"))
            .then(0.0)
            .when(pl.col("weight") < pl.col("band_min"))
            .then(pl.col("band_min") - pl.col("weight"))
            .otherwise(pl.col("band_max") - pl.col("weight")),
        )
        .pipe(MART_BAND_COMPLIANCE.conform)
    )


def mix_summary(
    performance: pl.DataFrame, breaches: pl.DataFrame, risk_free: float = 0.0, cost_bps: float = 0.0
) -> pl.DataFrame:
    """Per-mix CAGR (365-day years), annualised volatility and Sharpe, drawdown,
    breaches, and the trading: rebalances, turnover and what it cost.

    Volatility and Sharpe read the one-day returns only: a bridged return
    (``spans_gap``) covers several days and would pass for one big day.
    ``cost_drag`` is the fraction of the final NAV the costs took,
    ``1 - prod(1 - cost)``: the NAV without costs times ``1 - cost_drag`` is
    the NAV with them (costs scale the whole book, so nothing else changes)."""
    order = pl.DataFrame({"mix": performance["mix"].unique(maintain_order=True)})
    perf = performance.sort("mix", "date")
    if "spans_gap" in perf.columns:
        perf = perf.with_columns(
            pl.when(pl.col("spans_gap")).then(None).otherwise(pl.col("daily_return")).alias("daily_return")
        )
    base = perf.group_by("mix", maintain_order=True).agg(
        start_date=pl.col("date").first(),
        end_date=pl.col("date").last(),
        nav_start=pl.col("nav").first(),
        nav_end=pl.col("nav").last(),
        mean=pl.col("daily_return").mean(),
        std=pl.col("daily_return").std(),
        max_drawdown=pl.col("drawdown").min(),
        avg_turnover=pl.col("turnover").mean(),
        rebalances=pl.col("turnover").count(),
        band_rebalances=(pl.col("rebalance_reason") == "band").sum()
        if "rebalance_reason" in perf.columns
        else pl.lit(0),
        total_turnover=pl.col("turnover").sum(),
        cost_drag=1.0 - (1.0 - pl.col("cost")).product(),
    )
    months = (
        perf.group_by("mix", pl.col("date").dt.truncate("1mo").alias("month"), maintain_order=True)
        .agg(pl.col("nav").last())
        .join(base.select("mix", "nav_start"), on="mix")
        .with_columns(prev=pl.col("nav").shift(1).over("mix"))
        .group_by("mix")
        .agg(worst_month=(pl.col("nav") / pl.col("prev").fill_null(pl.col("nav_start")) - 1.0).min())
    )
    out_days = breaches.group_by("mix").agg(days_out_of_band=pl.col("date").n_unique())
    years = (pl.col("end_date") - pl.col("start_date")).dt.total_days() / DAYS_PER_YEAR
    vol = pl.col("std") * math.sqrt(DAYS_PER_YEAR)
    return (
        order.join(base, on="mix", how="left", maintain_order="left")
        .join(months, on="mix", how="left", maintain_order="left")
        .join(out_days, on="mix", how="left", maintain_order="left")
        .with_columns(
            cagr=pl.when(years > 0).then((pl.col("nav_end") / pl.col("nav_start")) ** (1.0 / years) - 1.0),
            volatility=vol,
            sharpe=pl.when(vol > 0).then((pl.col("mean") * DAYS_PER_YEAR - risk_free) / vol),
            days_out_of_band=pl.col("days_out_of_band").fill_null(0),
            cost_bps=pl.lit(cost_bps),
        )
        .pipe(MART_MIX_SUMMARY.conform)
    )


def _empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def simulate_mixes(
    policy: Policy,
    prices: pl.DataFrame,
    correlations: pl.DataFrame | None = None,
    benchmark_prices: pl.DataFrame | None = None,
    *,
    start: date | None = None,
    end: date | None = None,
) -> AllocationResult:
    """Run every mix of ``policy`` on daily crypto ``prices`` (BAR_SCHEMA rows).

    ``correlations`` (rolling correlation frame) and ``benchmark_prices`` (bars
    holding the regime benchmark) feed ``regime_tilt`` only. Mixes that cannot
    run are skipped and said so in ``warnings``; ``start``/``end`` clip the
    valuation period, while earlier prices still feed volatility lookbacks.
    """
    warnings: list[str] = []
    market = _market(prices, policy.symbols)
    present = set(market.symbols)
    flags = _period_starts(market.dates, policy.rebalance)
    first = 0 if start is None else int(np.searchsorted(market.dates, np.datetime64(start, "D")))
    stop = len(market.dates) if end is None else int(
        np.searchsorted(market.dates, np.datetime64(end, "D"), side="right")
    )

    signals = None
    if any(m.method == "regime_tilt" for m in policy.mixes):
        signals = _regime_signals(policy, market.dates, correlations, benchmark_prices)

    weight_frames, perf_frames = [], []
    for mix in policy.mixes:
        if mix.method == "fixed":
            symbols = [s for s, _ in mix.weights]
            missing = [s for s in symbols if s not in present]
            if missing:
                warnings.append(f"mix {mix.name!r} skipped: {missing} absent from the prices")
                continue
            cols = np.array([market.col(s) for s in symbols], dtype=int)
            fixed = np.zeros(len(market.symbols))
            fixed[cols] = [w for _, w in mix.weights]
            listed = np.flatnonzero(np.isfinite(market.prices[:, cols]).all(axis=1))
            begin = int(listed[0]) if listed.size else None
            target_fn = lambda t, fixed=fixed: fixed  # noqa: E731
            sleeve_of_col = {int(c): (REFERENCE_SLEEVE, 0.0, 1.0) for c in cols}
        else:
            absent = {
                s.name: [m for m in s.members if m not in present] for s in policy.sleeves
            }
            empty = [
                name for name, miss in absent.items()
                if miss and len(miss) == len(policy.sleeve(name).members)
            ]
            if empty:
                warnings.append(
                    f"mix {mix.name!r} skipped: no member of sleeve(s) {empty} is in the prices"
                )
                continue
            partial = {name: miss for name, miss in absent.items() if miss}
            if partial:
                warnings.append(
                    f"mix {mix.name!r}: members absent from the prices, sleeves hold the rest: {partial}"
                )
            if mix.method == "regime_tilt" and isinstance(signals, str):
                warnings.append(f"mix {mix.name!r} skipped: {signals}")
                continue
            planner = _PolicyMix(policy, mix, market, signals)
            begin = planner.first_day()
            target_fn = planner.targets
            sleeve_of_col = {
                c: (policy.sleeves[j].name, policy.sleeves[j].band_min, policy.sleeves[j].band_max)
                for c, j in planner.sleeve_of_col.items()
            }
        if begin is None or max(begin, first) >= stop:
            warnings.append(f"mix {mix.name!r} skipped: its members never all trade in the period")
            continue
        universe = np.zeros(len(market.symbols), dtype=bool)
        universe[list(sleeve_of_col)] = True
        trigger = policy.trigger(mix)
        # Reference mixes have no bands (0-100%): only the calendar can trade them.
        bands = None
        if mix.method != "fixed" and trigger in ("bands", "bands_and_calendar"):
            member = np.zeros((len(market.symbols), len(policy.sleeves)))
            for c, j in planner.sleeve_of_col.items():
                member[c, j] = 1.0
            bands = (member, planner.lo, planner.hi)
        calendar = flags if trigger in ("calendar", "bands_and_calendar") else np.zeros_like(flags)
        path = _simulate(
            target_fn, universe, market.prices, calendar, max(begin, first), stop, policy.cost_bps, bands
        )
        w, p = _frames(mix.name, path, market, sleeve_of_col)
        weight_frames.append(w)
        perf_frames.append(p)

    weights = (
        pl.concat(weight_frames).with_columns(in_band=_in_band(_sleeve_weight())).pipe(MART_ALLOCATION_WEIGHTS.conform)
        if weight_frames
        else _empty(MART_ALLOCATION_WEIGHTS.polars_schema)
    )
    performance = pl.concat(perf_frames).pipe(MART_MIX_PERFORMANCE.conform) if perf_frames else _empty(
        MART_MIX_PERFORMANCE.polars_schema
    )
    breaches = band_breaches(weights)
    summary = mix_summary(performance, breaches, policy.risk_free, policy.cost_bps)
    return AllocationResult(
        weights, performance, summary, breaches, tuple(warnings), band_compliance(weights)
    )
