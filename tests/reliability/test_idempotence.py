"""Determinism across run histories: a backfill followed by a nightly run
(which builds incrementally on it) publishes what a single run over the whole
range publishes.

(Re-running the same as_of is covered by tests/flows/test_nightly.py.)
"""

from __future__ import annotations

from datetime import date

import pytest

from flows.nightly import nightly
from reliability_harness import assert_same_rows, read_table
from contracts.tables import TABLES

pytestmark = pytest.mark.usefixtures("prefect_harness")

# Which run wrote a row, and when, legitimately differ between histories.
RUN_COLUMNS = ("ingested_at", "run_id")
LOGS = {"pipeline_runs", "ingest_log"}


def test_backfill_then_nightly_equals_one_run_over_the_whole_range(tmp_path):
    # A month-end, then the next month: new month-end matrix dates, new
    # rebalances and a new session for every rolling window.
    early, late = date(2019, 5, 31), date(2019, 7, 1)
    stepwise, whole = tmp_path / "stepwise", tmp_path / "whole"
    assert nightly(source="sample", as_of=early, data_dir=str(stepwise)).status == "succeeded"
    nightly_run = nightly(source="sample", as_of=late, data_dir=str(stepwise))
    assert nightly_run.status == "succeeded" and nightly_run.incremental_from == date(2019, 6, 1)
    assert nightly(source="sample", as_of=late, data_dir=str(whole)).status == "succeeded"
    compared = 0
    for name, table in TABLES.items():
        if name in LOGS:
            continue
        drop = tuple(c for c in RUN_COLUMNS if c in table.column_names)
        a = read_table(stepwise / "warehouse.duckdb", name, drop)
        b = read_table(whole / "warehouse.duckdb", name, drop)
        assert_same_rows(a, b, name)
        compared += a.height
    assert compared > 100_000, "the comparison covered real content"
