"""Prefect does not walk the large values the flow hands its tasks (issue 16, per-run fixed cost).

Prefect visits every task parameter recursively, looking for futures and
states to wait on and to record as the task's inputs: for the files source's
one extract batch, every asset model of the universe; for the land, every
outcome and problem of the batch (0.1-0.3 CPU-s each at 2,000 symbols, measured
in docs/performance.md). Those values never hold futures, so the flow passes
them ``quote``d; the tasks still get them as they are (the run's tables prove it).
"""

from __future__ import annotations

from datetime import date

import pytest
from prefect import task_engine

from flows.nightly import nightly
from flows.sources.base import SourceBatch
from flows.universe import Universe

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_the_universe_and_the_landed_batch_are_not_walked(tmp_path, monkeypatch):
    walked: list[str] = []
    visit, collect = task_engine.visit_collection, task_engine.collect_task_run_inputs_sync

    def note(value) -> None:
        if isinstance(value, (SourceBatch, Universe)):
            walked.append(type(value).__name__)

    def visit_noted(expr, *args, **kwargs):
        note(expr)
        return visit(expr, *args, **kwargs)

    def collect_noted(expr, *args, **kwargs):
        note(expr)
        return collect(expr, *args, **kwargs)

    monkeypatch.setattr(task_engine, "visit_collection", visit_noted)
    monkeypatch.setattr(task_engine, "collect_task_run_inputs_sync", collect_noted)
    summary = nightly(source="sample", start=date(2024, 1, 2), as_of=date(2024, 3, 28), data_dir=str(tmp_path))
    assert summary.status == "succeeded" and summary.rows_written > 0  # the tasks got the real values
    assert summary.table_rows["fact_prices"] > 0
    assert walked == [], f"Prefect walked {sorted(set(walked))}"
