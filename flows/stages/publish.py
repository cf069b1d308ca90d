"""Publish: load the staged warehouse, audit the complete run, stage the marts, switch, mirror.

Nothing becomes visible until the audit of the complete run has passed and
the switch (``warehouse.snapshots.publish``) makes the staged warehouse and
every mart current together. Each step is a named Prefect task, so a run's
page shows where it spent its time and where it stopped.
"""

from __future__ import annotations

import contextvars
import threading
from datetime import date
from functools import partial
from pathlib import Path

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from contracts.tables import QUARANTINE
from flows.calendar import sessions as exchange_sessions
from flows.run import PipelineError, RunSummary
from flows.settings import Settings
from flows.sources.base import InputProblem, problems_frame
from warehouse import marts as mart_files
from warehouse import snapshots
from warehouse.audit import audit, audit_warnings
from warehouse.build import Loaded, load_database
from warehouse.files import StagingThread
from warehouse.mirror import mirror_marts
from warehouse.quality import withdrawn_quarantine
from warehouse.runs import RunLog


def add_run_tables(
    tables: dict[str, pl.DataFrame], log: RunLog, record: dict, problems: list[InputProblem], withdrawn: pl.DataFrame,
) -> None:
    """The run's own tables: the run log with this run as succeeded (it is, if it publishes), the ingest log,
    and the quarantine of what was held back."""
    history = log.runs()
    tables["pipeline_runs"] = pl.concat(
        [history.filter(pl.col("run_id") != record["run_id"]),
         pl.DataFrame([{**record, "status": "succeeded"}], schema=history.schema)]
    )
    tables["ingest_log"] = log.ingest_log()
    # What the source held back (files skipped, rows it could not read) next to what the screen
    # did, and the bars withdrawn because the input no longer holds them.
    held = [q for q in (problems_frame(problems), tables.get("quarantine"), withdrawn_quarantine(withdrawn))
            if q is not None]
    tables["quarantine"] = log.record_quarantine(
        record["run_id"], pl.concat(held).unique(QUARANTINE.primary_key, keep="first", maintain_order=True)
    )


def replaced_from(unchanged_before: dict[str, date]) -> str:
    """Each table's rows are replaced from its own date (warehouse.build.delete_statement): the dates, by
    how many tables share each, the latest first (an earliest date alone read as if every table reached back
    to it: the factor IC's does, by its forward windows), and the other tables whole."""
    by_day: dict[date, list[str]] = {}
    for name, day in unchanged_before.items():
        by_day.setdefault(day, []).append(name)
    days = sorted(by_day, reverse=True)
    parts = [f"{', '.join(sorted(by_day[d]))} from {d}" if len(by_day[d]) <= 2 else f"{len(by_day[d])} tables from {d}"
             for d in days]
    return "rows replaced: " + "; ".join(parts) + "; the other tables whole"


@task(cache_policy=NO_CACHE)
def load(
    tables: dict[str, pl.DataFrame], staged: Path, storage_version: str,
    published: Path | None = None, unchanged_before: dict[str, date] | None = None,
    compact_above: float = Settings.model_fields["warehouse_compact_above"].default,
    recycle: bool = Settings.model_fields["warehouse_recycle"].default,
) -> Loaded:
    """Copy the published warehouse (or recycle the run's before it) and replace the changed rows, or build it
    whole (warehouse.build)."""
    loaded = load_database(staged, tables, storage_version=storage_version, published=published,
                           unchanged_before=unchanged_before, compact_above=compact_above, recycle_previous=recycle)
    if loaded.full_because:
        get_run_logger().info("warehouse built whole: %s", loaded.full_because)
    elif loaded.recycled_from:
        get_run_logger().info("warehouse recycled from run %s; %s", loaded.recycled_from,
                              replaced_from(unchanged_before))
    else:
        why = f" (not recycled: {loaded.not_recycled})" if loaded.not_recycled else ""
        get_run_logger().info("warehouse copied from the published run%s; %s", why, replaced_from(unchanged_before))
    return loaded



@task(name="audit", cache_policy=NO_CACHE)
def audit_run(
    tables: dict[str, pl.DataFrame], as_of: date, run_id: str, calendar: str, since: dict[str, date] | None = None,
    price_warnings: list[str] | None = None,
) -> list[str]:
    """The audit of the complete run: any failure publishes nothing. Returns its warnings.

    ``since`` (``warehouse.audit.written_from``): a table's rows before its date
    were published by the run this one copied, and passed this audit there.
    ``price_warnings``: the warnings on fact_prices, judged on its whole history by the
    transform stage (``Transformed.price_warnings``; fact_prices may be its tail here).
    """
    if since:
        get_run_logger().info("audit of the rows this run writes: from %s on in %d table(s), the others whole",
                              min(since.values()), len(since))
    failures = audit(tables, as_of, since)
    if failures:
        raise PipelineError("audit failed, nothing published: " + "; ".join(map(str, failures[:5])))
    if price_warnings is None:
        return audit_warnings(tables, as_of, run_id, partial(exchange_sessions, code=calendar))
    others = {name: frame for name, frame in tables.items() if name != "fact_prices"}
    return audit_warnings(others, as_of, run_id) + price_warnings


@task(name="stage-marts", cache_policy=NO_CACHE)
def stage_marts(
    tables: dict[str, pl.DataFrame], staging: snapshots.Staging, run_id: str, extra: dict,
    unchanged_before: dict[str, date], published_marts: Path, stop: threading.Event | None = None,
) -> None:
    """Write every mart beside the staged warehouse (unchanged years linked from the published run)."""
    mart_files.stage_marts(tables, staging.marts_dir, run_id, extra, unchanged_before, published_marts, stop)


class BackgroundMarts(StagingThread):
    """``stage_marts`` in a thread of its own, beside the load and the audit.

    The marts are written from the run's frames, never from the staged warehouse, so
    they need not wait for it; the switch still does (``wait`` before ``publish``).
    The thread keeps copies of the dicts it was given (the caller may change its own
    meanwhile). A run that fails or is cancelled calls ``abandon``: the thread stops
    before its next table (``warehouse.marts.StagingStopped``), and the staging
    directory is removed after it, not under it.
    """

    def __init__(
        self, tables: dict[str, pl.DataFrame], staging: snapshots.Staging, run_id: str, extra: dict,
        unchanged_before: dict[str, date], published_marts: Path,
    ) -> None:
        # Prefect finds its flow run (the task's parent, the logger) in the context: the thread gets a copy.
        super().__init__("stage-marts", stage_marts, dict(tables), staging, run_id, dict(extra),
                         dict(unchanged_before), published_marts, context=contextvars.copy_context())


@task(name="publish", cache_policy=NO_CACHE)
def publish(data_dir: Path, staging: snapshots.Staging, run_id: str) -> None:
    """The switch: the staged warehouse and every mart become current together, or not at all.

    The caller holds off a stop request around it (``cancel.shielded``).
    """
    snapshots.publish(data_dir, staging, run_id)



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
