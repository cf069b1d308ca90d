"""Every derived table of a run, from stored prices: one pure function.

The flow reads the lake, the calendar and the policy, calls ``build_marts`` and
loads the result; the benchmark times the same function. Warnings (a missing
benchmark, a skipped mix) are returned, not logged, to keep this module free
of side effects.

The independent pieces (rolling correlations and their events per block of
crypto assets, the matrix per window, milestones, the Alpha Score) are
handed to ``map_partitions``, which the flow backs with its task runner so
they run in parallel, on Dask workers too. Every piece is a module-level
function of frames, so it pickles; results are combined in a fixed order and
sorted, so how they were run never changes what comes out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from contracts.vocabulary import CRYPTO_CLASSES, DEFAULT_STABLECOINS, INDEX_CLASSES
from transforms.allocation import simulate_mixes
from transforms.correlation import EPOCH_SESSIONS, rolling_correlation
from transforms.events import DEFAULT_DEAD_BAND, mart_correlation_events
from transforms.factor_eval import evaluate_factors
from transforms.factors import DEFAULT_FAMILY_WEIGHTS, DEFAULT_MIN_CROSS_SECTION, LabelThresholds, build_factor_marts
from transforms.indices import build_crypto_indices
from transforms.matrix import mart_correlation_matrix
from transforms.milestones import mart_market_milestones, mart_period_returns
from transforms.policy import Policy
from transforms.returns import log_returns
from transforms.spillover import SpilloverParams
from transforms.spillover_marts import spillover_marts


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


# map_partitions(fn, [args, ...]) -> [fn(*args), ...] in the order given.
PartitionMap = Callable[[Callable[..., Any], list[tuple]], list[Any]]


def serial_map(fn: Callable[..., Any], arg_list: list[tuple]) -> list[Any]:
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
) -> Marts:
    """All marts from native-calendar ``prices`` (BAR_SCHEMA plus optional source/ingested_at).

    ``fundamentals`` are the stored point-in-time snapshots (FUNDAMENTALS_SCHEMA);
    without them the Alpha Score has momentum only. ``history``: bars from
    before ``prices`` (the whole record a source provides) that only the
    milestones read, so highs are measured over all of it.

    Derived crypto indices are added to ``fact_prices`` and ``dim_asset`` and
    then flow through returns and correlations like any crypto asset.
    """
    present = set(prices["symbol"].unique().to_list())
    benchmarks, warnings = present_benchmarks(params, present)

    indices = build_crypto_indices(prices, assets, stablecoins=params.stablecoins)
    if "ingested_at" in prices.columns and not indices.bars.is_empty():
        # A derived bar is as fresh as the newest stored bar it was built from.
        index_bars = indices.bars.with_columns(
            pl.lit("derived").alias("source"), pl.lit(prices["ingested_at"].max()).alias("ingested_at")
        )
    else:
        index_bars = indices.bars
    all_prices = pl.concat([prices, index_bars], how="diagonal_relaxed").sort("symbol", "date")
    all_assets = pl.concat([assets, indices.assets], how="diagonal_relaxed").sort("symbol")

    crypto = all_assets.filter(pl.col("asset_class").is_in(CRYPTO_CLASSES))["symbol"].to_list()
    index_like = all_assets.filter(pl.col("asset_class").is_in(INDEX_CLASSES))["symbol"].to_list()
    returns = log_returns(all_prices, sessions)
    matrix_symbols = sorted(set(benchmarks) | set(index_like) | set(crypto))
    milestone_symbols = sorted(set(benchmarks) | set(index_like))
    windows = tuple(params.windows)
    stocks = assets.filter(pl.col("asset_class") == "equity")["symbol"]

    jobs: list[tuple[str, Callable[..., Any], tuple]] = [
        ("corr", correlation_partition,
         (returns, sessions, block, benchmarks, windows, tuple(params.event_levels), params.event_confirm_sessions,
          params.correlation_epoch_sessions, params.event_dead_band))
        for block in blocks(crypto, params.correlation_block_size)
    ]
    jobs += [("matrix", mart_correlation_matrix, (returns, sessions, matrix_symbols, (w,))) for w in windows]
    jobs.append(
        ("milestones", milestone_partition,
         (all_prices, milestone_symbols, params.period_benchmark, sessions, crypto, history))
    )  # fmt: skip
    if stocks.len() and params.factors:
        # Only the stocks' bars travel to the partition: the rest is not read there.
        stock_prices = prices.filter(pl.col("symbol").is_in(stocks.implode()))
        jobs.append(("factors", factor_marts, (stock_prices, assets, sessions, params, fundamentals)))
    if params.spillover.enabled:
        # Only the series the spillover marts read travel to the partition.
        spill = sorted(set(crypto) | set(benchmarks) | set(params.spillover.index_series))
        jobs.append(("spillover", spillover_marts, (
            returns.filter(pl.col("symbol").is_in(spill)), all_prices.filter(pl.col("symbol").is_in(crypto)),
            sessions, crypto, benchmarks, params.spillover,
        )))  # fmt: skip
    results = _run_jobs(jobs, map_partitions)

    corr = _combine([c for c, _ in results["corr"]], ("asset", "benchmark", "window_days", "date"))
    events = _combine([e for _, e in results["corr"]], ("date", "asset", "benchmark", "window_days", "event", "level"))
    matrix = _combine(results["matrix"], ("date", "window_days", "asset_a", "asset_b"))
    milestones, period_returns = results["milestones"][0]
    tables = {
        "fact_prices": all_prices,
        "dim_asset": all_assets,
        "dim_index_member": indices.members,
        "fact_returns": returns,
        "mart_rolling_correlation": corr,
        "mart_correlation_events": events,
        "mart_correlation_matrix": matrix,
        "mart_market_milestones": milestones,
        "mart_period_returns": period_returns,
    }
    if "factors" in results:
        tables |= results["factors"][0]
    if "spillover" in results:
        tables |= results["spillover"][0]
    if fundamentals is not None:
        tables["fact_fundamentals"] = fundamentals
    if params.policy is not None:
        crypto_prices = all_prices.filter(pl.col("symbol").is_in(crypto))
        rut = all_prices.filter(pl.col("symbol") == params.policy.regime.benchmark) if params.policy.regime else None
        allocation, mix_warnings = allocation_marts(params.policy, crypto_prices, corr, rut)
        tables |= allocation
        warnings += mix_warnings
    return Marts(tables=tables, warnings=warnings)


def _run_jobs(jobs: list[tuple[str, Callable[..., Any], tuple]], map_partitions: PartitionMap) -> dict[str, list]:
    """Run jobs of different functions through one map call: the runner sees them all at once."""
    outputs = map_partitions(_call, [(fn, args) for _, fn, args in jobs])
    results: dict[str, list] = {}
    for (kind, _, _), out in zip(jobs, outputs, strict=True):
        results.setdefault(kind, []).append(out)
    return results


def _call(fn: Callable[..., Any], args: tuple) -> Any:
    return fn(*args)


FACTOR_TABLES = ("mart_factor_scores", "mart_factor_metrics", "mart_factor_ic", "mart_factor_ic_summary")


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
    stocks = assets.filter(pl.col("asset_class") == "equity")["symbol"]
    return build_factor_marts(
        prices.filter(pl.col("symbol").is_in(stocks.implode())),
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
    scores, metrics = factor_scores(prices, assets, sessions, params, fundamentals)
    ic, ic_summary = evaluate_factors(scores, prices, sessions, horizons=params.factor_horizons)
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


def allocation_marts(
    policy: Policy, crypto_prices: pl.DataFrame, correlations: pl.DataFrame, benchmark_prices: pl.DataFrame | None
) -> tuple[dict[str, pl.DataFrame], list[str]]:
    """The allocation marts of ``simulate_mixes`` and its warnings."""
    mixes = simulate_mixes(policy, crypto_prices, correlations, benchmark_prices)
    tables = {
        "mart_allocation_weights": mixes.weights,
        "mart_mix_performance": mixes.performance,
        "mart_mix_summary": mixes.summary,
        "mart_band_breaches": mixes.breaches,
        "mart_band_compliance": mixes.compliance,
    }
    return tables, list(mixes.warnings)
