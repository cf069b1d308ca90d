"""Write-audit-publish: readers never see half a run, in DuckDB or in the Parquet marts.

The DuckDB tests use two real processes: DuckDB locks a database file per
process, so only another process shows whether an analyst's open warehouse
blocks a publish, or a publish breaks the analyst's session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pytest

from warehouse import snapshots
from warehouse.build import build_database
from warehouse.marts import snapshot_files, write_table
from contracts.tables import TABLES

REPO = Path(__file__).resolve().parents[2]


def version_frames(v: int) -> dict[str, pl.DataFrame]:
    """Two tables that must agree: version v has v assets and v index members."""
    assets = pl.DataFrame({"symbol": [f"S{i}" for i in range(v)], "asset_class": ["crypto"] * v,
                           "name": [f"v{v}"] * v})
    members = pl.DataFrame({"index_symbol": ["IDX"] * v, "member_symbol": [f"S{i}" for i in range(v)],
                            "method": [f"v{v}"] * v})
    return {
        name: frame.with_columns(pl.lit(None, dtype).alias(c) for c, dtype in TABLES[name].polars_schema.items()
                                 if c not in frame.columns)
        for name, frame in (("dim_asset", assets), ("dim_index_member", members))
    }


def publish_version(data: Path, v: int, correlation: pl.DataFrame | None = None) -> str:
    """Publish run ``r{v:03}``: a warehouse with ``v`` assets and, if given, one correlation mart."""
    run_id = f"r{v:03}"
    staging = snapshots.stage(data, run_id)
    build_database(staging.warehouse_path, version_frames(v))
    if correlation is not None:
        write_table(TABLES["mart_rolling_correlation"], correlation, staging.marts_dir, run_id, {})
    snapshots.publish(data, staging, run_id)
    return run_id


def python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=REPO, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


HOLDING_READER = """
import sys
from warehouse.query import connect_read_only
con = connect_read_only(sys.argv[1])
count = "SELECT count(*), any_value(name) FROM dim_asset"
print(repr(con.execute(count).fetchone()), flush=True)
sys.stdin.readline()  # hold the warehouse open until the test has published
print(repr(con.execute(count).fetchone()), flush=True)
con.close()
"""


def test_open_analyst_session_neither_blocks_nor_is_broken_by_a_publish(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    publish_version(tmp_path, 3)
    reader = python(HOLDING_READER, str(warehouse))
    try:
        assert reader.stdout.readline().strip() == "(3, 'v3')"
        publish_version(tmp_path, 5)  # must not raise while the analyst holds the file
        con = duckdb.connect(str(warehouse), read_only=True)
        assert con.execute("SELECT count(*) FROM dim_asset").fetchone() == (5,)
        con.close()
        out, err = reader.communicate("go\n", timeout=120)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    assert out.strip() == "(3, 'v3')", "the open session keeps reading its snapshot"


POLLING_READER = """
import json, sys
from warehouse.query import connect_read_only
last = int(sys.argv[2])
for _ in range(100_000):
    con = connect_read_only(sys.argv[1])
    assets, members, names = con.execute(
        "SELECT (SELECT count(*) FROM dim_asset), (SELECT count(*) FROM dim_index_member), "
        "(SELECT count(*) FROM marts.dim_asset)"
    ).fetchone()
    con.close()
    print(json.dumps([assets, members, names]), flush=True)
    if assets == last:
        break
"""


def test_reader_opening_during_publishes_always_sees_one_complete_run(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    publish_version(tmp_path, 1)
    last = 12
    reader = python(POLLING_READER, str(warehouse), str(last))
    try:
        for v in range(2, last + 1):
            publish_version(tmp_path, v)
        out, err = reader.communicate(timeout=300)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    seen = [json.loads(line) for line in out.splitlines()]
    assert seen and seen[-1][0] == last
    for assets, members, names in seen:
        assert assets == members == names, "a reader saw tables of two different runs"
    assert not list(tmp_path.glob(".tmp-*"))


def correlation_version(v: int) -> pl.DataFrame:
    """Rows over three years (three partitions), every row marked with its version."""
    dates = pl.date_range(pl.date(2022, 12, 30), pl.date(2024, 1, 2), "1d", eager=True)
    return pl.DataFrame({"date": dates, "asset": "BTC", "benchmark": "^RUT", "window_days": 30,
                         "correlation": 0.5, "beta": 1.0, "observations": v})


def test_mart_reader_never_sees_two_runs_mixed(tmp_path):
    """A reader that takes one run's files (links resolved once) reads that run whole, always.

    The reader is a thread hammering the marts while 29 runs publish as fast as they can, so
    its reads overlap switches and prunes. Each read either fails (its run was pruned after
    two more publishes: retry) or returns exactly one complete run. A plain glob through the
    links is not held to this: DuckDB's listing drops an entry whose ``stat`` fails after a
    switch, so such a read can silently miss a changed year (see ``snapshot_files``).
    """
    table = TABLES["mart_rolling_correlation"]
    publish_version(tmp_path, 1, correlation_version(1))
    last, rows = 30, correlation_version(1).height
    seen: list[tuple[str, str, set[int], int]] = []
    errors: list[BaseException] = []
    reading = threading.Event()

    def read_until_last() -> None:
        for _ in range(100_000):
            reading.set()
            try:
                run_id, files = snapshot_files(tmp_path / "marts", table.name)
                names = [str(f) for f in files]
                by_duckdb = duckdb.read_parquet(names).select("observations").pl()
                seen.append(("duckdb", run_id, set(by_duckdb["observations"]), by_duckdb.height))
                by_arrow = ds.dataset(names, format="parquet").to_table(columns=["observations"])
                seen.append(("pyarrow", run_id, set(by_arrow.column("observations").to_pylist()), by_arrow.num_rows))
            except (OSError, duckdb.IOException) as exc:  # the run was pruned mid-read: retry
                errors.append(exc)
                continue
            if seen[-1][2] == {last}:
                return

    reader = threading.Thread(target=read_until_last)
    reader.start()
    assert reading.wait(timeout=600), "the reader thread never started"
    for v in range(2, last + 1):
        publish_version(tmp_path, v, correlation_version(v))
    reader.join()
    assert seen and seen[-1][2] == {last}
    for how, run_id, versions, n in seen:
        assert versions == {int(run_id[1:])} and n == rows, f"{how} read {versions} ({n} rows) for run {run_id}"
    manifest = json.loads((tmp_path / "marts" / f"{table.name}.manifest.json").read_text())
    assert manifest["run_id"] == f"r{last:03}" and manifest["row_count"] == rows
    assert sorted(p.name for p in (tmp_path / ".runs").iterdir()) == [f"r{last - 1:03}", f"r{last:03}"]


def test_snapshot_files_are_one_runs_and_a_pruned_run_fails_loudly(tmp_path):
    publish_version(tmp_path, 1, correlation_version(1))
    run_id, files = snapshot_files(tmp_path / "marts", "mart_rolling_correlation")
    assert run_id == "r001" and len(files) == 3
    assert all(f.is_relative_to((tmp_path / ".runs" / "r001").resolve()) for f in files)
    assert duckdb.read_parquet([str(f) for f in files]).count("*").fetchall()[0] == (correlation_version(1).height,)
    publish_version(tmp_path, 2, correlation_version(2))
    assert duckdb.read_parquet([str(f) for f in files]).count("*").fetchall()[0] == (correlation_version(1).height,), (
        "the run before the current one stays readable")
    publish_version(tmp_path, 3, correlation_version(3))
    with pytest.raises(duckdb.IOException):
        duckdb.read_parquet([str(f) for f in files]).count("*").fetchall()[0]


def published_state(data: Path) -> tuple[str | None, tuple[int, ...], str]:
    """What a reader sees: the current run, the warehouse's asset count, the mart's run id."""
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        assets = con.execute("SELECT count(*) FROM dim_asset").fetchall()[0]
    finally:
        con.close()
    manifest = json.loads((data / "marts" / "mart_rolling_correlation.manifest.json").read_text())
    return snapshots.current_run(data), assets, manifest["run_id"]


def test_warehouse_and_marts_switch_together(tmp_path):
    publish_version(tmp_path, 1, correlation_version(1))
    assert published_state(tmp_path) == ("r001", (1,), "r001")
    publish_version(tmp_path, 2, correlation_version(2))
    assert published_state(tmp_path) == ("r002", (2,), "r002")
    assert os.readlink(tmp_path / "warehouse.duckdb") == "current/warehouse.duckdb"
    assert os.readlink(tmp_path / "marts") == "current/marts"


def test_failure_at_the_switch_leaves_the_previous_run_published(tmp_path, monkeypatch):
    publish_version(tmp_path, 1, correlation_version(1))
    before = published_state(tmp_path)

    def dies(*args, **kwargs):
        raise OSError("killed at the switch")

    monkeypatch.setattr(snapshots, "switch_current", dies)
    with pytest.raises(OSError, match="killed at the switch"):
        publish_version(tmp_path, 2, correlation_version(2))
    monkeypatch.undo()
    assert published_state(tmp_path) == before
    # The complete but unpublished run is an orphan: the next publish removes it.
    assert (tmp_path / ".runs" / "r002").exists()
    publish_version(tmp_path, 3, correlation_version(3))
    assert sorted(p.name for p in (tmp_path / ".runs").iterdir()) == ["r001", "r003"]
    assert published_state(tmp_path) == ("r003", (3,), "r003")


def test_run_killed_while_staging_is_removed_and_never_published(tmp_path, monkeypatch):
    import warehouse.marts as marts_mod
    from warehouse.files import remove_stale_temp_files

    table = TABLES["mart_rolling_correlation"]
    for v in (1, 2):
        publish_version(tmp_path, v, correlation_version(v))
    real, calls = marts_mod.write_parquet_content_named, []

    def dies_on_second_file(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(marts_mod, "write_parquet_content_named", dies_on_second_file)
    staging = snapshots.stage(tmp_path, "r003")
    with pytest.raises(KeyboardInterrupt):
        write_table(table, correlation_version(3), staging.marts_dir, "r003", {})
    monkeypatch.undo()
    assert published_state(tmp_path) == ("r002", (2,), "r002")
    assert remove_stale_temp_files(tmp_path), "the next run's clean-up finds the staging directory"
    assert not staging.root.exists()
    publish_version(tmp_path, 4, correlation_version(4))
    assert sorted(p.name for p in (tmp_path / ".runs").iterdir()) == ["r002", "r004"], "the real previous run is kept"


def test_a_data_directory_from_before_snapshots_is_taken_over(tmp_path):
    # The layout of earlier releases: a real warehouse file and a real marts directory.
    build_database(tmp_path / "warehouse.duckdb", version_frames(1))
    legacy = tmp_path / "marts" / ".versions" / "mart_rolling_correlation" / "old"
    legacy.mkdir(parents=True)
    (legacy / "part-x.parquet").write_bytes(b"old")
    publish_version(tmp_path, 2, correlation_version(2))
    assert published_state(tmp_path) == ("r002", (2,), "r002")
    assert (tmp_path / "marts").is_symlink() and (tmp_path / "warehouse.duckdb").is_symlink()
    assert not list(tmp_path.glob(".tmp-*"))


def test_temp_cleanup_removes_only_what_runs_create(tmp_path):
    """Issue 19 item 4: a user's own ``.tmp-`` files under the data directory survive a run's clean-up."""
    from warehouse.files import atomic_write_parquet, remove_stale_temp_files

    publish_version(tmp_path, 1, correlation_version(1))
    before = published_state(tmp_path)
    # What killed runs leave: a staging directory, link temps, a writer's temp file in the lake and state.
    staging = snapshots.stage(tmp_path, "20240101T000000-abcdef")
    os.symlink(".runs/r001", tmp_path / ".tmp-current")
    os.symlink("current/marts", tmp_path / ".tmp-link-marts")
    bars = tmp_path / "lake" / "bars" / "source=files" / "BTC"
    atomic_write_parquet(pl.DataFrame({"x": [1]}), bars / "2024.parquet")
    lake_temp = bars / ".tmp-ab12_x9z.parquet"
    state_temp = tmp_path / "state" / ".tmp-q1w2e3r4"
    for p in (lake_temp, state_temp):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    # The user's own: anywhere else, or not a writer's temp name.
    mine = [tmp_path / ".tmp-notes.txt", tmp_path / "notebooks" / ".tmp-draft.ipynb",
            tmp_path / "lake" / ".tmp-my-export.csv", tmp_path / "state" / ".tmp-keep-this-one.txt"]
    for p in mine:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("mine")
    my_dir = tmp_path / "exports" / ".tmp-scratch"
    (my_dir / "deep").mkdir(parents=True)
    (my_dir / "deep" / "f.csv").write_text("mine")

    removed = remove_stale_temp_files(tmp_path)

    assert sorted(removed) == sorted([staging.root, tmp_path / ".tmp-current", tmp_path / ".tmp-link-marts",
                                      lake_temp, state_temp])
    assert not any(os.path.lexists(p) for p in removed)
    assert all(p.read_text() == "mine" for p in mine)
    assert (my_dir / "deep" / "f.csv").read_text() == "mine"
    assert (bars / "2024.parquet").exists()
    assert published_state(tmp_path) == before


def test_a_first_publish_killed_right_after_the_switch_is_readable_and_recovered(tmp_path, monkeypatch):
    """Issue 19 item 5, by direct injection: the process dies right after ``current`` is switched."""
    def switch_then_die(data_dir, run_dir):
        real_switch(data_dir, run_dir)
        raise KeyboardInterrupt("killed after the switch")

    real_switch = snapshots.switch_current
    monkeypatch.setattr(snapshots, "switch_current", switch_then_die)
    with pytest.raises(KeyboardInterrupt):
        publish_version(tmp_path, 1, correlation_version(1))
    monkeypatch.undo()
    # The links were made before the switch: readers already see the whole first run.
    assert published_state(tmp_path) == ("r001", (1,), "r001")
    # A data directory left by the earlier order (current switched, no links yet) is completed by recover().
    for name in ("warehouse.duckdb", "marts"):
        (tmp_path / name).unlink()
    assert snapshots.recover(tmp_path) is True
    assert published_state(tmp_path) == ("r001", (1,), "r001")
    assert snapshots.recover(tmp_path) is False, "nothing left to repair"
