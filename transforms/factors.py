"""Alpha Score: point-in-time cross-sectional factor scores for stocks.

Pure transforms: Polars frames in, frames out. ``build_factor_marts`` is

    session grid (one row per stock and session) -> metric values
      -> percentile ranks per metric -> mart_factor_metrics (one row per input metric)
      -> sub-scores -> mart_factor_scores (sub-scores, Alpha Score, labels, text)

Definitions for analysts live in docs/alpha_score.md; the metric set itself is
the ``METRICS`` tuple below, the one place a metric is declared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from contracts.tables import MART_FACTOR_METRICS, MART_FACTOR_SCORES

FAMILIES: tuple[str, ...] = ("momentum", "value", "quality", "sentiment")

# The Alpha Score's published reference weighting (docs/alpha_score.md): a
# family without a sub-score on a row gives its weight to the others in
# proportion (the weights are renormalised over the families present).
DEFAULT_FAMILY_WEIGHTS: dict[str, float] = {"momentum": 30.0, "value": 25.0, "quality": 25.0, "sentiment": 20.0}

# Fewest stocks with a metric on a session for that metric to be ranked at
# all: a percentile rank of one stock among two or three is not a score
# (a lone stock would be "100, strong"). Below it the metric has no rank that
# session, so a sub-score or Alpha Score resting on it is not published.
DEFAULT_MIN_CROSS_SECTION = 10

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
    and session from its first to its last priced session, sorted by symbol then
    date, ``adj_close`` null where the stock has no bar) joined with
    the point-in-time fundamentals snapshot; it must yield null, never zero or
    a sentinel, when an input is missing. Besides the grid's columns it may
    read ``grid_pos``: the row's position within its stock's run of the grid
    (0 on the first row), so ``shift(k)`` stays inside the stock where
    ``grid_pos >= k`` without a window expression.

    ``lookback`` is how many sessions before *t* the formula reads (0: the row
    itself only); ``build_factor_marts(from_date=...)`` keeps that many
    sessions of history before ``from_date``.
    """

    name: str
    family: str
    formula: pl.Expr
    higher_is_better: bool
    description: str
    lookback: int = 0


def _lag(column: str, k: int) -> pl.Expr:
    # The value k rows up when that row is the same stock's: the same as
    # ``shift(k).over("symbol")`` on the grid, without partitioning ~9M rows.
    return pl.when(pl.col("grid_pos") >= k).then(pl.col(column).shift(k))


def _lagged_return(recent: int, base: int) -> pl.Expr:
    # shift over the dense per-stock session grid counts sessions, not rows of
    # whatever bars happen to exist, so a data gap yields null rather than a
    # silently longer window; a non-positive base price has no meaningful return.
    recent_px = _lag("adj_close", recent)
    base_px = _lag("adj_close", base)
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
        lookback=252,
    ),
    Metric(
        "momentum_6_1",
        "momentum",
        _lagged_return(21, 126),
        True,
        "adj_close 21 sessions ago / adj_close 126 sessions ago - 1",
        lookback=126,
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


def _check_metrics(metrics: Sequence[Metric]) -> None:
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate metric names: {names}")
    bad = [m.name for m in metrics if m.family not in FAMILIES]
    if bad:
        raise ValueError(f"metrics with unknown family (expected one of {FAMILIES}): {bad}")
    reserved = {"date", "symbol", "sector", "sector_code", "session_idx", "adj_close", "grid_pos", *SCORE_COLUMNS}
    clash = [n for n in names if n in reserved or "__" in n]
    if clash:
        raise ValueError(f"metric names clash with panel columns: {clash}")
    negative = [m.name for m in metrics if m.lookback < 0]
    if negative:
        raise ValueError(f"metric lookback must be >= 0 sessions: {negative}")


def _calendar(sessions: pl.Series) -> pl.DataFrame:
    """``session_idx, date``: the sessions, deduplicated and numbered from 0."""
    return (
        pl.DataFrame({"date": sessions.cast(pl.Date)})
        .drop_nulls()
        .unique("date")
        .sort("date")
        .with_row_index("session_idx")
        .with_columns(pl.col("session_idx").cast(pl.Int64))
    )


def _dense_grid(
    prices: pl.DataFrame, cal: pl.DataFrame, symbols: Sequence[str] | None = None, start_idx: int = 0
) -> pl.DataFrame:
    """One row per stock and session from its first to its last priced session,
    restricted to sessions ``>= start_idx``: ``symbol, session_idx, date, adj_close``
    (null on sessions without a bar; bars off the calendar dropped) plus helpers.

    A stock's rows run from ``max(first priced session, start_idx)`` to its last
    priced session, so every row the full grid has on those sessions is here
    (a stock in a data gap at ``start_idx`` keeps its null rows). Extra
    columns: ``sym`` (Int32 code of the symbol, in symbol order), ``grid_pos``
    (row within the stock's run, from 0) and ``grid_rpos`` (rows after it).
    """
    px = prices.lazy().select("symbol", pl.col("date").cast(pl.Date), pl.col("adj_close").cast(pl.Float64))
    if symbols is not None:
        px = px.filter(pl.col("symbol").is_in(pl.Series(list(symbols), dtype=pl.String).implode()))
    bars = _on_calendar(px.collect(), cal)
    runs = _symbol_runs(bars)
    if runs is None:
        pos = None
        # First/last over the whole history, bars only from start_idx on.
        bounds = bars.group_by("symbol").agg(
            pl.col("session_idx").min().alias("first"), pl.col("session_idx").max().alias("last")
        )
    else:
        code, bounds = runs
    if start_idx > 0:
        keep = bars["session_idx"] >= start_idx
        bars = bars.filter(keep)
        if runs is not None:
            code = code.filter(keep)
        bounds = bounds.filter(pl.col("last") >= start_idx).with_columns(
            pl.max_horizontal("first", pl.lit(start_idx, dtype=pl.Int64)).alias("first")
        )
    if runs is None:
        bounds = bounds.sort("symbol")
    bounds = (
        bounds.with_row_index("sym")
        .with_columns(
            pl.col("sym").cast(pl.Int32),
            (pl.col("last") - pl.col("first") + 1).alias("len"),
        )
        .with_columns((pl.col("len").cum_sum() - pl.col("len")).alias("offset"))
    )
    if runs is not None:
        # Each bar's stock by its run's code: offset and first looked up per code (a stock
        # whose run ends before start_idx has no bar left to look up).
        def by_code(column: str) -> pl.Series:
            lookup = pl.repeat(None, int(runs[1].height), dtype=pl.Int64, eager=True)
            return lookup.scatter(bounds["code"], bounds[column]).gather(code)

        pos = pl.DataFrame(
            [(by_code("offset") + bars["session_idx"] - by_code("first")).alias("pos"), bars["adj_close"]]
        )
        bounds = bounds.drop("code")
    # Each stock's run by arithmetic on its code (no lists to explode): row i of
    # stock s is session first[s] + i, at grid_pos i = row - offset[s].
    sym = pl.Series("sym", np.repeat(np.arange(bounds.height, dtype=np.int32), bounds["len"].to_numpy()))
    grid_pos = (pl.int_range(0, sym.len(), dtype=pl.Int64, eager=True) - bounds["offset"].gather(sym)).alias("grid_pos")
    grid = pl.DataFrame(
        [bounds["symbol"].gather(sym), sym, (bounds["first"].gather(sym) + grid_pos).alias("session_idx"), grid_pos]
    )
    # session_idx numbers the calendar, so the date is a gather, not a join.
    grid = grid.with_columns(
        cal["date"].gather(grid["session_idx"]).alias("date"),
        (bounds["len"].gather(grid["sym"]) - 1 - grid["grid_pos"]).alias("grid_rpos"),
    )
    # Place each bar at its row by arithmetic rather than a (symbol, date) join
    # on the full grid: the grid is laid out symbol by symbol, session by session.
    if pos is None:
        pos = bars.join(bounds.select("symbol", "first", "offset"), on="symbol", how="inner").select(
            (pl.col("offset") + pl.col("session_idx") - pl.col("first")).alias("pos"), "adj_close"
        )
    adj = pl.repeat(None, grid.height, dtype=pl.Float64, eager=True).alias("adj_close")
    if pos.height:
        adj = adj.scatter(pos["pos"], pos["adj_close"])
    return grid.with_columns(adj).select("symbol", "sym", "session_idx", "date", "adj_close", "grid_pos", "grid_rpos")


def _session_index(dates: pl.Series, cal: pl.DataFrame) -> pl.Series:
    """Each date's ``session_idx`` in ``cal`` (``_calendar``: sorted, numbered from 0), null for
    a date on no session: a join on the date as a binary search in the calendar."""
    at = cal["date"].search_sorted(dates, side="left").cast(pl.Int64)
    at = pl.select(pl.when(at < cal.height).then(at)).to_series()
    return pl.select(pl.when(cal["date"].gather(at) == dates).then(at)).to_series().alias("session_idx")


def _on_calendar(bars: pl.DataFrame, cal: pl.DataFrame) -> pl.DataFrame:
    """``symbol, adj_close, session_idx`` of the bars dated on a session of ``cal``, in ``bars``
    order: the inner join on the date (``_session_index``)."""
    session_idx = _session_index(bars["date"], cal)
    return bars.select("symbol", "adj_close").with_columns(session_idx).filter(session_idx.is_not_null())


def _symbol_runs(bars: pl.DataFrame) -> tuple[pl.Series, pl.DataFrame] | None:
    """When ``bars`` comes sorted by symbol (as the lake keeps prices): each bar's stock
    code (0, 1, .. in symbol order) and ``symbol, code, first, last`` per stock (its bars'
    first and last session), from the runs of equal symbols instead of hashing every
    bar's symbol. None otherwise (or without bars)."""
    symbol = bars["symbol"]
    if not bars.height or symbol.null_count() or not symbol.is_sorted():
        return None
    starts = symbol.ne_missing(symbol.shift(1)).fill_null(True)
    code = (starts.cast(pl.Int64).cum_sum() - 1).alias("code")
    at = starts.arg_true()
    sessions = bars["session_idx"].to_numpy()
    first = np.minimum.reduceat(sessions, at.to_numpy())
    last = np.maximum.reduceat(sessions, at.to_numpy())
    bounds = pl.DataFrame(
        [
            symbol.gather(at),
            pl.int_range(0, at.len(), dtype=pl.Int64, eager=True).alias("code"),
            pl.Series("first", first, dtype=pl.Int64),
            pl.Series("last", last, dtype=pl.Int64),
        ]
    )
    return code, bounds


def stock_grid(prices: pl.DataFrame, assets: pl.DataFrame, sessions: pl.Series) -> pl.DataFrame:
    """The full build's session grid of the stocks of ``assets`` (``_dense_grid``): what
    ``build_factor_marts`` and ``factor_daily_stats_from_prices`` build without ``from_date``."""
    return _dense_grid(prices, _calendar(sessions), _stocks(assets)["symbol"].to_list())


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


def _with_sectors(grid: pl.DataFrame, sectors: pl.DataFrame) -> pl.DataFrame:
    """``grid`` with the ``sector, sector_code`` of each row's stock (``sectors``:
    unique ``symbol``), as a left join on ``symbol`` keeping the grid's order.

    The grid is laid out stock by stock with ``sym`` numbering the stocks from 0
    (``_dense_grid``): the sectors are joined to one row per stock and gathered
    back by ``sym`` instead of hashing the symbol of every row.
    """
    firsts = grid.filter(pl.col("grid_pos") == 0).select("sym", "symbol")
    dense = pl.int_range(0, firsts.height, dtype=pl.Int64, eager=True)
    if not firsts["sym"].cast(pl.Int64).equals(dense, check_names=False):
        return grid.join(sectors, on="symbol", how="left", maintain_order="left")
    by_sym = firsts.join(sectors, on="symbol", how="left", maintain_order="left")
    return grid.with_columns(by_sym["sector"].gather(grid["sym"]), by_sym["sector_code"].gather(grid["sym"]))


def _metric_values(
    prices: pl.DataFrame,
    assets: pl.DataFrame,
    sessions: pl.Series,
    fundamentals: pl.DataFrame | None,
    metrics: Sequence[Metric],
    fundamentals_tolerance: timedelta | None,
    from_date: date | None,
    grid: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Metric values per stock and session, sessions ``>= from_date`` only.

    ``row, session_idx, sym, date, symbol, sector, sector_code`` then one
    column per metric (null when missing or not finite), sorted by date then
    symbol; ``row`` numbers the rows. With ``from_date`` the grid starts
    ``max(lookback)`` sessions earlier, which is all the formulas read.
    """
    _check_metrics(metrics)
    stocks = _stocks(assets)
    cal = _calendar(sessions)
    first_idx = 0
    if from_date is not None:
        later = cal.filter(pl.col("date") >= from_date)["session_idx"]
        first_idx = int(later.min()) if later.len() else cal.height
    lookback = max((m.lookback for m in metrics), default=0)
    if grid is None or from_date is not None:
        grid = _dense_grid(prices, cal, stocks["symbol"].to_list(), max(first_idx - lookback, 0))
    # Windows partition faster on an integer than on the sector string.
    sectors = stocks.select(
        "symbol", "sector", pl.col("sector").rank("dense").cast(pl.Int32).alias("sector_code")
    )
    # Time-series formulas (momentum) read rows in grid order, so every join
    # on the way must keep the left frame's (symbol, date) order.
    joined = _with_fundamentals(_with_sectors(grid, sectors).lazy(), fundamentals, fundamentals_tolerance)
    values = (
        joined.select(
            "session_idx",
            "sym",
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
        .collect()
    )
    del grid
    # Filter eagerly, after the formulas: a lazy filter could be pushed below
    # the row-order dependent shifts.
    if first_idx > 0:
        values = values.filter(pl.col("session_idx") >= first_idx)
    return _session_major(values).with_row_index("row")


def _session_major(values: pl.DataFrame) -> pl.DataFrame:
    """``values`` (one row per ``sym`` and ``session_idx``, ``symbol`` and ``sector`` functions
    of ``sym``) sorted by ``session_idx`` then ``sym``: (date, symbol) order.

    The keys are unique, so any way to that order gives the same frame. The grid comes
    symbol-major (``sym``, then session): a stable sort on the session alone (numpy's radix
    sort on 16-bit keys, linear) already leaves each session's rows in ``sym`` order, which
    is checked, the key sort being the fallback. The two string columns are not moved with
    the rest: gathering millions of strings across the frame costs more than the sort; each
    is looked up by ``sym`` in a table of one row per stock instead.
    """
    n_sym = int(values["sym"].max() or 0) + 1
    key = pl.col("session_idx") * n_sym + pl.col("sym")
    sessions = values["session_idx"].to_numpy()
    if not values.height or sessions.min() < 0 or sessions.max() >= 2**32:
        return values.sort(key)
    narrow = np.uint16 if sessions.max() < 2**16 else np.uint32
    perm = pl.Series(np.argsort(sessions.astype(narrow), kind="stable"))
    strings = ["symbol", "sector"]
    out = values.drop(strings)[perm]
    if not out.select(key).to_series().is_sorted():
        return values.sort(key)
    # One row per stock (any of its rows: scatter keeps one per sym) holds its strings.
    rep = pl.repeat(None, n_sym, dtype=pl.Int64, eager=True).scatter(
        values["sym"], pl.int_range(values.height, eager=True)
    )
    reps = values.select("sym", *strings)[rep.drop_nulls()]
    by_sym = [
        pl.repeat(None, n_sym, dtype=values.schema[c], eager=True).scatter(reps["sym"], reps[c]).gather(out["sym"]).alias(c)
        for c in strings
    ]
    return out.with_columns(by_sym).select(values.columns)


def _ranked(
    values: pl.DataFrame, m: Metric, min_sector_size: int, min_cross_section: int = DEFAULT_MIN_CROSS_SECTION
) -> pl.DataFrame:
    """``row, date, symbol, value, rank_pct, rank_scope`` for the rows of
    ``values`` where metric ``m`` has a value, in ``values`` order, on the
    sessions where at least ``min_cross_section`` stocks have it (fewer: the
    metric is not ranked that session, so nothing resting on it is scored).

    A metric ranks within the stock's sector when at least ``min_sector_size``
    stocks of that sector have it on that session, otherwise across all stocks.
    Ranking only the rows with a value gives the same ranks and counts as
    ranking the whole cross-section with nulls (nulls are neither ranked nor
    counted) at a fraction of the work for sparse metrics.
    """
    v = pl.col("value")
    oriented = v if m.higher_is_better else -v
    # One integer partition key per (session, sector) hashes faster than two
    # columns; sector codes start at 1, so a stock without sector gets 0 (and
    # never uses its sector rank).
    n_codes = int(values["sector_code"].max() or 0) + 1
    group = pl.col("session_idx") * n_codes + pl.col("sector_code").fill_null(0).cast(pl.Int64)
    # Counted once into a column: both the scope test and the sector percentile read it.
    n_sector = pl.col("n_sector")
    use_sector = pl.col("sector_code").is_not_null() & (n_sector >= min_sector_size)
    pct_sector = 100.0 * oriented.rank("average").over("group") / n_sector
    pct_all = 100.0 * oriented.rank("average").over("session_idx") / v.count().over("session_idx")
    sub = values.select(
        "row",
        # values is in (date, symbol) order: telling Polars lets the per-session
        # windows slice instead of hashing.
        pl.col("session_idx").set_sorted(),
        "sector_code",
        group.alias("group"),
        "date",
        "symbol",
        pl.col(m.name).alias("value"),
    ).filter(v.is_not_null())
    # A whole session is kept or dropped, so the ranks of the kept ones do not move.
    sub = (
        sub.filter(pl.len().over("session_idx") >= min_cross_section)
        .with_columns(v.count().over("group").alias("n_sector"))
        .with_columns(use_sector.alias("use_sector"))
    )
    if sub["use_sector"].all():
        # Every row ranks within its sector (the usual case with a full universe):
        # the across-all-stocks rank would be computed for nothing.
        return sub.select(
            "row", "date", "symbol", "value", pct_sector.alias("rank_pct"), pl.lit("sector").alias("rank_scope")
        )
    return sub.select(
        "row",
        "date",
        "symbol",
        "value",
        pl.when(pl.col("use_sector")).then(pct_sector).otherwise(pct_all).alias("rank_pct"),
        pl.when(pl.col("use_sector")).then(pl.lit("sector")).otherwise(pl.lit("all")).alias("rank_scope"),
    )


def _spread(n: int, ranked: pl.DataFrame, column: str, dtype: pl.DataType) -> pl.Series:
    """A column of ``ranked`` placed back on its rows of an ``n``-row frame."""
    out = pl.repeat(None, n, dtype=dtype, eager=True)
    return out.scatter(ranked["row"], ranked[column]) if ranked.height else out


def _family_scores(n: int, ranked: Mapping[str, pl.DataFrame], metrics: Sequence[Metric]) -> pl.DataFrame:
    """``{family}_score`` = mean of the family's available ranks, per row."""
    out = []
    for fam in FAMILIES:
        members = [m.name for m in metrics if m.family == fam]
        # No rank at all (no fundamentals): the mean of null columns is null.
        if not any(ranked[name].height for name in members):
            out.append(pl.repeat(None, n, dtype=pl.Float64, eager=True).alias(f"{fam}_score"))
            continue
        ranks = pl.DataFrame([_spread(n, ranked[name], "rank_pct", pl.Float64).alias(name) for name in members])
        out.append(
            ranks.select(pl.mean_horizontal(members, ignore_nulls=True).cast(pl.Float64).alias(f"{fam}_score")).to_series()
        )
    return pl.DataFrame(out)


def _metric_rows(ranked: Mapping[str, pl.DataFrame], metrics: Sequence[Metric]) -> pl.DataFrame:
    if not metrics:
        return pl.DataFrame(schema=MART_FACTOR_METRICS.polars_schema)
    parts = [
        ranked[m.name].select("date", "symbol", pl.lit(m.name).alias("metric"), "value", "rank_pct", "rank_scope")
        for m in metrics
    ]
    # Blocks in declaration order, each in (date, symbol) order, not rechunked.
    out = pl.concat(parts, rechunk=False)
    return out.pipe(MART_FACTOR_METRICS.conform)


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
        return dict(DEFAULT_FAMILY_WEIGHTS)
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


def _label_code(score: pl.Expr, thresholds: LabelThresholds) -> pl.Expr:
    """0 (null), 1 Weak, 2 Moderate, 3 Strong: ``label_expr`` as a small integer."""
    r = round_half_up(score)
    return (
        pl.when(r.is_null())
        .then(0)
        .when(r >= thresholds.strong)
        .then(3)
        .when(r >= thresholds.moderate)
        .then(2)
        .otherwise(1)
        .cast(pl.Int8)
    )


def _score_rows(
    frame: pl.DataFrame,
    names: pl.DataFrame,
    weights: Mapping[str, float] | None,
    thresholds: LabelThresholds,
    headline_key: str,
) -> pl.DataFrame:
    """``mart_factor_scores`` rows from ``date, symbol, sector, {family}_score``
    and ``headline_key``, an integer code of the stock's (symbol, sector), kept
    in ``frame`` order.

    The summary is a function of the Alpha Score and the four sub-score labels,
    the headline of the stock (name, sector) and its Alpha Score: a few
    thousand distinct strings over millions of rows. Each is built once per
    distinct key and joined back, which also lets the rows share the string
    buffers instead of holding ~200 bytes of text each.
    """
    score_cols = list(SCORE_COLUMNS)
    base = (
        frame.lazy()
        .filter(pl.any_horizontal([pl.col(c).is_not_null() for c in score_cols]))
        .with_columns(
            round_half_up(alpha_score_expr(weights)).alias("alpha_score"),
            pl.sum_horizontal([pl.col(c).is_not_null().cast(pl.Int64) for c in score_cols]).alias("coverage"),
        )
        .with_columns(label_expr(pl.col("alpha_score"), thresholds).alias("alpha_label"))
        .with_columns([_label_code(pl.col(c), thresholds).alias(f"{c}__code") for c in score_cols])
        .collect()
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
    # One small integer key per distinct string (alpha_score is 0-100 or
    # null, label codes 0-3, sym < number of stocks).
    alpha_key = pl.col("alpha_score").fill_null(-1) + 1
    summary_key = alpha_key * 256
    for i, c in enumerate(score_cols):
        summary_key = summary_key + pl.col(f"{c}__code").cast(pl.Int64) * 4 ** (3 - i)
    base = base.with_columns(
        summary_key.alias("__skey"), (pl.col(headline_key).cast(pl.Int64) * 128 + alpha_key).alias("__hkey")
    )
    return base.with_columns(
        _by_key(base, "__skey", summary).alias("summary"),
        # The stock's name is only read by the headline: joined to its one row per key, not to every row.
        _by_key(base, "__hkey", headline, names).alias("headline"),
    ).pipe(MART_FACTOR_SCORES.conform)


def _by_key(frame: pl.DataFrame, key: str, expr: pl.Expr, joined: pl.DataFrame | None = None) -> pl.Series:
    """``frame.select(expr)`` when ``expr`` depends on the row only through the
    non-negative integer column ``key``: evaluated on one row per key value and
    gathered back (no hashing; the gathered strings share their buffers).
    ``joined`` (unique on ``symbol``; ``key`` must fix the symbol) is left-joined
    to those rows first, for columns ``expr`` reads that ``frame`` lacks."""
    keys = frame[key]
    size = int(keys.max() or 0) + 1
    # Any row of a key will do; scatter keeps one per key.
    rep = pl.repeat(None, size, dtype=pl.Int64, eager=True).scatter(keys, pl.int_range(frame.height, eager=True))
    rep = rep.drop_nulls()
    reps = frame[rep]
    if joined is not None:
        reps = reps.join(joined, on="symbol", how="left", maintain_order="left")
    values = reps.select(expr).to_series()
    lookup = pl.repeat(None, size, dtype=values.dtype, eager=True).scatter(keys.gather(rep), values)
    return lookup.gather(keys)


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
    from_date: date | None = None,
    min_cross_section: int = DEFAULT_MIN_CROSS_SECTION,
    grid: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(mart_factor_scores, mart_factor_metrics)`` from raw inputs.

    Computed metric by metric, without a wide panel of every metric. With ``from_date``, only the rows of sessions
    ``>= from_date`` are computed and returned (equal to the full result
    filtered on ``date >= from_date``); the prices read are those of the
    ``max(lookback)`` sessions before it and later, plus each stock's first
    and last priced session, so a one-session run costs a small fraction of a
    full one.

    ``grid``: ``stock_grid(prices, assets, sessions)`` when the caller has built it (a full
    build shares it with the IC's forward returns); used without ``from_date`` only.
    """
    _normalised_weights(weights)  # fail before the heavy work
    values = _metric_values(prices, assets, sessions, fundamentals, metrics, fundamentals_tolerance, from_date, grid)
    del grid
    ranked = {}
    for m in metrics:
        ranked[m.name] = _ranked(values, m, min_sector_size, min_cross_section)
        values = values.drop(m.name)  # each value column is done with once ranked
    frame = pl.concat(
        [values.select("date", "symbol", "sector", "sym"), _family_scores(values.height, ranked, metrics)],
        how="horizontal",
    )
    del values
    names = _stocks(assets).select("symbol", "name")
    scores = _score_rows(frame, names, weights, thresholds, headline_key="sym")
    del frame
    return scores, _metric_rows(ranked, metrics)
