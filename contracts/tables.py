"""The warehouse's tables, declared once (see ``contracts.schema``)."""

from __future__ import annotations

import math
from collections.abc import Callable

import polars as pl

from contracts.schema import Column as C
from contracts.schema import Rule, RuleInputs, Table

# Tolerance for weights that must sum to 1: rounding of drifted weights, not
# a real allocation error (1e-6 of NAV is far below a trade's size).
WEIGHT_SUM_TOL = 1e-6
CORRELATION = {"ge": -1.0, "le": 1.0}

NOT_AFTER_AS_OF = Rule("not_after_as_of", "date <= as_of ({as_of})", lambda i: pl.col("date") <= i.as_of)


def _on_a_session(i: RuleInputs) -> pl.Expr:
    if i.sessions is None or i.session_symbols is None:
        return pl.lit(True)
    sessions = pl.Series(i.sessions, dtype=pl.Date).implode()
    symbols = pl.Series(i.session_symbols, dtype=pl.String).implode()
    return ~pl.col("symbol").is_in(symbols) | pl.col("date").is_in(sessions)


# Crypto trades every day; an equity bar on a weekend or holiday is a bad row
# (a shifted time zone, a vendor's filler), not a session to keep.
NOT_A_SESSION = Rule(
    "not_a_session",
    "equity, ETF and index bars are dated on an exchange session (not a weekend or holiday)",
    _on_a_session,
)

# Upper bounds of a plausible bar: no traded price reaches a trillion units of
# its quote currency, nor a day's volume 1e18 base units (the finest-grained
# meme tokens trade about 1e14). Beyond them a value is a corrupt cell or a
# fat finger, however finite (1.7e308), and would overflow what is derived.
MAX_PRICE = 1e12
MAX_VOLUME = 1e18


def _log_move(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """log(a / b) where both are positive and finite; null otherwise (a null close: nothing to compare)."""
    ok = (a > 0) & (b > 0) & a.is_finite() & b.is_finite()
    return pl.when(ok).then((a / b).log())


def _jump_confirmed(column: str) -> Callable[[RuleInputs], pl.Expr]:
    def check(i: RuleInputs) -> pl.Expr:
        if not i.jump_bounds:
            return pl.lit(True)
        bounds = dict(i.jump_bounds)
        limit = pl.col("symbol").replace_strict(
            list(bounds), [math.log(f) for f in bounds.values()], default=None, return_dtype=pl.Float64
        )
        value = pl.col(column)
        prev = value.shift(1).over("symbol", order_by="date")
        nxt = value.shift(-1).over("symbol", order_by="date")
        moved = _log_move(value, prev)
        back = _log_move(value, nxt)
        jumped = moved.abs() > limit
        # Confirmed: the next bar stays on the far side (within the bound of
        # this bar, or moving on the same way). Reverted: it comes back by
        # more than the bound. No usable next bar: not confirmed yet.
        reverted = (back.abs() > limit) & (back.sign() == moved.sign())
        return ~(jumped & (reverted | back.is_null())).fill_null(False)

    return check


# Relative slack of the OHLC range rules: auto-adjusted prices (yfinance
# multiplies each column by the same factor) put a close at its low or high
# off by float rounding (1e-14 relative in real files), not by a real amount.
OHLC_REL_TOL = 1e-9


def _in_range(column: str) -> Callable[[RuleInputs], pl.Expr]:
    return lambda _: (pl.col("low") * (1 - OHLC_REL_TOL) <= pl.col(column)) & (
        pl.col(column) <= pl.col("high") * (1 + OHLC_REL_TOL)
    )


DIM_ASSET = Table(
    "dim_asset",
    "One row per asset in the run: what it is and where its prices come from.",
    (
        C("symbol", "string", "Canonical key: Yahoo ticker for equities and indices, base asset for crypto (BTC).", False),
        C("name", "string", "Display name; '[synthetic]' marks the offline sample market."),
        C("asset_class", "string", "index, etf, equity, future, crypto or index_crypto (only equity gets an Alpha Score).", False),
        C("sector", "string", "GICS-style sector for stocks; null otherwise."),
        C("industry", "string", "Industry for stocks; null otherwise."),
        C("quote_currency", "string", "Currency prices are quoted in (USD, USDT)."),
        C("source", "string", "Source that served the prices (sample, files, yfinance, an exchange id)."),
        C("source_symbol", "string", "The symbol as the source knows it (BTC/USDT, BTC-USD, ^RUT)."),
    ),
    primary_key=("symbol",),
    publish=True,
)

FACT_PRICES = Table(
    "fact_prices",
    "Daily OHLCV bars on each asset's native calendar (crypto: every UTC day; equities: exchange sessions).",
    (
        C("symbol", "string", "Asset key (dim_asset.symbol).", False),
        C("date", "date", "Trading date: the exchange session date, or the UTC candle date for crypto.", False),
        C("open", "float", "Opening price.", unit="quote currency", gt=0, le=MAX_PRICE),
        C("high", "float", "Highest price.", unit="quote currency", gt=0, le=MAX_PRICE),
        C("low", "float", "Lowest price.", unit="quote currency", gt=0, le=MAX_PRICE),
        C("close", "float", "Closing price as traded (not adjusted).", unit="quote currency", gt=0, le=MAX_PRICE),
        C("adj_close", "float", "Close adjusted for splits and dividends; equals close where there is nothing to adjust.", unit="quote currency", gt=0, le=MAX_PRICE),
        C("volume", "float", "Traded volume.", unit="base units", ge=0, le=MAX_VOLUME),
        C("source", "string", "Source of the bar.", False),
        C("ingested_at", "timestamp", "When this version of the bar was first stored.", False, unit="UTC"),
    ),
    primary_key=("symbol", "date"),
    date_column="date",
    rules=(
        Rule("high_ge_low", "high >= low", lambda _: pl.col("high") >= pl.col("low")),
        Rule("open_in_range", f"low <= open <= high (within {OHLC_REL_TOL:g} relative)", _in_range("open")),
        Rule("close_in_range", f"low <= close <= high (within {OHLC_REL_TOL:g} relative)", _in_range("close")),
        Rule(
            "close_jump_confirmed",
            "a one-day move of close beyond its asset class's jump bound (XASSET_JUMP_BOUNDS) is confirmed "
            "by the next bar (a move the next bar reverts, or that no later bar confirms yet, is held out)",
            _jump_confirmed("close"),
            on_clean_rows=True,
        ),
        Rule(
            "adj_close_jump_confirmed",
            "a one-day move of adj_close beyond its asset class's jump bound (XASSET_JUMP_BOUNDS) is confirmed "
            "by the next bar (a move the next bar reverts, or that no later bar confirms yet, is held out)",
            _jump_confirmed("adj_close"),
            on_clean_rows=True,
        ),
        NOT_AFTER_AS_OF,
        NOT_A_SESSION,
    ),
    quarantine_bad_rows=True,
)

# One bar as a source supplies it and transforms read it: fact_prices without
# the columns the lake stamps on landing (source, ingested_at). One row per
# symbol and native-calendar date (crypto: UTC candle date; equities: exchange
# session date); adj_close equals close where the source is already adjusted
# or has no adjustment (crypto).
BAR_SCHEMA: dict[str, pl.DataType] = {
    c: t for c, t in FACT_PRICES.polars_schema.items() if c not in ("source", "ingested_at")
}

FACT_RETURNS = Table(
    "fact_returns",
    "Daily log returns of the adjusted close on exchange sessions (XNYS by default); "
    "a crypto return on a Monday compounds the weekend. Never forward-filled.",
    (
        C("symbol", "string", "Asset key.", False),
        C("session_date", "date", "Exchange session.", False),
        C("log_return", "float", "ln(adj_close on the session / adj_close on the previous session); null if either is missing.", unit="log return"),
    ),
    primary_key=("symbol", "session_date"),
    date_column="session_date",
    publish=True,
    partition_year_by="session_date",
)

MART_ROLLING_CORRELATION = Table(
    "mart_rolling_correlation",
    "Rolling Pearson correlation and beta of each crypto asset (and crypto index) versus each benchmark, "
    "over windows of equity sessions; null unless every session of the window has paired returns.",
    (
        C("date", "date", "Last session of the window.", False),
        C("asset", "string", "Crypto asset or crypto index.", False),
        C("benchmark", "string", "Equity benchmark (^RUT, ^GSPC).", False),
        C("window_days", "int", "Window length in sessions.", False, unit="sessions"),
        C("correlation", "float", "Pearson correlation of daily log returns; null for a partial window or zero variance.", **CORRELATION),
        C("beta", "float", "cov(asset, benchmark) / var(benchmark) over the window.", unit="ratio"),
        C("observations", "int", "Sessions in the window with returns for both series.", False, unit="sessions"),
    ),
    primary_key=("asset", "benchmark", "window_days", "date"),
    date_column="date",
    publish=True,
    partition_year_by="date",
    rules=(NOT_AFTER_AS_OF,),
)

DIM_INDEX_MEMBER = Table(
    "dim_index_member",
    "Members of each derived crypto index and how the index weighs them.",
    (
        C("index_symbol", "string", "Derived index (ALTS, MAJORS, ALTS_DV).", False),
        C("member_symbol", "string", "Crypto asset in the index.", False),
        C("method", "string", "equal_weight_daily or dollar_volume_monthly.", False),
    ),
    primary_key=("index_symbol", "member_symbol"),
    publish=True,
)

MART_CORRELATION_MATRIX = Table(
    "mart_correlation_matrix",
    "Pairwise rolling correlations among benchmarks, crypto indices and crypto assets at each month-end "
    "session and the latest session, for heatmaps. Both (a, b) and (b, a) rows plus the diagonal.",
    (
        C("date", "date", "Month-end session or the latest session.", False),
        C("window_days", "int", "Window length in sessions.", False, unit="sessions"),
        C("asset_a", "string", "First symbol.", False),
        C("asset_b", "string", "Second symbol.", False),
        C("correlation", "float", "Pearson correlation of daily log returns; null for a partial window or zero variance.", **CORRELATION),
        C("observations", "int", "Sessions in the window with returns for both.", False, unit="sessions"),
    ),
    primary_key=("date", "window_days", "asset_a", "asset_b"),
    date_column="date",
    publish=True,
    # By year like the other large marts: a nightly run rewrites (and audits) only the current year.
    partition_year_by="date",
)

MART_CORRELATION_EVENTS = Table(
    "mart_correlation_events",
    "Regime events in rolling correlations: sign changes (turned_negative, turned_positive) and level "
    "crossings (crossed_above, crossed_below), each with a plain-sentence description.",
    (
        C("date", "date", "Session on which the event is confirmed.", False),
        C("asset", "string", "Crypto asset or index.", False),
        C("benchmark", "string", "Equity benchmark.", False),
        C("window_days", "int", "Correlation window.", False, unit="sessions"),
        C("event", "string", "turned_negative, turned_positive, crossed_above or crossed_below.", False),
        C("correlation", "float", "Correlation on the event date.", **CORRELATION),
        C("previous_date", "date", "Last earlier session with the new state; null: first time on record."),
        C("sessions_since", "int", "Sessions from previous_date to date.", unit="sessions"),
        C("description", "string", "One sentence, e.g. 'The 90-session correlation between ^RUT and ALTS turned negative (-0.12) for the first time since 2016-07-14.'", False),
        # Not in the column list: without it two crossings of different
        # levels on one day would be told apart only by their prose.
        C("level", "float", "Level crossed (crossing events); null for sign changes."),
    ),
    unique=("asset", "benchmark", "window_days", "date", "event", "level"),
    date_column="date",
    publish=True,
)

MART_MARKET_MILESTONES = Table(
    "mart_market_milestones",
    "Daily milestones of every benchmark and index on its own calendar: all-time highs, drawdowns, "
    "rallies from the 21-session low, period-to-date returns. Computed from the adjusted close.",
    (
        C("date", "date", "Trading date of the series.", False),
        C("symbol", "string", "Benchmark or index.", False),
        C("close", "float", "Adjusted close.", unit="index points or quote currency", gt=0),
        C("ath_close", "float", "Highest close up to and including this date.", unit="index points or quote currency", gt=0),
        C("is_new_ath", "bool", "Close strictly above every earlier close since ath_since."),
        # issue 14: what the high looks back to, and where the series has holes.
        C("ath_since", "date", "First date the high looks back to: 'highest since', all-time only if the asset's first day."),
        C("drawdown_from_ath", "float", "close / ath_close - 1.", unit="fraction"),
        C("low_21d", "float", "Lowest close of the last 21 rows including today.", unit="index points or quote currency"),
        C("rally_from_low_21d", "float", "close / low_21d - 1.", unit="fraction"),
        C("ret_1d", "float", "Simple return versus the previous row.", unit="fraction"),
        C("ret_mtd", "float", "Versus the last close of the previous month.", unit="fraction"),
        C("ret_qtd", "float", "Versus the last close of the previous quarter.", unit="fraction"),
        C("ret_ytd", "float", "Versus the last close of the previous year.", unit="fraction"),
        C("ret_1y", "float", "Versus the last close on or before the same date one year earlier.", unit="fraction"),
        C("gap_days", "int", "Expected dates (UTC days for crypto, sessions otherwise) missing right before this row; "
          "> 0 flags ret_1d as a move across a gap, and figures spanning a gap are null.", unit="days or sessions"),
    ),
    primary_key=("symbol", "date"),
    date_column="date",
    publish=True,
    partition_year_by="date",
    rules=(
        Rule("ath_is_monotone", "ath_close never falls from one date to the next, per symbol",
             lambda _: pl.col("ath_close") >= pl.col("ath_close").shift(1).over("symbol", order_by="date")),
        Rule("ath_ge_close", "ath_close >= close", lambda _: pl.col("ath_close") >= pl.col("close")),
        NOT_AFTER_AS_OF,
    ),
)

MART_PERIOD_RETURNS = Table(
    "mart_period_returns",
    "Returns of benchmarks and indices over completed months, quarters and years, against a benchmark (^GSPC).",
    (
        C("symbol", "string", "Benchmark or index.", False),
        C("period", "string", "month, quarter or year.", False),
        C("period_end", "date", "Last trading date of the period for the symbol.", False),
        C("return", "float", "Simple return over the period.", unit="fraction"),
        C("benchmark", "string", "Comparison benchmark."),
        C("benchmark_return", "float", "The benchmark's return over the same calendar period.", unit="fraction"),
        C("excess_return", "float", "return - benchmark_return.", unit="fraction"),
        C("spans_gap", "bool", "The period's span has expected dates missing: return is null (not measured)."),
    ),
    primary_key=("symbol", "period", "period_end"),
    date_column="period_end",
    publish=True,
)

MART_ALLOCATION_WEIGHTS = Table(
    "mart_allocation_weights",
    "Daily model allocation of each mix: target and drifted weight per member, with its sleeve's policy band.",
    (
        C("date", "date", "UTC day.", False),
        C("mix", "string", "Allocation mix.", False),
        C("sleeve", "string", "Policy sleeve (core, midcap_alts, reserve; 'reference' for reference mixes).", False),
        C("symbol", "string", "Member (CASH for a cash reserve).", False),
        C("target_weight", "float", "Weight set at the last rebalance.", unit="fraction of NAV", ge=0, le=1),
        C("weight", "float", "Weight at the close after drifting with prices.", unit="fraction of NAV", ge=0, le=1),
        C("band_min", "float", "Sleeve band lower bound.", unit="fraction of NAV"),
        C("band_max", "float", "Sleeve band upper bound.", unit="fraction of NAV"),
        C("in_band", "bool", "The sleeve's drifted weight is inside its band."),
    ),
    primary_key=("mix", "symbol", "date"),
    date_column="date",
    publish=True,
    partition_year_by="date",
    rules=(
        Rule("weights_sum_to_one", f"weight sums to 1 (within {WEIGHT_SUM_TOL}) per date and mix",
             lambda _: (pl.col("weight").sum().over("date", "mix") - 1.0).abs() <= WEIGHT_SUM_TOL),
        Rule("band_min_le_band_max", "band_min <= band_max", lambda _: pl.col("band_min") <= pl.col("band_max")),
        NOT_AFTER_AS_OF,
    ),
)

MART_MIX_PERFORMANCE = Table(
    "mart_mix_performance",
    "Daily NAV of each allocation mix (start 1.0), returns, drawdown, turnover and costs.",
    (
        C("date", "date", "UTC day.", False),
        C("mix", "string", "Allocation mix.", False),
        C("nav", "float", "Net asset value after costs.", unit="multiple of start", gt=0),
        C("daily_return", "float", "Simple return of the NAV; null when a held member has no price of its own that day.", unit="fraction"),
        C("drawdown", "float", "nav / running max nav - 1.", unit="fraction"),
        C("turnover", "float", "One-way turnover on rebalance days: 1/2 sum |target - drifted|; null otherwise.", unit="fraction of NAV"),
        C("cost", "float", "Transaction cost charged that day.", unit="fraction of NAV"),
        C("spans_gap", "bool", "daily_return is bridged: the NAV move since the last day every held member had its "
          "own price (the days between have a null daily_return)."),
        C("rebalance_reason", "string", "What made the mix trade at this close: 'calendar' (a scheduled rebalance) or "
          "'band' (a sleeve closed outside its band the day before); null on days without a trade and on the first day."),
    ),
    primary_key=("mix", "date"),
    date_column="date",
    publish=True,
)

MART_MIX_SUMMARY = Table(
    "mart_mix_summary",
    "Performance summary of each allocation mix over its whole history.",
    (
        C("mix", "string", "Allocation mix.", False),
        C("start_date", "date", "First valued day."),
        C("end_date", "date", "Last valued day."),
        C("cagr", "float", "Compound annual growth rate (365-day years).", unit="fraction per year"),
        C("volatility", "float", "Annualised volatility of daily returns (sqrt 365).", unit="fraction per year"),
        C("sharpe", "float", "(mean daily return - risk free) / stdev, annualised.", unit="ratio"),
        C("max_drawdown", "float", "Worst drawdown.", unit="fraction"),
        C("worst_month", "float", "Worst calendar-month return.", unit="fraction"),
        C("days_out_of_band", "bigint", "Days with a drifted sleeve outside its band.", unit="days"),
        C("avg_turnover", "float", "Mean one-way turnover per rebalance.", unit="fraction of NAV"),
        C("rebalances", "bigint", "Trades after the first day (calendar and band-triggered).", unit="rebalances", ge=0),
        C("band_rebalances", "bigint", "Trades triggered by a sleeve out of its band.", unit="rebalances", ge=0),
        C("total_turnover", "float", "Sum of one-way turnover over all rebalances.", unit="fraction of NAV", ge=0),
        C("cost_bps", "float", "Cost charged per unit of one-way turnover (the policy's cost_bps).", unit="bps", ge=0),
        C("cost_drag", "float", "Share of NAV the costs took over the whole history: 1 - prod(1 - cost); the NAV "
          "without costs times (1 - cost_drag) is the reported NAV.", unit="fraction of NAV", ge=0, le=1),
    ),
    primary_key=("mix",),
    publish=True,
)

MART_BAND_BREACHES = Table(
    "mart_band_breaches",
    "Every day a mix's drifted sleeve weight is outside its policy band.",
    (
        C("date", "date", "UTC day.", False),
        C("mix", "string", "Allocation mix.", False),
        C("sleeve", "string", "Sleeve out of band.", False),
        C("weight", "float", "Drifted sleeve weight.", unit="fraction of NAV"),
        C("band_min", "float", "Band lower bound.", unit="fraction of NAV"),
        C("band_max", "float", "Band upper bound.", unit="fraction of NAV"),
    ),
    primary_key=("mix", "sleeve", "date"),
    date_column="date",
    publish=True,
)

MART_BAND_COMPLIANCE = Table(
    "mart_band_compliance",
    "Band compliance of every sleeve of every allocation mix on every day: in or out of band, drift, "
    "consecutive days out, and the smallest trade back into the band.",
    (
        C("mix", "string", "Allocation mix.", False),
        C("sleeve", "string", "Policy sleeve ('reference' for reference mixes).", False),
        C("date", "date", "UTC day (the close).", False),
        # No le=1: a sleeve holding the whole book sums to 1 give or take an ulp.
        C("weight", "float", "Sleeve weight at the close (sum of its members' drifted weights).", unit="fraction of NAV",
          ge=0),
        C("band_min", "float", "Sleeve band lower bound.", unit="fraction of NAV"),
        C("band_max", "float", "Sleeve band upper bound.", unit="fraction of NAV"),
        C("in_band", "bool", "weight is inside [band_min, band_max] (1e-9 rounding tolerance); the verdict of "
          "mart_allocation_weights and mart_band_breaches."),
        C("target_weight", "float", "Sleeve target set at the last rebalance.", unit="fraction of NAV", ge=0),
        C("drift", "float", "weight - target_weight.", unit="fraction of NAV"),
        C("days_out_of_band", "bigint", "Consecutive days out of band up to and including this one; 0 in band.",
          unit="days", ge=0),
        C("trade_to_band", "float", "Smallest trade that returns the sleeve to its band: the signed distance to the "
          "nearest band edge (positive: buy, negative: sell); 0 in band.", unit="fraction of NAV"),
    ),
    primary_key=("mix", "sleeve", "date"),
    date_column="date",
    publish=True,
    partition_year_by="date",
)

FACT_FUNDAMENTALS = Table(
    "fact_fundamentals",
    "Point-in-time fundamentals snapshots: a snapshot is used only for sessions on or after its as_of.",
    (
        C("symbol", "string", "Stock.", False),
        C("as_of", "date", "Date the snapshot was taken.", False),
        C("sector", "string", "Sector at the snapshot."),
        C("industry", "string", "Industry at the snapshot."),
        C("trailing_pe", "float", "Trailing price / earnings.", unit="ratio"),
        C("price_to_book", "float", "Price / book value.", unit="ratio"),
        C("return_on_equity", "float", "Return on equity.", unit="fraction"),
        C("profit_margin", "float", "Net profit margin.", unit="fraction"),
        C("gross_margin", "float", "Gross margin.", unit="fraction"),
        C("debt_to_equity", "float", "Debt / equity (Yahoo reports it in percent).", unit="percent"),
        C("recommendation_mean", "float", "Mean analyst recommendation, 1 = strong buy .. 5 = sell.", unit="score"),
        C("number_of_analyst_opinions", "bigint", "Analysts behind the recommendation.", unit="analysts"),
        C("short_percent_of_float", "float", "Shares sold short / float.", unit="fraction"),
    ),
    primary_key=("symbol", "as_of"),
    date_column="as_of",
)

MART_FACTOR_SCORES = Table(
    "mart_factor_scores",
    "Alpha Score (0-100) per stock and session from momentum, value, quality and sentiment sub-scores "
    "(cross-sectional percentile ranks, within sector when it has at least 5 names), with labels and summaries.",
    (
        C("date", "date", "Session.", False),
        C("symbol", "string", "Stock.", False),
        C("sector", "string", "Sector used for ranking (null: ranked across all stocks)."),
        C("momentum_score", "float", "Mean rank of the 12-1 and 6-1 month returns.", unit="0-100"),
        C("value_score", "float", "Mean rank of earnings yield and book-to-price.", unit="0-100"),
        C("quality_score", "float", "Mean rank of ROE, profit margin and (inverted) debt-to-equity.", unit="0-100"),
        C("sentiment_score", "float", "Mean rank of (inverted) recommendation mean and short interest.", unit="0-100"),
        C("alpha_score", "bigint", "Weighted mean of the available sub-scores, rounded half-up.", False, unit="0-100"),
        C("alpha_label", "string", "Strong (>= 75), Moderate (40-74) or Weak (< 40).", False),
        C("coverage", "bigint", "How many of the four sub-scores were available.", False, unit="sub-scores"),
        C("summary", "string", "'Alpha Score of 68 reflects moderate overall profile with strong momentum, ...'", False),
        C("headline", "string", "'{name} ({symbol}) maintains an Alpha Score of 72/100, categorized as Moderate within the {sector} sector.'", False),
    ),
    primary_key=("symbol", "date"),
    date_column="date",
    publish=True,
    partition_year_by="date",
)

MART_FACTOR_METRICS = Table(
    "mart_factor_metrics",
    "Every metric behind the Alpha Score: raw value, percentile rank and whether it was ranked within sector or across all.",
    (
        C("date", "date", "Session.", False),
        C("symbol", "string", "Stock.", False),
        C("metric", "string", "Metric name (transforms/factors.py METRICS).", False),
        C("value", "float", "Raw metric value."),
        C("rank_pct", "float", "100 x average rank / n, oriented so higher is better.", unit="0-100"),
        C("rank_scope", "string", "sector or all."),
    ),
    primary_key=("symbol", "metric", "date"),
    date_column="date",
    publish=True,
    partition_year_by="date",
)

MART_FACTOR_IC = Table(
    "mart_factor_ic",
    "Daily information coefficient: Spearman correlation between each score and the forward return (evaluation only).",
    (
        C("date", "date", "Session the score is taken on.", False),
        C("factor", "string", "momentum, value, quality, sentiment or alpha.", False),
        C("horizon_sessions", "bigint", "Forward return horizon.", False, unit="sessions"),
        C("ic", "float", "Spearman rank correlation; null with fewer than 5 stocks or a constant side."),
        C("n", "bigint", "Stocks with both a score and a forward return.", unit="stocks"),
        C("top_minus_bottom", "float", "Mean forward return of the top score quintile minus the bottom quintile that session; null when either is empty.", unit="fraction"),
    ),
    primary_key=("factor", "horizon_sessions", "date"),
    date_column="date",
    publish=True,
)

MART_FACTOR_IC_SUMMARY = Table(
    "mart_factor_ic_summary",
    "Factor evaluation summary: mean IC, its t-stat (Newey-West for the overlapping forward windows) and the "
    "top-minus-bottom quintile return.",
    (
        C("factor", "string", "Score evaluated.", False),
        C("horizon_sessions", "bigint", "Forward return horizon.", False, unit="sessions"),
        C("mean_ic", "float", "Mean daily IC."),
        C("ic_std", "float", "Standard deviation of daily IC."),
        C("ic_tstat", "float", "t-stat of mean_ic with a Newey-West variance over horizon - 1 lags (the overlap of forward windows)."),
        # issue 14: the method is published with the t-stat; the naive one only labelled.
        C("ic_tstat_method", "string", "How ic_tstat accounts for overlapping windows (newey_west_h-1_lags)."),
        C("ic_tstat_naive", "float", "mean_ic / (ic_std / sqrt(n_dates)) as if sessions were independent: overstated, for comparison only."),
        C("n_dates", "bigint", "Sessions with an IC.", unit="sessions"),
        C("top_minus_bottom_quintile_return", "float", "Mean forward return of the top quintile minus the bottom.", unit="fraction"),
    ),
    primary_key=("factor", "horizon_sessions"),
    publish=True,
)

# --- Spillover marts (issue 18): transforms/spillover.py, lead_lag.py, spillover_index.py ---

MART_SPILLOVER = Table(
    "mart_spillover",
    "Regime-conditional correlation and beta of each crypto asset (and crypto index) versus each benchmark: "
    "over the window's sessions on which the benchmark rallied (risk_on: log return above +1 standard deviation "
    "of its trailing returns), sold off (risk_off: below -1 sd) or all sessions. See docs/analytics.md.",
    (
        C("date", "date", "Last session of the window (every session, or month-ends and the latest: setting spillover_cadence).", False),
        C("asset", "string", "Crypto asset or crypto index.", False),
        C("benchmark", "string", "Equity benchmark (^RUT, ^GSPC).", False),
        C("window_days", "int", "Window length in sessions.", False, unit="sessions"),
        C("regime", "string", "risk_on, risk_off or all: which of the window's sessions count.", False),
        C("correlation", "float", "Pearson correlation of daily log returns over the regime's sessions; null below "
          "spillover_min_observations sessions or for a flat side.", **CORRELATION),
        C("beta", "float", "cov(asset, benchmark) / var(benchmark) over the regime's sessions; null as correlation "
          "(a flat asset gives 0).", unit="ratio"),
        C("observations", "int", "Sessions of the window in the regime with returns for both series.", False, unit="sessions"),
    ),
    primary_key=("asset", "benchmark", "window_days", "regime", "date"),
    date_column="date",
    publish=True,
    partition_year_by="date",
    rules=(
        Rule("regime_known", "regime is risk_on, risk_off or all",
             lambda _: pl.col("regime").is_in(["risk_on", "risk_off", "all"])),
        NOT_AFTER_AS_OF,
    ),
)

MART_LEAD_LAG = Table(
    "mart_lead_lag",
    "Lead-lag correlations of each crypto asset (and crypto index) versus each benchmark: the benchmark's session "
    "return against the asset's return lag_sessions later (-1, 0, +1), and the asset's closed-market (weekend and "
    "holiday) return against the benchmark's next session. See docs/analytics.md.",
    (
        C("date", "date", "Last session of the window (as mart_spillover).", False),
        C("asset", "string", "Crypto asset or crypto index.", False),
        C("benchmark", "string", "Equity benchmark (^RUT, ^GSPC).", False),
        C("window_days", "int", "Window length in sessions (pairs whose later session lies in it).", False, unit="sessions"),
        C("measure", "string", "session: session returns; weekend: the asset's return from 00:00 UTC after the "
          "previous session's day to 00:00 UTC of the session, against the benchmark's return on that session.", False),
        C("lag_sessions", "int", "k: benchmark on session s against asset on s + k (+1: crypto follows the benchmark "
          "a session later); -1 for weekend (crypto's move comes first).", False, unit="sessions"),
        C("correlation", "float", "Pearson correlation of the pairs; null below spillover_min_observations pairs or for "
          "a flat side.", **CORRELATION),
        C("observations", "int", "Pairs with both returns in the window.", False, unit="pairs"),
    ),
    primary_key=("asset", "benchmark", "window_days", "measure", "lag_sessions", "date"),
    date_column="date",
    publish=True,
    partition_year_by="date",
    rules=(
        Rule("measure_known", "measure is session (lag -1, 0, +1) or weekend (lag -1)",
             lambda _: ((pl.col("measure") == "session") & pl.col("lag_sessions").is_in([-1, 0, 1]))
             | ((pl.col("measure") == "weekend") & (pl.col("lag_sessions") == -1))),
        NOT_AFTER_AS_OF,
    ),
)

PERCENT = {"ge": 0.0, "le": 100.0}

MART_SPILLOVER_INDEX = Table(
    "mart_spillover_index",
    "Diebold-Yilmaz spillover index: generalized forecast-error variance decomposition (Pesaran-Shin) of a VAR "
    "on daily log returns of ^RUT, ^GSPC, BTC, ETH and ALTS over a rolling window; total and directional "
    "figures per series, in percent. See docs/analytics.md.",
    (
        C("date", "date", "Last session of the window (every spillover_index_step-th session and the latest).", False),
        C("series", "string", "Series of the VAR.", False),
        C("window_sessions", "int", "Rolling window of the VAR.", False, unit="sessions"),
        C("horizon", "int", "Forecast horizon of the decomposition.", False, unit="sessions"),
        C("lag_order", "int", "VAR lag order chosen by the information criterion (spillover_index_ic).", False, unit="sessions"),
        C("observations", "int", "Sessions of the window with a return for every series.", False, unit="sessions"),
        C("own_share", "float", "100 x share of the series' forecast-error variance due to its own shocks.", False, unit="percent", **PERCENT),
        C("from_others", "float", "100 x share of the series' forecast-error variance due to the other series' shocks.", False, unit="percent", **PERCENT),
        C("to_others", "float", "Sum over the other series of the shares of their variance due to this series' shocks (x 100).", False, unit="percent", ge=0.0),
        C("net", "float", "to_others - from_others.", False, unit="percent"),
        C("total_spillover", "float", "Total spillover index of the date: mean of from_others over the series.", False, unit="percent", **PERCENT),
    ),
    primary_key=("series", "date"),
    date_column="date",
    publish=True,
    rules=(
        Rule("shares_sum_to_100", "own_share + from_others = 100 (within 1e-6)",
             lambda _: (pl.col("own_share") + pl.col("from_others") - 100.0).abs() <= 1e-6),
        NOT_AFTER_AS_OF,
    ),
)

PIPELINE_RUNS = Table(
    "pipeline_runs",
    "One row per pipeline run, successful or not.",
    (
        C("run_id", "string", "Unique run id.", False),
        C("started_at", "timestamp", "Run start.", False, unit="UTC"),
        C("finished_at", "timestamp", "Run end; null while running.", unit="UTC"),
        C("source", "string", "sample, files or live.", False),
        C("as_of", "date", "Last date the run covers.", False),
        C("status", "string", "running, succeeded, failed, cancelled (Ctrl-C or SIGTERM) or interrupted (killed).", False),
        C("rows_written", "bigint", "Bars landed in the lake (new or revised).", unit="rows"),
        C("error", "string", "Why the run failed; null otherwise."),
        C("stage_seconds", "string", "JSON object: seconds per stage.", unit="seconds"),
        C("table_rows", "string", "JSON object: rows per published table.", unit="rows"),
        C("audit", "string", "Audit result: passed, or the failed checks."),
        C("code_version", "string", "xasset version and git commit that ran."),
        C("crypto_close", "string", "When the run's crypto daily bars close: utc_midnight (the exchange's daily "
          "candle) or equity_close (sampled at the equity session close from hourly candles); null for runs "
          "recorded before the setting existed."),
    ),
    primary_key=("run_id",),
)

INGEST_LOG = Table(
    "ingest_log",
    "Every attempt to fetch one symbol in a run, with its outcome.",
    (
        C("run_id", "string", "Run id (pipeline_runs.run_id).", False),
        C("symbol", "string", "Asset key.", False),
        C("source", "string", "Source asked (sample, files, yfinance, an exchange id).", False),
        C("status", "string", "ok, error, skipped, or withdrawn (a files run's input no longer holds the symbol: "
          "its stored bars were withdrawn).", False),
        C("rows", "bigint", "Bars received.", unit="rows"),
        C("first_date", "date", "First bar date received."),
        C("last_date", "date", "Last bar date received."),
        C("attempts", "int", "Requests made, retries included.", unit="requests"),
        C("error", "string", "Error message for a failed symbol."),
    ),
    primary_key=("run_id", "symbol", "source"),
)

QUARANTINE = Table(
    "quarantine",
    "Input rows held back because they broke a row-level data-quality rule, one row per (row, rule) and run. "
    "They stay in the lake untouched and are re-checked by every run until the source corrects them; "
    "rule withdrawn: a stored bar a files run's input no longer holds, moved out of the lake's bars "
    "(lake/withdrawn/), recorded once by the run that withdrew it.",
    (
        C("run_id", "string", "Run that quarantined the row (pipeline_runs.run_id).", False),
        # Not `table`: a keyword, which every analyst query would have to quote.
        C("table_name", "string", "Table the row was bound for.", False),
        C("key", "string", "The row's primary key as JSON, e.g. {\"symbol\": \"BTC\", \"date\": \"2026-01-05\"}.", False),
        C("rule", "string", "Rule broken (see docs/data_dictionary.md).", False),
        C("detail", "string", "The rule in words, where the row came from (origin: file and row, or the source's "
          "request; unknown for bars landed before origins were kept) and the offending values.", False),
    ),
    primary_key=("run_id", "table_name", "key", "rule"),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        DIM_ASSET,
        FACT_PRICES,
        FACT_RETURNS,
        DIM_INDEX_MEMBER,
        MART_ROLLING_CORRELATION,
        MART_CORRELATION_MATRIX,
        MART_CORRELATION_EVENTS,
        MART_MARKET_MILESTONES,
        MART_PERIOD_RETURNS,
        MART_ALLOCATION_WEIGHTS,
        MART_MIX_PERFORMANCE,
        MART_MIX_SUMMARY,
        MART_BAND_BREACHES,
        MART_BAND_COMPLIANCE,
        FACT_FUNDAMENTALS,
        MART_FACTOR_SCORES,
        MART_FACTOR_METRICS,
        MART_FACTOR_IC,
        MART_FACTOR_IC_SUMMARY,
        MART_SPILLOVER,
        MART_LEAD_LAG,
        MART_SPILLOVER_INDEX,
        PIPELINE_RUNS,
        INGEST_LOG,
        QUARANTINE,
    )
}
