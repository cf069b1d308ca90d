"""The nightly run builds on the published one: only what new bars touch is rebuilt, and the tables
equal a full rebuild's."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flows.nightly import nightly
from warehouse.lake import Lake
from warehouse.query import read_tables
from contracts.tables import TABLES

pytestmark = pytest.mark.usefixtures("prefect_harness")

START = date(2015, 1, 2)
D1, D2 = date(2016, 9, 29), date(2016, 10, 4)
RUN_COLUMNS = ("ingested_at", "run_id")
COMPARED = [n for n in TABLES if n not in ("pipeline_runs", "ingest_log", "quarantine")]


def tables(data: Path) -> dict[str, pl.DataFrame]:
    out = {}
    for name, frame in read_tables(data / "warehouse.duckdb", COMPARED).items():
        frame = frame.drop([c for c in RUN_COLUMNS if c in frame.columns])
        out[name] = frame.sort([c for c in frame.columns if frame[c].dtype != pl.Float64], nulls_last=True)
    return out


def assert_same_tables(a: Path, b: Path, skip: tuple[str, ...] = ()) -> None:
    left, right = tables(a), tables(b)
    for name in skip:
        left.pop(name), right.pop(name)
    assert left.keys() == right.keys()
    for name in left:
        try:
            # Bit for bit: rolling sums restart at fixed session epochs (transforms/correlation.py).
            assert_frame_equal(left[name], right[name], check_exact=True)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


@pytest.fixture(scope="module")
def full_d2(tmp_path_factory):
    data = tmp_path_factory.mktemp("full")
    run = nightly(source="sample", start=START, as_of=D2, data_dir=str(data))
    assert run.incremental_from is None
    return data


def test_next_night_rebuilds_only_from_the_new_days_and_equals_a_full_run(tmp_path, full_d2, monkeypatch):
    import flows.nightly

    first = nightly(source="sample", start=START, as_of=D1, data_dir=str(tmp_path))
    assert first.incremental_from is None, "nothing was published before"
    state = json.loads((tmp_path / "current" / "run.json").read_text())
    assert state["as_of"] == str(D1) and state["source"] == "sample" and state["incremental_from"] is None
    published = tables(tmp_path)
    published_prices = read_tables(tmp_path / "warehouse.duckdb", ["fact_prices"])["fact_prices"]
    built = []
    real = flows.nightly.transform
    monkeypatch.setattr(flows.nightly, "transform", lambda *a, **k: built.append(real(*a, **k)) or built[-1])
    import flows.rebuild_plan

    reads = []
    real_read = flows.rebuild_plan.read_tables

    def recorded(path, names, where=None, order=None):
        out = real_read(path, names, where, order)
        reads.extend((n, (where or {}).get(n), f.height) for n, f in out.items())
        return out

    monkeypatch.setattr(flows.rebuild_plan, "read_tables", recorded)
    mart_reads = []
    real_mart = flows.rebuild_plan.read_published_mart

    def recorded_mart(table, marts_dir, since=None):
        frame = real_mart(table, marts_dir, since)
        mart_reads.append((table.name, since, None if frame is None else frame.height))
        return frame

    monkeypatch.setattr(flows.rebuild_plan, "read_published_mart", recorded_mart)
    from warehouse.lake import Lake

    tails = []
    real_tail = Lake.tail
    monkeypatch.setattr(Lake, "tail", lambda self, *a, **k: tails.append(a) or real_tail(self, *a, **k))
    second = nightly(source="sample", start=START, as_of=D2, data_dir=str(tmp_path))
    assert tails == [], "a snapshot source never reads the stored tail (a pass over the lake)"
    assert second.incremental_from == D1 + timedelta(days=1)
    assert_same_tables(tmp_path, full_d2)
    # The seed read is bounded: fact_prices (the lake's bars plus the index bars)
    # is never read whole, only the index bars and the month the comparison needs.
    price_reads = [(where, rows) for name, where, rows in reads if name == "fact_prices"]
    assert price_reads and all(where for where, _ in price_reads)
    assert sum(rows for _, rows in price_reads) < published["fact_prices"].height / 5
    # The published tables read whole come from the published run's Parquet marts, not out of its DuckDB file.
    assert not [name for name, where, _ in reads if where is None and TABLES[name].publish]
    # The seeds the graph's nodes read only from a window before since (Node.previous_window) are
    # read from their Parquet marts from that day on: nothing of fact_returns (only its tail is
    # built), the matrix and spillover marts from the previous latest session.
    bounded = {name: (since, rows) for name, since, rows in mart_reads if since is not None}
    assert {"fact_returns", "mart_correlation_matrix", "mart_spillover", "mart_lead_lag"} <= set(bounded)
    for name, (since, rows) in bounded.items():
        assert since <= second.incremental_from and rows is not None, name
        col = TABLES[name].date_column
        assert rows == published[name].filter(pl.col(col) >= since).height < published[name].height / 5, name
    assert bounded["fact_returns"][1] == 0
    # What the run hands the load: per named table only its rows from the date (Marts.unchanged_before);
    # the rows before are the published ones (the tables equal a full run's, above).
    unchanged = built[0].unchanged_before
    assert {"fact_returns", "mart_rolling_correlation", "mart_correlation_matrix"} <= set(unchanged)
    for name, d in unchanged.items():
        col = TABLES[name].date_column
        assert built[0].tables[name].filter(pl.col(col) < d).is_empty(), f"{name} holds rows before {d}"
        assert published[name].filter(pl.col(col) < d).height, f"{name}: nothing before {d} to leave out"
    # fact_prices among them (the derived bars' freshness is per date), so the copied load
    # replaces it only from that date: the stored rows before it, ingested_at included, stay.
    assert "fact_prices" in unchanged
    cut, key = unchanged["fact_prices"], ["symbol", "date"]
    stored = read_tables(tmp_path / "warehouse.duckdb", ["fact_prices"])["fact_prices"]
    assert_frame_equal(stored.filter(pl.col("date") < cut).sort(key),
                       published_prices.filter(pl.col("date") < cut).sort(key), check_exact=True)


def test_a_restated_bar_moves_the_rebuild_back_to_its_date(tmp_path, full_d2):
    nightly(source="sample", start=START, as_of=D1, data_dir=str(tmp_path))
    lake = Lake(tmp_path / "lake", "sample")
    restated_day = date(2016, 8, 15)
    bar = lake.read_bars(["BTC"]).filter(pl.col("date") == restated_day)
    lake.upsert_bars(bar.with_columns(pl.col("close") * 1.01).drop("source", "ingested_at"), datetime.now(UTC))
    second = nightly(source="sample", start=START, as_of=D2, data_dir=str(tmp_path))
    assert second.incremental_from == restated_day
    # A full run over a copy of the same lake agrees.
    whole = tmp_path / "whole"
    shutil.copytree(tmp_path / "lake", whole / "lake")
    full = nightly(source="sample", start=START, as_of=D2, data_dir=str(whole))
    assert full.incremental_from is None
    assert_same_tables(tmp_path, whole)


def test_switched_off_or_other_settings_rebuild_everything(tmp_path, monkeypatch):
    from flows.settings import get_settings

    nightly(source="sample", start=START, as_of=D1, data_dir=str(tmp_path))
    monkeypatch.setenv("XASSET_INCREMENTAL", "false")
    get_settings.cache_clear()
    try:
        assert nightly(source="sample", start=START, as_of=D2, data_dir=str(tmp_path)).incremental_from is None
        monkeypatch.setenv("XASSET_INCREMENTAL", "true")
        monkeypatch.setenv("XASSET_CORRELATION_WINDOWS", "[30, 90]")
        get_settings.cache_clear()
        run = nightly(source="sample", start=START, as_of=D2 + timedelta(days=1), data_dir=str(tmp_path))
        assert run.incremental_from is None, "a different fingerprint: the published tables cannot seed this run"
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_code_digest_follows_every_source_file(tmp_path):
    from flows.rebuild_plan import code_digest

    for pkg in ("flows", "transforms", "warehouse"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "m.py").write_text("x = 1\n")
    before = code_digest(tmp_path)
    assert code_digest(tmp_path) == before
    (tmp_path / "transforms" / "m.py").write_text("x = 2\n")
    assert code_digest(tmp_path) != before, "an edited transform must not reuse tables built by the old code"
    (tmp_path / "transforms" / "m.py").write_text("x = 1\n")
    (tmp_path / "warehouse" / "n.py").write_text("")
    assert code_digest(tmp_path) != before, "a new module counts too"


def test_the_load_copies_the_published_warehouse_and_links_unchanged_mart_years(tmp_path, full_d2, monkeypatch):
    """The flow's load and marts take the transform's ``unchanged_before`` and its tails
    (the tables named there hold only their rows from the date on)."""
    import flows.stages.publish as publish_stage
    from warehouse.build import load_database

    loads = []

    def recording_load(*args, **kwargs):
        loaded = load_database(*args, **kwargs)
        loads.append(loaded.full_because)
        return loaded

    monkeypatch.setattr(publish_stage, "load_database", recording_load)
    nightly(source="sample", start=START, as_of=D1, data_dir=str(tmp_path))
    first_run = (tmp_path / "current").resolve()
    second = nightly(source="sample", start=START, as_of=D2, data_dir=str(tmp_path))
    assert second.incremental_from == D1 + timedelta(days=1)
    assert loads[0] == "no table is unchanged since the published run" and loads[1] is None, loads
    assert_same_tables(tmp_path, full_d2)
    # The 2015 returns are the first run's file itself; the 2016 ones were written again.
    marts = tmp_path / "marts" / "fact_returns"
    assert (marts / "2015").resolve() != (first_run / "marts" / "fact_returns" / "2015")
    [old] = (marts / "2015").glob("*.parquet")
    assert old.stat().st_ino == (first_run / "marts" / "fact_returns" / "2015" / old.name).stat().st_ino
    [new] = (marts / "2016").glob("*.parquet")
    assert new.stat().st_nlink == 1
    manifest = json.loads((tmp_path / "marts" / "fact_returns.manifest.json").read_text())
    assert manifest["row_count"] == pl.read_parquet(marts).height and manifest["run_id"] == second.run_id


def test_a_copied_run_audits_what_it_writes_and_a_bad_new_row_still_publishes_nothing(tmp_path, monkeypatch):
    """A full build is audited whole; the next night's copy-on-write run audits its own rows
    (from the day they changed) and a duplicate key among them fails the run as before."""
    import flows.nightly as nightly_module
    import flows.stages.publish as publish_stage
    from warehouse import snapshots

    audited: list[dict] = []
    real_audit = publish_stage.audit

    def recording_audit(frames, as_of, since=None):
        audited.append(dict(since or {}))
        return real_audit(frames, as_of, since)

    monkeypatch.setattr(publish_stage, "audit", recording_audit)
    nightly(source="sample", start=START, as_of=D1, data_dir=str(tmp_path))
    assert audited == [{}], "a full build audits every row"
    published = snapshots.current_run(tmp_path)

    transform, built_since = nightly_module.transform, {}

    def with_a_duplicate_new_return(*args, **kwargs):
        built = transform(*args, **kwargs)
        built_since.update(built.unchanged_before)
        returns = built.tables["fact_returns"]
        new = returns.filter(pl.col("session_date") >= built.unchanged_before["fact_returns"]).head(1)
        built.tables["fact_returns"] = pl.concat([returns, new])
        return built

    monkeypatch.setattr(nightly_module, "transform", with_a_duplicate_new_return)
    with pytest.raises(Exception, match=r"audit failed, nothing published: fact_returns: \(symbol, session_date\) is unique"):
        nightly(source="sample", start=START, as_of=D2, data_dir=str(tmp_path))
    assert snapshots.current_run(tmp_path) == published
    assert snapshots.stale_temp_paths(tmp_path) == [], "its staging (marts written beside the audit) removed"
    # The copied run audited each handed-on table from its date (the rows it writes), not whole.
    since = audited[1]
    assert built_since["fact_returns"] > date(2016, 1, 1) and since["fact_returns"] == built_since["fact_returns"]
    assert since == built_since

    # Without the bad row the same night publishes, and an undamaged copied run passes its audit.
    monkeypatch.setattr(nightly_module, "transform", transform)
    assert nightly(source="sample", start=START, as_of=D2, data_dir=str(tmp_path)).status == "succeeded"
    assert audited[2] and snapshots.current_run(tmp_path) != published


def test_a_node_whose_window_is_too_short_gets_its_table_whole_and_the_build_runs_again(tmp_path, full_d2, monkeypatch):
    """``SeedTooShort`` (e.g. a symbol new to the correlation matrix): the transform reads the
    table whole from the published run and builds again; the run still equals a full run."""
    import flows.stages.transform as stage
    from transforms.graph import SeedTooShort

    nightly(source="sample", start=START, as_of=D1, data_dir=str(tmp_path))
    published = tables(tmp_path)["mart_correlation_matrix"]
    calls = []
    real = stage.build_marts

    def build_marts(*args, previous=None, previous_from=None, **kwargs):
        calls.append((previous["mart_correlation_matrix"].height if previous else None, dict(previous_from or {})))
        if len(calls) == 1 and previous is not None:
            raise SeedTooShort(("mart_correlation_matrix",), "a stand-in's symbols changed")
        return real(*args, previous=previous, previous_from=previous_from, **kwargs)

    monkeypatch.setattr(stage, "build_marts", build_marts)
    second = nightly(source="sample", start=START, as_of=D2, data_dir=str(tmp_path))
    assert second.incremental_from == D1 + timedelta(days=1)
    (first_rows, first_from), (again_rows, again_from) = calls
    assert "mart_correlation_matrix" in first_from and first_rows < published.height
    assert "mart_correlation_matrix" not in again_from and again_rows == published.height
    assert set(again_from) == set(first_from) - {"mart_correlation_matrix"}
    assert_same_tables(tmp_path, full_d2)


def test_an_incremental_run_writes_its_marts_beside_the_load_and_a_failure_there_publishes_nothing(
    tmp_path, full_d2, monkeypatch,
):
    """The next night's marts are written in a thread of their own while the warehouse is loaded
    and audited (flows.stages.publish.BackgroundMarts); the switch waits for them, and a failure
    in either publishes nothing and leaves no staging behind. A full run writes its marts beside
    its audit only, after the load (the two largest memory peaks apart)."""
    import threading

    from warehouse import marts as mart_files
    from warehouse import snapshots

    def by_thread(fn, names: list[str]):
        def recorded(*args, **kwargs):
            names.append(threading.current_thread().name)
            return fn(*args, **kwargs)
        return recorded

    from flows.stages import publish as publish_stage

    threads: list[str] = []
    recording = by_thread(mart_files.stage_marts, threads)
    monkeypatch.setattr(mart_files, "stage_marts", recording)
    loading = publish_stage.load_database

    def load_then_note(*args, **kwargs):
        loaded = loading(*args, **kwargs)
        threads.append("loaded")
        return loaded

    monkeypatch.setattr(publish_stage, "load_database", load_then_note)
    nightly(source="sample", start=START, as_of=D1, data_dir=str(tmp_path))
    assert threads == ["loaded", "stage-marts"], "a full run stages its marts in a thread once its load is done"
    monkeypatch.setattr(publish_stage, "load_database", loading)
    published = snapshots.current_run(tmp_path)

    def failing(*args, **kwargs):
        threads.append(threading.current_thread().name)
        raise OSError(28, "No space left on device", str(args[1]))

    monkeypatch.setattr(mart_files, "stage_marts", failing)
    with pytest.raises(OSError, match="No space left on device"):
        nightly(source="sample", start=START, as_of=D2, data_dir=str(tmp_path))
    assert threads[-1] == "stage-marts"
    assert snapshots.current_run(tmp_path) == published
    assert snapshots.stale_temp_paths(tmp_path) == []

    import warehouse.build as build

    copies: list[str] = []
    monkeypatch.setattr(build, "copy_file", by_thread(build.copy_file, copies))
    monkeypatch.setattr(mart_files, "stage_marts", recording)
    second = nightly(source="sample", start=START, as_of=D2, data_dir=str(tmp_path))
    assert second.incremental_from is not None and threads[-1] == "stage-marts"
    # The load copied the published warehouse (copy-on-write), once, while the marts were written beside it.
    assert len(copies) == 1 and copies[0] != "stage-marts"
    assert snapshots.current_run(tmp_path) == second.run_id
    assert_same_tables(tmp_path, full_d2)
    full = {p.relative_to(full_d2 / "marts") for p in (full_d2 / "marts").rglob("*.parquet")}
    assert {p.relative_to(tmp_path / "marts") for p in (tmp_path / "marts").rglob("*.parquet")} == full


def test_the_load_names_each_tables_own_replace_date():
    """Each table's rows are replaced from its own date: the log does not read as if all reached back
    to the earliest (the factor IC's, by its forward windows)."""
    from flows.stages.publish import replaced_from

    d, e, f = date(2026, 12, 5), date(2026, 12, 4), date(2026, 9, 8)
    said = replaced_from({"fact_prices": d, "fact_returns": d, "mart_spillover": d, "mart_correlation_matrix": e,
                          "mart_factor_ic": f})
    assert said == ("rows replaced: 3 tables from 2026-12-05; mart_correlation_matrix from 2026-12-04; "
                    "mart_factor_ic from 2026-09-08; the other tables whole")


@pytest.fixture
def no_compaction(monkeypatch):
    # Small files that a revision rewrites in good part outgrow twice their full build in a few nights.
    from flows.settings import get_settings

    monkeypatch.setenv("XASSET_WAREHOUSE_COMPACT_ABOVE", "100")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_next_nights_recycle_the_run_before_and_equal_a_full_rebuild(tmp_path, monkeypatch, no_compaction):
    """From the third night on the load rewrites the file of the run before the published one
    (warehouse.build.recycle) instead of copying the published file: next days, a revision of an
    old bar, and a night a reader in another process holds that file (the load copies; the reader's
    results stay that run's). Each night equals a full rebuild of the same input."""
    import subprocess
    import sys

    import flows.stages.publish as publish_stage
    from tests.warehouse.test_integrity import D1, run, save, write_inputs
    from tests.warehouse.test_recycle import READER
    from warehouse.build import load_database

    import warehouse.build

    # The night after the revision carries the revision's rows over from its file: ~7% of these
    # small tables, over the share at which a real night copies instead (tested on its own).
    monkeypatch.setattr(warehouse.build, "RECYCLE_MAX_CARRIED", 1.0)
    loads = []
    monkeypatch.setattr(publish_stage, "load_database",
                        lambda *a, **k: loads.append((k.get("unchanged_before"), load_database(*a, **k))) or loads[-1][1])
    folder, data = tmp_path / "in", tmp_path / "data"
    rows = write_inputs(folder)

    def night(as_of: date, reader: Path | None = None):
        for symbol, by_date in rows.items():
            save(folder, symbol, {d: r for d, r in by_date.items() if d <= as_of})
        held = None
        if reader is not None:
            held = subprocess.Popen([sys.executable, "-c", READER, str(reader)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)
            seen = held.stdout.readline()
        try:
            assert run(folder, data, as_of).status == "succeeded"
        finally:
            if held is not None:
                held.stdin.write("\n")
                held.stdin.flush()
                after = held.stdout.readline()
                held.stdin.close()
                held.wait(timeout=30)
        if held is not None:
            assert seen.startswith("(") and after == seen, "the reader saw its file change"
        this = loads[-1]
        fresh = tmp_path / f"fresh-{as_of}"
        assert run(folder, fresh, as_of).incremental_from is None
        assert_same_tables(data, fresh)
        return this

    def run_dir() -> Path:
        return (data / "current").resolve()

    night(D1)
    ids = [run_dir().name]
    _, second = night(D1 + timedelta(days=7))
    assert second.full_because is None and second.recycled_from is None  # the first run was built whole
    ids.append(run_dir().name)
    third_from, third = night(D1 + timedelta(days=14))
    assert third.recycled_from == ids[0], third.not_recycled
    ids.append(run_dir().name)
    # A revision of an old bar: rows are replaced from its date, further back than the night before's.
    old = date(2024, 1, 10)
    px = float(rows["BTC"][old].split(",")[4]) * 1.02
    rows["BTC"][old] = f"{old},{px:.6f},{px * 1.01:.6f},{px * 0.99:.6f},{px:.6f},1000"
    revised_from, fourth = night(D1 + timedelta(days=21))
    assert fourth.recycled_from == ids[1], fourth.not_recycled
    assert min(revised_from.values()) <= old < min(third_from.values())
    ids.append(run_dir().name)
    # The night after the revision: its tails start after the revision's, the recycled file (the
    # third night's) gets the published run's rows in between. Then a reader holds the file the
    # night after would recycle: that night copies.
    _, fifth = night(D1 + timedelta(days=22))
    assert fifth.recycled_from == ids[2], (fifth.not_recycled, fifth.full_because)
    ids.append(run_dir().name)
    held = data / ".runs" / ids[3] / "warehouse.duckdb"
    _, sixth = night(D1 + timedelta(days=28), reader=held)
    assert sixth.full_because is None and sixth.recycled_from is None
    assert "open in another process" in sixth.not_recycled
    ids.append(run_dir().name)
    _, seventh = night(D1 + timedelta(days=29))
    assert seventh.recycled_from == ids[4], seventh.not_recycled
