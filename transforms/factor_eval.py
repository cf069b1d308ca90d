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


def _pairs(scores: pl.DataFrame, fwd: pl.DataFrame, factors: Mapping[str, str]) -> list[tuple[str, int, pl.LazyFrame]]:
    """Per (factor, horizon): ``date, x, y`` pairs with both sides present, plus
    the per-date average rank of each side and the pair count ``n``."""
    out = []
    sc = scores.lazy()
    for h in fwd["horizon_sessions"].unique().sort().to_list():
        f = fwd.lazy().filter(pl.col("horizon_sessions") == h).select("date", "symbol", "fwd_return")
        for name, col in factors.items():
            pairs = (
                sc.select("date", "symbol", pl.col(col).cast(pl.Float64).alias("x"))
                .join(f, on=["date", "symbol"], how="inner")
                .filter(pl.col("x").is_finite() & pl.col("fwd_return").is_finite())
                .with_columns(
                    pl.col("x").rank("average").over("date").alias("rx"),
                    pl.col("fwd_return").rank("average").over("date").alias("ry"),
                    pl.len().over("date").alias("n"),
                )
            )
            out.append((name, h, pairs))
    return out


def mart_factor_ic(
    scores: pl.DataFrame,
    fwd: pl.DataFrame,
    *,
    factors: Mapping[str, str] = FACTOR_COLUMNS,
    min_obs: int = 5,
) -> pl.DataFrame:
    """``date, factor, horizon_sessions, ic, n``: per-session Spearman rank
    correlation (Pearson of average ranks, so ties are handled as pandas does)
    between a score and the forward return, over the ``n`` stocks having both.

    ``ic`` is null when ``n < min_obs`` or either side is constant that session.
    """
    parts = [
        pairs.group_by("date")
        .agg(pl.corr("rx", "ry").alias("ic"), pl.len().alias("n"))
        .select(
            "date",
            pl.lit(name).alias("factor"),
            pl.lit(h, dtype=pl.Int64).alias("horizon_sessions"),
            pl.when((pl.col("n") >= min_obs) & pl.col("ic").is_finite()).then(pl.col("ic")).alias("ic"),
            "n",
        )
        for name, h, pairs in _pairs(scores, fwd, factors)
    ]
    if not parts:
        return pl.DataFrame(schema=IC_SCHEMA)
    out = pl.concat(parts).collect().sort("factor", "horizon_sessions", "date")
    return out.select([pl.col(c).cast(t) for c, t in IC_SCHEMA.items()])


def quantile_spreads(
    scores: pl.DataFrame,
    fwd: pl.DataFrame,
    *,
    factors: Mapping[str, str] = FACTOR_COLUMNS,
    quantiles: int = 5,
) -> pl.DataFrame:
    """``date, factor, horizon_sessions, spread``: mean forward return of the
    top quantile minus that of the bottom one on each session.

    Quantile = ceil(quantiles x average rank / n), so tied scores share a
    bucket; sessions where the top or bottom bucket is empty have no row.
    """
    parts = []
    for name, h, pairs in _pairs(scores, fwd, factors):
        bucket = (quantiles * pl.col("rx") / pl.col("n")).ceil().cast(pl.Int64)
        parts.append(
            pairs.with_columns(bucket.alias("q"))
            .group_by("date")
            .agg(
                pl.col("fwd_return").filter(pl.col("q") == quantiles).mean().alias("top"),
                pl.col("fwd_return").filter(pl.col("q") == 1).mean().alias("bottom"),
            )
            .select(
                "date",
                pl.lit(name).alias("factor"),
                pl.lit(h, dtype=pl.Int64).alias("horizon_sessions"),
                (pl.col("top") - pl.col("bottom")).alias("spread"),
            )
            .drop_nulls("spread")
        )
    schema = {"date": pl.Date(), "factor": pl.String(), "horizon_sessions": pl.Int64(), "spread": pl.Float64()}
    if not parts:
        return pl.DataFrame(schema=schema)
    out = pl.concat(parts).collect().sort("factor", "horizon_sessions", "date")
    return out.select([pl.col(c).cast(t) for c, t in schema.items()])


def factor_ic_summary(ic: pl.DataFrame, spreads: pl.DataFrame) -> pl.DataFrame:
    """Per factor and horizon: ``mean_ic``, ``ic_std`` (sample, ddof=1),
    ``ic_tstat`` = mean_ic / (ic_std / sqrt(n_dates)), ``n_dates`` (sessions
    with an IC) and ``top_minus_bottom_quintile_return`` (mean over sessions of
    the quantile spread).

    Forward windows of consecutive sessions overlap, so the IC series is
    autocorrelated and the t-stat overstates significance; read it as a
    ranking of factors, not as a p-value.
    """
    stats = (
        ic.drop_nulls("ic")
        .group_by("factor", "horizon_sessions")
        .agg(
            pl.col("ic").mean().alias("mean_ic"),
            pl.col("ic").std(ddof=1).alias("ic_std"),
            pl.len().alias("n_dates"),
        )
        .with_columns(
            pl.when(pl.col("ic_std") > 0)
            .then(pl.col("mean_ic") / (pl.col("ic_std") / pl.col("n_dates").cast(pl.Float64).sqrt()))
            .alias("ic_tstat")
        )
    )
    spread = spreads.group_by("factor", "horizon_sessions").agg(
        pl.col("spread").mean().alias("top_minus_bottom_quintile_return")
    )
    keys = pl.concat([ic.select("factor", "horizon_sessions"), spreads.select("factor", "horizon_sessions")]).unique()
    out = (
        keys.join(stats, on=["factor", "horizon_sessions"], how="left")
        .join(spread, on=["factor", "horizon_sessions"], how="left")
        .with_columns(pl.col("n_dates").fill_null(0))
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
    ic = mart_factor_ic(scores, fwd, factors=factors, min_obs=min_obs)
    spreads = quantile_spreads(scores, fwd, factors=factors, quantiles=quantiles)
    return ic, factor_ic_summary(ic, spreads)


__all__ = [
    "FACTOR_COLUMNS",
    "evaluate_factors",
    "factor_ic_summary",
    "forward_returns",
    "mart_factor_ic",
    "quantile_spreads",
]
