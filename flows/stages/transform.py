"""Transform: read the lake, screen it, and build every mart on the flow's task runner.

Whether the run rebuilds everything or only from a date is the rebuild plan's
decision (``flows.rebuild_plan``); this stage carries it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from flows.artifacts import stale_symbols, stale_warning
from flows.calendar import sessions as exchange_sessions
from flows.params import mart_params
from flows.rebuild_plan import UNREADABLE_WAREHOUSE, incremental_base, run_state, transform_fingerprint
from flows.run import PipelineError, RunSummary
from flows.settings import Settings
from flows.sources.sample import SYNTHETIC_TAG
from flows.universe import Universe
from transforms.graph import full_build_reason
from transforms.marts import build_marts, serial_map
from warehouse.lake import Lake
from warehouse.quality import screen


@task(cache_policy=NO_CACHE)
def transform_partition(fn, args: tuple):
    return fn(*args)


def map_on_runner(fn, arg_list: list[tuple], names: list[str] | None = None) -> list:
    """``build_marts``'s independent partitions as tasks on the flow's task runner,
    each named after its mart graph node (``transforms.graph``), e.g. ``mart-correlation-2of5``.

    Outside a flow (tests, the benchmark) they simply run one after another.
    """
    if FlowRunContext.get() is None:
        return serial_map(fn, arg_list)
    names = names or [f"transform-{i + 1}of{len(arg_list)}" for i in range(len(arg_list))]
    futures = [
        transform_partition.with_options(task_run_name=f"mart-{name}").submit(fn, args)
        for name, args in zip(names, arg_list, strict=True)
    ]
    return [f.result() for f in futures]


@dataclass
class Transformed:
    tables: dict[str, pl.DataFrame]
    warnings: list[str]
    # What the next run needs to build on this one (warehouse.snapshots.RUN_STATE).
    state: dict
    # None: every mart was rebuilt from the whole lake.
    incremental_from: date | None = None
    full_because: str | None = None
    # Per table, the date before which its rows are the published run's
    # (transforms.marts.Marts.unchanged_before); empty after a full build.
    unchanged_before: dict[str, date] = field(default_factory=dict)


def transform(
    lake: Lake, settings: Settings, universe: Universe, as_of: date, synthetic: bool
) -> Transformed:
    """Read the lake, screen it, and build every mart; the heavy parts are mapped over the runner.

    When the published run can seed it (``incremental_base``), only what the
    newly landed bars touch is rebuilt (``build_marts`` from ``since``, equal
    to the full build).
    """
    stored = lake.read_bars()
    if stored["date"].max() is not None and (stored["date"].max() > as_of or stored["date"].null_count()):
        # Not copied when every bar is up to as_of (the nightly case; ~9 M bars at the bench size).
        stored = stored.filter(pl.col("date") <= as_of)
    assets = lake.read_assets()
    if stored.is_empty() or assets is None:
        raise PipelineError(f"no prices stored for source {lake.source!r} up to {as_of}")
    calendar = exchange_sessions(stored["date"].min(), as_of, settings.exchange_calendar)
    # Bad bars are set aside in the quarantine, naming where they came from
    # (the lake's origin), not dropped or "fixed": everything derived is
    # computed without them. An equity bar off the exchange calendar is one.
    prices, quarantined = screen(
        "fact_prices", stored, as_of, sessions=calendar, assets=assets, jump_bounds=settings.jump_bounds
    )
    if prices.is_empty():
        raise PipelineError(f"no prices stored for source {lake.source!r} up to {as_of} pass the quality rules")
    # Index bars from before the history start and every other asset's first
    # bar (a source's whole record of an index, e.g. ^RUT from 1987, see
    # FilesSource.fetch) only feed the milestones' highs; every other mart
    # starts where it did (issue 14).
    # (Only the first date is kept: the frame would hold a copy of nearly every bar through the build.)
    others_first = (
        prices.join(assets.filter(pl.col("asset_class") != "index").select("symbol"), on="symbol", how="semi")
        ["date"].min()
    )
    history = None
    if others_first is not None:
        start = min(others_first, settings.history_start)
        if prices["date"].min() < start:
            history = prices.filter(pl.col("date") < start)
            prices = prices.filter(pl.col("date") >= start)
    assets = assets.filter(pl.col("symbol").is_in(prices["symbol"].unique().implode()))
    sess = calendar.filter(calendar >= prices["date"].min())
    params = mart_params(settings, universe)
    fundamentals = fundamentals_as_of(lake, as_of)
    fingerprint = transform_fingerprint(params, settings, lake.source)
    base = incremental_base(
        settings, lake.source, fingerprint, as_of, prices, assets, fundamentals,
        stored=stored, withdrawn=lake.read_withdrawn(),
    )
    # The stored bars as read (with each bar's origin) are not needed past the
    # rebuild plan: not held through the build (the lake's size in memory).
    del stored
    if not isinstance(base, str):
        # The graph's own rules (a required previous table missing, a changed
        # range within a node's look-back of the first session) are reported too.
        base = full_build_reason(sess, params, base[1], base[0]) or base
    if isinstance(base, str):
        marts = build_marts(
            prices, assets, sess, params, fundamentals=fundamentals, map_partitions=map_on_runner, history=history
        )
        incremental_from, full_because = None, base
        if base.startswith(UNREADABLE_WAREHOUSE):
            marts.warnings.append(base)
    else:
        previous, incremental_from = base
        marts = build_marts(
            prices, assets, sess, params, fundamentals, map_partitions=map_on_runner, history=history,
            since=incremental_from, previous=previous,
        )
        full_because = None
    if synthetic:
        # Indices built from synthetic prices are synthetic too.
        marts.tables["dim_asset"] = marts.tables["dim_asset"].with_columns(
            pl.when((pl.col("source") == "derived") & ~pl.col("name").str.ends_with(SYNTHETIC_TAG))
            .then(pl.col("name") + SYNTHETIC_TAG)
            .otherwise(pl.col("name"))
            .alias("name")
        )
    marts.tables["quarantine"] = quarantined
    state = run_state(lake.source, as_of, fingerprint, prices)
    return Transformed(marts.tables, marts.warnings, state, incremental_from, full_because, marts.unchanged_before)


def fundamentals_as_of(lake: Lake, as_of: date) -> pl.DataFrame | None:
    """Stored snapshots taken on or before ``as_of``: a backfill never sees later ones."""
    stored = lake.read_fundamentals()
    return None if stored is None else stored.filter(pl.col("as_of") <= as_of)


def note_transform(built: Transformed, run: RunSummary, settings: Settings, as_of: date, logger) -> None:
    """What the run records of its transform: stale assets, warnings, and whether it rebuilt in full and why."""
    tables, warnings = built.tables, built.warnings
    run.stale = stale_symbols(
        tables["fact_prices"], tables["dim_asset"], as_of,
        exchange_sessions(tables["fact_prices"]["date"].min(), as_of, settings.exchange_calendar),
        settings.stale_after_sessions,
    )
    warnings = warnings + [w for w in [stale_warning(run.stale, settings.stale_after_sessions, as_of)] if w]
    run.warnings += warnings
    for w in warnings:
        logger.warning(w)
    run.incremental_from = built.incremental_from
    if built.incremental_from:
        logger.info("incremental rebuild from %s (the published run seeds the rest)", built.incremental_from)
    else:
        logger.info("full rebuild: %s", built.full_because)
