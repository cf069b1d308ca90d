"""Market milestones (all-time highs, drawdowns, period-to-date returns) and
completed-period returns, each series on its own native calendar.

Every figure is computed from ``adj_close`` (exposed as ``close`` here): for
indices and crypto it equals the raw close, and for ETFs it is the only price
whose moves are returns, so one price serves every symbol. Rows with a null or
non-positive price are dropped first: they cannot be a high, a low or a base.

Gaps. A series is expected on every UTC day (``daily_symbols``: crypto and the
crypto indices) or on every exchange session (the others, when ``sessions``
is given). ``gap_days`` counts the expected dates missing right before a row.
A figure whose span crosses a missing stretch is not a measured return: the
period-to-date, one-year, 21-row-low and completed-period figures spanning a
gap are null (``spans_gap`` in the period returns), and ``ret_1d`` after a gap
is the move across it, flagged by ``gap_days > 0``. Nothing spanning a gap
reads as flat or as one ordinary day.

History. ``history`` holds bars from before the run's window (the whole
record the source provides, e.g. ^RUT from 1987 when the run starts in 2015):
highs, lows and return bases look back into it, and ``ath_since`` names the
first date the high looks back to, so a high is "the highest since
<ath_since>", all-time only when that is the asset's first day. Rows are
published for the dates of ``prices`` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import polars as pl

from contracts.tables import MART_MARKET_MILESTONES, MART_PERIOD_RETURNS

_PERIOD_EVERY = {"month": "1mo", "quarter": "1q", "year": "1y"}


def _closes(
    prices: pl.DataFrame,
    symbols: Iterable[str] | None,
    sessions: pl.Series | None = None,
    daily_symbols: Iterable[str] = (),
) -> pl.DataFrame:
    """(symbol, date, close, gap_days, _gaps): positive closes, the expected
    dates missing before each row, and the running count of gaps (a figure
    whose base has another ``_gaps`` than its row spans a gap)."""
    p = prices if symbols is None else prices.filter(pl.col("symbol").is_in(list(symbols)))
    c = (
        p.select("symbol", "date", pl.col("adj_close").cast(pl.Float64).alias("close"))
        .filter(pl.col("close") > 0)
        .unique(["symbol", "date"], keep="last")
        .sort("symbol", "date")
    )
    daily = pl.col("symbol").is_in(list(daily_symbols))
    prev = pl.col("date").shift(1).over("symbol")
    calendar_gap = (pl.col("date") - prev).dt.total_days() - 1
    if sessions is not None and sessions.len():
        idx = pl.DataFrame({"date": sessions.cast(pl.Date).unique().sort()}).with_row_index("_s")
        c = c.join(idx.with_columns(pl.col("_s").cast(pl.Int64)), on="date", how="left", maintain_order="left")
        session_gap = pl.col("_s") - pl.col("_s").shift(1).over("symbol") - 1
        gap = pl.when(daily).then(calendar_gap).otherwise(session_gap)
    else:
        gap = pl.when(daily).then(calendar_gap)
    c = c.with_columns(gap.clip(lower_bound=0).fill_null(0).cast(pl.Int32).alias("gap_days"))
    return c.with_columns((pl.col("gap_days") > 0).cast(pl.Int64).cum_sum().over("symbol").alias("_gaps")).drop(
        "_s", strict=False
    )


def _period_ends(closes: pl.DataFrame, every: str) -> pl.DataFrame:
    """(symbol, period_start, period_end, period_close, prior_close): last row of
    each period a series has, and the last close of the period before it.

    Periods with no row do not exist, so the prior close is the last close
    before the period, however far back.
    """
    return (
        closes.group_by("symbol", pl.col("date").dt.truncate(every).alias("period_start"))
        .agg(
            pl.col("date").last().alias("period_end"),
            pl.col("close").last().alias("period_close"),
            pl.col("_gaps").last().alias("_end_gaps"),
            pl.col("gap_days").first().alias("_start_gap"),
        )
        .sort("symbol", "period_start")
        .with_columns(
            pl.col("period_close").shift(1).over("symbol").alias("prior_close"),
            pl.col("_end_gaps").shift(1).over("symbol").alias("_prior_gaps"),
            pl.col("_start_gap").shift(-1).over("symbol").alias("_next_start_gap"),
        )
    )


def mart_market_milestones(
    prices: pl.DataFrame,
    symbols: Iterable[str] | None = None,
    *,
    low_window: int = 21,
    year_lookback_rows: int | None = None,
    sessions: pl.Series | None = None,
    daily_symbols: Iterable[str] = (),
    history: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """mart_market_milestones: one row per symbol and row of its own calendar.

    - ``ath_close``: running max of close, today included; ``is_new_ath``: the
      close strictly exceeds every earlier close (a tie is not new, and the
      first row is not an ATH: there is no record to break);
      ``drawdown_from_ath`` = close / ath_close - 1 (0 at a high, else < 0);
      ``ath_since``: the first date the high looks back to (``history``
      included).
    - ``gap_days``: expected dates missing right before the row (module
      docstring); figures spanning a gap are null, ``ret_1d`` excepted.
    - ``low_21d``: lowest close of the last ``low_window`` rows, today
      included, null until the series has that many rows;
      ``rally_from_low_21d`` = close / low_21d - 1.
    - ``ret_1d`` versus the previous row; ``ret_mtd``/``ret_qtd``/``ret_ytd``
      versus the last close before the current month/quarter/year (null in a
      series' first period).
    - ``ret_1y`` versus the last close on or before the same date one calendar
      year earlier (29 Feb maps to 28 Feb), null when the series does not
      reach back that far. Calendar-based because crypto and the crypto
      indices have ~365 rows a year and equities ~252; pass
      ``year_lookback_rows`` (e.g. 252) to use a fixed row count instead.
    """
    c = _closes(_with_history(prices, history, symbols), symbols, sessions, daily_symbols)
    close = pl.col("close")
    window_gaps = pl.col("_gaps") - pl.col("_gaps").shift(low_window - 1).over("symbol")
    out = c.with_columns(
        close.cum_max().over("symbol").alias("ath_close"),
        close.cum_max().shift(1).over("symbol").alias("_prior_max"),
        pl.when(window_gaps == 0)
        .then(close.rolling_min(low_window, min_samples=low_window).over("symbol"))
        .alias("low_21d"),
        (close / close.shift(1).over("symbol") - 1.0).alias("ret_1d"),
        pl.col("date").min().over("symbol").alias("ath_since"),
    ).with_columns(
        (pl.col("_prior_max").is_not_null() & (close > pl.col("_prior_max"))).alias("is_new_ath"),
        (close / pl.col("ath_close") - 1.0).alias("drawdown_from_ath"),
        (close / pl.col("low_21d") - 1.0).alias("rally_from_low_21d"),
    )
    for name, every in (("ret_mtd", "1mo"), ("ret_qtd", "1q"), ("ret_ytd", "1y")):
        prior = _period_ends(c, every).select("symbol", "period_start", "prior_close", "_prior_gaps")
        out = (
            out.with_columns(pl.col("date").dt.truncate(every).alias("period_start"))
            .join(prior, on=["symbol", "period_start"], how="left")
            .with_columns(
                pl.when(pl.col("_gaps") == pl.col("_prior_gaps")).then(close / pl.col("prior_close") - 1.0).alias(name)
            )
            .drop("period_start", "prior_close", "_prior_gaps")
        )
    if year_lookback_rows is not None:
        k = year_lookback_rows
        same = pl.col("_gaps") == pl.col("_gaps").shift(k).over("symbol")
        out = out.with_columns(pl.when(same).then(close / close.shift(k).over("symbol") - 1.0).alias("ret_1y"))
    else:
        year_ago = c.select(
            "symbol", pl.col("date").alias("_base_date"), pl.col("close").alias("_base_close"),
            pl.col("_gaps").alias("_base_gaps"),
        )  # fmt: skip
        out = (
            out.with_columns(pl.col("date").dt.offset_by("-1y").alias("_target"))
            .sort("_target")
            .join_asof(
                year_ago.sort("_base_date"),
                left_on="_target",
                right_on="_base_date",
                by="symbol",
                strategy="backward",
                # Both sides are sorted just above; the check cannot see that with ``by``.
                check_sortedness=False,
            )
            .with_columns(
                pl.when(pl.col("_gaps") == pl.col("_base_gaps")).then(close / pl.col("_base_close") - 1.0).alias("ret_1y")
            )
        )
    if history is not None:
        out = out.join(prices.select("symbol", "date").unique(), on=["symbol", "date"], how="semi")
    return out.pipe(MART_MARKET_MILESTONES.conform).sort("symbol", "date")


def _with_history(prices: pl.DataFrame, history: pl.DataFrame | None, symbols: Iterable[str] | None) -> pl.DataFrame:
    """``prices`` plus the ``history`` bars dated before each symbol's first bar in ``prices``."""
    if history is None or history.is_empty():
        return prices
    cols = ["symbol", "date", "adj_close"]
    first = prices.group_by("symbol").agg(pl.col("date").min().alias("_first"))
    earlier = history.select(cols).join(first, on="symbol", how="inner").filter(pl.col("date") < pl.col("_first"))
    return pl.concat([earlier.select(cols), prices.select(cols)], how="vertical_relaxed")


def mart_period_returns(
    prices: pl.DataFrame,
    symbols: Iterable[str] | None = None,
    *,
    benchmark: str = "^GSPC",
    periods: Sequence[str] = ("month", "quarter", "year"),
    sessions: pl.Series | None = None,
    daily_symbols: Iterable[str] = (),
) -> pl.DataFrame:
    """mart_period_returns: simple returns over completed calendar periods.

    ``return`` = last close of the period / last close before the period - 1;
    ``period_end`` is the series' last row in the period. A period is complete
    once the series has a row in a later period, so each series' last period
    (the running month, or a month whose data stops mid-way) is left out, and
    so is its first (no close before it). ``benchmark_return`` is the
    benchmark's return over the same calendar period on its own calendar
    (null when that period is not complete for it); ``excess_return`` =
    return - benchmark_return. The benchmark gets rows of its own (excess 0)
    when it is among ``symbols``. A period whose span (from the close before
    it to its last close) crosses a gap has ``spans_gap`` true and a null
    return: what happened in the gap was not measured. So is a period whose
    data stops before its last expected date with a gap after it (a series
    resuming a year later must not publish January-October as "the year").
    """
    c = _closes(prices, symbols, sessions, daily_symbols)
    bench = _closes(prices, [benchmark], sessions, daily_symbols)
    daily = list(daily_symbols)
    frames = []
    for period in periods:
        every = _PERIOD_EVERY[period]
        # The last date a series is expected on in each period: its last UTC
        # day for daily series, its last session for the others.
        if sessions is not None and sessions.len():
            last_session = (
                pl.DataFrame({"d": sessions.cast(pl.Date)})
                .group_by(pl.col("d").dt.truncate(every).alias("period_start"))
                .agg(pl.col("d").max().alias("_last_session"))
            )
        else:
            last_session = pl.DataFrame(schema={"period_start": pl.Date, "_last_session": pl.Date})

        def completed(closes: pl.DataFrame, every: str = every, last_session: pl.DataFrame = last_session) -> pl.DataFrame:
            last_day = pl.col("period_start").dt.offset_by(every).dt.offset_by("-1d")
            expected_last = pl.when(pl.col("symbol").is_in(daily)).then(last_day).otherwise(pl.col("_last_session"))
            cut_short = (pl.col("_next_start_gap") > 0) & (pl.col("period_end") < expected_last).fill_null(False)
            return (
                _period_ends(closes, every)
                .join(last_session, on="period_start", how="left")
                .filter(pl.col("period_start") < pl.col("period_start").max().over("symbol"))
                .filter(pl.col("prior_close").is_not_null())
                .with_columns(((pl.col("_end_gaps") != pl.col("_prior_gaps")) | cut_short).alias("spans_gap"))
                .with_columns(
                    pl.when(~pl.col("spans_gap"))
                    .then(pl.col("period_close") / pl.col("prior_close") - 1.0)
                    .alias("return")
                )
            )

        b = completed(bench).select("period_start", pl.col("return").alias("benchmark_return"))
        frames.append(
            completed(c)
            .join(b, on="period_start", how="left")
            .select(
                "symbol",
                pl.lit(period).alias("period"),
                "period_end",
                "return",
                pl.lit(benchmark).alias("benchmark"),
                "benchmark_return",
                (pl.col("return") - pl.col("benchmark_return")).alias("excess_return"),
                "spans_gap",
            )
        )
    return pl.concat(frames).pipe(MART_PERIOD_RETURNS.conform).sort("symbol", "period", "period_end")
