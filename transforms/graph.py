"""The mart graph: every derived table of a run declared once, built by one assembler.

Each ``Node`` names the tables it produces, the tables it reads (the base
inputs ``BASE_INPUTS`` or other nodes' tables), its builder, the previous
run's tables it reads back when built incrementally (and, where it needs
fewer than all of a table's rows, which: ``previous_rows``, pushed into the
warehouse scan by the reader, see ``seed_reads``), and its look-back. One
builder signature serves the full and the incremental build::

    build(inputs, params, since, previous) -> Built

``since`` None is the full build. Otherwise ``since`` is the first calendar
date whose stored bars may differ from the ones the previous run read, and
``previous`` holds the previous run's tables (those the node declared in
``previous``); for each table it names in ``Built.unchanged_before`` the node
returns exactly the rows its full build would return on/after that date, the
other tables whole (tests/transforms/test_incremental.py compares bit for bit).

A node that needs only a window of a previous table declares it in
``previous_window`` (sessions before ``since``, from the node's parameters:
the factor scores' longest IC horizon, one session for the marts whose
previous latest session may stop being a publish date, none for a table it
only rebuilds the tail of); the run reads those tables only from that day on
(``seed_reads``, pushed into the scan of the year-partitioned Parquet marts or
of DuckDB), and the tests build from exactly those rows. A node whose window
turns out too short for this run (a symbol new to the correlation matrix
rewrites every block) raises ``SeedTooShort``; the run reads that table whole
and builds again. In an incremental build an input another node names in its
``unchanged_before`` may hold only that tail (``fact_returns`` does): the whole
returns of the symbols the marts read whole are the tail node's ``_focus_returns``.

``assemble`` walks ``GRAPH`` in dependency order for both builds and hands the
nodes of each level (and a node's partitions, e.g. the correlations per block
of ``correlation_block_size`` crypto assets) to ``map_partitions`` in one
call, named after the node, so the flow's task runner runs them in parallel
and Prefect shows each mart by name. The tables an incremental run reads back
(``seed_tables``) and the checks that force a full build (a previous table in
a node's ``requires`` missing, a changed range within a node's look-back of
the first session) are derived from the nodes, not listed by hand.

**A new mart touches one place here: its node in ``GRAPH``** (plus its table
contract in contracts/tables.py and its test). Its tables appear in full and
incremental output, its task in Prefect, its previous tables in the seed
list. See how the allocation node declares ``mart_band_compliance`` among its
five tables, or the spillover node its three (``SPILLOVER_TABLES``).

Tables whose name starts with ``_`` are the graph's own intermediates
(benchmarks present, the incremental tail of returns) and are not output.
Pure: frames in, frames out; node bodies are module-level functions, so they
pickle to Dask workers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl

from contracts.schema import strictly_increasing
from contracts.tables import TABLES
from contracts.vocabulary import CRYPTO_CLASSES, INDEX_CLASSES
from transforms.allocation import simulate_mixes
from transforms.events import correlation_events_since, mart_correlation_events
from transforms.factors import METRICS
from transforms.incremental import (
    MARGIN_SESSIONS,
    _matrix_since,
    _rolling_correlation_since,
    factor_marts_since,
)
from transforms.indices import build_crypto_indices
from transforms.marts import (
    FACTOR_TABLES,
    MartParams,
    Marts,
    PartitionMap,
    _combine,
    blocks,
    correlation_partition,
    factor_marts,
    milestone_partition,
    present_benchmarks,
    serial_map,
)
from transforms.matrix import mart_correlation_matrix
from transforms.returns import log_returns
from transforms.spillover import publish_dates
from transforms.spillover_index import index_dates
from transforms.spillover_marts import (
    SPILLOVER_TABLES,
    pairs_changed_from,
    spillover_index_whole,
    spillover_marts,
    spillover_marts_since,
)

# The published fact_prices rows the crypto indices were built as (warehouse source "derived").
DERIVED_BARS: Condition = ("source", "==", "derived")
# What a run reads besides the previous tables.
BASE_INPUTS = ("prices", "assets", "sessions", "fundamentals", "history", "_previous_from")
ALLOCATION_TABLES = (
    "mart_allocation_weights", "mart_mix_performance", "mart_mix_summary", "mart_band_breaches",
    "mart_band_compliance",
)  # fmt: skip


class SeedTooShort(Exception):
    """Raised by a node whose previous rows, read only from its window (``Node.previous_window``),
    cannot give its tail this time (e.g. a symbol new to the correlation matrix rewrites every
    block): the run reads ``tables`` whole and builds again (``flows.stages.transform``)."""

    def __init__(self, tables: tuple[str, ...], reason: str):
        super().__init__(tables, reason)  # both in args: it pickles to and from Dask workers
        self.tables, self.reason = tuple(tables), reason

    def __str__(self) -> str:
        return f"{', '.join(self.tables)} needed whole: {self.reason}"


@dataclass
class Built:
    """What a node (or one partition of it) returns."""

    tables: dict[str, pl.DataFrame]
    warnings: list[str] = field(default_factory=list)
    # Per table: rows dated before this date are the previous rows (Marts.unchanged_before).
    unchanged_before: dict[str, date] = field(default_factory=dict)


Builder = Callable[[Mapping[str, Any], MartParams, "date | None", Mapping[str, pl.DataFrame]], Built]
# A condition on a previous table's column: ("source", "==", "derived"); the
# operators are those of ``warehouse.query.read_tables``, which pushes them into
# the warehouse's scan. Plain tuples: this module stays free of I/O.
Condition = tuple[str, str, Any]


def _no_lookback(params: MartParams) -> int:
    return 0


def _no_partitions(inputs: Mapping[str, Any], params: MartParams, since: date | None) -> list[Any]:
    return [None]


@dataclass(frozen=True)
class Node:
    name: str
    produces: tuple[str, ...]
    inputs: tuple[str, ...]
    build: Builder
    # The previous run's tables the node reads when built incrementally ...
    previous: tuple[str, ...] = ()
    # ... and those of them without which the whole run is built in full
    # (the node falls back to its own full build when another one is missing).
    requires: tuple[str, ...] = ()
    # Which rows of a ``previous`` table the node reads when not all of them:
    # (table, conditions on its columns), read with the conditions pushed into
    # the warehouse scan (``seed_reads``). A previous table the node passes on
    # into its output (rows before ``since`` kept as they were) is read whole.
    previous_rows: tuple[tuple[str, tuple[Condition, ...]], ...] = ()
    # The previous tables the node reads only from a window before ``since`` on:
    # (table, sessions before the first session on/after ``since``, from the
    # node's parameters). Their rows from that session (and from ``since``) on
    # are all it needs (``seed_reads`` pushes the bound into the read), and a
    # table it also produces it returns as its tail: only the rows on/after the
    # date it names in ``Built.unchanged_before`` (INTERFACE.md).
    previous_window: tuple[tuple[str, Callable[[MartParams], int]], ...] = ()
    # Sessions before ``since`` the incremental build reads; a changed range
    # that starts closer to the first session makes the run a full build.
    lookback: Callable[[MartParams], int] = _no_lookback
    # Sessions before the first session on/after ``since`` whose bars of ``prices``/``fact_prices``
    # the incremental build reads, of the symbols not in ``whole_price_symbols`` (those it reads
    # whole); ``prices_from`` bounds the run's clean bars by it (``flows.stages.transform``).
    prices_window: Callable[[MartParams], int] = _no_lookback
    # The parts the node's build is split into (each built with inputs["_part"]
    # set, then combined): e.g. blocks of crypto assets.
    partitions: Callable[[Mapping[str, Any], MartParams, "date | None"], list[Any]] = _no_partitions
    combine: Callable[[list[Built]], Built] | None = None
    # Cheap glue run by the assembler itself, not as a task.
    inline: bool = False


# --- helpers shared by node bodies -------------------------------------------------------------


def _sess(sessions: pl.Series) -> pl.Series:
    return sessions.cast(pl.Date).unique().sort()


@dataclass(frozen=True)
class _Plan:
    """Where an incremental build starts reading: indices into the sorted sessions."""

    sess: pl.Series
    from_idx: int
    look_idx: int
    tail_idx: int

    @property
    def from_session(self) -> date | None:
        return self.sess[self.from_idx] if self.from_idx < self.sess.len() else None


def _plan(sessions: pl.Series, since: date, params: MartParams) -> _Plan:
    sess = _sess(sessions)
    from_idx = sess.search_sorted(since, side="left")
    look_idx = from_idx - _correlation_lookback(params)
    # The rolling correlations' sums restart at every epoch of the calendar
    # (transforms.correlation.EPOCH_SESSIONS): a tail that starts on an epoch
    # boundary at or before the look-back reproduces the full build's values
    # bit for bit. The matrix needs only the look-back.
    epoch = params.correlation_epoch_sessions
    return _Plan(sess, from_idx, look_idx, epoch * (look_idx // epoch))


def _correlation_lookback(params: MartParams) -> int:
    return max(params.windows) + MARGIN_SESSIONS


def _benchmarks(inputs: Mapping[str, Any]) -> list[str]:
    return inputs["_benchmarks"]["symbol"].to_list()


def _classes(dim_asset: pl.DataFrame, classes: Sequence[str]) -> list[str]:
    return dim_asset.filter(pl.col("asset_class").is_in(classes))["symbol"].to_list()


def _matrix_symbols(inputs: Mapping[str, Any]) -> list[str]:
    dim = inputs["dim_asset"]
    return sorted(set(_benchmarks(inputs)) | set(_classes(dim, INDEX_CLASSES)) | set(_classes(dim, CRYPTO_CLASSES)))


def _milestone_symbols(inputs: Mapping[str, Any]) -> list[str]:
    return sorted(set(_benchmarks(inputs)) | set(_classes(inputs["dim_asset"], INDEX_CLASSES)))


# --- node bodies -------------------------------------------------------------------------------


def build_indices(inputs, params: MartParams, since, previous) -> Built:
    """fact_prices and dim_asset with the derived crypto indices, dim_index_member;
    ``_benchmarks``: the benchmarks with prices (a warning for each one without)."""
    prices, assets = inputs["prices"], inputs["assets"]
    # Which benchmarks have prices, without hashing every symbol of the lake.
    has = prices.select([(pl.col("symbol") == b).any().alias(str(i)) for i, b in enumerate(params.benchmarks)])
    present = {b for i, b in enumerate(params.benchmarks) if has[str(i)].item()} if params.benchmarks else set()
    benchmarks, warnings = present_benchmarks(params, present)
    # The indices read their members' bars only, and every member is a crypto asset
    # (``transforms.indices.index_members``): those bars are taken once, not per index.
    crypto = prices.filter(pl.col("symbol").is_in(_classes(assets, ("crypto",))))
    if since is None:
        indices = build_crypto_indices(crypto, assets, stablecoins=params.stablecoins)
    else:
        prev_prices = previous["fact_prices"]
        indices = build_crypto_indices(
            crypto, assets, stablecoins=params.stablecoins,
            previous_bars=prev_prices.filter(pl.col("source") == "derived") if "source" in prev_prices.columns else prev_prices,
            since=since,
        )  # fmt: skip
    if "ingested_at" in prices.columns and not indices.bars.is_empty():
        # A derived bar is as fresh as the newest stored bar it was built from.
        index_bars = (
            indices.bars.with_columns(pl.lit("derived").alias("source")).sort("date")
            .join_asof(_freshness(crypto, indices.members), on="date", strategy="backward")
            .sort("symbol", "date")
        )
    else:
        index_bars = indices.bars
    if since is None:
        all_prices = with_blocks_in_order(prices, index_bars)
    else:
        # Not re-sorted (the lake's bars come sorted; the three index series are appended).
        all_prices = pl.concat([prices, index_bars], how="diagonal_relaxed", rechunk=False)
    all_assets = pl.concat([assets, indices.assets], how="diagonal_relaxed").sort("symbol")
    tables = {
        "fact_prices": all_prices,
        "dim_asset": all_assets,
        "dim_index_member": indices.members,
        "_benchmarks": pl.DataFrame({"symbol": benchmarks}, schema={"symbol": pl.String}),
    }
    # Rows before ``since`` are the published ones: the lake's bars before it are those the
    # published run read (``flows.rebuild_plan``), the derived ones are kept from the published
    # run and their ingested_at depends only on bars up to their date (``_freshness``).
    return Built(tables, warnings, unchanged_before={} if since is None else {"fact_prices": since})


KEY = ("symbol", "date")  # fact_prices' order


def with_blocks_in_order(bars: pl.DataFrame, blocks: pl.DataFrame) -> pl.DataFrame:
    """``pl.concat([bars, blocks], how="diagonal_relaxed").sort("symbol", "date")``, without the sort
    when both are strictly sorted and share no symbol (the lake's bars and the index bars):
    each symbol's block of ``blocks`` is spliced in where its symbol falls among ``bars``.

    The same rows in the same order (a strictly sorted key leaves no tie for a sort
    to order), as slices of the inputs instead of a sorted copy of ~9 M bars.
    """
    both = pl.concat([bars, blocks], how="diagonal_relaxed", rechunk=False)
    if blocks.is_empty():
        return both.sort(KEY) if not strictly_increasing(bars, KEY) else _flagged(both)
    if not (strictly_increasing(bars, KEY) and strictly_increasing(blocks, KEY)):
        return both.sort(KEY)
    starts = blocks.with_row_index("_i").group_by("symbol", maintain_order=True).agg(pl.col("_i").first(), pl.len())
    at = bars["symbol"].search_sorted(starts["symbol"], side="left")
    if not at.equals(bars["symbol"].search_sorted(starts["symbol"], side="right")):
        return both.sort(KEY)  # a symbol in both: its bars interleave by date
    pieces, done = [], 0
    for pos, first, n in zip(at.to_list(), starts["_i"].to_list(), starts["len"].to_list(), strict=True):
        pieces += [both.slice(done, pos - done), both.slice(bars.height + first, n)]
        done = pos
    pieces.append(both.slice(done, bars.height - done))
    return _flagged(pl.concat(pieces, rechunk=False))


def _flagged(frame: pl.DataFrame) -> pl.DataFrame:
    # Sorted by KEY: flagged as a sort by it flags its first column (a sorted column takes
    # Polars' fast paths in the nodes that read fact_prices).
    return frame.with_columns(pl.col(KEY[0]).set_sorted())


def _freshness(prices: pl.DataFrame, members: pl.DataFrame) -> pl.DataFrame:
    """(date, ingested_at): the newest ``ingested_at`` of the index members' bars dated on or before each date.

    Per date, not the newest of the whole run: a derived bar's freshness then
    depends only on the bars it was built from, so an incremental run's derived
    bars before its ``since`` equal the published ones and fact_prices is
    replaced only from ``since`` (``Marts.unchanged_before``), not whole.
    """
    symbols = members["member_symbol"].unique().implode()
    return (
        prices.filter(pl.col("symbol").is_in(symbols))
        .group_by("date").agg(pl.col("ingested_at").max())
        .sort("date")
        .with_columns(pl.col("ingested_at").cum_max())
    )


def build_fundamentals(inputs, params: MartParams, since, previous) -> Built:
    """fact_fundamentals: the stored snapshots as read (none without them)."""
    f = inputs["fundamentals"]
    return Built({} if f is None else {"fact_fundamentals": f})


def build_returns(inputs, params: MartParams, since, previous) -> Built:
    """fact_returns; incrementally from the session before the first changed one."""
    all_prices, sessions = inputs["fact_prices"], inputs["sessions"]
    if since is None:
        return Built({"fact_returns": log_returns(all_prices, sessions)})
    plan = _plan(sessions, since, params)
    sess, from_idx = plan.sess, plan.from_idx
    if plan.from_session is None:
        # No session on/after ``since``: the previous rows from it on (none, unless the calendar moved) stand.
        returns = tail("fact_returns", previous["fact_returns"], since)
    else:
        # Only the tail (each return reads its own and the previous session's close): no previous row is read.
        returns = log_returns(
            all_prices.filter(pl.col("date") >= sess[from_idx - 1]), sess.slice(from_idx - 1)
        ).filter(pl.col("session_date") >= plan.from_session)
    return Built({"fact_returns": returns}, unchanged_before={"fact_returns": since})


def _incremental_only(inputs, params: MartParams, since) -> list[Any]:
    return [] if since is None else [None]


def build_tail(inputs, params: MartParams, since, previous) -> Built:
    """Incremental only: ``_focus_prices``, the bars of every symbol the marts
    below read whole (crypto, indices, benchmarks: a few percent of the rows,
    one pass over the lake's bars), and ``_tail_returns``, their returns from
    the epoch boundary before the look-back (see ``_plan``)."""
    if since is None:
        return Built({})
    plan = _plan(inputs["sessions"], since, params)
    sess, tail_idx = plan.sess, plan.tail_idx
    focus = inputs["fact_prices"].filter(pl.col("symbol").is_in(_focus_symbols(inputs, params)))
    # The focus symbols' whole returns (each return reads its own and the previous
    # session's close: a symbol's rows are those of fact_returns, bit for bit), so the
    # nodes below read no previous fact_returns: the spillover marts' windows and the
    # correlations of pairs recomputed over their whole history.
    focus_returns = log_returns(focus, sess)
    tail_returns = focus_returns.filter(pl.col("session_date") >= sess[tail_idx])
    return Built({"_focus_prices": focus, "_tail_returns": tail_returns, "_focus_returns": focus_returns})


def _focus_symbols(inputs: Mapping[str, Any], params: MartParams) -> list[str]:
    """Every symbol the incremental marts read whole: the matrix's, the period benchmark, the spillover series."""
    spill = set(params.spillover.index_series) if params.spillover.enabled else set()
    return sorted(set(_matrix_symbols(inputs)) | {params.period_benchmark} | spill)


def _correlation_blocks(inputs, params: MartParams, since) -> list[Any]:
    if since is not None:
        return [None]
    return blocks(_classes(inputs["dim_asset"], CRYPTO_CLASSES), params.correlation_block_size)


def build_correlation(inputs, params: MartParams, since, previous) -> Built:
    """mart_rolling_correlation and mart_correlation_events (per block of crypto assets in full)."""
    benchmarks = _benchmarks(inputs)
    windows = tuple(params.windows)
    if since is None:
        corr, events = correlation_partition(
            inputs["fact_returns"], inputs["sessions"], inputs["_part"], benchmarks, windows,
            tuple(params.event_levels), params.event_confirm_sessions, params.correlation_epoch_sessions,
            params.event_dead_band,
        )  # fmt: skip
        return Built({"mart_rolling_correlation": corr, "mart_correlation_events": events})
    plan = _plan(inputs["sessions"], since, params)
    sess, from_session = plan.sess, plan.from_session
    crypto = _classes(inputs["dim_asset"], CRYPTO_CLASSES)
    kept_corr, new_corr, whole = _rolling_correlation_since(
        previous["mart_rolling_correlation"], inputs["_focus_returns"], inputs["_tail_returns"], sess,
        plan.tail_idx, plan.from_idx, crypto, benchmarks, sorted(set(windows)), params.correlation_epoch_sessions,
    )  # fmt: skip
    corr = pl.concat([kept_corr, new_corr])
    # A pair recomputed over its whole history rewrites its old rows too.
    unchanged = {} if whole.height else {"mart_rolling_correlation": since}
    if from_session is None and "mart_correlation_events" in previous:
        events = previous["mart_correlation_events"]  # no new session: no new correlation row
        unchanged["mart_correlation_events"] = since
    elif params.event_confirm_sessions == 1 and from_session is not None and "mart_correlation_events" in previous:
        # The previous events before the first changed session are kept as
        # they were (but those of pairs recomputed whole); new ones are dated on/after it.
        if not whole.height:
            unchanged["mart_correlation_events"] = since
        prev_events = previous["mart_correlation_events"]
        if whole.height:
            prev_events = prev_events.join(whole, on=["asset", "benchmark"], how="anti")
        events = correlation_events_since(
            kept_corr, prev_events, new_corr, sess, from_session, levels=params.event_levels,
            dead_band=params.event_dead_band,
        )
    else:
        # k > 1: an event depends on the run lengths before the new rows; replay everything.
        events = mart_correlation_events(
            corr, levels=params.event_levels, confirm_sessions=params.event_confirm_sessions,
            dead_band=params.event_dead_band,
        )
    return Built({"mart_rolling_correlation": corr, "mart_correlation_events": events}, unchanged_before=unchanged)


def _combine_correlation(parts: list[Built]) -> Built:
    return Built({
        "mart_rolling_correlation": _combine(
            [p.tables["mart_rolling_correlation"] for p in parts], ("asset", "benchmark", "window_days", "date")),
        "mart_correlation_events": _combine(
            [p.tables["mart_correlation_events"] for p in parts],
            ("date", "asset", "benchmark", "window_days", "event", "level")),
    }, [w for p in parts for w in p.warnings], parts[0].unchanged_before if len(parts) == 1 else {})  # fmt: skip


def _matrix_windows(inputs, params: MartParams, since) -> list[Any]:
    return [None] if since is not None else [(w,) for w in params.windows]


def build_matrix(inputs, params: MartParams, since, previous) -> Built:
    """mart_correlation_matrix (per window in full)."""
    names = _matrix_symbols(inputs)
    if since is None:
        return Built({"mart_correlation_matrix": mart_correlation_matrix(
            inputs["fact_returns"], inputs["sessions"], names, inputs["_part"])})  # fmt: skip
    plan = _plan(inputs["sessions"], since, params)
    sess = plan.sess
    matrix_returns = inputs["_tail_returns"].filter(pl.col("session_date") >= sess[plan.look_idx])
    prev = previous["mart_correlation_matrix"]
    last = prev["date"].max()
    if (
        "mart_correlation_matrix" in inputs["_previous_from"] and last is not None
        and set(prev.filter(pl.col("date") == last)["asset_a"].unique().to_list()) != set(names)
    ):
        # A symbol new to (or gone from) the matrix changes every block: its whole history.
        raise SeedTooShort(("mart_correlation_matrix",), f"the matrix's symbols changed since {last}")
    matrix, unchanged = _matrix_since(prev, matrix_returns, sess, plan.from_idx, names, sorted(set(params.windows)))
    if unchanged is None:
        return Built({"mart_correlation_matrix": matrix})
    return Built(
        {"mart_correlation_matrix": tail("mart_correlation_matrix", matrix, unchanged)},
        unchanged_before={"mart_correlation_matrix": unchanged},
    )


def _combine_matrix(parts: list[Built]) -> Built:
    frames = [p.tables["mart_correlation_matrix"] for p in parts]
    windows = [f["window_days"].unique() for f in frames]
    if len(frames) > 1 and all(w.len() <= 1 for w in windows) and pl.concat(windows).is_unique().all():
        # One window per part (in key order, mart_correlation_matrix): the parts' (date, window)
        # blocks interleave, each block's pairs stay in order. A stable sort on the two integer
        # keys gives the four-key sort's rows at a sixth of its cost.
        matrix = pl.concat(frames).sort("date", "window_days", maintain_order=True)
    else:
        matrix = _combine(frames, ("date", "window_days", "asset_a", "asset_b"))
    return Built({"mart_correlation_matrix": matrix}, unchanged_before=parts[0].unchanged_before if len(parts) == 1 else {})


def build_milestones(inputs, params: MartParams, since, previous) -> Built:
    """mart_market_milestones and mart_period_returns (recomputed whole: path-dependent and cheap)."""
    symbols = _milestone_symbols(inputs)
    crypto = _classes(inputs["dim_asset"], CRYPTO_CLASSES)
    if since is None:
        # Their bars only, taken once (each mart filters the bars it reads again; a filter keeps the order).
        wanted = pl.Series(symbols + [params.period_benchmark], dtype=pl.String).implode()
        prices, sess = inputs["fact_prices"].filter(pl.col("symbol").is_in(wanted)), inputs["sessions"]
    else:
        sess = _sess(inputs["sessions"])
        prices = inputs["_focus_prices"].filter(
            pl.col("symbol").is_in(symbols + [params.period_benchmark])
        ).sort("symbol", "date")
    milestones, period_returns = milestone_partition(
        prices, symbols, params.period_benchmark, sess, crypto, inputs["history"]
    )
    return Built({"mart_market_milestones": milestones, "mart_period_returns": period_returns})


def build_factors(inputs, params: MartParams, since, previous) -> Built:
    """The Alpha Score marts (FACTOR_TABLES) of the run's stocks, when asked for."""
    prices, assets, sessions, fundamentals = (inputs[k] for k in ("prices", "assets", "sessions", "fundamentals"))
    stocks = assets.filter(pl.col("asset_class") == "equity")["symbol"]
    if not (stocks.len() and params.factors):
        return Built({})
    if since is None:
        return Built(factor_marts(prices, assets, sessions, params, fundamentals))  # reads the stocks' bars only
    sess = _sess(sessions)
    if all(t in previous for t in FACTOR_TABLES):
        tables, unchanged = factor_marts_since(prices, assets, sess, params, fundamentals, previous, since)
        return Built(tables, unchanged_before=unchanged)
    return Built(factor_marts(prices, assets, sess, params, fundamentals))


def build_spillover(inputs, params: MartParams, since, previous) -> Built:
    """mart_spillover, mart_lead_lag, mart_spillover_index (issue 18), when enabled."""
    sp = params.spillover
    if not sp.enabled:
        return Built({})
    benchmarks = _benchmarks(inputs)
    crypto = _classes(inputs["dim_asset"], CRYPTO_CLASSES)
    if since is None:
        returns, all_prices = inputs["fact_returns"], inputs["fact_prices"]
        spill = sorted(set(crypto) | set(benchmarks) | set(sp.index_series))
        return Built(spillover_marts(
            returns.filter(pl.col("symbol").is_in(spill)), all_prices.filter(pl.col("symbol").is_in(crypto)),
            inputs["sessions"], crypto, benchmarks, sp,
        ))  # fmt: skip
    plan = _plan(inputs["sessions"], since, params)
    sess, from_session = plan.sess, plan.from_session
    returns = inputs["_focus_returns"]
    whole = any(t not in previous for t in SPILLOVER_TABLES)
    # A pair with a gap at the seam is rebuilt from its gap on (``pairs_changed_from``).
    pairs_from = None if whole or from_session is None else pairs_changed_from(
        previous, returns, sess, crypto, benchmarks, from_session)
    # From the focus symbols' whole returns: each row of these marts reads only its own window.
    tables = spillover_marts_since(
        previous, returns, inputs["_focus_prices"], sess, crypto, benchmarks, sp, from_session, pairs_from
    )
    unchanged: dict[str, date] = {}
    if not whole:
        # The previous rows before the first changed session are kept unless
        # their date stopped being a publish date (the previous latest session).
        dates = {"mart_spillover": publish_dates(sess, sp.cadence), "mart_lead_lag": publish_dates(sess, sp.cadence),
                 "mart_spillover_index": index_dates(sess, sp.index_step)}  # fmt: skip
        starts = {t: since for t in SPILLOVER_TABLES}
        if pairs_from is not None:
            starts |= {"mart_spillover": min(since, pairs_from), "mart_lead_lag": min(since, pairs_from)}
        for t in SPILLOVER_TABLES:
            dropped = previous[t].filter((pl.col("date") < since) & ~pl.col("date").is_in(dates[t].implode()))
            unchanged[t] = min(starts[t], dropped["date"].min() or since)
            tables[t] = tail(t, tables[t], unchanged[t])
        if _index_series(previous["mart_spillover_index"]) != _index_series_now(inputs["_focus_returns"], sp):
            # A series new to (or gone from) the spillover index (e.g. ALTS once its first alt coin
            # is listed) changes every earlier row of it: the index whole, from the whole returns.
            tables["mart_spillover_index"] = spillover_index_whole(inputs["_focus_returns"], sess, sp)
            del unchanged["mart_spillover_index"]
    return Built(tables, unchanged_before=unchanged)


def _index_series(index: pl.DataFrame) -> set[str]:
    """The series of a mart_spillover_index: those of its latest date (every date holds all of them,
    ``mart_spillover_index``), also when only its rows from the previous latest session were read."""
    last = index["date"].max()
    return set(index.filter(pl.col("date") == last)["series"].to_list()) if last is not None else set()


def _index_series_now(returns: pl.DataFrame, sp) -> set[str]:
    """The series the spillover index is built over now (``mart_spillover_index``: those with returns,
    none with fewer than two)."""
    present = set(returns.filter(pl.col("symbol").is_in(list(sp.index_series)))["symbol"].unique().to_list())
    return present if len(present) >= 2 else set()


def _previous_latest_session(params: MartParams) -> int:
    """The spillover marts' and the matrix's window before ``since``: one session. Their
    previous rows before ``since`` stay but on a date that stopped being a publish (as-of)
    date, and only the previous run's latest session can stop being one (``publish_dates``,
    ``index_dates``, ``as_of_sessions``: the cadence's dates of a longer calendar are the
    shorter one's, plus its last session). The matrix's last block also names its symbols."""
    return 1


def _previous_close(params: MartParams) -> int:
    """fact_returns' window of bars before ``since``: the close of the session before it."""
    return 1


def _factor_prices_window(params: MartParams) -> int:
    """The factors' window of the stocks' bars before ``since``: the metrics' longest look-back
    (``Metric.lookback``, the grid ``_metric_values`` builds) and the IC's longest horizon
    (``evaluate_factors`` with ``from_date``). Each stock's first bar decides where its grid
    starts (``_dense_grid``), so the bounded bars keep it (``prices_from``). None without factors."""
    if not params.factors:
        return 0
    return max([m.lookback for m in METRICS] + [int(h) for h in params.factor_horizons])


def _factor_horizon(params: MartParams) -> int:
    """The factor scores' window before ``since``: the IC of a session reads the scores of the
    sessions up to its longest horizon later (``evaluate_factors`` with ``from_date``)."""
    return max((int(h) for h in params.factor_horizons), default=0)


def build_allocation(inputs, params: MartParams, since, previous) -> Built:
    """The allocation marts (ALLOCATION_TABLES, mart_band_compliance among them) of the policy's mixes."""
    if params.policy is None:
        return Built({})
    crypto = _classes(inputs["dim_asset"], CRYPTO_CLASSES)
    corr, all_prices = inputs["mart_rolling_correlation"], inputs["fact_prices"]
    regime = params.policy.regime.benchmark if params.policy.regime else None
    if since is None:
        crypto_prices = all_prices.filter(pl.col("symbol").is_in(crypto))
        rut = all_prices.filter(pl.col("symbol") == regime) if regime else None
    else:
        focus = inputs["_focus_prices"]
        crypto_prices = focus.filter(pl.col("symbol").is_in(crypto)).sort("symbol", "date")
        rut = None
        if regime:
            rut = (focus if regime in _matrix_symbols(inputs) else all_prices).filter(pl.col("symbol") == regime)
    mixes = simulate_mixes(params.policy, crypto_prices, corr, rut)
    frames = (mixes.weights, mixes.performance, mixes.summary, mixes.breaches, mixes.compliance)
    return Built(dict(zip(ALLOCATION_TABLES, frames, strict=True)), list(mixes.warnings))


GRAPH: tuple[Node, ...] = (
    Node("indices", ("fact_prices", "dim_asset", "dim_index_member", "_benchmarks"), ("prices", "assets"),
         build_indices, previous=("fact_prices",), requires=("fact_prices",),
         # Only the derived index bars (chained on from their last level; the
         # other bars come from the lake): ~0.1% of the published fact_prices.
         previous_rows=(("fact_prices", (DERIVED_BARS,)),)),
    Node("fundamentals", ("fact_fundamentals",), ("fundamentals",), build_fundamentals, inline=True),
    Node("returns", ("fact_returns",), ("fact_prices", "sessions"), build_returns,
         previous=("fact_returns",), requires=("fact_returns",), previous_window=(("fact_returns", _no_lookback),),
         prices_window=_previous_close),
    Node("tail", ("_focus_prices", "_tail_returns", "_focus_returns"),
         ("fact_prices", "dim_asset", "_benchmarks", "sessions"),
         build_tail, lookback=_correlation_lookback, partitions=_incremental_only),
    Node("correlation", ("mart_rolling_correlation", "mart_correlation_events"),
         ("fact_returns", "dim_asset", "_benchmarks", "sessions", "_tail_returns", "_focus_returns"),
         build_correlation, previous=("mart_rolling_correlation", "mart_correlation_events"),
         requires=("mart_rolling_correlation",), lookback=_correlation_lookback,
         partitions=_correlation_blocks, combine=_combine_correlation),
    Node("matrix", ("mart_correlation_matrix",),
         ("fact_returns", "dim_asset", "_benchmarks", "sessions", "_tail_returns", "_previous_from"), build_matrix,
         previous=("mart_correlation_matrix",), requires=("mart_correlation_matrix",),
         previous_window=(("mart_correlation_matrix", _previous_latest_session),),
         lookback=_correlation_lookback, partitions=_matrix_windows, combine=_combine_matrix),
    Node("milestones", ("mart_market_milestones", "mart_period_returns"),
         ("fact_prices", "dim_asset", "_benchmarks", "sessions", "history", "_focus_prices"), build_milestones),
    Node("factors", FACTOR_TABLES, ("prices", "assets", "sessions", "fundamentals"), build_factors,
         previous=FACTOR_TABLES, prices_window=_factor_prices_window,
         # The metrics are only passed on; the IC (and its summary over all of it) is small.
         previous_window=(("mart_factor_scores", _factor_horizon), ("mart_factor_metrics", _no_lookback))),
    Node("spillover", SPILLOVER_TABLES,
         ("fact_returns", "fact_prices", "dim_asset", "_benchmarks", "sessions", "_focus_prices", "_focus_returns"),
         build_spillover, previous=(*SPILLOVER_TABLES, "fact_returns"),
         # fact_returns from ``since`` on (the returns node's window): each series' last previous
         # return, where a pair's previous rows ended (``pairs_changed_from``).
         previous_window=(*((t, _previous_latest_session) for t in SPILLOVER_TABLES), ("fact_returns", _no_lookback))),
    Node("allocation", ALLOCATION_TABLES,
         ("fact_prices", "dim_asset", "_benchmarks", "mart_rolling_correlation", "_focus_prices"), build_allocation),
)  # fmt: skip


# --- the graph's shape -------------------------------------------------------------------------


def producers(graph: Sequence[Node] = GRAPH) -> dict[str, Node]:
    """Each table to the one node that produces it (an error if two do, or a node reads an unknown table)."""
    out: dict[str, Node] = {}
    for node in graph:
        for t in node.produces:
            if t in out or t in BASE_INPUTS:
                raise ValueError(f"mart graph: table {t} is produced by {out[t].name if t in out else 'the run'} and {node.name}")
            out[t] = node
    for node in graph:
        for t in node.inputs:
            if t not in out and t not in BASE_INPUTS:
                raise ValueError(f"mart graph: node {node.name} reads {t}, which no node produces")
    return out


def levels(graph: Sequence[Node] = GRAPH) -> list[list[Node]]:
    """The nodes in dependency order, grouped into levels that run together.

    A node runs in the first level after every node it reads (an error on a
    cycle), except a node nothing reads: that one joins the last level that
    still holds a node others read (or its own first level if later), so it
    runs alongside the longest chain instead of holding it up.
    """
    made = producers(graph)
    deps = {n.name: {made[t].name for t in n.inputs if t in made} - {n.name} for n in graph}
    depth: dict[str, int] = {}
    pending = [n.name for n in graph]
    while pending:
        ready = [n for n in pending if deps[n] <= depth.keys()]
        if not ready:
            raise ValueError(f"mart graph: a cycle among {', '.join(pending)}")
        for n in ready:
            depth[n] = 1 + max((depth[d] for d in deps[n]), default=-1)
        pending = [n for n in pending if n not in depth]
    read = {d for ds in deps.values() for d in ds}
    chain_end = max((depth[n] for n in read), default=0)
    for n in depth:
        if n not in read:
            depth[n] = max(depth[n], chain_end)
    out: list[list[Node]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node in graph:
        out[depth[node.name]].append(node)
    return [lvl for lvl in out if lvl]


def seed_tables(graph: Sequence[Node] = GRAPH) -> tuple[str, ...]:
    """The previous run's tables an incremental build reads (the union of the nodes' ``previous``)."""
    return tuple(dict.fromkeys(t for n in graph for t in n.previous))


def seed_reads(
    graph: Sequence[Node] = GRAPH,
    *,
    sessions: pl.Series | None = None,
    params: MartParams | None = None,
    since: date | None = None,
) -> dict[str, tuple[Condition, ...] | None]:
    """Each of ``seed_tables`` with the rows to read: the conditions every node
    reading it declared in ``previous_rows`` (the same for all of them), or
    None (whole) when one of them reads it whole or they declare different rows.

    Given the run's ``sessions``, ``params`` and ``since`` (known before the
    read), a table every reader declares a window of (``Node.previous_window``)
    is read from the earliest of their windows' first dates on
    (``(date column, ">=", day)``), e.g. the factor metrics from ``since``."""
    starts = window_starts(graph, sessions, params, since) if sessions is not None and params is not None and since is not None else {}
    out: dict[str, tuple[Condition, ...] | None] = {}
    for table in seed_tables(graph):
        wants = {dict(n.previous_rows).get(table) for n in graph if table in n.previous}
        conds = wants.pop() if len(wants) == 1 else None
        if table in starts and (conds is not None or len(wants) == 0):
            conds = (*(conds or ()), (TABLES[table].date_column, ">=", starts[table]))
        out[table] = conds
    return out


def window_starts(
    graph: Sequence[Node], sessions: pl.Series, params: MartParams, since: date
) -> dict[str, date]:
    """Per previous table that every node reading it reads only from a window on
    (``Node.previous_window``): the first date any of them reads. The window's
    first session is ``n`` sessions before the first session on/after ``since``
    (never after ``since``); a window reaching before the first session leaves the
    table out (read whole)."""
    sess = _sess(sessions)
    at = sess.search_sorted(since, side="left")
    out: dict[str, date] = {}
    whole: set[str] = set()
    for node in graph:
        windows = dict(node.previous_window)
        for table in node.previous:
            if table not in windows:
                whole.add(table)
                continue
            i = at - windows[table](params)
            if i < 0:
                whole.add(table)
                continue
            start = min(since, sess[i]) if i < sess.len() else since
            out[table] = min(out.get(table, start), start)
    return {t: d for t, d in out.items() if t not in whole}


def whole_price_symbols(assets: pl.DataFrame, params: MartParams) -> set[str]:
    """The symbols whose every bar an incremental build reads (``_focus_symbols``: crypto assets,
    indices, benchmarks, the spillover series; the period benchmark and the policy's regime
    benchmark): the milestones' highs, the whole returns of pairs recomputed whole, the
    allocation's prices. Of every other symbol it reads the bars from ``prices_from`` on."""
    spill = set(params.spillover.index_series) if params.spillover.enabled else set()
    regime = {params.policy.regime.benchmark} if params.policy is not None and params.policy.regime else set()
    return (
        set(_classes(assets, (*INDEX_CLASSES, *CRYPTO_CLASSES))) | set(params.benchmarks)
        | {params.period_benchmark} | spill | regime
    )


def prices_from(
    sessions: pl.Series, params: MartParams, since: date, previous: Mapping[str, pl.DataFrame] | None = None,
    graph: Sequence[Node] = GRAPH,
) -> date | None:
    """The first date of the bars an incremental build from ``since`` reads of the symbols not
    in ``whole_price_symbols`` (each node's ``prices_window`` before the first session on/after
    ``since``), given each such symbol's first bar too (where its factor grid starts); None when
    it reads them all: the window reaches the first session, or (with ``previous``) a node
    falls back to its full build on them (the factors without their previous tables, or an IC
    without the daily spread, ``factor_marts_since``)."""
    if previous is not None and params.factors:
        ic = previous.get("mart_factor_ic")
        if any(t not in previous for t in FACTOR_TABLES) or "top_minus_bottom" not in ic.columns:
            return None
    sess = _sess(sessions)
    i = sess.search_sorted(since, side="left") - max((n.prices_window(params) for n in graph), default=0)
    if i < 1:
        return None
    return min(since, sess[i]) if i < sess.len() else since


def full_build_reason(
    sessions: pl.Series, params: MartParams, since: date, previous: Mapping[str, pl.DataFrame],
    graph: Sequence[Node] = GRAPH,
) -> str | None:
    """Why an incremental build from ``since`` cannot be done (None: it can)."""
    missing = [t for n in graph for t in n.requires if t not in previous]
    if missing:
        return f"the previous run has no {', '.join(dict.fromkeys(missing))}"
    sess = _sess(sessions)
    lookback = max((n.lookback(params) for n in graph), default=0)
    if sess.search_sorted(since, side="left") - lookback < 1:
        return f"the changed range starts within {lookback} sessions of the first session"
    return None


# --- the assembler -----------------------------------------------------------------------------


def run_part(build: Builder, inputs: Mapping[str, Any], params: MartParams, since, previous) -> Built:
    """One task: a node's build (or one partition of it). Module-level, so it pickles."""
    return build(inputs, params, since, previous)


def assemble(
    prices: pl.DataFrame,
    assets: pl.DataFrame,
    sessions: pl.Series,
    params: MartParams,
    fundamentals: pl.DataFrame | None = None,
    map_partitions: PartitionMap = serial_map,
    history: pl.DataFrame | None = None,
    *,
    since: date | None = None,
    previous: Mapping[str, pl.DataFrame] | None = None,
    graph: Sequence[Node] = GRAPH,
    previous_from: Mapping[str, date] | None = None,
) -> Marts:
    """Every table of ``graph`` from the run's inputs: full (``since`` None) or
    incremental from ``since`` over ``previous`` (see the module docstring);
    an incremental build that ``full_build_reason`` rules out is built in full.

    ``previous_from``: the previous tables read only from a day on (``window_starts``);
    a node that finds its rows too short raises ``SeedTooShort``.
    """
    previous = previous or {}
    if since is not None:
        sessions = _sess(sessions)
        if full_build_reason(sessions, params, since, previous, graph) is not None:
            since, previous = None, {}
    tables: dict[str, Any] = {
        "prices": prices, "assets": assets, "sessions": sessions, "fundamentals": fundamentals, "history": history,
        "_previous_from": dict(previous_from or {}),
    }  # fmt: skip
    built: dict[str, Built] = {}
    for level in levels(graph):
        jobs: list[tuple[Node, tuple]] = []
        names: list[str] = []
        for node in level:
            inputs = {t: tables.get(t) for t in node.inputs}
            prev = {t: previous[t] for t in node.previous if t in previous} if since is not None else {}
            if node.inline:
                built[node.name] = node.build(inputs, params, since, prev)
                continue
            parts = node.partitions(inputs, params, since)
            for i, part in enumerate(parts):
                jobs.append((node, (node.build, {**inputs, "_part": part}, params, since, prev)))
                names.append(node.name if len(parts) == 1 else f"{node.name}-{i + 1}of{len(parts)}")
        outputs = map_partitions(run_part, [args for _, args in jobs], names=names) if jobs else []
        by_node: dict[str, list[Built]] = {}
        for (node, _), out in zip(jobs, outputs, strict=True):
            by_node.setdefault(node.name, []).append(out)
        for node in level:
            if node.name in by_node:
                parts = by_node[node.name]
                built[node.name] = node.combine(parts) if node.combine else parts[0]
            elif node.name not in built:
                built[node.name] = Built({})  # no partition to build (e.g. an incremental-only node)
            undeclared = set(built[node.name].tables) - set(node.produces)
            if undeclared:
                raise ValueError(f"mart graph: node {node.name} returned {', '.join(sorted(undeclared))}, not declared")
            tables |= built[node.name].tables
    out_tables: dict[str, pl.DataFrame] = {}
    warnings: list[str] = []
    unchanged: dict[str, date] = {}
    for node in graph:
        b = built[node.name]
        out_tables |= {t: f for t, f in b.tables.items() if not t.startswith("_")}
        warnings += b.warnings
        unchanged |= {t: d for t, d in b.unchanged_before.items() if t in b.tables and not t.startswith("_")}
    if since is None:
        return Marts(tables=out_tables, warnings=warnings)
    # Marts.unchanged_before: a named table holds only its rows from the date on (a no-op
    # where the node returned only its tail); the rows before are the published run's.
    for t, d in unchanged.items():
        out_tables[t] = tail(t, out_tables[t], d)
    return Marts(tables=out_tables, warnings=warnings, unchanged_before=unchanged)


def tail(table: str, frame: pl.DataFrame, since: date) -> pl.DataFrame:
    """``frame``'s rows dated on or after ``since`` by ``table``'s date column (a null date
    counts as changed, as in the load), the frame itself when it holds no earlier row.

    Only a table whose key holds its date column can be handed on as a tail: the
    audit then checks its key among the tail's rows alone (``warehouse.quality.audit_from``).
    """
    contract = TABLES.get(table)
    col = contract.date_column if contract is not None else None
    if col is None or col not in contract.key:
        raise ValueError(f"mart graph: {table} cannot be handed on from {since}: its key holds no date column")
    first = frame[col].min()
    if first is None or first >= since:
        return frame
    # Column by column: a frame whose columns are chunked unlike each other (e.g. a node's
    # partitions concatenated) is copied whole into one chunk by ``DataFrame.filter`` first
    # (+0.6 GiB for mart_factor_metrics at 2,000 equities); gathering the kept rows is not.
    rows = (frame[col].is_null() | (frame[col] >= since)).arg_true()
    return pl.DataFrame([column.gather(rows) for column in frame.get_columns()])
