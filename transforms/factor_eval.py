"""Alphalens-style evaluation of the Alpha Score and its sub-scores.

Forward returns are computed here and only here: they judge a score after the
fact and never feed one. Pure transforms: Polars frames in, frames out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from transforms.factors import session_grid

# factor name in the IC marts -> column of mart_factor_scores
FACTOR_COLUMNS: dict[str, str] = {
    "momentum": "momentum_score",
    "value": "value_score",
    "quality": "quality_score",
    "sentiment": "sentiment_score",
    "alpha": "alpha_score",
}

FWD_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "symbol": pl.String(),
    "horizon_sessions": pl.Int64(),
    "fwd_return": pl.Float64(),
}

IC_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "factor": pl.String(),
    "horizon_sessions": pl.Int64(),
    "ic": pl.Float64(),
    "n": pl.Int64(),
}

SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "factor": pl.String(),
    "horizon_sessions": pl.Int64(),
    "mean_ic": pl.Float64(),
    "ic_std": pl.Float64(),
    "ic_tstat": pl.Float64(),
    "n_dates": pl.Int64(),
    "top_minus_bottom_quintile_return": pl.Float64(),
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
    window.
    """
    if any(h <= 0 for h in horizons):
        raise ValueError(f"horizons must be positive session counts: {horizons}")
    grid = session_grid(prices, sessions, symbols).lazy()
    px = pl.col("adj_close")
    parts = [
        grid.select(
            "date",
            "symbol",
            pl.lit(h, dtype=pl.Int64).alias("horizon_sessions"),
            pl.when(px > 0).then(px.shift(-h).over("symbol") / px - 1.0).alias("fwd_return"),
        )
        for h in horizons
    ]
    if not parts:
        return pl.DataFrame(schema=FWD_SCHEMA)
    out = pl.concat(parts).filter(pl.col("fwd_return").is_finite()).sort("horizon_sessions", "date", "symbol")
    return out.collect().select([pl.col(c).cast(t) for c, t in FWD_SCHEMA.items()])


DAILY_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "factor": pl.String(),
    "horizon_sessions": pl.Int64(),
    "ic": pl.Float64(),
    "n": pl.Int64(),
    "top_minus_bottom": pl.Float64(),
}


def factor_daily_stats(
    scores: pl.DataFrame,
    fwd: pl.DataFrame,
    *,
    factors: Mapping[str, str] = FACTOR_COLUMNS,
    min_obs: int = 5,
    quantiles: int = 5,
) -> pl.DataFrame:
    """Per session, factor and horizon: ``ic``, ``n`` and ``top_minus_bottom``.

    ``ic`` is the Spearman rank correlation (Pearson of average ranks, so ties
    are handled as pandas does) between the score and the forward return over
    the ``n`` stocks having both; null when ``n < min_obs`` or either side is
    constant that session. ``top_minus_bottom`` is the mean forward return of
    the top quantile minus that of the bottom one, quantile = ceil(quantiles x
    average rank / n) so tied scores share a bucket; null when either bucket is
    empty. ``scores`` is ``mart_factor_scores`` (or any frame with ``date,
    symbol`` and the ``factors`` columns); ``fwd`` is ``forward_returns``.
    """
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
        .sort("date")
        .collect()
    )
    queries = []
    for h in horizons:
        for name in factors:
            x, y = pl.col("x"), pl.col("y")
            bucket = (quantiles * pl.col("rx") / pl.col("n")).ceil()
            q = (
                base.lazy()
                .select("date", pl.col(name).alias("x"), pl.col(f"fwd_{h}").alias("y"))
                .filter(x.is_finite() & y.is_finite())
                .with_columns(
                    x.rank("average").over("date").alias("rx"),
                    y.rank("average").over("date").alias("ry"),
                    pl.len().over("date").alias("n"),
                )
                .group_by("date")
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
            )
            queries.append(q)
    out = pl.concat(pl.collect_all(queries)).sort("factor", "horizon_sessions", "date")
    return out.select([pl.col(c).cast(t) for c, t in DAILY_SCHEMA.items()])


def mart_factor_ic(daily: pl.DataFrame) -> pl.DataFrame:
    """``date, factor, horizon_sessions, ic, n`` from ``factor_daily_stats``."""
    return daily.select([pl.col(c).cast(t) for c, t in IC_SCHEMA.items()])


def factor_ic_summary(daily: pl.DataFrame) -> pl.DataFrame:
    """Per factor and horizon: ``mean_ic``, ``ic_std`` (sample, ddof=1),
    ``ic_tstat`` = mean_ic / (ic_std / sqrt(n_dates)), ``n_dates`` (sessions
    with an IC) and ``top_minus_bottom_quintile_return`` (mean over sessions of
    the daily top-minus-bottom spread).

    Forward windows of consecutive sessions overlap, so the IC series is
    autocorrelated and the t-stat overstates significance; read it as a
    ranking of factors, not as a p-value.
    """
    ic = pl.col("ic").drop_nulls()
    out = (
        daily.group_by("factor", "horizon_sessions")
        .agg(
            ic.mean().alias("mean_ic"),
            ic.std(ddof=1).alias("ic_std"),
            ic.count().alias("n_dates"),
            pl.col("top_minus_bottom").mean().alias("top_minus_bottom_quintile_return"),
        )
        .with_columns(
            pl.when(pl.col("ic_std") > 0)
            .then(pl.col("mean_ic") / (pl.col("ic_std") / pl.col("n_dates").cast(pl.Float64).sqrt()))
            .alias("ic_tstat")
        )
        .sort("factor", "horizon_sessions")
    )
    return out.select([pl.col(c).cast(t) for c, t in SUMMARY_SCHEMA.items()])


def evaluate_factors(
    scores: pl.DataFrame,
    prices: pl.DataFrame,
    sessions: pl.Series,
    *,
    horizons: Sequence[int] = (21, 63),
    factors: Mapping[str, str] = FACTOR_COLUMNS,
    min_obs: int = 5,
    quantiles: int = 5,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(mart_factor_ic, summary)`` for ``mart_factor_scores`` against prices."""
    symbols = scores["symbol"].unique().to_list()
    fwd = forward_returns(prices, sessions, horizons, symbols)
    daily = factor_daily_stats(scores, fwd, factors=factors, min_obs=min_obs, quantiles=quantiles)
    return mart_factor_ic(daily), factor_ic_summary(daily)


__all__ = [
    "FACTOR_COLUMNS",
    "evaluate_factors",
    "factor_ic_summary",
    "forward_returns",
    "factor_daily_stats",
    "mart_factor_ic",
]
