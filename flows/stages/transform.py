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

from flows.artifacts import stale_warning
from flows.calendar import sessions as exchange_sessions
from flows.params import mart_params
from flows.price_figures import price_figures_from
from flows.rebuild_plan import (
    UNREADABLE_WAREHOUSE,
    LakeRead,
    NarrowRead,
    incremental_base,
    lake_read_plan,
    merge_published,
    narrow_bars_from,
    omitted_files_gone,
    published_bars_bounded,
    published_before,
    published_first_date,
    read_seeds_whole,
    run_state,
    transform_fingerprint,
    unreadable_warehouse,
)
from flows.run import PipelineError, RunSummary
from flows.settings import Settings
from flows.sources.sample import SYNTHETIC_TAG
from flows.universe import Universe
from transforms.graph import GRAPH, SeedTooShort, full_build_reason, prices_from, whole_price_symbols, window_starts
from transforms.marts import MartParams, build_marts, serial_map
from warehouse.lake import Lake
from warehouse.quality import screen
from warehouse.query import kept_open


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
    # Which of the lake's year files were read, or why all of them (``lake_read_plan``).
    lake_read: str = ""
    # Judged on the whole of fact_prices, which the run may hand on as its tail
    # (``flows.price_figures.price_figures_from``): the stale assets (``flows.artifacts.stale_symbols``), the
    # audit's warnings on fact_prices (``warehouse.audit.price_warnings``) and the
    # report's freshness (``flows.artifacts.freshness``).
    stale: list[dict] = field(default_factory=list)
    price_warnings: list[str] = field(default_factory=list)
    freshness: tuple[list[dict], list[dict]] | None = None


def transform(
    lake: Lake, settings: Settings, universe: Universe, as_of: date, synthetic: bool, bounded: bool = True,
    narrow: bool = True,
) -> Transformed:
    """Read the lake, screen it, and build every mart; the heavy parts are mapped over the runner.

    When the published run can seed it (``incremental_base``), only what the
    newly landed bars touch is rebuilt (``build_marts`` from ``since``, equal
    to the full build), and only the lake's year files from the year before
    the first one with a bar landed or withdrawn since are read and screened
    (``lake_read_plan``; the earlier bars and their verdicts are the published
    run's, ``merge_published``). ``bounded=False``: the whole lake.

    The published bars merged in are, of every symbol the build does not read whole
    (``transforms.graph.whole_price_symbols``), its first bar and those from the graph's
    look-back on (``narrow_bars_from``, ``NarrowRead``), not its whole history; when the
    first changed date turns out to need earlier bars (``prices_from``), or the run builds
    in full, it reads them all (``narrow=False``).
    """
    assets = lake.read_assets()
    params = mart_params(settings, universe)
    fingerprint = transform_fingerprint(params, settings, lake.source)
    # The deltas' first dates date a year file's change to the day (``lake_read_plan``).
    deltas = lake.delta_listing()
    files = lake.bar_files(deltas)
    # The bars this run's land wrote, if they are the whole lake (``Lake.hand_over``: taken here
    # either way, so the lake holds no copy of them through a read or the build).
    landed = lake.hand_over(files)
    withdrawn = lake.read_withdrawn()
    context_days = settings.lake_context_days or None

    def planned(days: int | None) -> LakeRead | str:
        return (
            lake_read_plan(settings, lake.source, fingerprint, as_of, files, withdrawn, assets, deltas, days)
            if bounded else "asked to read the whole lake"
        )

    # Every read of the published warehouse file up to the seeds goes to one DuckDB instance
    # (``kept_open``): the catalog loaded once, the blocks one read brought in there for the next.
    # Let go before the marts are built (the buffer pool would hold those blocks through the build).
    with kept_open(settings.warehouse_path):
        plan = planned(context_days)
        if isinstance(plan, LakeRead):
            landed = None  # the bounded read takes a few years of files and the published bars
        read = (
            _read_bounded(lake, settings, as_of, assets, files, plan, params if narrow else None)
            if isinstance(plan, LakeRead) else plan
        )
        if isinstance(read, str) and isinstance(plan, LakeRead) and plan.context_start is not None:
            # The few days' context cannot start the screen of some symbol (``merge_published``: e.g. a
            # gap, or a bad bar at its start): the year before, as the plan's context, then the whole lake.
            plan = planned(None)
            read = (
                _read_bounded(lake, settings, as_of, assets, files, plan, params if narrow else None)
                if isinstance(plan, LakeRead) else plan
            )
        narrowed = None
        if isinstance(read, str):
            lake_read = f"read the whole lake ({files.height} year files): {read}"
            if landed is not None:
                # The very frame the read would give (``Lake.hand_over``), without reading it back.
                stored, landed = landed, None
                lake_read = f"read the whole lake ({files.height} year files, as the land wrote them: not read back): {read}"
            else:
                stored = lake.read_bar_files(files["path"].to_list())
            if stored["date"].max() is not None and (stored["date"].max() > as_of or stored["date"].null_count()):
                # Not copied when every bar is up to as_of (the nightly case; ~9 M bars at the bench size).
                stored = stored.filter(pl.col("date") <= as_of)
            if stored.is_empty() or assets is None:
                raise PipelineError(f"no prices stored for source {lake.source!r} up to {as_of}")
            calendar = exchange_sessions(stored["date"].min(), as_of, settings.exchange_calendar)
            # Bad bars are set aside in the quarantine, naming where they came from
            # (the lake's origin), not dropped or "fixed": everything derived is
            # computed without them. An equity bar off the exchange calendar is one.
            prices, quarantined = screen(
                "fact_prices", stored, as_of, sessions=calendar, assets=assets, jump_bounds=settings.jump_bounds
            )
        else:
            stored, prices, quarantined, calendar, narrowed = read
            lake_read = (
                f"read {len(plan.files)} of {files.height} lake year files (from {plan.context_from.year}, "
                f"screened from {plan.context_from}; nothing landed or withdrawn before {plan.changed_from})"
                + (f"; published bars from {narrowed.bars_from}" if narrowed is not None else "")
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
        fundamentals = fundamentals_as_of(lake, as_of)
        base = incremental_base(
            settings, lake.source, fingerprint, as_of, prices, assets, fundamentals,
            stored=stored, withdrawn=withdrawn, sessions=sess, params=params, narrow=narrowed,
        )
    # The stored bars as read (with each bar's origin) are not needed past the
    # rebuild plan: not held through the build (the lake's size in memory).
    del stored
    if isinstance(base, str) and isinstance(plan, LakeRead) and not isinstance(read, str):
        # The earlier bars' verdicts are the published run's only while it can seed this one
        # (e.g. an asset's class decides its jump bound): a full rebuild reads the whole lake.
        del prices, history, read
        return transform(lake, settings, universe, as_of, synthetic, bounded=False)
    if not isinstance(base, str):
        # The graph's own rules (a required previous table missing, a changed
        # range within a node's look-back of the first session) are reported too.
        base = full_build_reason(sess, params, base[1], base[0]) or base
    if narrowed is not None and (
        isinstance(base, str) or (need := prices_from(sess, params, base[1], base[0])) is None
        or need < narrowed.bars_from
    ):
        # The bounded bars do not reach as far back as this build reads: all of them.
        del prices, history, read, base
        return transform(lake, settings, universe, as_of, synthetic, bounded=bounded, narrow=False)
    if isinstance(base, str):
        marts = build_marts(
            prices, assets, sess, params, fundamentals=fundamentals, map_partitions=map_on_runner, history=history
        )
        incremental_from, full_because, previous = None, base, {}
        if base.startswith(UNREADABLE_WAREHOUSE):
            marts.warnings.append(base)
    else:
        previous, incremental_from = base
        # The seeds were read from each node's window on (``seed_reads``); a node that finds
        # its window too short this time (``SeedTooShort``: a symbol new to the matrix) gets
        # its tables whole and the build runs again.
        bounded = window_starts(GRAPH, sess, params, incremental_from)
        while True:
            try:
                marts = build_marts(
                    prices, assets, sess, params, fundamentals, map_partitions=map_on_runner, history=history,
                    since=incremental_from, previous=previous, previous_from=bounded,
                )
                break
            except SeedTooShort as short:
                if not set(short.tables) & set(bounded):
                    raise
                previous = {**previous, **read_seeds_whole(settings, list(short.tables))}
                bounded = {t: d for t, d in bounded.items() if t not in short.tables}
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
    state = run_state(lake.source, as_of, fingerprint, prices, files["ctime_ns"].max())
    if narrowed is not None:
        state["ingested_through"] = narrowed.ingested_through(prices)
    del previous, base  # the seed: not held through the figures below
    stale, price_warnings, fresh = price_figures_from(
        marts.tables["fact_prices"], marts.unchanged_before.get("fact_prices"), marts.tables["dim_asset"], as_of,
        settings, state=state,
    )
    return Transformed(
        marts.tables, marts.warnings, state, incremental_from, full_because, marts.unchanged_before, lake_read,
        stale, price_warnings, fresh,
    )


def _read_bounded(
    lake: Lake, settings: Settings, as_of: date, assets: pl.DataFrame, files: pl.DataFrame, plan: LakeRead,
    params: MartParams | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.Series, NarrowRead | None] | str:
    """The year files ``plan`` names, screened, with the published run's earlier bars and quarantine rows
    (``merge_published``): (stored bars read, clean bars, quarantine rows, sessions, how the published
    bars were bounded); or why not. With ``params``, the published bars are read narrow
    (``NarrowRead``) when the graph's look-back allows (``narrow_bars_from``)."""
    stored = lake.read_bar_files(plan.files)
    if stored["date"].max() is not None and (stored["date"].max() > as_of or stored["date"].null_count()):
        stored = stored.filter(pl.col("date") <= as_of)
    if plan.context_start is not None:
        # A few days' context: the bars of the year files read before it are the published run's
        # (``merge_published``), not screened again (the symbols read whole are, whole).
        whole = pl.Series(sorted(plan.whole), dtype=pl.String).implode()
        stored = stored.filter((pl.col("date") >= plan.context_start) | pl.col("symbol").is_in(whole))
    narrowed = None
    try:
        first = published_first_date(settings, plan)
    except Exception as exc:
        return unreadable_warehouse(settings.warehouse_path, exc)
    firsts = [d for d in (stored["date"].min(), first) if d is not None]
    if not firsts:
        return "no bars stored or published"
    calendar = exchange_sessions(min(firsts), as_of, settings.exchange_calendar)
    clean, quarantined = screen(
        "fact_prices", stored, as_of, sessions=calendar, assets=assets, jump_bounds=settings.jump_bounds
    )
    try:
        bars_from = narrow_bars_from(calendar, params, plan) if params is not None else None
        if bars_from is not None:
            whole = frozenset(whole_price_symbols(assets, params))
            published, published_quarantine, narrowed = published_bars_bounded(
                settings, plan, as_of, bars_from, whole, clean
            )
        else:
            published, published_quarantine = published_before(settings, plan, as_of)
    except Exception as exc:
        return unreadable_warehouse(settings.warehouse_path, exc)
    merged = merge_published(plan, files, stored, clean, quarantined, published, published_quarantine, as_of)
    if isinstance(merged, str):
        return merged
    if narrowed is not None and (gone := omitted_files_gone(narrowed, files)):
        return gone
    return stored, *merged, calendar, narrowed


def fundamentals_as_of(lake: Lake, as_of: date) -> pl.DataFrame | None:
    """Stored snapshots taken on or before ``as_of``: a backfill never sees later ones."""
    stored = lake.read_fundamentals()
    return None if stored is None else stored.filter(pl.col("as_of") <= as_of)


def note_transform(built: Transformed, run: RunSummary, settings: Settings, as_of: date, logger) -> None:
    """What the run records of its transform: stale assets, warnings, and whether it rebuilt in full and why."""
    warnings = built.warnings
    run.stale = built.stale
    warnings = warnings + [w for w in [stale_warning(run.stale, settings.stale_after_sessions, as_of)] if w]
    run.warnings += warnings
    for w in warnings:
        logger.warning(w)
    run.incremental_from = built.incremental_from
    if built.lake_read:
        logger.info("%s", built.lake_read)
    if built.incremental_from:
        logger.info("incremental rebuild from %s (the published run seeds the rest)", built.incremental_from)
    else:
        logger.info("full rebuild: %s", built.full_because)
