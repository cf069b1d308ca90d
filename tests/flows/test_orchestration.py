"""Batching, caching, backfills and the Dask runner: how a run executes never changes what it publishes."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

import flows.nightly as nightly_mod
import flows.stages.publish as publish_stage
from flows.backfill import backfill, year_chunks
from flows.nightly import nightly
from flows.run import PipelineError
from flows.sources.sample import SampleSource
from flows.stages.extract import batches, merge_batches
from flows.universe import load_universe
from contracts.tables import TABLES
from transforms.graph import GRAPH

AS_OF = date(2016, 9, 30)
START = date(2015, 1, 2)
LOGS = {"pipeline_runs", "ingest_log"}


def table(db: Path, name: str) -> pl.DataFrame:
    con = duckdb.connect(str(db), read_only=True)
    try:
        cols = [r[0] for r in con.sql(f"DESCRIBE {name}").fetchall()]
        order = ", ".join(f'"{c}"' for c in cols)
        return con.sql(f"SELECT * FROM {name} ORDER BY {order}").pl()
    finally:
        con.close()


def published(data: Path) -> dict[str, pl.DataFrame]:
    db = data / "warehouse.duckdb"
    con = duckdb.connect(str(db), read_only=True)
    names = [r[0] for r in con.sql("SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'").fetchall()]
    con.close()
    return {n: table(db, n) for n in names if n not in LOGS}


def assert_same_warehouse(a: Path, b: Path, may_differ: frozenset[str] = frozenset()) -> None:
    left, right = published(a), published(b)
    assert set(left) == set(right)
    assert "mart_rolling_correlation" in left
    for name in set(left) - may_differ:
        # ingested_at records when a bar was stored, which differs between any two runs.
        strip = lambda f: f.drop("ingested_at", strict=False)  # noqa: E731
        assert strip(left[name]).equals(strip(right[name])), name


class CountingSource:
    """The sample market, counting fetches per batch of symbols."""

    name = "sample"

    def __init__(self, fail_on_year: int | None = None, flaky_symbol: str | None = None) -> None:
        self.inner = SampleSource()
        self.flaky_symbol = flaky_symbol  # fails on its first fetch only
        self.calls: list[tuple[tuple[str, ...], date, date]] = []
        self.fail_on_year = fail_on_year
        self.lock = threading.Lock()
        self.at_once = self.most_at_once = 0

    def fetch(self, universe, start, as_of, last_dates, stored_tail):
        with self.lock:
            self.calls.append((tuple(a.symbol for a in universe.assets), start, as_of))
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            if self.fail_on_year == as_of.year:
                self.fail_on_year = None
                raise PipelineError(f"simulated outage in {as_of.year}")
            batch = self.inner.fetch(universe, start, as_of, last_dates, stored_tail)
            if self.flaky_symbol in {a.symbol for a in universe.assets}:
                flaky, self.flaky_symbol = self.flaky_symbol, None
                batch.bars = batch.bars.filter(pl.col("symbol") != flaky)
                batch.outcomes = [
                    replace(o, status="error", rows=0, error="simulated timeout") if o.symbol == flaky else o
                    for o in batch.outcomes
                ]
            return batch
        finally:
            with self.lock:
                self.at_once -= 1


def test_batches_cover_the_universe_and_match_one_fetch():
    universe = load_universe()
    parts = batches(universe, 16, splittable=True)
    assert len(parts) > 1 and [a for p in parts for a in p.assets] == list(universe.assets)
    src = SampleSource()
    whole = src.fetch(universe, START, AS_OF, {}, pl.DataFrame())
    merged = merge_batches([src.fetch(p, START, AS_OF, {}, pl.DataFrame()) for p in parts])
    assert merged.bars.equals(whole.bars)
    assert merged.assets.equals(whole.assets)
    assert merged.fundamentals.sort("symbol", "as_of").equals(whole.fundamentals.sort("symbol", "as_of"))
    assert [o.symbol for o in merged.outcomes] == [o.symbol for o in whole.outcomes]


def test_year_chunks():
    assert year_chunks(date(2015, 3, 4), date(2017, 2, 1)) == [
        (date(2015, 3, 4), date(2015, 12, 31)),
        (date(2016, 1, 1), date(2016, 12, 31)),
        (date(2017, 1, 1), date(2017, 2, 1)),
    ]
    assert year_chunks(date(2016, 5, 1), date(2016, 5, 1)) == [(date(2016, 5, 1), date(2016, 5, 1))]


@pytest.mark.usefixtures("prefect_harness")
def test_rerun_after_late_failure_reuses_fetched_batches(tmp_path, monkeypatch):
    src = CountingSource(flaky_symbol="DOGE")
    monkeypatch.setattr(nightly_mod, "make_source", lambda *a, **k: src)
    monkeypatch.setenv("XASSET_EXTRACT_BATCH_SIZE", "12")
    monkeypatch.setenv("XASSET_SOURCE_CONCURRENCY", "2")
    real_audit = publish_stage.audit
    monkeypatch.setattr(publish_stage, "audit", lambda tables, as_of, since=None: ["simulated audit failure"])
    with pytest.raises(PipelineError, match="audit failed"):
        nightly(source="sample", start=START, as_of=AS_OF, data_dir=str(tmp_path))
    first = list(src.calls)
    assert len(first) == len(batches(load_universe(), nightly_mod.RunnerSettings().extract_batch_size, True)) > 1
    assert not (tmp_path / "warehouse.duckdb").exists()

    monkeypatch.setattr(publish_stage, "audit", real_audit)
    summary = nightly(source="sample", start=START, as_of=AS_OF, data_dir=str(tmp_path))
    assert summary.status == "succeeded"
    doge_batch = next(c for c in first if "DOGE" in c[0])
    assert src.calls == [*first, doge_batch], "only the batch with a failed symbol is fetched again"
    assert not summary.report.problems, "DOGE, failed in the first run, is current after the re-run"
    assert src.most_at_once <= 2, "more batches called the source at once than XASSET_SOURCE_CONCURRENCY"
    # A different range is a different request: fetched afresh.
    nightly(source="sample", start=START, as_of=date(2016, 10, 3), data_dir=str(tmp_path))
    assert len(src.calls) == 2 * len(first) + 1


@pytest.mark.usefixtures("prefect_harness")
def test_backfill_resumes_by_year_and_matches_a_single_run(tmp_path, monkeypatch):
    src = CountingSource(fail_on_year=2016)
    monkeypatch.setattr(nightly_mod, "make_source", lambda *a, **k: src)
    monkeypatch.setenv("XASSET_EXTRACT_CACHE_HOURS", "0")  # prove the checkpoint, not the cache, resumes
    data = tmp_path / "backfill"
    with pytest.raises(PipelineError, match="simulated outage in 2016"):
        backfill(start=START, end=AS_OF, source="sample", data_dir=str(data))
    years = lambda calls: sorted({c[2].year for c in calls})  # noqa: E731
    assert years(src.calls) == [2015, 2016]
    src.calls.clear()
    summary = backfill(start=START, end=AS_OF, source="sample", data_dir=str(data))
    assert summary.status == "succeeded"
    assert years(src.calls) == [2016], "2015 was landed before the failure and is not fetched again"
    assert {c[1] for c in src.calls} == {date(2016, 1, 1)}, "a chunk is fetched as a whole year"
    assert not list((data / "state" / "backfill").glob("*.json")), "a finished backfill leaves no checkpoint"
    ingest = pl.read_parquet(data / "state" / "ingest_log.parquet").filter(pl.col("run_id") == summary.run_id)
    assert ingest.height == ingest["symbol"].n_unique()

    single = tmp_path / "single"
    nightly(source="sample", start=START, as_of=AS_OF, data_dir=str(single))
    assert_same_warehouse(data, single)


def task_runs(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


@pytest.mark.usefixtures("prefect_harness")
def test_dask_runner_publishes_the_same_marts(tmp_path):
    from flows.runners import local_dask_runner

    threads, dask = tmp_path / "threads", tmp_path / "dask"
    nightly(source="sample", start=START, as_of=AS_OF, data_dir=str(threads))
    on_dask = nightly.with_options(task_runner=local_dask_runner(2))
    state = on_dask(source="sample", start=START, as_of=AS_OF, data_dir=str(dask), return_state=True)
    summary = state.result()
    assert summary.status == "succeeded"
    assert_same_warehouse(threads, dask)
    # The transform ran as the mart graph's nodes on the runner, each named
    # after its node (and partition: per block of crypto assets, per matrix window).
    partitions = [t for t in task_runs(state.state_details.flow_run_id) if t.name.startswith("mart-")]
    assert len(partitions) >= 11 and {t.state.type.value for t in partitions} == {"COMPLETED"}
    nodes = {t.name.removeprefix("mart-").split("-")[0] for t in partitions}
    assert {n.name for n in GRAPH if not n.inline and n.name != "tail"} <= nodes, nodes
    assert set(TABLES) - LOGS <= set(published(dask)) | {n for n, t in TABLES.items() if not t.publish}

