"""Faults with real processes: kill -9 at each stage, and two runs at once.

One data directory goes through the whole story, because each ``xasset``
process pays Prefect's start-up: a published run (D1); runs towards D2 killed
while transforming, while staging their outputs, just before the publish
switch and just after it; a run towards D3 killed while extracting,
with a second run started while it holds the lock and a third that must get
past extraction after it; then a clean run to D2, compared with a fresh run to
D2. The story is played once (module fixture) and each test checks one claim
about it. Runs to publish are in-process (cheaper); runs to kill are real
``xasset`` processes (tests/reliability/pausing_cli.py).
"""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest

from flows.nightly import nightly
from reliability_harness import (
    assert_same_rows,
    published,
    reaches,
    read_table,
    run_xasset,
    start_paused,
    temp_leftovers,
)
from warehouse import snapshots
from contracts.tables import TABLES

pytestmark = pytest.mark.usefixtures("prefect_harness")

D1, D2, D3 = date(2019, 6, 28), date(2019, 7, 31), date(2019, 8, 30)
NOT_COMPARED = {"pipeline_runs", "ingest_log"}


@pytest.fixture(scope="module")
def story(tmp_path_factory, prefect_home):
    data = tmp_path_factory.mktemp("faults")
    marker = data.parent / f"{data.name}.paused"
    args = ("run", "--source", "sample", "--as-of", str(D2), "--data-dir", str(data))
    first = nightly(source="sample", as_of=D1, data_dir=str(data))
    seen = {"first_run_id": first.run_id, "before": published(data), "before_kill": {}, "after_kill": {}}

    for point in ("transform", "stage", "publish", "switched"):
        seen["before_kill"][point] = published(data)
        paused = start_paused(prefect_home, point, marker, *args)
        paused.kill()
        seen["after_kill"][point] = published(data)
        seen[f"leftovers_{point}"] = temp_leftovers(data)
        seen[f"runs_after_{point}"] = sorted(p.name for p in (data / ".runs").iterdir())
    seen["switched_run"] = snapshots.current_run(data)
    seen["switched_manifests"] = {
        json.loads(m.read_text())["run_id"] for m in (data / "marts").glob("*.manifest.json")
    }
    seen["switched_warehouse_runs"] = read_table(data / "warehouse.duckdb", "pipeline_runs").filter(
        pl.col("status") == "succeeded")["run_id"].to_list()

    # Extraction last: a kill there strands the source's Prefect concurrency
    # slots in this Prefect home (a bug since fixed, kept as a regression test), which would hang any
    # later run that uses it. A new as_of, because the runs above cached their
    # extraction for D2 and a re-run would not fetch at all.
    args_d3 = ("run", "--source", "sample", "--as-of", str(D3), "--data-dir", str(data))
    seen["before_kill"]["extract"] = published(data)
    paused = start_paused(prefect_home, "extract", marker, *args_d3)
    seen["lock_holder_pid"] = paused.proc.pid
    # No queueing here (test_signals covers the wait): the refusal itself is the claim.
    seen["concurrent"] = run_xasset(prefect_home, *args_d3, XASSET_LOCK_WAIT_SECONDS="0")
    seen["published_during_concurrent"] = published(data)
    paused.kill()
    seen["after_kill"]["extract"] = published(data)
    seen["next_run_gets_past_extraction"] = reaches(prefect_home, "transform", marker, *args_d3)

    seen["killed_runs"] = pl.read_parquet(data / "state" / "pipeline_runs.parquet").filter(
        pl.col("run_id") != first.run_id
    )["run_id"].to_list()
    seen["final"] = nightly(source="sample", as_of=D2, data_dir=str(data))
    return data, seen


@pytest.fixture(scope="module")
def fresh_d2(tmp_path_factory):
    data = tmp_path_factory.mktemp("fresh-d2")
    nightly(source="sample", as_of=D2, data_dir=str(data))
    return data


def test_second_run_refuses_while_first_holds_the_lock(story):
    data, seen = story
    done = seen["concurrent"]
    assert done.returncode != 0
    assert f"another xasset run (pid {seen['lock_holder_pid']}) is using {data}" in done.stderr.replace("\n", "")
    assert seen["published_during_concurrent"] == seen["before_kill"]["extract"]


def test_refused_run_prints_no_traceback(story):
    _, seen = story
    assert "Traceback" not in seen["concurrent"].stderr


@pytest.mark.parametrize("point", ["extract", "transform", "stage", "publish"])
def test_kill_before_the_switch_leaves_published_state_untouched(story, point):
    _, seen = story
    assert seen["after_kill"][point] == seen["before_kill"][point]


def test_kill_right_after_the_switch_publishes_that_run_whole(story):
    _, seen = story
    run = seen["switched_run"]
    assert run != seen["first_run_id"], "the killed run's switch happened"
    assert seen["after_kill"]["switched"]["current ->"] == f".runs/{run}"
    assert seen["switched_manifests"] == {run}, "every mart comes from the switched run"
    assert run in seen["switched_warehouse_runs"], "and so does the warehouse"


def test_next_run_completes_and_cleans_up(story):
    data, seen = story
    assert seen["final"].status == "succeeded"
    # The killed runs did leave staging behind ...
    assert seen["leftovers_stage"], "the scenario should have left a staging directory"
    # ... and the next run removed it.
    assert temp_leftovers(data) == []


def test_killed_runs_leave_no_run_directories(story):
    data, seen = story
    # A run killed just before the switch leaves a complete, unpublished run directory ...
    assert len(seen["runs_after_publish"]) == 2
    # ... which the next publish removes: only the published run and the one before it stay.
    assert sorted(p.name for p in (data / ".runs").iterdir()) == sorted([seen["switched_run"], seen["final"].run_id])


def test_a_run_killed_while_extracting_does_not_block_the_next_one(story):
    # Guards against shared state a killed run cannot release: Prefect tag
    # concurrency slots did exactly that (held forever by the dead run's leases).
    _, seen = story
    assert seen["next_run_gets_past_extraction"]


def test_killed_runs_are_not_left_running_in_the_run_log(story):
    data, seen = story
    runs = pl.read_parquet(data / "state" / "pipeline_runs.parquet")
    killed = runs.filter(pl.col("run_id").is_in(seen["killed_runs"]))
    assert killed.height == len(seen["killed_runs"]) >= 5
    status = dict(zip(killed["run_id"], killed["status"], strict=True))
    # Killed after its switch, a run did publish everything: the log says so.
    assert status.pop(seen["switched_run"]) == "succeeded"
    assert set(status.values()) <= {"failed", "interrupted"}


def test_after_the_faults_the_warehouse_equals_a_clean_run(story, fresh_d2):
    data, _ = story
    for name, table in TABLES.items():
        # fact_fundamentals: see the next test.
        if name in NOT_COMPARED or name == "fact_fundamentals":
            continue
        drop = ("ingested_at",)
        got = read_table(data / "warehouse.duckdb", name, drop)
        want = read_table(fresh_d2 / "warehouse.duckdb", name, drop)
        assert_same_rows(got, want, name)


def test_published_fundamentals_never_postdate_the_runs_as_of(story):
    data, seen = story
    lake = pl.read_parquet(data / "lake" / "fundamentals" / "source=sample.parquet")
    if lake["as_of"].max() <= D2:
        pytest.skip("no later snapshot was landed by the probe run, so nothing to leak")
    published_ = read_table(data / "warehouse.duckdb", "fact_fundamentals")
    assert published_["as_of"].max() <= D2


def test_a_first_publish_killed_right_after_the_switch_is_readable_and_not_stuck(tmp_path_factory, prefect_home):
    """Issue 19 item 5: kill -9 between the ``current`` switch and the links on a data directory's first
    publish. The links are made before the switch, so readers see the run whole; a directory left by the
    earlier order (switched, no links) is completed by the next run instead of failing it forever."""
    data = tmp_path_factory.mktemp("first-publish")
    marker = data.parent / f"{data.name}.paused"
    span = ("--start", "2019-01-02", "--as-of", str(D1), "--data-dir", str(data))
    assert not (data / "current").exists() and not (data / "warehouse.duckdb").exists(), "nothing published yet"
    paused = start_paused(prefect_home, "switched", marker, "run", "--source", "sample", *span)
    paused.kill()
    killed = snapshots.current_run(data)
    assert killed is not None
    after = published(data)  # reads the warehouse and every mart through the links
    assert after["current ->"] == f".runs/{killed}"
    query = ("sql", "SELECT count(*) AS n FROM fact_prices", "--format", "csv", "--data-dir", str(data))
    ok = run_xasset(prefect_home, *query)
    assert ok.returncode == 0 and ok.stdout.splitlines()[0] == "n", ok.stderr
    # The state the earlier publish order left at this kill point: switched, no links.
    for name in ("warehouse.duckdb", "marts"):
        (data / name).unlink()
    stuck = run_xasset(prefect_home, *query)
    assert stuck.returncode != 0 and "no warehouse" in stuck.stderr
    nxt = nightly(source="sample", start=date(2019, 1, 2), as_of=D1, data_dir=str(data))
    assert nxt.status == "succeeded"
    assert published(data)["current ->"] == f".runs/{nxt.run_id}"
    runs = pl.read_parquet(data / "state" / "pipeline_runs.parquet")
    assert runs.filter(pl.col("run_id") == killed)["status"].to_list() == ["succeeded"], "it did publish"
    assert run_xasset(prefect_home, *query).returncode == 0
