"""Bench stage ``publish_next_day``: the next day's run after the lake, step by step, on the e2e bench's data.

Needs ``python -m bench --stages generate,e2e`` in the same work dir first (its
data dir keeps the full run and the next day's run, and the lake with the next
day's bars). In a scratch data dir whose published run is the e2e **full** run
(its files linked, its ``run.json`` given the fingerprint of the code under
test, so any checkout seeds from it), it does what ``flows.nightly`` does after
the land, as of the next day, and times each step apart:

- ``transform`` (the lake read, the screen, the rebuild plan, every mart), with
  ``seed_read_s`` / ``seed_rows``: the published tables read back;
- ``load`` (copy-on-write of the published warehouse), ``audit`` (the rules and
  the warnings), ``stage_marts`` and ``publish`` (the switch);
- ``rows_handed_on``: rows the transform hands to the load, audit and marts.

Then it checks the result against the e2e next-day run (a run of the code that
ran the e2e stage): every table's row count and order-free row hash
(``_digest``, without ``ingested_at``; the run's own log tables left out)
and every mart's file list (content-named: equal names are equal bytes).
Run it once per checkout (e.g. the branch point in a ``git worktree``) on the
same work dir for a before/after; the scratch dir is rebuilt each time.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

# The run's own tables (this run's log, ingest and quarantine rows): not compared.
RUN_TABLES = ("pipeline_runs", "ingest_log", "quarantine")


def _scratch(work: Path, full: Path) -> Path:
    """A data dir publishing (links to) the e2e full run, with the e2e lake."""
    scratch = work / "publish_next_day"
    shutil.rmtree(scratch, ignore_errors=True)
    run = scratch / ".runs" / full.name
    run.mkdir(parents=True)
    os.symlink(full / "warehouse.duckdb", run / "warehouse.duckdb")
    os.symlink(full / "warehouse.duckdb.full-size", run / "warehouse.duckdb.full-size")
    os.symlink(full / "marts", run / "marts")
    os.symlink(work / "e2e" / "data" / "lake", scratch / "lake")
    os.symlink(os.path.join(".runs", full.name), scratch / "current")
    os.symlink("current/warehouse.duckdb", scratch / "warehouse.duckdb")
    os.symlink("current/marts", scratch / "marts")
    return scratch


def _digest(path: Path) -> dict[str, tuple]:
    """Per table: row count and an order-free hash of its rows without ``ingested_at`` (when a run
    landed or derived a bar: the e2e run and this one may differ there, as the flow tests allow)."""
    import duckdb

    from contracts.tables import TABLES

    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {}
        for name, table in TABLES.items():
            cols = ", ".join(f'"{c}"' for c in table.column_names if c != "ingested_at")
            out[name] = con.execute(f"SELECT count(*), coalesce(sum(hash(struct_pack({cols}))), 0) FROM {name}").fetchone()
        return out
    finally:
        con.close()


def _marts(marts: Path) -> dict[str, tuple]:
    out = {}
    for manifest in sorted(marts.glob("*.manifest.json")):
        m = json.loads(manifest.read_text())
        out[m["table"]] = (m["row_count"], tuple(m["files"]))
    return out


def stage_publish_next_day(work: Path, args) -> None:
    from datetime import date
    from functools import partial

    import flows.rebuild_plan
    from bench.__main__ import emit, rss_now
    from bench.next_day_transform import _runs
    from flows.calendar import sessions as exchange_sessions
    from flows.params import mart_params
    from flows.rebuild_plan import transform_fingerprint
    from flows.settings import Settings
    from flows.stages.transform import transform
    from flows.universe import load_universe
    from warehouse import marts as mart_files
    from warehouse import snapshots
    from warehouse.audit import audit, audit_warnings, written_from
    from warehouse.build import load_database
    from warehouse.lake import Lake

    data = work / "e2e" / "data"
    runs = _runs(data)
    if len(runs) < 2:
        raise SystemExit(f"publish_next_day: {data} does not keep a full and a next-day run; run the e2e stage first")
    (_, full), (next_as_of, next_run) = runs[-2], runs[-1]
    as_of = date.fromisoformat(next_as_of)
    scratch = _scratch(work, full)
    os.environ.update({"XASSET_DATA_DIR": str(scratch), "XASSET_UNIVERSE_PATH": str(work / "e2e" / "universe.yaml")})
    settings = Settings()
    universe = load_universe(settings.universe_path)
    state = json.loads((full / "run.json").read_text())
    state["fingerprint"] = transform_fingerprint(mart_params(settings, universe), settings, "files")
    (scratch / ".runs" / full.name / "run.json").write_text(json.dumps(state))

    seed = {"seconds": 0.0, "rows": {}}
    real_read = flows.rebuild_plan.read_tables

    def counted(path, names, *where):
        t = time.perf_counter()
        out = real_read(path, names, *where)
        seed["seconds"] += time.perf_counter() - t
        for name, frame in out.items():
            seed["rows"][name] = seed["rows"].get(name, 0) + frame.height
        return out

    real_mart = getattr(flows.rebuild_plan, "read_published_mart", None)  # None: code before the Parquet seed read

    def counted_mart(table, marts_dir):
        t = time.perf_counter()
        frame = real_mart(table, marts_dir)
        seed["seconds"] += time.perf_counter() - t
        if frame is not None:
            seed["rows"][table.name] = seed["rows"].get(table.name, 0) + frame.height
            seed["from_marts"] = seed.get("from_marts", 0) + frame.height
        return frame

    flows.rebuild_plan.read_tables = counted
    if real_mart is not None:
        flows.rebuild_plan.read_published_mart = counted_mart
    steps: dict[str, tuple[float, float]] = {}

    profile = os.environ.get("BENCH_PROFILE")  # a path: cProfile every step into <path>.<step> (slower)

    def timed(name, fn, *a, **kw):
        t, c = time.perf_counter(), time.process_time()
        if profile:
            import cProfile

            with cProfile.Profile() as prof:
                out = fn(*a, **kw)
            prof.dump_stats(f"{profile}.{name}")
        else:
            out = fn(*a, **kw)
        steps[name] = (round(time.perf_counter() - t, 3), round(time.process_time() - c, 3))
        return out

    before = rss_now()
    t0, c0 = time.perf_counter(), time.process_time()
    built = timed("transform", transform, Lake(settings.lake_dir, "files"), settings, universe, as_of, synthetic=False)
    tables, unchanged = built.tables, built.unchanged_before
    handed_on = sum(f.height for f in tables.values())
    run_id = "bench-next-day"
    staging = snapshots.stage(scratch, run_id)
    staging.write_state({**built.state, "run_id": run_id, "incremental_from": built.incremental_from})
    published = scratch / snapshots.WAREHOUSE_FILE
    loaded = timed("load", load_database, staging.warehouse_path, tables, storage_version=settings.warehouse_storage_version,
                   published=published, unchanged_before=unchanged, compact_above=settings.warehouse_compact_above)
    marts_dir = scratch / snapshots.MARTS_DIR
    if getattr(loaded, "whole", None):  # built whole after all: the tails are whole tables now (as flows.nightly does)
        tables, unchanged = tables | loaded.whole, {}
    try:
        since = written_from(unchanged, loaded.full_because is None)
    except TypeError:  # code before the tails (written_from read the published marts)
        since = written_from(unchanged, loaded.full_because is None, marts_dir)
    failures = timed("audit", audit, tables, as_of, since)
    if failures:
        raise SystemExit(f"publish_next_day: audit failed: {failures[:3]}")
    if hasattr(built, "price_warnings"):  # fact_prices may be a tail: its warnings were judged whole
        others = {k: v for k, v in tables.items() if k != "fact_prices"}
        timed("audit_warnings", audit_warnings, others, as_of, run_id)
    else:
        timed("audit_warnings", audit_warnings, tables, as_of, run_id,
              partial(exchange_sessions, code=settings.exchange_calendar))
    timed("stage_marts", mart_files.stage_marts, tables, staging.marts_dir, run_id, {"source": "files"}, unchanged,
          marts_dir)
    timed("publish", snapshots.publish, scratch, staging, run_id)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0

    mine = _digest(scratch / snapshots.WAREHOUSE_FILE)
    theirs = _digest(next_run / "warehouse.duckdb")
    differ = sorted(t for t in mine if t not in RUN_TABLES and mine[t] != theirs.get(t))
    mart_mine, mart_theirs = _marts(scratch / snapshots.MARTS_DIR), _marts(next_run / "marts")
    marts_differ = sorted(t for t in mart_theirs if mart_mine.get(t) != mart_theirs[t])
    after = {k: v for k, v in steps.items() if k != "transform"}
    emit(
        "publish_next_day", seconds, handed_on, rss_before=before, cpu=cpu,
        steps_wall_cpu=steps, seed_read_s=round(seed["seconds"], 3), seed_rows=seed["rows"],
        seed_rows_total=sum(seed["rows"].values()), seed_rows_from_marts=seed.get("from_marts", 0),
        after_transform_s=round(sum(w for w, _ in after.values()), 3),
        seed_read_plus_after_transform_s=round(seed["seconds"] + sum(w for w, _ in after.values()), 3),
        rows_handed_on=handed_on, incremental_from=str(built.incremental_from), load=loaded.full_because or "copied",
        tables_differ_from_e2e_next_day=differ, marts_differ_from_e2e_next_day=marts_differ,
    )


STAGES = {"publish_next_day": stage_publish_next_day}
