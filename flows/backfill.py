"""Backfills: a long history, fetched a calendar year at a time and published once.

Each year is extracted in full (not incrementally) and landed before the next
starts; a checkpoint under ``<data dir>/state/backfill/`` records landed years,
so re-running the same backfill after a failure resumes at the first year not
landed. The extraction cache covers a year that was fetched but not landed.

A backfill extends history and never rewinds what analysts see: it publishes
as of the later of its ``end`` and the as-of already published for the same
source (``publish_as_of``), so a backfill of an older range
after the nightly runs keeps the newest data and adds the old. Like a nightly
run, it queues behind a run holding the data directory (``RunLock``).
"""

from __future__ import annotations

# First: Prefect loads this file as a script, and Polars' allocator takes its options when Polars
# is imported (``flows.allocator``, configured by the package).
import flows  # noqa: F401, I001
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from prefect import flow

from flows.run import RunSummary
from flows.runners import RunnerSettings, build_task_runner, plain_parameters


@plain_parameters
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
    # Here, not at the top: the pipeline imports this module's checkpoints.
    from flows.nightly import run_pipeline

    if end < start:
        raise ValueError(f"backfill end {end} is before its start {start}")
    return run_pipeline(source, paths, start, end, data_dir, chunked=True)


def publish_as_of(published: dict | None, source: str, end: date) -> date:
    """What a backfill ending ``end`` publishes as of: the later of ``end`` and the published as-of.

    Only a published run of the same source counts (its lake holds the later
    bars); another source's warehouse is replaced as of ``end``.
    """
    if not published or published.get("source") != source or not published.get("as_of"):
        return end
    return max(end, date.fromisoformat(str(published["as_of"])))


def year_chunks(start: date, end: date) -> list[tuple[date, date]]:
    """Calendar-year slices of ``start``..``end``: the unit a backfill resumes from."""
    return [
        (max(start, date(y, 1, 1)), min(end, date(y, 12, 31))) for y in range(start.year, end.year + 1)
    ]


@dataclass
class Checkpoint:
    """Chunks of a backfill already landed, so a restarted backfill skips them."""

    path: Path | None
    done: set[str] = field(default_factory=set)

    @classmethod
    def open(cls, path: Path | None) -> Checkpoint:
        if path is None or not path.exists():
            return cls(path)
        return cls(path, set(json.loads(path.read_text())["done"]))

    def mark(self, chunk: tuple[date, date]) -> None:
        self.done.add(chunk_id(chunk))
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"done": sorted(self.done)}))
            tmp.replace(self.path)

    def clear(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def chunk_id(chunk: tuple[date, date]) -> str:
    return f"{chunk[0]}..{chunk[1]}"
