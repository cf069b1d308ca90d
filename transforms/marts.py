"""Every derived table of a run, from stored prices: one pure function.

The flow reads the lake, the calendar and the policy, calls ``build_marts`` and
loads the result; the benchmark times the same function. Warnings (a missing
benchmark, a skipped mix) are returned, not logged, to keep this module free
of side effects.

``build_marts`` is the mart graph's assembler (transforms/graph.py, where each
mart is declared once); this module holds the parameters, the result and the
pieces the graph's nodes share. The independent pieces are handed to
``map_partitions``, which the flow backs with its task runner so they run in
parallel, on Dask workers too. Every piece is a module-level function of
frames, so it pickles; results are combined in a fixed order and sorted, so
how they were run never changes what comes out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl

from contracts.vocabulary import DEFAULT_STABLECOINS
from transforms.correlation import EPOCH_SESSIONS, rolling_correlation
from transforms.events import DEFAULT_DEAD_BAND, mart_correlation_events
from transforms.factor_eval import evaluate_factors
from transforms.factors import (
    DEFAULT_FAMILY_WEIGHTS,
    DEFAULT_MIN_CROSS_SECTION,
    LabelThresholds,
    build_factor_marts,
    stock_grid,
)
from transforms.milestones import mart_market_milestones, mart_period_returns
from transforms.policy import Policy
from transforms.spillover import SpilloverParams


@dataclass(frozen=True)
class MartParams:
    benchmarks: Sequence[str] = ("^RUT", "^GSPC")
    windows: Sequence[int] = (30, 90, 180, 365)
    event_levels: Sequence[float] = (0.5, -0.5)
    event_confirm_sessions: int = 1
    # How far past zero a correlation must go for its sign to count (events.py).
    event_dead_band: float = DEFAULT_DEAD_BAND
    period_benchmark: str = "^GSPC"
    stablecoins: Sequence[str] = DEFAULT_STABLECOINS
    policy: Policy | None = None
    factor_weights: dict[str, float] | None = field(default_factory=lambda: dict(DEFAULT_FAMILY_WEIGHTS))
    factor_thresholds: LabelThresholds = LabelThresholds()
    factor_min_sector_size: int = 5
    factor_min_cross_section: int = DEFAULT_MIN_CROSS_SECTION
    factor_horizons: Sequence[int] = (21, 63)
    # Crypto assets per rolling-correlation partition; 0 = all in one.
    correlation_block_size: int = 0
    # Sessions per epoch of the rolling correlations' sums (see
    # transforms.correlation.EPOCH_SESSIONS); at least max(windows).
    correlation_epoch_sessions: int = EPOCH_SESSIONS
    # False leaves the Alpha Score marts out (a benchmark of everything else).
    factors: bool = True
    # mart_spillover, mart_lead_lag, mart_spillover_index (issue 18).
    spillover: SpilloverParams = SpilloverParams()


@dataclass
class Marts:
    tables: dict[str, pl.DataFrame]
    warnings: list[str] = field(default_factory=list)
    # An incremental build's promise per table (docs: /work/wt/INTERFACE.md):
    # rows whose date column (TABLES[t].date_column) is before the date are,
    # as a multiset, the previous run's rows before it. Tables not named are
    # rewritten whole; a full build names none.
    unchanged_before: dict[str, date] = field(default_factory=dict)


# map_partitions(fn, [args, ...], names=[name, ...]) -> [fn(*args), ...] in the
# order given; ``names`` name each call (the flow's task names).
PartitionMap = Callable[..., list[Any]]


def serial_map(fn: Callable[..., Any], arg_list: list[tuple], names: Sequence[str] | None = None) -> list[Any]:
    return [fn(*args) for args in arg_list]


def blocks(items: Sequence[str], size: int) -> list[list[str]]:
    items = list(items)
    if size <= 0 or len(items) <= size:
        return [items]
    return [items[i : i + size] for i in range(0, len(items), size)]


def correlation_partition(
    returns: pl.DataFrame,
    sessions: pl.Series,
    assets: list[str],
    benchmarks: list[str],
    windows: tuple[int, ...],
    event_levels: tuple[float, ...],
    confirm_sessions: int,
    epoch: int = EPOCH_SESSIONS,
    dead_band: float = DEFAULT_DEAD_BAND,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    # Events are per (asset, benchmark, window) series, so they partition with it.
    corr = rolling_correlation(returns, sessions, assets, benchmarks, windows, epoch=epoch)
    events = mart_correlation_events(corr, levels=event_levels, confirm_sessions=confirm_sessions, dead_band=dead_band)
    return corr, events


def milestone_partition(
    prices: pl.DataFrame,
    symbols: list[str],
    benchmark: str,
    sessions: pl.Series | None = None,
    daily_symbols: Sequence[str] = (),
    history: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Milestones and period returns; gaps judged on each symbol's own calendar
    (every day for ``daily_symbols``, else ``sessions``), highs looking back
    into ``history`` too."""
    milestones = mart_market_milestones(
        prices, symbols, sessions=sessions, daily_symbols=daily_symbols, history=history
    )
    period_returns = mart_period_returns(
        prices, symbols, benchmark=benchmark, sessions=sessions, daily_symbols=daily_symbols
    )
    return milestones, period_returns


def _combine(frames: list[pl.DataFrame], key: Sequence[str]) -> pl.DataFrame:
    return frames[0] if len(frames) == 1 else pl.concat(frames).sort(key)


def build_marts(
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
    previous_from: Mapping[str, date] | None = None,
) -> Marts:
    """All marts from native-calendar ``prices`` (BAR_SCHEMA plus optional source/ingested_at):
    the mart graph's assembler (``transforms.graph.assemble``) over ``GRAPH``.

    ``fundamentals`` are the stored point-in-time snapshots (FUNDAMENTALS_SCHEMA);
    without them the Alpha Score has momentum only. ``history``: bars from
    before ``prices`` (the whole record a source provides) that only the
    milestones read, so highs are measured over all of it.

    Derived crypto indices are added to ``fact_prices`` and ``dim_asset`` and
    then flow through returns and correlations like any crypto asset.

    With ``since`` and ``previous`` (the tables of a run whose inputs equal
    these before ``since``, with the same ``params`` and assets), only what
    changed from ``since`` on is recomputed: the same tables, bit for bit;
    built in full when ``previous`` lacks a table a node requires or the
    changed range starts within a node's look-back of the first session.
    ``previous_from``: the previous tables read only from a day on
    (``transforms.graph.window_starts``); see ``transforms.graph.SeedTooShort``.
    """
    from transforms.graph import assemble  # the graph's nodes import this module's pieces

    return assemble(
        prices, assets, sessions, params, fundamentals, map_partitions, history, since=since, previous=previous,
        previous_from=previous_from,
    )


FACTOR_TABLES = ("mart_factor_scores", "mart_factor_metrics", "mart_factor_ic", "mart_factor_ic_summary")


def _stock_symbols(assets: pl.DataFrame) -> pl.Series:
    return assets.filter(pl.col("asset_class") == "equity")["symbol"]


def factor_scores(
    prices: pl.DataFrame,
    assets: pl.DataFrame,
    sessions: pl.Series,
    params: MartParams,
    fundamentals: pl.DataFrame | None,
    **kwargs,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(mart_factor_scores, mart_factor_metrics) of the run's stocks; ``kwargs``
    go to ``build_factor_marts`` (an incremental run passes ``from_date``)."""
    return build_factor_marts(
        prices.filter(pl.col("symbol").is_in(_stock_symbols(assets).implode())),
        assets,
        sessions,
        fundamentals,
        min_sector_size=params.factor_min_sector_size,
        min_cross_section=params.factor_min_cross_section,
        weights=params.factor_weights,
        thresholds=params.factor_thresholds,
        **kwargs,
    )


def factor_marts(
    prices: pl.DataFrame,
    assets: pl.DataFrame,
    sessions: pl.Series,
    params: MartParams,
    fundamentals: pl.DataFrame | None,
) -> dict[str, pl.DataFrame]:
    """The Alpha Score marts (FACTOR_TABLES)."""
    # Only the stocks' bars are read; their session grid is built once, for the metrics and
    # for the IC's forward returns.
    prices = prices.filter(pl.col("symbol").is_in(_stock_symbols(assets).implode()))
    grid = stock_grid(prices, assets, sessions)
    scores, metrics = factor_scores(prices, assets, sessions, params, fundamentals, grid=grid)
    ic, ic_summary = evaluate_factors(scores, prices, sessions, horizons=params.factor_horizons, grid=grid)
    return dict(zip(FACTOR_TABLES, (scores, metrics, ic, ic_summary), strict=True))


def present_benchmarks(params: MartParams, present: set[str]) -> tuple[list[str], list[str]]:
    """(the benchmarks with prices, a warning for each one without)."""
    benchmarks = [b for b in params.benchmarks if b in present]
    warnings = [
        f"benchmark {b} has no prices in this run; correlations versus it are skipped"
        for b in params.benchmarks
        if b not in present
    ]
    return benchmarks, warnings
