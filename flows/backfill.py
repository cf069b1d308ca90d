"""Backfills: a long history, fetched a calendar year at a time and published once.

Each year is extracted in full (not incrementally) and landed before the next
starts; a checkpoint under ``<data dir>/state/backfill/`` records landed years,
so re-running the same backfill after a failure resumes at the first year not
landed. The extraction cache covers a year that was fetched but not landed.

A backfill extends history and never rewinds what analysts see: it publishes
as of the later of its ``end`` and the as-of already published for the same
source (``flows.nightly.publish_as_of``), so a backfill of an older range
after the nightly runs keeps the newest data and adds the old. Like a nightly
run, it queues behind a run holding the data directory (``RunLock``).
"""

from __future__ import annotations

from datetime import date

from prefect import flow

from flows.nightly import run_pipeline
from flows.run import RunSummary
from flows.runners import RunnerSettings, build_task_runner


@flow(name="backfill", log_prints=True, task_runner=build_task_runner(RunnerSettings()))
def backfill(
    start: date,
    end: date,
    source: str = "live",
    paths: list[str] | None = None,
    data_dir: str | None = None,
) -> RunSummary:
    """Land ``start``..``end`` year by year, then build, audit and publish the warehouse.

    Published as of ``end`` or the already published as-of, whichever is later.
    """
    if end < start:
        raise ValueError(f"backfill end {end} is before its start {start}")
    return run_pipeline(source, paths, start, end, data_dir, chunked=True)
