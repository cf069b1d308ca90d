"""The figures a run states on the whole of fact_prices, also when it hands on only its tail.

Its stale assets (``flows.artifacts.stale_symbols``), the report's freshness
(``flows.artifacts.freshness``) and the audit's gap and split-like warnings
(``warehouse.audit.price_warnings``) are judged on every bar. A run that rebuilds
from ``since`` holds only the tail of fact_prices (``Marts.unchanged_before``);
the rows before ``since`` are the published run's, and ``price_figures_from``
takes their share without reading them:

- one aggregate per symbol over the published fact_prices before ``since``
  (``warehouse/sql/figures/earlier_prices.sql``: first and last dates, dates and
  sessions counted, newest ingested_at, the last bar's source and adj_close),
  combined with the same per symbol of the tail;
- the published run's split-like moves, carried in its run state
  (``MOVES_STATE``: every move of its whole fact_prices, any asset class), those
  before ``since`` kept; the tail's moves judged with each symbol's last earlier bar.
  A published state without them (written by an older version) has the moves
  found again from the published bars before ``since``;
- the dates of the few symbols the gap warning names (``MAX_LISTED``), to find
  each one's first missing date.

The result equals ``price_figures`` on the whole table
(tests/flows/test_price_figures.py); this run's moves go into its own state.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from functools import partial

import polars as pl

from flows.artifacts import freshness, stale_symbols
from flows.calendar import sessions as exchange_sessions
from flows.settings import Settings
from warehouse.price_history import EarlierPrices
from warehouse.quality import (
    MAX_LISTED,
    bar_spans,
    gaps_warning,
    log_moves,
    missing_dates,
    session_gaps,
    short_spans,
    split_like_warning,
)
from warehouse.snapshots import CURRENT, RUN_STATE, WAREHOUSE_FILE

# Run state key: every split-like move (``warehouse.quality.log_moves``) of the run's whole
# fact_prices, as [symbol, ISO date, log move] (the float round-trips JSON exactly).
MOVES_STATE = "split_like_moves"

Figures = tuple[list[dict], list[str], tuple[list[dict], list[dict]]]


def price_figures(prices: pl.DataFrame, assets: pl.DataFrame, as_of: date, settings: Settings) -> Figures:
    """What the run states of the whole of fact_prices (``prices``): its stale assets,
    the audit's warnings on it, and the report's freshness."""
    return _whole_figures(prices, assets, as_of, settings)[0]


def price_figures_from(
    tail: pl.DataFrame, since: date | None, assets: pl.DataFrame, as_of: date, settings: Settings,
    state: dict | None = None,
) -> Figures:
    """``price_figures`` of the whole fact_prices: ``tail`` (the run's rows from ``since``) and the
    published run's rows before ``since`` (None: ``tail`` is the whole table). ``state``: this run's
    state, given the whole table's split-like moves (``MOVES_STATE``) for the next run."""
    if since is None:
        figures, moves = _whole_figures(tail, assets, as_of, settings)
    else:
        figures, moves = _figures_on_tail(tail, since, assets, as_of, settings)
    if state is not None:
        state[MOVES_STATE] = [[s, d.isoformat(), m] for s, d, m in moves.iter_rows()]
    return figures


def _whole_figures(prices: pl.DataFrame, assets: pl.DataFrame, as_of: date, settings: Settings):
    moves = log_moves(prices.select("symbol", "date", "adj_close")) if not prices.is_empty() else _no_moves()
    if prices.is_empty():
        return ([], [], ([], [])), moves
    stale = stale_symbols(
        prices, assets, as_of, exchange_sessions(prices["date"].min(), as_of, settings.exchange_calendar),
        settings.stale_after_sessions,
    )
    sessions = partial(exchange_sessions, code=settings.exchange_calendar)
    warnings = session_gaps(prices, assets, as_of, sessions) + split_like_warning(moves, assets)
    return (stale, warnings, freshness(prices, assets)), moves


def _no_moves() -> pl.DataFrame:
    return pl.DataFrame(schema={"symbol": pl.String, "date": pl.Date, "_m": pl.Float64})


def _figures_on_tail(tail: pl.DataFrame, since: date, assets: pl.DataFrame, as_of: date, settings: Settings):
    sessions = partial(exchange_sessions, code=settings.exchange_calendar)
    # The published run's directory, resolved once: its warehouse and its state are one run's.
    run_dir = (settings.data_dir / CURRENT).resolve()
    # The gap rule counts the bars up to as_of; the others every bar (all are up to as_of
    # whenever since is: one summary serves both).
    upto = min(since, as_of + timedelta(days=1))
    with EarlierPrices(run_dir / WAREHOUSE_FILE, since) as earlier:
        firsts = [d for d in (earlier.first_date(upto), tail.filter(pl.col("date") <= as_of)["date"].min())
                  if d is not None]
        cal = sessions(min(firsts), as_of).cast(pl.Date).unique().sort() if firsts else pl.Series([], dtype=pl.Date)
        summary = earlier.summary(since, cal)
        dated_summary = summary if upto == since else earlier.summary(upto, cal)
        summary = summary.with_columns(pl.col("ingested_at").cast(tail.schema["ingested_at"]))
        # Each symbol's last bar: the tail's where it has one (every tail bar is after every earlier one).
        own = pl.col("source") != "derived"
        tail_last = tail.group_by("symbol").agg(
            pl.col("date").min().alias("first_bar"), pl.col("date").max().alias("last_bar"),
            pl.col("date").filter(own).max().alias("last_own_bar"), pl.col("ingested_at").max(),
            pl.col("source").sort_by("date").last(),
        )
        cols = ["symbol", "first_bar", "last_bar", "last_own_bar", "ingested_at", "source"]
        earlier_last = summary.rename({"first": "first_bar", "last": "last_bar"})
        last = pl.concat([earlier_last.select(cols), tail_last.select(cols)]).group_by("symbol").agg(
            pl.col("first_bar").min(), pl.col("last_bar").max(), pl.col("last_own_bar").max(),
            pl.col("ingested_at").max(), pl.col("source").sort_by("last_bar").last(),
        )
        if last.is_empty():
            return ([], [], ([], [])), _no_moves()
        stale = stale_symbols(
            last.select("symbol", pl.col("last_own_bar").alias("date"), pl.lit("").alias("source"))
            .filter(pl.col("date").is_not_null()),
            assets, as_of, sessions(last["first_bar"].min(), as_of), settings.stale_after_sessions,
        )
        fresh = freshness(last.select("symbol", pl.col("last_bar").alias("date"), "source", "ingested_at"), assets)
        gaps = _gaps(tail, dated_summary, earlier, assets, as_of, cal, sessions)
        moves = _moves(tail, since, summary, earlier, run_dir)
    return (stale, gaps + split_like_warning(moves, assets), fresh), moves


def _gaps(tail, summary, earlier: EarlierPrices, assets, as_of, cal, sessions) -> list[str]:
    """``session_gaps`` of the whole table: which symbols miss a date, counted from each part's
    spans; the listed ones' counts and first missing dates from their own bars."""
    if assets is None or assets.is_empty():
        return []
    spans_cols = ["symbol", "first", "last", "_days", "_sessions"]
    dated = tail.select("symbol", "date").filter(pl.col("date") <= as_of)
    parts = [
        summary.select(spans_cols),
        bar_spans(dated, cal).select(spans_cols),
    ]
    spans = pl.concat(parts, how="vertical_relaxed").group_by("symbol").agg(
        pl.col("first").min(), pl.col("last").max(), pl.col("_days").sum(), pl.col("_sessions").sum(),
    )
    short = short_spans(spans, assets, cal).sort("symbol")
    if short.is_empty():
        return []
    listed = short["symbol"].head(MAX_LISTED).to_list()
    bars = pl.concat([
        earlier.bars(listed).select("symbol", "date"),
        dated.filter(pl.col("symbol").is_in(listed)),
    ])
    return gaps_warning(missing_dates(bars, assets, as_of, sessions), short.height)


def _moves(tail, since: date, summary, earlier: EarlierPrices, run_dir) -> pl.DataFrame:
    """Every split-like move of the whole table (``log_moves``): the published run's before ``since``
    (carried in its state, or found again from its bars), and the tail's, each symbol's first
    tail bar judged against its last earlier one."""
    before = _carried_moves(run_dir / RUN_STATE, since)
    if before is None:
        before = log_moves(earlier.bars(None))
    boundary = summary.select("symbol", pl.col("last").alias("date"), "adj_close").join(
        tail.select("symbol").unique(), on="symbol", how="semi"
    )
    after = log_moves(pl.concat([boundary, tail.select("symbol", "date", "adj_close")], how="vertical_relaxed"))
    after = after.filter(pl.col("date") >= since)
    return pl.concat([before, after]).sort("symbol", "date")


def _carried_moves(path, since: date) -> pl.DataFrame | None:
    """The published run's moves before ``since`` (``MOVES_STATE``), or None when its state has none."""
    try:
        carried = json.loads(path.read_text()).get(MOVES_STATE)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not isinstance(carried, list):
        return None
    try:
        moves = pl.DataFrame(
            {"symbol": [str(r[0]) for r in carried], "date": [date.fromisoformat(r[1]) for r in carried],
             "_m": [float(r[2]) for r in carried]},
            schema={"symbol": pl.String, "date": pl.Date, "_m": pl.Float64},
        )
    except (TypeError, ValueError, IndexError, KeyError):
        return None  # not what a run wrote: found again from the bars
    return moves.filter(pl.col("date") < since)
