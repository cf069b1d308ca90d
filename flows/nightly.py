"""The nightly pipeline: extract -> land -> transform -> load -> audit -> publish.

Thin flow, small tasks. Nothing becomes visible to analysts or BI tools until
the audit of the complete run has passed; a failed run leaves the previously
published warehouse and marts exactly as they were and is still recorded in
the run log.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import FlowRunContext, TaskRunContext
from prefect.futures import as_completed
from prefect.tasks import exponential_backoff
from prefect.utilities.hashing import hash_objects

from flows import __version__, cancel
from flows.calendar import sessions as exchange_sessions
from flows import progress
from flows.artifacts import RunReport, publish_artifacts, stale_symbols, stale_warning, summarize
from flows.backfill import Checkpoint, chunk_id, publish_as_of, year_chunks
from flows.params import mart_params
from flows.rebuild_plan import UNREADABLE_WAREHOUSE, incremental_base, run_state, transform_fingerprint
from flows.run import PipelineError, RunSummary
from flows.runners import RunnerSettings, build_task_runner
from flows.settings import Settings, get_settings
from flows.sources.base import (
    ASSET_SCHEMA, InputProblem, Source, SourceBatch, SourceError, SymbolOutcome, empty_bars, problems_frame,
)
from flows.sources.live_config import deadline as source_deadline
from flows.sources.registry import make_source
from flows.sources.sample import SYNTHETIC_TAG
from flows.universe import Universe, UniverseError, load_universe
from transforms.graph import full_build_reason
from transforms.marts import build_marts, serial_map
from warehouse import marts as mart_files
from warehouse import snapshots
from warehouse.audit import audit, audit_warnings
from warehouse.build import load_database
from warehouse.files import StoredFileError, remove_stale_temp_files
from warehouse.lake import Lake
from warehouse.lock import RunLock
from warehouse.mirror import mirror_marts
from warehouse.quality import screen, withdrawal_summary, withdrawn_quarantine
from warehouse.runs import RunLog
from contracts.tables import INGEST_LOG, QUARANTINE


def default_as_of(source: str, today: date, inputs_end: date | None = None) -> date:
    """The as-of of a run not given one.

    Sources that fetch (sample, live) cover the last complete day: the UTC
    candle of yesterday and the US session that closed before it. The files
    source covers what its inputs cover: their last date (``inputs_end``),
    never later than today; today's date is no claim about a folder of files.
    """
    if source == "files" and inputs_end is not None:
        return min(inputs_end, today)
    return today if source == "files" else today - timedelta(days=1)


def code_version() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"xasset {__version__}" + (f" ({commit})" if commit else "")


def extract_cache_key(context: TaskRunContext, parameters: dict) -> str:
    # Deliberately not the stored state (last dates, tail): a re-run after a
    # late failure has already landed this batch, and must reuse it, not refetch.
    return "extract-" + hash_objects(
        parameters["fingerprint"],
        [a.symbol for a in parameters["universe"].assets],
        str(parameters["start"]),
        str(parameters["as_of"]),
    )


def transient(task, task_run, state) -> bool:
    """Retry network trouble and timeouts, never a bad file or a bad universe."""
    try:
        state.result()
    except (ValueError, UniverseError, PipelineError):
        return False
    except Exception:
        return True
    return False


# Cached per source in extract(): a cache policy on the decorator would stay on
# the files source's uncached copy, which Prefect then warns it ignores.
@task(
    cache_policy=NO_CACHE,
    retry_condition_fn=transient,
    task_run_name="extract-{source.name}-{batch}",
)
def extract_batch(
    source: Source,
    universe: Universe,
    start: date,
    as_of: date,
    last_dates: dict[str, date],
    stored_tail: pl.DataFrame,
    fingerprint: str,
    batch: str = "all",
    deadline_at: float | None = None,
) -> SourceBatch:
    # The stage's deadline (epoch seconds): the live source cuts every request
    # to the time left and records what it could not fetch by then as failed.
    # (Prefect's task timeout cannot interrupt a request blocked in a worker thread.)
    with source_deadline(None if deadline_at is None else deadline_at - time.time()):
        return source.fetch(universe, start, as_of, last_dates, stored_tail)


def source_fingerprint(name: str, settings: Settings, paths: list[Path]) -> str:
    """What, besides symbols and dates, decides what a source returns."""
    # The crypto close decides which bars a source returns: a cached batch of one is never reused for the other.
    close = f"{settings.crypto_close}@{settings.exchange_calendar}"
    if name == "sample":
        return f"sample:{settings.sample_seed}:{close}"
    if name == "files":
        stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for p in paths for f in sorted(_walk(p))]
        return f"files:{close}:" + hash_objects(stats)
    return f"{name}:{close}:" + hash_objects(settings.live.model_dump_json())


def _walk(path: Path) -> list[Path]:
    return [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else ([path] if path.exists() else [])


def batches(universe: Universe, size: int, splittable: bool) -> list[Universe]:
    if not splittable or len(universe.assets) <= size:
        return [universe]
    return [
        Universe(benchmarks=(), assets=universe.assets[i : i + size]) for i in range(0, len(universe.assets), size)
    ]


def merge_batches(parts: list[SourceBatch]) -> SourceBatch:
    bars = [p.bars for p in parts if p.bars.height]
    assets = [p.assets for p in parts if p.assets.height]
    fundamentals = [p.fundamentals for p in parts if p.fundamentals is not None]
    return SourceBatch(
        bars=pl.concat(bars).sort("symbol", "date") if bars else empty_bars(),
        assets=pl.concat(assets).sort("symbol") if assets else pl.DataFrame(schema=ASSET_SCHEMA),
        outcomes=[o for p in parts for o in p.outcomes],
        fundamentals=pl.concat(fundamentals, how="diagonal_relaxed") if fundamentals else None,
        synthetic=any(p.synthetic for p in parts),
        warnings=[w for p in parts for w in p.warnings],
        problems=[x for p in parts for x in p.problems],
    )


def extract(
    src: Source,
    universe: Universe,
    start: date,
    as_of: date,
    lake: Lake,
    settings: Settings,
    runner: RunnerSettings,
    paths: list[Path],
    incremental: bool = True,
) -> SourceBatch:
    """Fetch every symbol in batches mapped over the task runner."""
    parts = batches(universe, runner.extract_batch_size, splittable=src.name != "files")
    last_dates = lake.last_dates() if incremental else {}
    # The stored tail must span the live source's look-back window so every
    # re-fetched bar has a stored twin to compare for restated history; twice
    # the window leaves room for a gap inside it.
    tail = lake.tail(2 * settings.live.lookback_sessions) if incremental else empty_bars()
    retry = src.name == "live"
    task_ = extract_batch.with_options(
        # For an optional server-side limit across runs (docs/operations.md).
        tags=[f"xasset-source-{src.name}"],
        # The stage deadline below is what bounds a batch; this is only a
        # backstop for code that ignores it, past the last request it allows.
        timeout_seconds=(
            runner.extract_timeout_seconds + 2 * (settings.live.request_timeout_s + settings.live.connect_timeout_s) + 60
            if retry else None
        ),
        retries=runner.extract_retries if retry else 0,
        retry_delay_seconds=exponential_backoff(runner.extract_retry_backoff_seconds) if retry else 0,
        retry_jitter_factor=0.5 if retry else None,
        **(
            # Files are read locally and cheaply; caching them only costs disk.
            dict(cache_policy=NO_CACHE, persist_result=False) if src.name == "files" else dict(
                cache_policy=CachePolicy.from_cache_key_fn(extract_cache_key),
                persist_result=True,
                cache_expiration=timedelta(hours=runner.extract_cache_hours),
                result_storage=(settings.data_dir / "cache" / "extract").resolve(),
                refresh_cache=runner.extract_cache_hours == 0,
            )
        ),
    )
    fingerprint = source_fingerprint(src.name, settings, paths)
    deadline_at = time.time() + runner.extract_timeout_seconds

    def submit(i: int, refresh: bool = False):
        part = parts[i]
        symbols = {a.symbol for a in part.assets}
        return (task_.with_options(refresh_cache=True) if refresh else task_).submit(
            src,
            part,
            start,
            as_of,
            {s: d for s, d in last_dates.items() if s in symbols},
            tail.filter(pl.col("symbol").is_in(list(symbols))),
            fingerprint,
            batch=f"{i + 1}of{len(parts)}",
            deadline_at=deadline_at,
        )

    tracker = ProgressArtifact(f"Extracting {len(universe.assets)} symbols from {src.name} in {len(parts)} batches")
    progress.emit("extract", 0, len(parts))
    # At most `source_concurrency` batches call the source at once, whatever
    # the runner's size: a window of futures, refilled as each finishes. Runs
    # on one data directory never overlap (the run lock), so this is the
    # limit on the source. Unlike a server-side slot, it cannot be left
    # held by a killed run.
    futures: dict[int, object] = {}
    pending = list(range(len(parts)))
    running: list = []
    done = 0
    while pending or running:
        while pending and len(running) < runner.source_concurrency:
            i = pending.pop(0)
            futures[i] = submit(i)
            running.append(futures[i])
        finished = next(as_completed(list(running)))
        running.remove(finished)
        finished.result()  # the first failed batch fails the stage
        done += 1
        progress.emit("extract", done, len(parts))
        tracker.update(done / len(parts))
    # A cached batch that had failed symbols is fetched again: the cache saves
    # refetching what succeeded, never keeps a failure.
    for i in range(len(parts)):
        state = futures[i].state
        if state.is_completed() and state.name == "Cached" and any(
            o.status == "error" for o in futures[i].result().outcomes
        ):
            futures[i] = submit(i, refresh=True)
            futures[i].result()
    # Merge in submission order so the batch is the same whatever finished first.
    return merge_batches([futures[i].result() for i in range(len(parts))])


class ProgressArtifact:
    """Prefect's progress artifact, best effort: a display never fails a run."""

    def __init__(self, description: str) -> None:
        from prefect.artifacts import create_progress_artifact

        try:
            self.id = create_progress_artifact(0.0, description=description)
        except Exception:
            self.id = None

    def update(self, fraction: float) -> None:
        if self.id is None:
            return
        from prefect.artifacts import update_progress_artifact

        try:
            update_progress_artifact(self.id, round(100 * fraction, 1))
        except Exception:
            self.id = None


@task(cache_policy=NO_CACHE)
def land(batch: SourceBatch, lake: Lake, ingested_at: datetime) -> int:
    written = lake.upsert_bars(batch.bars, ingested_at)
    lake.upsert_assets(batch.assets)
    if batch.fundamentals is not None:
        lake.upsert_fundamentals(batch.fundamentals)
    return written


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
    stored = lake.read_bars().filter(pl.col("date") <= as_of)
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
    others = prices.join(assets.filter(pl.col("asset_class") != "index").select("symbol"), on="symbol", how="semi")
    history = None
    if others.height:
        start = min(others["date"].min(), settings.history_start)
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


@task(cache_policy=NO_CACHE)
def load(
    tables: dict[str, pl.DataFrame], staged: Path, storage_version: str,
    published: Path | None = None, unchanged_before: dict[str, date] | None = None,
    compact_above: float = Settings.model_fields["warehouse_compact_above"].default,
) -> dict[str, int]:
    """Copy the published warehouse and replace the changed rows, or build it whole (warehouse.build)."""
    loaded = load_database(staged, tables, storage_version=storage_version, published=published,
                           unchanged_before=unchanged_before, compact_above=compact_above)
    if loaded.full_because:
        get_run_logger().info("warehouse built whole: %s", loaded.full_because)
    else:
        get_run_logger().info("warehouse copied from the published run; rows replaced from %s",
                              min(unchanged_before.values()))
    return loaded.counts


def check_failures(batch: SourceBatch, source: str, settings: Settings, universe: Universe, run: RunSummary) -> None:
    """The partial-failure policy: one bad symbol never sinks a run, a bad benchmark or many do.

    One policy and one setting (``live.max_failed_share``) for the live and
    the files source. The files source publishes what its inputs hold: a
    benchmark absent from every file is not a failure, one whose files are
    all unusable (or in conflict) is.
    """
    failed = [o for o in batch.outcomes if o.status == "error"]
    if failed and len(failed) == len(batch.outcomes):
        raise PipelineError(f"every symbol failed, e.g. {failed[0].symbol}: {failed[0].error}")
    if source in ("live", "files"):
        from flows.sources.live import failure_policy

        benchmarks = settings.benchmarks or universe.benchmarks
        if source == "files":
            benchmarks = [b for b in benchmarks if any(o.symbol == b for o in batch.outcomes)]
        ok, reason = failure_policy(batch.outcomes, benchmarks, settings.live.max_failed_share)
        if not ok:
            raise PipelineError(f"not publishing: {reason}")
    if failed:
        what = "fetch failed" if source == "live" else "no usable input"
        run.warnings.append(
            f"stale ({what}, previous data kept): " + ", ".join(f"{o.symbol} ({o.error})" for o in failed)
        )


def withdraw_absent(
    batch: SourceBatch, lake: Lake, span: tuple[date, date], now: datetime, run: RunSummary, logger
) -> tuple[pl.DataFrame, list[SymbolOutcome]]:
    """The files source's input is a snapshot: stored bars in the run's dates that it no
    longer holds are withdrawn (a warning, quarantine rows, ``withdrawn`` in ingest_log).

    A symbol the source failed to read keeps its bars (stale, as check_failures says).
    """
    failed = {o.symbol for o in batch.outcomes if o.status == "error"}
    withdrawn = lake.withdraw_absent(batch.bars, span[0], span[1], now, keep=failed)
    removed = set(withdrawn["symbol"].unique().to_list()) - {o.symbol for o in batch.outcomes}
    line = withdrawal_summary(withdrawn, removed)
    if line:
        run.warnings.append(line)
        logger.warning(line)
    gone = [
        SymbolOutcome(
            symbol=sym, source=lake.source, status="withdrawn", rows=0, attempts=0,
            error=f"no longer in the input: {rows.height} stored bar(s) "
            f"{rows['date'].min()}..{rows['date'].max()} withdrawn",
        )
        for sym in sorted(removed)
        for rows in [withdrawn.filter(pl.col("symbol") == sym)]
    ]
    return withdrawn, gone


def combine_outcomes(outcomes: list[SymbolOutcome]) -> list[SymbolOutcome]:
    """One ingest_log row per symbol and source across a backfill's chunks."""
    out: dict[tuple[str, str], SymbolOutcome] = {}
    for o in outcomes:
        prev = out.get((o.symbol, o.source))
        if prev is not None:
            o = replace(
                o,
                rows=prev.rows + o.rows,
                attempts=prev.attempts + o.attempts,
                first_date=min((d for d in (prev.first_date, o.first_date) if d), default=None),
                last_date=max((d for d in (prev.last_date, o.last_date) if d), default=None),
            )
        out[(o.symbol, o.source)] = o
    return list(out.values())


def run_pipeline(
    source: str,
    paths: list[str] | None,
    start: date | None,
    as_of: date | None,
    data_dir: str | None,
    chunked: bool = False,
    rewind: bool = False,
) -> RunSummary:
    """One run: extract and land every chunk, then transform, load, audit and publish once.

    ``chunked`` (backfills) splits ``start``..``as_of`` by calendar year, asks
    the source for each range in full (not incrementally) and records landed
    years in a checkpoint so an interrupted backfill resumes where it stopped.
    """
    settings = get_settings()
    if data_dir:
        settings = settings.model_copy(update={"data_dir": Path(data_dir)})
    runner = RunnerSettings()
    logger = get_run_logger()
    now = datetime.now(UTC)
    # The files source's default as-of is its inputs' last date, known once they are read (below).
    as_of_given = as_of is not None
    as_of = as_of or default_as_of(source, now.date())
    start = start or settings.history_start
    run = RunSummary(
        run_id=f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
        source=source,
        as_of=as_of,
        status="running",
        warehouse_path=settings.warehouse_path,
        marts_dir=settings.marts_dir,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Prefect bridges SIGTERM to its own exception during a flow; a command-line
    # run wants Ctrl-C and SIGTERM handled alike (flows.cancel).
    cancel.rearm()
    # Nightly and backfill queue behind each other: a bounded, announced wait.
    with RunLock(settings.data_dir, wait_s=settings.lock_wait_seconds, on_wait=logger.warning):
        for stale in remove_stale_temp_files(settings.data_dir):
            logger.info("removed temp file left by an interrupted run: %s", stale)
        if snapshots.recover(settings.data_dir):
            logger.warning("a publish was interrupted after its switch; its links were completed")
        log = RunLog(settings.data_dir)
        published_run = snapshots.current_run(settings.data_dir)
        for killed in log.mark_interrupted(published=published_run):
            if killed == published_run:
                logger.warning("run %s was killed after publishing; marked succeeded", killed)
            else:
                logger.warning("run %s did not finish (killed or crashed); marked interrupted", killed)
        history = log.runs()
        previous = history.filter((pl.col("status") == "succeeded") & (pl.col("source") == source))
        previous_as_of = previous["as_of"].max() if previous.height else None
        # A backfill extends history; it never rewinds what analysts see, nor does a run unless told to.
        end = as_of
        if as_of_given and not chunked and not rewind:
            snapshots.check_no_rewind(settings.data_dir, source, as_of)
        if chunked:
            as_of = publish_as_of(snapshots.published_state(settings.data_dir), source, end)
            run.as_of = as_of
            if as_of != end:
                run.warnings.append(
                    f"backfill {start}..{end} extends history; the published as-of stays {as_of}"
                )
        record = {
            "run_id": run.run_id, "started_at": now, "finished_at": None, "source": source, "as_of": as_of,
            "status": "running", "rows_written": None, "error": None, "stage_seconds": None,
            "table_rows": None, "audit": None, "code_version": code_version(), "crypto_close": settings.crypto_close,
        }
        log.record_run(record)
        cancel.current_run(run.run_id, settings.data_dir)
        staging: snapshots.Staging | None = None
        published = False
        withdrawn = empty_bars()
        tables: dict[str, pl.DataFrame] = {}
        outcomes: list[SymbolOutcome] = []
        problems: list[InputProblem] = []
        clock = time.perf_counter()

        def stage_done(name: str) -> None:
            nonlocal clock
            # Summed: a backfill extracts and lands once per chunk.
            run.stage_seconds[name] = round(run.stage_seconds.get(name, 0.0) + time.perf_counter() - clock, 3)
            clock = time.perf_counter()
            if name != "extract":  # extract reports per batch itself
                progress.emit(name, 1, 1)

        def stage_start(name: str) -> None:
            """The stage's progress bar starts now (extract() then sets its number of batches)."""
            progress.emit(name, 0, 1)

        stage_start("extract")  # the stage's clock runs from here
        try:
            universe = load_universe(settings.universe_path)
            src_paths = [Path(p) for p in paths or []]
            src = make_source(source, settings, src_paths)
            lake = Lake(settings.lake_dir, source)
            if source == "files" and not as_of_given:
                as_of = end = run.as_of = record["as_of"] = default_as_of(source, now.date(), src.last_date(universe))
                if not rewind:
                    snapshots.check_no_rewind(settings.data_dir, source, as_of)
                logger.info("as of %s: the last date the input files cover", as_of)
            chunks = year_chunks(start, end) if chunked else [(start, as_of)]
            checkpoint = Checkpoint.open(
                settings.data_dir / "state" / "backfill" / f"{source}-{start}-{end}.json" if chunked else None
            )
            for chunk in chunks:
                if chunk_id(chunk) in checkpoint.done:
                    logger.info("backfill: %s already landed, skipped", chunk_id(chunk))
                    continue
                stage_start("extract")  # its bar counts batches once extract() knows them
                batch = extract(
                    src, universe, chunk[0], chunk[1], lake, settings, runner, src_paths, incremental=not chunked
                )
                run.synthetic |= batch.synthetic
                run.warnings += batch.warnings
                outcomes += batch.outcomes
                problems += batch.problems
                log.record_ingest(
                    pl.DataFrame(
                        [{"run_id": run.run_id, **o.__dict__} for o in combine_outcomes(outcomes)],
                        schema=INGEST_LOG.polars_schema,
                    )
                )
                check_failures(batch, source, settings, universe, run)
                stage_done("extract")
                stage_start("land")
                run.rows_written += land(batch, lake, now)
                if source == "files" and not chunked:
                    withdrawn, gone = withdraw_absent(batch, lake, chunk, now, run, logger)
                    outcomes += gone
                    log.record_ingest(pl.DataFrame(
                        [{"run_id": run.run_id, **o.__dict__} for o in combine_outcomes(outcomes)],
                        schema=INGEST_LOG.polars_schema,
                    ))
                checkpoint.mark(chunk)
                stage_done("land")
            stage_start("transform")
            built = transform(lake, settings, universe, as_of, synthetic=source == "sample")
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
            stage_done("transform")
            stage_start("load")
            history = log.runs()
            tables["pipeline_runs"] = pl.concat(
                [history.filter(pl.col("run_id") != run.run_id),
                 pl.DataFrame([{**record, "status": "succeeded"}], schema=history.schema)]
            )
            tables["ingest_log"] = log.ingest_log()
            # What the source held back (files skipped, rows it could not read) next to what the screen
            # did, and the bars withdrawn because the input no longer holds them.
            held = [q for q in (problems_frame(problems), tables.get("quarantine"), withdrawn_quarantine(withdrawn))
                    if q is not None]
            tables["quarantine"] = log.record_quarantine(
                run.run_id, pl.concat(held).unique(QUARANTINE.primary_key, keep="first", maintain_order=True)
            )
            staging = snapshots.stage(settings.data_dir, run.run_id)
            staging.write_state({**built.state, "run_id": run.run_id, "incremental_from": built.incremental_from})
            unchanged_before = built.unchanged_before
            run.table_rows = load(tables, staging.warehouse_path, settings.warehouse_storage_version,
                                  settings.data_dir / snapshots.WAREHOUSE_FILE, unchanged_before,
                                  settings.warehouse_compact_above)
            stage_done("load")
            stage_start("audit")
            failures = audit(tables, as_of)
            if failures:
                raise PipelineError("audit failed, nothing published: " + "; ".join(map(str, failures[:5])))
            run.warnings += audit_warnings(
                tables, as_of, run.run_id, partial(exchange_sessions, code=settings.exchange_calendar)
            )
            stage_done("audit")
            stage_start("publish")
            extra = {"source": source, "as_of": str(as_of), "synthetic": run.synthetic, "crypto_close": settings.crypto_close}
            mart_files.stage_marts(tables, staging.marts_dir, run.run_id, extra,
                                   unchanged_before, settings.data_dir / snapshots.MARTS_DIR)
            # The warehouse and every mart become visible together, or not at all;
            # a stop request waits for the switch (and is honoured right after).
            with cancel.shielded():
                snapshots.publish(settings.data_dir, staging, run.run_id)
                staging = None
                published = True
            stage_done("publish")
            if settings.marts_mirror_url:
                mirror_published(settings, run, logger)
                stage_done("mirror")
            checkpoint.clear()
            run.status = "succeeded"
        except Exception as exc:
            run.status = "failed"
            run.error = str(exc) if isinstance(exc, (PipelineError, SourceError, StoredFileError, ValueError)) else repr(exc)
            if staging is not None:
                snapshots.discard(staging)
            raise
        except BaseException as exc:
            if not cancel.is_cancellation(exc):
                raise
            if published:  # stopped after the switch: the run did publish, only the mirror was skipped
                run.status = "succeeded"
                run.warnings.append(f"stopped ({cancel.describe(exc)}) after publishing; mirror not updated")
            else:
                run.status = "cancelled"
                run.error = f"{cancel.describe(exc)}; nothing published"
            if staging is not None:
                snapshots.discard(staging)
            exc.run_id, exc.published = run.run_id, published  # type: ignore[attr-defined]
            raise
        finally:
            audit_result = "failed" if run.error and run.error.startswith("audit failed") else ("passed" if run.status == "succeeded" else None)
            record.update(
                finished_at=datetime.now(UTC), status=run.status, rows_written=run.rows_written, error=run.error,
                stage_seconds=json.dumps(run.stage_seconds), table_rows=json.dumps(run.table_rows),
                audit=audit_result,
            )
            log.record_run(record)
            run.report = report_run(run, tables, outcomes, previous_as_of, audit_result or "not reached", problems)
    return run


def mirror_published(settings: Settings, run: RunSummary, logger) -> None:
    """Copy the just-published marts to object storage; a failure is a warning.

    The run has already published locally, so failing it now would record a
    published run as failed; the mirror keeps serving its previous run and the
    next run (or ``xasset mirror``) catches up.
    """
    url = settings.marts_mirror_url
    try:
        done = mirror_marts(settings.marts_dir, url, settings.marts_mirror_keep)
    except Exception as exc:
        run.warnings.append(f"marts not mirrored to {url}: {exc}")
        logger.warning(run.warnings[-1])
        return
    logger.info("marts mirrored to %s: run %s, %d file(s) uploaded", url, done.run_id, done.uploaded)


def report_run(
    run: RunSummary, tables: dict[str, pl.DataFrame], outcomes: list, previous_as_of: date | None, audit_result: str,
    problems: list | None = None,
) -> RunReport | None:
    """The run report and its artifacts; never the reason a run fails."""
    logger = get_run_logger()
    try:
        report = summarize(
            tables, run_id=run.run_id, source=run.source, as_of=run.as_of, status=run.status,
            synthetic=run.synthetic, audit=audit_result, outcomes=outcomes, previous_as_of=previous_as_of,
            error=run.error, problems=problems, stale=run.stale,
        )
    except Exception as exc:
        logger.warning("could not summarise the run: %r", exc)
        return None
    try:
        publish_artifacts(report)
    except Exception as exc:
        logger.warning("could not create the run's artifacts: %r", exc)
    return report


@flow(name="nightly", log_prints=True, task_runner=build_task_runner(RunnerSettings()))
def nightly(
    source: str = "sample",
    paths: list[str] | None = None,
    start: date | None = None,
    as_of: date | None = None,
    data_dir: str | None = None,
    rewind: bool = False,
) -> RunSummary:
    """Run the whole pipeline once for ``source`` up to ``as_of`` (default: last complete day).

    ``rewind`` allows an ``as_of`` before the published run's (refused otherwise).
    """
    return run_pipeline(source, paths, start, as_of, data_dir, rewind=rewind)
