"""Frozen copy of the Alpha Score before the performance rework (commit 1efa463).

``transforms/factors.py`` + ``transforms/factor_eval.py`` as they were, kept
as a yardstick, with the rules issue 14 changed on purpose written in (each
marked "Issue 14": default weights 30/25/25/20, no rank below a cross-section
of 10 stocks, balanced qcut buckets, Newey-West IC t-stat): ``tests/transforms/test_alpha_pinned.py`` checks the
new code against it on generated panels, and the ``alpha_score_legacy`` bench
stage times it. Not used by the pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import polars as pl

FAMILIES: tuple[str, ...] = ("momentum", "value", "quality", "sentiment")

# Fundamentals columns the metric formulas read; absent ones are added as nulls
# so a source without fundamentals still yields momentum-only scores.
FUNDAMENTAL_INPUTS: tuple[str, ...] = (
    "trailing_pe",
    "price_to_book",
    "return_on_equity",
    "profit_margin",
    "debt_to_equity",
    "recommendation_mean",
    "short_percent_of_float",
)


@dataclass(frozen=True)
class Metric:
    """One scored input.

    ``formula`` is evaluated on the per-stock session grid (one row per stock
    and session, sorted by symbol then date, see ``session_grid``) joined with
    the point-in-time fundamentals snapshot; it must yield null, never zero or
    a sentinel, when an input is missing.
    """

    name: str
    family: str
    formula: pl.Expr
    higher_is_better: bool
    description: str


def _lagged_return(recent: int, base: int) -> pl.Expr:
    # shift over the dense per-stock session grid counts sessions, not rows of
    # whatever bars happen to exist, so a data gap yields null rather than a
    # silently longer window; a non-positive base price has no meaningful return.
    recent_px = pl.col("adj_close").shift(recent).over("symbol")
    base_px = pl.col("adj_close").shift(base).over("symbol")
    return pl.when(base_px > 0).then(recent_px / base_px - 1.0)


def _reciprocal(column: str) -> pl.Expr:
    # A negative multiple (losses, negative book) inverts to a meaningful
    # negative yield; zero has no finite reciprocal and is treated as missing.
    c = pl.col(column)
    return pl.when(c != 0).then(1.0 / c)


METRICS: tuple[Metric, ...] = (
    Metric(
        "momentum_12_1",
        "momentum",
        _lagged_return(21, 252),
        True,
        "adj_close 21 sessions ago / adj_close 252 sessions ago - 1",
    ),
    Metric(
        "momentum_6_1",
        "momentum",
        _lagged_return(21, 126),
        True,
        "adj_close 21 sessions ago / adj_close 126 sessions ago - 1",
    ),
    Metric("earnings_yield", "value", _reciprocal("trailing_pe"), True, "1 / trailing P/E"),
    Metric("book_to_price", "value", _reciprocal("price_to_book"), True, "1 / price-to-book"),
    Metric("return_on_equity", "quality", pl.col("return_on_equity"), True, "return on equity"),
    Metric("profit_margin", "quality", pl.col("profit_margin"), True, "net profit margin"),
    Metric("debt_to_equity", "quality", pl.col("debt_to_equity"), False, "debt-to-equity (lower is better)"),
    Metric(
        "recommendation_mean",
        "sentiment",
        pl.col("recommendation_mean"),
        False,
        "mean analyst recommendation, 1 = strong buy .. 5 = sell (lower is better)",
    ),
    Metric(
        "short_percent_of_float",
        "sentiment",
        pl.col("short_percent_of_float"),
        False,
        "short interest as a fraction of float (lower is better)",
    ),
)


@dataclass(frozen=True)
class LabelThresholds:
    """Strong >= strong; Moderate >= moderate; Weak below (on integer scores)."""

    strong: int = 75
    moderate: int = 40

    def __post_init__(self) -> None:
        if not 0 <= self.moderate <= self.strong <= 100:
            raise ValueError(f"need 0 <= moderate <= strong <= 100, got {self}")


SCORE_COLUMNS: tuple[str, ...] = tuple(f"{f}_score" for f in FAMILIES)

SCORES_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "symbol": pl.String(),
    "sector": pl.String(),
    "momentum_score": pl.Float64(),
    "value_score": pl.Float64(),
    "quality_score": pl.Float64(),
    "sentiment_score": pl.Float64(),
    "alpha_score": pl.Int64(),
    "alpha_label": pl.String(),
    "coverage": pl.Int64(),
    "summary": pl.String(),
    "headline": pl.String(),
}

METRICS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "symbol": pl.String(),
    "metric": pl.String(),
    "value": pl.Float64(),
    "rank_pct": pl.Float64(),
    "rank_scope": pl.String(),
}


def _check_metrics(metrics: Sequence[Metric]) -> None:
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate metric names: {names}")
    bad = [m.name for m in metrics if m.family not in FAMILIES]
    if bad:
        raise ValueError(f"metrics with unknown family (expected one of {FAMILIES}): {bad}")
    reserved = {"date", "symbol", "sector", "sector_code", "session_idx", "adj_close", *SCORE_COLUMNS}
    clash = [n for n in names if n in reserved or "__" in n]
    if clash:
        raise ValueError(f"metric names clash with panel columns: {clash}")


def session_grid(prices: pl.DataFrame, sessions: pl.Series, symbols: Sequence[str] | None = None) -> pl.DataFrame:
    """One row per stock and session from its first to its last priced session.

    Returns ``symbol, session_idx, date, adj_close`` sorted by symbol then date;
    ``adj_close`` is null on sessions the stock has no bar for. Bars dated off
    the session calendar are dropped; bars are one per symbol and date (the
    BAR_SCHEMA contract). ``session_idx`` numbers ``sessions`` from 0.
    """
    cal = (
        pl.DataFrame({"date": sessions.cast(pl.Date)})
        .drop_nulls()
        .unique("date")
        .sort("date")
        .with_row_index("session_idx")
        .with_columns(pl.col("session_idx").cast(pl.Int64))
    )
    px = prices.lazy().select("symbol", pl.col("date").cast(pl.Date), pl.col("adj_close").cast(pl.Float64))
    if symbols is not None:
        px = px.filter(pl.col("symbol").is_in(list(symbols)))
    px = px.join(cal.lazy(), on="date", how="inner").drop("date").collect()
    bounds = (
        px.group_by("symbol")
        .agg(pl.col("session_idx").min().alias("first"), pl.col("session_idx").max().alias("last"))
        .sort("symbol")
        .with_columns((pl.col("last") - pl.col("first") + 1).alias("len"))
        .with_columns((pl.col("len").cum_sum() - pl.col("len")).alias("offset"))
    )
    grid = (
        bounds.select(
            pl.col("symbol").repeat_by("len"),
            pl.int_ranges("first", pl.col("last") + 1).alias("session_idx"),
        )
        .explode(["symbol", "session_idx"])
        .join(cal, on="session_idx", how="left", maintain_order="left")
    )
    # Place each bar at its row by arithmetic rather than a (symbol, date) join
    # on the full grid: the grid is laid out symbol by symbol, session by session.
    pos = px.join(bounds.select("symbol", "first", "offset"), on="symbol", how="inner").select(
        (pl.col("offset") + pl.col("session_idx") - pl.col("first")).alias("pos"), "adj_close"
    )
    adj = pl.repeat(None, grid.height, dtype=pl.Float64, eager=True).alias("adj_close")
    if pos.height:
        adj = adj.scatter(pos["pos"], pos["adj_close"])
    return grid.with_columns(adj).select("symbol", "session_idx", "date", "adj_close")


def _stocks(assets: pl.DataFrame) -> pl.DataFrame:
    return assets.filter(pl.col("asset_class") == "equity").select("symbol", "name", "sector").unique("symbol")


def _with_fundamentals(
    grid: pl.LazyFrame, fundamentals: pl.DataFrame | None, tolerance: timedelta | None
) -> pl.LazyFrame:
    cols = list(FUNDAMENTAL_INPUTS)
    if fundamentals is None:
        return grid.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in cols])
    f = fundamentals.lazy()
    present = set(fundamentals.columns)
    f = f.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in cols if c not in present])
    f = (
        f.select("symbol", pl.col("as_of").cast(pl.Date), *[pl.col(c).cast(pl.Float64) for c in cols])
        .unique(["symbol", "as_of"], keep="last", maintain_order=True)
        .sort("symbol", "as_of")
    )
    # Backward as-of join: a snapshot is visible from its as_of session on,
    # never before (no look-ahead). With ``by``, each group only needs to be
    # sorted on the key, which the (symbol, date) ordered grid already is.
    return grid.join_asof(
        f,
        left_on="date",
        right_on="as_of",
        by="symbol",
        strategy="backward",
        tolerance=tolerance,
        check_sortedness=False,
    )


def factor_panel(
    prices: pl.DataFrame,
    assets: pl.DataFrame,
    sessions: pl.Series,
    fundamentals: pl.DataFrame | None = None,
    *,
    metrics: Sequence[Metric] = METRICS,
    min_sector_size: int = 5,
    fundamentals_tolerance: timedelta | None = None,
    min_cross_section: int = 10,
) -> pl.DataFrame:
    """Wide per-(date, symbol) frame of metric values and percentile ranks.

    Columns: ``date, symbol, sector`` then per metric ``{name}`` (value),
    ``{name}__rank`` (0-100, higher is better) and ``{name}__scope``
    ('sector' | 'all'), then ``{family}_score`` for each family. Only stocks
    (``asset_class == 'equity'``) are scored; sector comes from ``assets``.

    A metric ranks within the stock's sector when at least ``min_sector_size``
    stocks of that sector have it on that session, otherwise across all stocks.
    ``fundamentals_tolerance`` (default None: no limit) ignores snapshots older
    than that on a session.
    """
    _check_metrics(metrics)
    stocks = _stocks(assets)
    grid = session_grid(prices, sessions, stocks["symbol"].to_list())
    # Windows partition faster on an integer than on the sector string.
    sectors = stocks.select(
        "symbol", "sector", pl.col("sector").rank("dense").cast(pl.Int32).alias("sector_code")
    )
    # Time-series formulas (momentum) read rows in grid order, so every join
    # on the way must keep the left frame's (symbol, date) order.
    joined = _with_fundamentals(grid.lazy(), fundamentals, fundamentals_tolerance).join(
        sectors.lazy(), on="symbol", how="left", maintain_order="left"
    )

    values = (
        joined.select(
            "date",
            "symbol",
            "sector",
            "sector_code",
            *[m.formula.cast(pl.Float64).alias(m.name) for m in metrics],
        )
        .with_columns(
            # NaN/inf (e.g. from a zero price) would otherwise rank as extremes.
            [pl.when(pl.col(m.name).is_finite()).then(pl.col(m.name)).alias(m.name) for m in metrics]
        )
        .sort("date", "symbol")
    )
    # Issue 14 rule: a metric held by fewer than min_cross_section stocks on a
    # session is not ranked there (treated as not held).
    values = values.with_columns(
        [
            pl.when(pl.col(m.name).count().over("date") >= min_cross_section).then(pl.col(m.name)).alias(m.name)
            for m in metrics
        ]
    )

    rank_cols: list[pl.Expr] = []
    for m in metrics:
        v = pl.col(m.name)
        oriented = v if m.higher_is_better else -v
        n_sector = v.count().over("date", "sector_code")
        use_sector = pl.col("sector_code").is_not_null() & (n_sector >= min_sector_size)
        pct_sector = 100.0 * oriented.rank("average").over("date", "sector_code") / n_sector
        pct_all = 100.0 * oriented.rank("average").over("date") / v.count().over("date")
        rank_cols.append(
            pl.when(v.is_null()).then(None).when(use_sector).then(pct_sector).otherwise(pct_all).alias(f"{m.name}__rank")
        )
        rank_cols.append(
            pl.when(v.is_null())
            .then(None)
            .when(use_sector)
            .then(pl.lit("sector"))
            .otherwise(pl.lit("all"))
            .alias(f"{m.name}__scope")
        )
    ranked = values.with_columns(rank_cols)

    family_cols = []
    for fam in FAMILIES:
        members = [f"{m.name}__rank" for m in metrics if m.family == fam]
        expr = pl.mean_horizontal(members, ignore_nulls=True) if members else pl.lit(None, dtype=pl.Float64)
        family_cols.append(expr.cast(pl.Float64).alias(f"{fam}_score"))
    return ranked.with_columns(family_cols).drop("sector_code").collect()


def mart_factor_metrics(panel: pl.DataFrame, metrics: Sequence[Metric] = METRICS) -> pl.DataFrame:
    """Long ``date, symbol, metric, value, rank_pct, rank_scope``: one row per
    stock, session and metric with a non-null value (null metrics have no rank
    and are simply absent). Rows come in metric blocks (declaration order),
    each in the panel's (date, symbol) order."""
    if not metrics:
        return pl.DataFrame(schema=METRICS_SCHEMA)
    # Block-wise concatenation, not a global sort: at 2,000 stocks x 20 years
    # the long frame has ~80M rows and sorting it dominates the cost; blocks
    # are collected one by one and not rechunked, which measured ~5x faster.
    parts = [
        panel.lazy()
        .filter(pl.col(m.name).is_not_null())
        .select(
            "date",
            "symbol",
            pl.lit(m.name).alias("metric"),
            pl.col(m.name).alias("value"),
            pl.col(f"{m.name}__rank").alias("rank_pct"),
            pl.col(f"{m.name}__scope").alias("rank_scope"),
        )
        .collect()
        for m in metrics
    ]
    out = pl.concat(parts, rechunk=False)
    return out.select([pl.col(c).cast(t) for c, t in METRICS_SCHEMA.items()])


def round_half_up(expr: pl.Expr) -> pl.Expr:
    """Round half up to an integer
    (74.5 -> 75, not banker's 74). Rounding to 9 decimals first absorbs float
    noise from averaging, so a mathematically exact .5 is not read as .4999."""
    return (expr.round(9) + 0.5).floor().cast(pl.Int64)


def label_expr(score: pl.Expr, thresholds: LabelThresholds = LabelThresholds()) -> pl.Expr:
    """'Strong' / 'Moderate' / 'Weak' for an integer score; null stays null."""
    return (
        pl.when(score.is_null())
        .then(None)
        .when(score >= thresholds.strong)
        .then(pl.lit("Strong"))
        .when(score >= thresholds.moderate)
        .then(pl.lit("Moderate"))
        .otherwise(pl.lit("Weak"))
    )


def _normalised_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    if weights is None:
        # Issue 14: the published reference weighting.
        return {"momentum": 30.0, "value": 25.0, "quality": 25.0, "sentiment": 20.0}
    unknown = set(weights) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown families in weights: {sorted(unknown)}")
    out = {f: float(weights.get(f, 0.0)) for f in FAMILIES}
    if any(w < 0 or not math.isfinite(w) for w in out.values()) or not any(w > 0 for w in out.values()):
        raise ValueError(f"weights must be finite, non-negative and not all zero: {weights}")
    return out


def alpha_score_expr(weights: Mapping[str, float] | None = None) -> pl.Expr:
    """Unrounded weighted mean of the available ``{family}_score`` columns,
    weights renormalised over the families present on the row."""
    w = _normalised_weights(weights)
    num = pl.sum_horizontal([(pl.col(f"{f}_score") * w[f]).fill_null(0.0) for f in FAMILIES])
    den = pl.sum_horizontal(
        [pl.when(pl.col(f"{f}_score").is_not_null()).then(pl.lit(w[f])).otherwise(0.0) for f in FAMILIES]
    )
    return pl.when(den > 0).then(num / den)


def mart_factor_scores(
    panel: pl.DataFrame,
    assets: pl.DataFrame,
    *,
    weights: Mapping[str, float] | None = None,
    thresholds: LabelThresholds = LabelThresholds(),
) -> pl.DataFrame:
    """Scores per stock and session where at least one sub-score exists.

    Sub-scores stay unrounded (0-100 floats); ``alpha_score`` is an Int64
    rounded half-up. Labels, of the Alpha Score and of each sub-score in the
    summary, are taken on the half-up rounded integer so the label always
    agrees with the integer an analyst sees. ``weights`` maps family -> weight
    (default equal; a family left out weighs 0).
    """
    names = _stocks(assets).select("symbol", "name")
    score_cols = list(SCORE_COLUMNS)
    base = (
        panel.lazy()
        .select("date", "symbol", "sector", *score_cols)
        .filter(pl.any_horizontal([pl.col(c).is_not_null() for c in score_cols]))
        .with_columns(
            round_half_up(alpha_score_expr(weights)).alias("alpha_score"),
            pl.sum_horizontal([pl.col(c).is_not_null().cast(pl.Int64) for c in score_cols]).alias("coverage"),
        )
        .with_columns(label_expr(pl.col("alpha_score"), thresholds).alias("alpha_label"))
    )
    # A part is null when its family is unavailable (concat_str propagates
    # nulls); the outer concat_str then skips it, separators included.
    parts = [
        pl.concat_str(
            [label_expr(round_half_up(pl.col(f"{f}_score")), thresholds).str.to_lowercase(), pl.lit(f" {f}")]
        )
        for f in FAMILIES
    ]
    score_txt = pl.col("alpha_score").cast(pl.String)
    summary = pl.concat_str(
        [
            pl.lit("Alpha Score of "),
            score_txt,
            pl.lit(" reflects "),
            pl.col("alpha_label").str.to_lowercase(),
            pl.lit(" overall profile with "),
            pl.concat_str(parts, separator=", ", ignore_nulls=True),
            pl.lit("."),
        ]
    )
    headline = pl.concat_str(
        [
            pl.coalesce(pl.col("name"), pl.col("symbol")),
            pl.lit(" ("),
            pl.col("symbol"),
            pl.lit(") maintains an Alpha Score of "),
            score_txt,
            pl.lit("/100, categorized as "),
            pl.col("alpha_label"),
            pl.lit(" within the "),
            pl.col("sector").fill_null("Unclassified"),
            pl.lit(" sector."),
        ]
    )
    out = (
        base.join(names.lazy(), on="symbol", how="left")
        .with_columns(summary.alias("summary"), headline.alias("headline"))
        .sort("date", "symbol")
        .collect()
    )
    return out.select([pl.col(c).cast(t) for c, t in SCORES_SCHEMA.items()])


def build_factor_marts(
    prices: pl.DataFrame,
    assets: pl.DataFrame,
    sessions: pl.Series,
    fundamentals: pl.DataFrame | None = None,
    *,
    metrics: Sequence[Metric] = METRICS,
    min_sector_size: int = 5,
    weights: Mapping[str, float] | None = None,
    thresholds: LabelThresholds = LabelThresholds(),
    fundamentals_tolerance: timedelta | None = None,
    min_cross_section: int = 10,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(mart_factor_scores, mart_factor_metrics)`` from raw inputs."""
    panel = factor_panel(
        prices,
        assets,
        sessions,
        fundamentals,
        metrics=metrics,
        min_sector_size=min_sector_size,
        fundamentals_tolerance=fundamentals_tolerance,
        min_cross_section=min_cross_section,
    )
    scores = mart_factor_scores(panel, assets, weights=weights, thresholds=thresholds)
    return scores, mart_factor_metrics(panel, metrics)

# ---------------------------------------------------------------- factor_eval.py
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
    "ic_tstat_method": pl.String(),
    "ic_tstat_naive": pl.Float64(),
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
            # Issue 14: balanced buckets, pandas qcut's edges 1 + (n-1)k/q on the ranks.
            bucket = pl.when(pl.col("n") > 1).then(
                (quantiles * (pl.col("rx") - 1.0) / (pl.col("n") - 1.0)).ceil().clip(lower_bound=1.0)
            )
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
            .alias("ic_tstat_naive"),
            pl.lit("newey_west_h-1_lags").alias("ic_tstat_method"),
        )
        .sort("factor", "horizon_sessions")
    )
    # Issue 14: the published t-stat is Newey-West with h - 1 lags (Bartlett).
    tstats = []
    for factor, h in out.select("factor", "horizon_sessions").iter_rows():
        x = (
            daily.filter((pl.col("factor") == factor) & (pl.col("horizon_sessions") == h))
            .sort("date")["ic"].drop_nulls().to_list()
        )
        n = len(x)
        if n < 2:
            tstats.append(None)
            continue
        m = sum(x) / n
        var = sum((v - m) ** 2 for v in x) / n
        for j in range(1, min(h - 1, n - 1) + 1):
            var += 2 * (1 - j / h) * sum((x[t] - m) * (x[t - j] - m) for t in range(j, n)) / n
        tstats.append(m / math.sqrt(var / n) if var > 0 else None)
    out = out.with_columns(pl.Series("ic_tstat", tstats, dtype=pl.Float64))
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


