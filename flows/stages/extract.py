"""Extract and land: every symbol fetched from the source in batches, then written to the lake.

Also the partial-failure policy (``check_failures``: one bad symbol never
sinks a run) and, for the files source, the bars its input no longer holds
(``withdraw_absent``).
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import FlowRunContext, TaskRunContext
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import quote
from prefect.utilities.hashing import hash_objects

from contracts.tables import INGEST_LOG
from flows import progress
from flows.run import PipelineError, RunSummary
from flows.runners import RunnerSettings
from flows.settings import Settings
from flows.sources.base import ASSET_SCHEMA, Source, SourceBatch, SymbolOutcome, empty_bars
from flows.sources.live_config import deadline as source_deadline
from flows.universe import Universe, UniverseError
from warehouse.lake import BARS_SCHEMA, Lake
from warehouse.quality import withdrawal_summary
from warehouse.runs import RunLog


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
        cursor=parts[0].cursor if len(parts) == 1 else None,
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
    # A source that finds what is new itself (files: the input cursor) is spared the read of every symbol's last date.
    last_dates = lake.last_dates() if incremental and getattr(src, "reads_last_dates", True) else {}
    # The stored tail must span the live source's look-back window so every
    # re-fetched bar has a stored twin to compare for restated history;
    # twice the window leaves room for a gap inside it. A source that ignores it is spared the read.
    reads_tail = incremental and getattr(src, "reads_stored_tail", True)
    tail = lake.tail(2 * settings.live.lookback_sessions) if reads_tail else empty_bars()
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

    # quote: Prefect would visit every asset of the universe (a pydantic model each: 0.1-0.3 CPU-s for
    # the files source's one batch of 2,000 symbols) and every last date looking for futures; the
    # task, its cache key and its run name get the values as they are. Not on Dask: Dask takes the
    # annotation (a named tuple) for a tuple of its own and hands the task a plain tuple.
    flow_run = FlowRunContext.get()
    in_process = flow_run is None or isinstance(flow_run.task_runner, ThreadPoolTaskRunner)
    quoted = quote if in_process else (lambda value: value)

    def submit(i: int, refresh: bool = False):
        part = parts[i]
        symbols = {a.symbol for a in part.assets}
        return (task_.with_options(refresh_cache=True) if refresh else task_).submit(
            src,
            quoted(part),
            start,
            as_of,
            quoted({s: d for s, d in last_dates.items() if s in symbols}),
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
    landing = batch.cursor
    if landing is not None and landing.delta:
        # Only the rows after those the cursor recorded were read: the lake held exactly the recorded
        # rows' bars in the span and none after its last date (checked when the cursor was loaded),
        # and the land added the new ones, so no stored bar in the span is absent from the input.
        withdrawn = pl.DataFrame(schema=BARS_SCHEMA)
    else:
        withdrawn = lake.withdraw_absent(batch.bars, span[0], span[1], now, keep=failed)
    if landing is not None:
        landing.landed(span[1])  # after the land and the withdrawal: what the next run may skip
        logger.info(landing.describe(batch.bars.height))
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


def record_ingest(log: RunLog, run_id: str, outcomes: list[SymbolOutcome]) -> None:
    """The run's ingest_log rows so far: one per symbol and source (``combine_outcomes``)."""
    log.record_ingest(
        pl.DataFrame(
            [{"run_id": run_id, **o.__dict__} for o in combine_outcomes(outcomes)],
            schema=INGEST_LOG.polars_schema,
        )
    )
