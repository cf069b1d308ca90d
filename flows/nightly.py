"""The nightly pipeline: extract -> land -> transform -> load -> audit -> publish.

Thin flow, small tasks: the stages live in ``flows.stages`` (extract and land,
transform, publish), the rebuild plan in ``flows.rebuild_plan``, the sources
in ``flows.sources.registry``, a backfill's checkpoints in ``flows.backfill``;
this module is the run around them (its log row, lock and cancellation). Nothing becomes visible to analysts or BI tools until
the audit of the complete run has passed; a failed run leaves the previously
published warehouse and marts exactly as they were and is still recorded in
the run log.
"""

from __future__ import annotations

# First: Prefect loads this file as a script, and Polars' allocator takes its options when Polars
# is imported (``flows.allocator``, configured by the package).
import flows  # noqa: F401, I001
import json
import subprocess
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger
from prefect.utilities.annotations import quote

from flows import __version__, cancel, progress
from flows.artifacts import RunReport, publish_artifacts, summarize, with_alpha_context
from flows.backfill import Checkpoint, chunk_id, publish_as_of, year_chunks
from flows.calendar import cache_sessions_in
from flows.run import PipelineError, RunSummary
from flows.runners import RunnerSettings, build_task_runner, plain_parameters
from flows.settings import get_settings
from flows.sources.base import InputProblem, SourceError, SymbolOutcome, empty_bars
from flows.sources.registry import make_source
from flows.stages.extract import check_failures, extract, land, record_ingest, withdraw_absent
from flows.stages.publish import (
    BackgroundMarts, add_run_tables, audit_run, load, mirror_published, publish, stage_marts,
)
from flows.stages.transform import note_transform, transform
from flows.universe import load_universe
from warehouse import snapshots
from warehouse.audit import written_from
from warehouse.files import StoredFileError, remove_stale_temp_files
from warehouse.lake import Lake
from warehouse.lock import RunLock
from warehouse.runs import RunLog


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


def tidy_data_dir(data_dir: Path, logger) -> RunLog:
    """What an interrupted run left behind, put right before this one starts; its run log."""
    for stale in remove_stale_temp_files(data_dir):
        logger.info("removed temp file left by an interrupted run: %s", stale)
    if snapshots.recover(data_dir):
        logger.warning("a publish was interrupted after its switch; its links were completed")
    log = RunLog(data_dir)
    published_run = snapshots.current_run(data_dir)
    for killed in log.mark_interrupted(published=published_run):
        if killed == published_run:
            logger.warning("run %s was killed after publishing; marked succeeded", killed)
        else:
            logger.warning("run %s did not finish (killed or crashed); marked interrupted", killed)
    return log


def abandon(marts_job: BackgroundMarts | None, grace_s: float) -> None:
    """Stop marts being written beside a run that failed or was cancelled, before its staging is removed.

    Half the stop grace at most (the other half records the run): one table's write
    at worst. A thread still writing after that writes into a removed directory;
    what it leaves is a ``.tmp-`` staging leftover the next run removes."""
    if marts_job is not None:
        marts_job.abandon(grace_s / 2)


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
    # Each night's calendar is the last one's: read from the data directory, not built again.
    cache_sessions_in(settings.data_dir / "cache" / "calendar")
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
        log = tidy_data_dir(settings.data_dir, logger)
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
        marts_job: BackgroundMarts | None = None
        published = False
        withdrawn = empty_bars()
        tables: dict[str, pl.DataFrame] = {}
        unchanged_before: dict[str, date] = {}
        fresh = None
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

        def drop_staging() -> None:
            """A failed or cancelled run's staging goes, once the marts thread writing into it stopped."""
            nonlocal staging
            if staging is not None:
                abandon(marts_job, settings.stop_grace_seconds)
                snapshots.discard(staging)
                staging = None

        def cancelled(exc: BaseException) -> None:
            if published:  # stopped after the switch: the run did publish, only the mirror was skipped
                run.status = "succeeded"
                run.warnings.append(f"stopped ({cancel.describe(exc)}) after publishing; mirror not updated")
            else:
                run.status = "cancelled"
                run.error = f"{cancel.describe(exc)}; nothing published"
            drop_staging()

        stage_start("extract")  # the stage's clock runs from here
        try:
            universe = load_universe(settings.universe_path)
            src_paths = [Path(p) for p in paths or []]
            src = make_source(source, settings, src_paths)
            lake = Lake(settings.lake_dir, source, writers=settings.lake_writers, deltas=settings.lake_delta_nights)
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
                record_ingest(log, run.run_id, outcomes)
                check_failures(batch, source, settings, universe, run)
                stage_done("extract")
                stage_start("land")
                # quote: Prefect would visit every outcome and problem of the batch (0.1-0.2 CPU-s at
                # 2,000 symbols) looking for futures it cannot hold; the task gets the batch as is.
                run.rows_written += land(quote(batch), lake, now)
                if source == "files" and not chunked:
                    withdrawn, gone = withdraw_absent(batch, lake, chunk, now, run, logger)
                    outcomes += gone
                    record_ingest(log, run.run_id, outcomes)
                checkpoint.mark(chunk)
                stage_done("land")
            # The landed input (every bar with its origin: GiBs at full size) is in the lake now;
            # holding it through the transform would stack it under the transform's own peak.
            batch = None
            stage_start("transform")
            built = transform(lake, settings, universe, as_of, synthetic=source == "sample")
            tables, fresh, unchanged_before = built.tables, built.freshness, built.unchanged_before
            note_transform(built, run, settings, as_of, logger)
            stage_done("transform")
            stage_start("load")
            add_run_tables(tables, log, record, problems, withdrawn)
            staging = snapshots.stage(settings.data_dir, run.run_id)
            staging.write_state({**built.state, "run_id": run.run_id, "incremental_from": built.incremental_from})
            extra = {"source": source, "as_of": str(as_of), "synthetic": run.synthetic, "crypto_close": settings.crypto_close}
            published_marts = settings.data_dir / snapshots.MARTS_DIR
            if settings.overlap_marts and built.incremental_from is not None:
                # The marts are written from the run's frames, not from the warehouse: in an incremental
                # run (small frames, a peak far below the limit) they are written beside the load and
                # the audit (~1.2 s of each at 2,000 equities) instead of after them. A full run
                # starts them after its load (below): the load's peak and theirs together went over 8 GiB.
                marts_job = BackgroundMarts(tables, staging, run.run_id, extra, unchanged_before, published_marts)
            loaded = load(tables, staging.warehouse_path, settings.warehouse_storage_version,
                          settings.data_dir / snapshots.WAREHOUSE_FILE, unchanged_before,
                          settings.warehouse_compact_above, settings.warehouse_recycle)
            run.table_rows = loaded.counts
            if loaded.whole:
                # Built whole after all (warehouse.build.whole_tables): the tails are whole tables now.
                # Marts being written from the tails meanwhile hold the same rows (Marts.unchanged_before:
                # their earlier rows are the published run's, as here); the thread keeps its own dict.
                tables |= loaded.whole
                unchanged_before = {}
            stage_done("load")
            if settings.overlap_marts and marts_job is None:
                # A full run's marts beside its audit, with the load's memory given back: ~1 s of
                # wall at 2,000 equities, the same peak (docs/performance.md, "The full run's marts beside its audit").
                marts_job = BackgroundMarts(tables, staging, run.run_id, extra, unchanged_before, published_marts)
            stage_start("audit")
            # Only what this run writes itself; all of it after a full build (warehouse.audit.written_from).
            since = written_from(unchanged_before, loaded.full_because is None)
            run.warnings += audit_run(tables, as_of, run.run_id, settings.exchange_calendar, since, built.price_warnings)
            stage_done("audit")
            stage_start("publish")
            if marts_job is not None:
                marts_job.wait()
                marts_job = None
            else:
                stage_marts(tables, staging, run.run_id, extra, unchanged_before, published_marts)
            # The warehouse and every mart become visible together, or not at all;
            # a stop request waits for the switch (and is honoured right after).
            with cancel.shielded():
                publish(settings.data_dir, staging, run.run_id)
                staging = None
                published = True
            stage_done("publish")
            if settings.marts_mirror_url:
                mirror_published(settings, run, logger)
                stage_done("mirror")
            checkpoint.clear()
            run.status = "succeeded"
        except Exception as exc:
            stop = cancel.swallowed(exc)
            if stop is not None:  # e.g. a DuckDB query the stop interrupted: cancelled as the stop itself is
                cancelled(stop)
                stop.run_id, stop.published = run.run_id, published  # type: ignore[attr-defined]
                raise stop from exc
            run.status = "failed"
            run.error = str(exc) if isinstance(exc, (PipelineError, SourceError, StoredFileError, ValueError)) else repr(exc)
            drop_staging()
            raise
        except BaseException as exc:
            if not cancel.is_cancellation(exc):
                raise
            cancelled(exc)
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
            run.report = report_run(run, tables, outcomes, previous_as_of, audit_result or "not reached", problems,
                                    fresh, unchanged_before, settings.data_dir / snapshots.MARTS_DIR)
    return run


def report_run(
    run: RunSummary, tables: dict[str, pl.DataFrame], outcomes: list, previous_as_of: date | None, audit_result: str,
    problems: list | None = None, fresh: tuple | None = None, unchanged_before: dict[str, date] | None = None,
    published_marts: Path | None = None,
) -> RunReport | None:
    """The run report and its artifacts; never the reason a run fails.

    ``fresh`` (``Transformed.freshness``) and ``unchanged_before`` with the published marts:
    the report states the figures of the whole tables when the run hands on tails."""
    logger = get_run_logger()
    try:
        if unchanged_before and published_marts is not None:
            tables = with_alpha_context(tables, unchanged_before, published_marts)
        report = summarize(
            tables, run_id=run.run_id, source=run.source, as_of=run.as_of, status=run.status,
            synthetic=run.synthetic, audit=audit_result, outcomes=outcomes, previous_as_of=previous_as_of,
            error=run.error, problems=problems, stale=run.stale, fresh=fresh,
        )
    except Exception as exc:
        logger.warning("could not summarise the run: %r", exc)
        return None
    try:
        publish_artifacts(report)
    except Exception as exc:
        logger.warning("could not create the run's artifacts: %r", exc)
    return report


@plain_parameters
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
