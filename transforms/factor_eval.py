"""Alphalens-style evaluation of the Alpha Score and its sub-scores.

Forward returns are computed here and only here: they judge a score after the
fact and never feed one. Pure transforms: Polars frames in, frames out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date

import numpy as np
import polars as pl

from contracts.tables import MART_FACTOR_IC, MART_FACTOR_IC_SUMMARY
from transforms.factors import _calendar, _dense_grid, _session_index

# factor name in the IC marts -> column of mart_factor_scores
FACTOR_COLUMNS: dict[str, str] = {
    "momentum": "momentum_score",
    "value": "value_score",
    "quality": "quality_score",
    "sentiment": "sentiment_score",
    "alpha": "alpha_score",
}

# The daily spread is published with the IC so that the summary can be
# recomputed from stored rows (an incremental run) instead of from all scores.


# How ``ic_tstat`` accounts for the overlap of forward windows (published with it).
TSTAT_METHOD = "newey_west_h-1_lags"


def quantile_bucket(rank: pl.Expr, n: pl.Expr, quantiles: int) -> pl.Expr:
    """Balanced quantile (1..``quantiles``) of an average rank among ``n``: the
    rule of pandas ``qcut`` (and so alphalens) applied to the ranks. The ranks
    1..n are cut at the ``quantiles`` equal steps of (rank - 1) / (n - 1), bins
    closed on the right and the lowest rank in the first bin, so bucket sizes
    differ by at most one (33 stocks: 7, 6, 7, 6, 7, where ceil(5 x rank / n)
    gave 6 at the bottom and 7 at the top). Tied scores share a rank and so a bucket. Null when n < 2."""
    position = quantiles * (rank - 1.0) / (n - 1.0)
    return pl.when(n > 1).then(position.ceil().clip(lower_bound=1.0))


def newey_west_tstat(values: Sequence[float], lags: int) -> float | None:
    """t-stat of the mean of ``values`` (in time order) with the Newey-West
    (Bartlett kernel) long-run variance over ``lags`` lags:
    var = g0 + 2 sum_{j=1..L} (1 - j/(L+1)) g_j, g_j = sum_t e_t e_{t-j} / T,
    t = mean / sqrt(var / T). None with fewer than 2 values or no variance."""
    x = np.asarray(values, dtype=float)
    n = x.size
    if n < 2:
        return None
    e = x - x.mean()
    var = float(e @ e) / n
    for j in range(1, min(lags, n - 1) + 1):
        var += 2.0 * (1.0 - j / (lags + 1.0)) * float(e[j:] @ e[:-j]) / n
    if not var > 0:
        return None
    return float(x.mean() / math.sqrt(var / n))


def _check_horizons(horizons: Sequence[int]) -> None:
    if any(h <= 0 for h in horizons):
        raise ValueError(f"horizons must be positive session counts: {horizons}")


def _forward_grid(
    prices: pl.DataFrame, cal: pl.DataFrame, horizons: Sequence[int], symbols: Sequence[str] | None, start_idx: int = 0,
    grid: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The session grid (symbol-major, sessions ``>= start_idx``; ``grid`` when given) with one
    ``fwd_{h}`` column per horizon: null unless finite."""
    if grid is None:
        grid = _dense_grid(prices, cal, symbols, start_idx)
    px = pl.col("adj_close")
    fwd = [
        # Within the stock's run of the grid, shift(-h) is h sessions later.
        pl.when((pl.col("grid_rpos") >= h) & (px > 0)).then(px.shift(-h) / px - 1.0).alias(f"fwd_{h}")
        for h in horizons
    ]
    return grid.with_columns(fwd).with_columns(
        [pl.when(pl.col(f"fwd_{h}").is_finite()).then(pl.col(f"fwd_{h}")).alias(f"fwd_{h}") for h in horizons]
    )


DAILY_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "factor": pl.String(),
    "horizon_sessions": pl.Int64(),
    "ic": pl.Float64(),
    "n": pl.Int64(),
    "top_minus_bottom": pl.Float64(),
}


def _session_ranks(base: pl.DataFrame, column: str) -> pl.DataFrame:
    """``r, c``: each row's average rank among the finite values of ``column``
    on its session (null where not finite) and how many the session has."""
    v = pl.col(column)
    return base.select(pl.col("date").set_sorted(), pl.when(v.is_finite()).then(v).alias("v")).select(
        pl.col("v").rank("average").over("date").alias("r"), pl.col("v").count().over("date").alias("c")
    )


def _pair_ranks(pair: pl.DataFrame, ranks: pl.DataFrame, name: str) -> pl.Series:
    """The session ranks of ``name`` among the rows of ``pair`` (``date, x, y, n``
    and the shared ranks in ``ranks``, row for row): the shared rank where the
    session kept every row with a value (same rows, same rank), ranked anew on
    the other sessions only (whole sessions, so their ranks are those of a rank
    over all of ``pair``)."""
    shared = ranks["r"]
    redo = pair["n"] != ranks["c"]
    if not redo.any():
        return shared
    idx = redo.arg_true()
    fresh = pair.filter(redo).select(pl.col(name).rank("average").over(pl.col("date").set_sorted()))[name]
    return shared.scatter(idx, fresh)


def _daily_from_base(
    base: pl.DataFrame, horizons: Sequence[int], factors: Mapping[str, str], min_obs: int, quantiles: int
) -> pl.DataFrame:
    """DAILY_SCHEMA rows from ``date, {factor}..., fwd_{h}...`` sorted by date
    then symbol (the order fixes the float summation order of ``corr``).

    The ranks and the count stay window expressions on purpose: the same
    bucket expression written inside the group-by put a few rows in another
    quantile on some sessions (seen at 1,000 stocks x 12 years), and the
    buckets must not move.

    Each (factor, horizon) pair ranks the score and the forward return per
    session among the rows having both. Those are, on most sessions, all the
    rows having the score (or the return): each factor's and each horizon's
    session ranks are taken once (``_session_ranks``) and reused by every pair
    on the sessions where the pair keeps all those rows; only the other
    sessions (a stock's last h sessions, a data gap) are ranked again.
    """
    if not horizons or not factors:
        return pl.DataFrame(schema=DAILY_SCHEMA)
    y = pl.col("y")
    bucket = pl.col("bucket")
    keep = base.select([pl.col(name).is_finite().fill_null(False).alias(name) for name in factors])
    keep_h = base.select([pl.col(f"fwd_{h}").is_finite().fill_null(False).alias(f"fwd_{h}") for h in horizons])
    # One factor's ranks at a time (and each pair collected at once): the
    # memory held is the horizons' ranks, one factor's and one pair's.
    y_ranks = {h: _session_ranks(base, f"fwd_{h}") for h in horizons}
    parts = []
    for name in factors:
        x_ranks = _session_ranks(base, name) if keep[name].any() else None
        for h in horizons:
            both = keep[name] & keep_h[f"fwd_{h}"]
            pair = (
                base.select(pl.col("date").set_sorted(), pl.col(name).alias("x"), pl.col(f"fwd_{h}").alias("y"))
                .filter(both)
                .with_columns(pl.len().over("date").alias("n"))
            )
            if pair.height:
                rx = _pair_ranks(pair, x_ranks.filter(both), "x")
                ry = _pair_ranks(pair, y_ranks[h].filter(both), "y")
                pair = pair.with_columns(rx.alias("rx"), ry.alias("ry"))
            else:
                pair = pair.with_columns([pl.lit(None, dtype=pl.Float64).alias(r) for r in ("rx", "ry")])
            # Each row's bucket once, before the group-by: both spreads' filters read it (the
            # same element-wise arithmetic on the same ranks and counts, so the same buckets).
            pair = pair.with_columns(quantile_bucket(pl.col("rx"), pl.col("n"), quantiles).alias("bucket"))
            parts.append(
                pair.lazy()
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
                .collect(engine="in-memory")
            )
        del x_ranks
    out = pl.concat(parts).sort("factor", "horizon_sessions", "date")
    return out.select([pl.col(c).cast(t) for c, t in DAILY_SCHEMA.items()])


def factor_daily_stats_from_prices(
    scores: pl.DataFrame,
    prices: pl.DataFrame,
    sessions: pl.Series,
    *,
    horizons: Sequence[int] = (21, 63),
    factors: Mapping[str, str] = FACTOR_COLUMNS,
    min_obs: int = 5,
    quantiles: int = 5,
    from_date: date | None = None,
    grid: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per session, factor and horizon: ``ic``, ``n`` and ``top_minus_bottom``
    (``DAILY_SCHEMA``), from the scores and the forward returns of ``prices``;
    each score row finds its forward returns by position in the session grid.

    ``ic`` is the Spearman rank correlation (Pearson of average ranks, so ties
    are handled as pandas does) between the score and the forward return over
    the ``n`` stocks having both; null when ``n < min_obs`` or either side is
    constant that session. ``top_minus_bottom`` is the mean forward return of
    the top quantile minus that of the bottom one, quantiles balanced as
    pandas ``qcut`` cuts the ranks (``quantile_bucket``), so tied scores share
    a bucket; null when either bucket is empty. ``scores`` is
    ``mart_factor_scores`` (or any frame with ``date, symbol`` and the
    ``factors`` columns).

    With ``from_date``, only the sessions whose forward window reaches a
    session ``>= from_date`` are computed: those ``>= from_date - max(horizons)``
    sessions. Only the scores and prices from that session on are read.

    ``grid``: without ``from_date``, the session grid of ``prices`` when the caller has it
    (``transforms.factors.stock_grid``, of every stock: a stock without scores finds no row).
    Each row's forward returns are its own stock's, so the extra stocks change nothing.
    """
    _check_horizons(horizons)
    hs = sorted(set(horizons))
    if not hs or not factors:
        return pl.DataFrame(schema=DAILY_SCHEMA)
    cal = _calendar(sessions)
    start_idx = 0
    if from_date is not None:
        later = cal.filter(pl.col("date") >= from_date)["session_idx"]
        first_idx = int(later.min()) if later.len() else cal.height
        start_idx = max(first_idx - max(hs), 0)
        if start_idx >= cal.height:
            return pl.DataFrame(schema=DAILY_SCHEMA)
        start_date = cal["date"][start_idx]
        scores = scores.filter(pl.col("date") >= start_date)
        prices = prices.filter(pl.col("date") >= start_date)
    shared = grid if from_date is None else None
    # The stocks to build a grid for: only read without a shared grid.
    symbols = scores["symbol"].unique().to_list() if shared is None else None
    grid = _forward_grid(prices, cal, hs, symbols, start_idx, shared)
    # Where each stock's run starts in the symbol-major grid.
    runs = (
        grid.lazy()
        .with_row_index("offset")
        .filter(pl.col("grid_pos") == 0)
        .select("symbol", "sym", pl.col("session_idx").alias("first"), "offset", (pl.col("grid_rpos") + 1).alias("len"))
        .collect()
    )
    frame = scores.select("date", "symbol", *[pl.col(c).cast(pl.Float64).alias(f) for f, c in factors.items()])
    # Each row's session and run by a binary search in the (sorted, gap-free numbered) calendar
    # and the code of its symbol among the runs' (one each), instead of two hashing joins on
    # millions of rows: the same rows (a date off the calendar or a symbol without a run finds
    # none, nulls drop out at the filter), in the same order.
    session_idx = _session_index(frame["date"], cal)
    run = frame["symbol"].cast(pl.Enum(runs["symbol"]), strict=False).to_physical().cast(pl.Int64)
    first = runs["first"].gather(run)
    located = (
        frame.select("date", *factors)
        .with_columns(
            session_idx.alias("session_idx"),
            first.alias("first"),
            runs["offset"].cast(pl.Int64).gather(run).alias("offset"),
            runs["len"].gather(run).alias("len"),
            runs["sym"].gather(run).alias("sym"),
        )
        .filter(
            (pl.col("session_idx") >= pl.col("first"))
            & (pl.col("session_idx") - pl.col("first") < pl.col("len"))
        )
        .with_columns(
            (pl.col("offset") + pl.col("session_idx") - pl.col("first")).alias("pos"),
            (pl.col("session_idx") * (runs.height + 1) + pl.col("sym")).alias("order"),
        )
    )
    # mart_factor_scores already comes in (date, symbol) order: check, not sort.
    if not located["order"].is_sorted():
        located = located.sort("order")
    base = located.select("date", *factors).with_columns(
        [grid[f"fwd_{h}"].gather(located["pos"]).alias(f"fwd_{h}") for h in hs]
    )
    return _daily_from_base(base, hs, factors, min_obs, quantiles)


def mart_factor_ic(daily: pl.DataFrame) -> pl.DataFrame:
    """``date, factor, horizon_sessions, ic, n, top_minus_bottom`` from ``factor_daily_stats_from_prices``."""
    return daily.pipe(MART_FACTOR_IC.conform)


def factor_ic_summary(daily: pl.DataFrame) -> pl.DataFrame:
    """Per factor and horizon: ``mean_ic``, ``ic_std`` (sample, ddof=1),
    ``n_dates`` (sessions with an IC), ``top_minus_bottom_quintile_return``
    (mean over sessions of the daily top-minus-bottom spread) and two t-stats
    of the mean IC:

    - ``ic_tstat``: Newey-West, h - 1 lags for horizon h (``ic_tstat_method``
      says so). The forward windows of consecutive sessions share h - 1 days,
      so the daily ICs are autocorrelated up to lag h - 1; the Bartlett-kernel
      long-run variance counts that, where the plain formula would take about
      h times too many independent observations.
    - ``ic_tstat_naive`` = mean_ic / (ic_std / sqrt(n_dates)), as if the
      sessions were independent: it overstates significance (kept, labelled,
      for comparison only).

    The ICs are taken in date order over the sessions that have one.
    """
    ic = pl.col("ic").drop_nulls()
    out = (
        daily.sort("factor", "horizon_sessions", "date")
        .group_by("factor", "horizon_sessions", maintain_order=True)
        .agg(
            ic.mean().alias("mean_ic"),
            ic.std(ddof=1).alias("ic_std"),
            ic.count().alias("n_dates"),
            pl.col("top_minus_bottom").mean().alias("top_minus_bottom_quintile_return"),
            ic.alias("_ics"),
        )
        .with_columns(
            pl.when(pl.col("ic_std") > 0)
            .then(pl.col("mean_ic") / (pl.col("ic_std") / pl.col("n_dates").cast(pl.Float64).sqrt()))
            .alias("ic_tstat_naive"),
            pl.lit(TSTAT_METHOD).alias("ic_tstat_method"),
        )
        .sort("factor", "horizon_sessions")
    )
    tstats = [
        newey_west_tstat(ics, max(int(h) - 1, 0))
        for ics, h in zip(out["_ics"].to_list(), out["horizon_sessions"].to_list(), strict=True)
    ]
    out = out.with_columns(pl.Series("ic_tstat", tstats, dtype=pl.Float64))
    return out.pipe(MART_FACTOR_IC_SUMMARY.conform)


def evaluate_factors(
    scores: pl.DataFrame,
    prices: pl.DataFrame,
    sessions: pl.Series,
    *,
    horizons: Sequence[int] = (21, 63),
    factors: Mapping[str, str] = FACTOR_COLUMNS,
    min_obs: int = 5,
    quantiles: int = 5,
    from_date: date | None = None,
    grid: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(mart_factor_ic, summary)`` for ``mart_factor_scores`` against prices (``grid``:
    see ``factor_daily_stats_from_prices``).

    With ``from_date``, the IC rows are only those of the sessions whose
    forward window is touched by sessions ``>= from_date``, i.e. sessions
    ``>= from_date - max(horizons)`` sessions (equal to the full result
    filtered on those dates); the caller replaces those dates in the stored
    IC rows. The summary returned is then that of these rows alone: for the
    full-history summary, call ``factor_ic_summary`` on all stored IC rows
    (they carry the daily ``top_minus_bottom``).
    """
    daily = factor_daily_stats_from_prices(
        scores,
        prices,
        sessions,
        horizons=horizons,
        factors=factors,
        min_obs=min_obs,
        quantiles=quantiles,
        from_date=from_date,
        grid=grid,
    )
    return mart_factor_ic(daily), factor_ic_summary(daily)


__all__ = [
    "FACTOR_COLUMNS",
    "evaluate_factors",
    "factor_daily_stats_from_prices",
    "factor_ic_summary",
    "mart_factor_ic",
]
