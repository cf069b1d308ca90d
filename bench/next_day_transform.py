"""Bench stage ``transform_next_day``: the next day's transform stage alone, on the e2e bench's data.

Needs ``python -m bench --stages generate,e2e`` in the same work dir first:
its data dir keeps both runs (``.runs/<full>``, ``.runs/<next day>``) and the
lake with the next day's bars. This stage points a scratch data dir's
``current`` at the **full** run (its warehouse and marts linked, its
``run.json`` with the fingerprint of the code under test, so a changed
checkout still seeds from it) and the lake at the e2e lake, then times
``flows.stages.transform.transform`` as of the next day: the lake read, the
screen, the rebuild plan's seed reads and every mart, as the next day's run
does (partitions one after another, no Prefect). In a fresh interpreter per
stage: its peak RSS is this stage's alone.

Prints wall, CPU, peak RSS, whether it was incremental and from when, and
the rows read back from the published warehouse and its Parquet marts per table
(summed over the reads of ``flows.rebuild_plan``) and the CPU seconds of the published side's
steps (``step_cpu``: ``published_before``, ``published_bars_bounded``, ``merge_published``,
``incremental_base``), so a bounded read shows as a row count,
not only as a time; also how many of the lake's year files the transform
read (``lake_read``) and a digest of each table it returned (outside the timing).
``BENCH_STEPS=1`` adds ``steps``: wall and CPU seconds of each step of the transform and
of each mart graph node (``_time_steps``); ``BENCH_PROFILE=<file>`` writes a cProfile of it.
The calendar's sessions are kept in the scratch data dir as the nightly flow keeps them.

``transform_next_day_whole`` is the same with the whole lake read and screened
(``transform(..., bounded=False)``, what the transform did before the bounded
lake read): the baseline in the same bench run, and its digests must equal
``transform_next_day``'s (same tables)::

    flock /tmp/xasset-big.lock python -m bench --equities 1000 --coins 100 --years 20 \
        --stages generate,e2e,transform_next_day_whole,transform_next_day --workdir W

The published run's state records when it listed the lake (``LAKE_LISTED``);
one written by an older version lacks it, and the stage then takes the full
run's ``run.json`` status-change time instead: the full run wrote it after it
listed the lake, and the next day's run landed its bars after that.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def _runs(data: Path) -> list[tuple[str, Path]]:
    """(as_of, run dir) of each complete run the e2e data dir keeps, oldest first."""
    out = []
    for run in sorted((data / ".runs").iterdir()):
        state = run / "run.json"
        if not run.name.startswith(".") and state.exists():
            out.append((json.loads(state.read_text())["as_of"], run))
    return sorted(out)


def table_digests(tables: dict) -> dict[str, str]:
    """Per table: rows and an order-free digest of its rows (equal tables, equal digests)."""
    import polars as pl

    out = {}
    for name, frame in sorted(tables.items()):
        h = frame.hash_rows(seed=1).cast(pl.UInt64).sum() if frame.height else 0
        out[name] = f"{frame.height}:{h:x}"
    return out


def _scratch(work: Path):
    """Point a scratch data dir at the e2e bench's full run and lake (see the module's note):
    (settings, universe, the next day's as-of)."""
    from flows.calendar import cache_sessions_in
    from flows.params import mart_params
    from flows.rebuild_plan import LAKE_LISTED, transform_fingerprint
    from flows.settings import Settings
    from flows.universe import load_universe

    data = work / "e2e" / "data"
    runs = _runs(data)
    if len(runs) < 2:
        raise SystemExit(f"transform_next_day: {data} does not keep a full and a next-day run; run the e2e stage first")
    (_, full), (next_as_of, _) = runs[-2], runs[-1]
    scratch = work / "next_day_transform"
    current = scratch / "current"
    current.mkdir(parents=True, exist_ok=True)
    for name in ("lake",):
        link = scratch / name
        if not link.is_symlink():
            os.symlink(data / name, link)
    for name in ("warehouse.duckdb", "warehouse.duckdb.full-size", "marts"):
        link = current / name
        if not link.is_symlink() and (full / name).exists():
            os.symlink(full / name, link)
    if not (scratch / "warehouse.duckdb").is_symlink():
        os.symlink("current/warehouse.duckdb", scratch / "warehouse.duckdb")
    env = {"XASSET_DATA_DIR": str(scratch), "XASSET_UNIVERSE_PATH": str(work / "e2e" / "universe.yaml")}
    os.environ.update(env)
    settings = Settings()
    # As the nightly flow does: the calendar's sessions kept in the data dir, not built each run
    # (the first run of this stage in a work dir builds and keeps them).
    cache_sessions_in(settings.data_dir / "cache" / "calendar")
    universe = load_universe(settings.universe_path)
    state = json.loads((full / "run.json").read_text())
    state["fingerprint"] = transform_fingerprint(mart_params(settings, universe), settings, "files")
    state.setdefault(LAKE_LISTED, (full / "run.json").stat().st_ctime_ns)
    (current / "run.json").write_text(json.dumps(state))
    return settings, universe, next_as_of


def _time_steps(steps: dict[str, list[float]]):
    """``BENCH_STEPS=1``: wall and CPU seconds and calls of each step of the transform
    (``steps[name] = [wall, cpu, calls]``, inclusive: a step's time holds the steps it calls),
    timed where the transform calls them; each mart graph node's build (every partition,
    ``node:<name>``) too. Returns the function that puts the originals back."""
    import flows.rebuild_plan as plan
    import flows.stages.transform as stage
    import transforms.graph as graph
    from warehouse.lake import Lake

    restore: list = []

    def wrap(owner, attr: str, name: str) -> None:
        fn = getattr(owner, attr)

        def call(*args, **kwargs):
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                label = name if attr != "_read_seed" else f"{name}({','.join(args[1])})"
                s = steps.setdefault(label, [0.0, 0.0, 0])
                s[0] += time.perf_counter() - t
                s[1] += time.process_time() - c
                s[2] += 1

        restore.append((owner, attr, fn))
        if isinstance(owner, graph.Node):
            object.__setattr__(owner, attr, call)
        else:
            setattr(owner, attr, call)

    for attr in ("read_assets", "bar_files", "read_withdrawn", "read_bar_files", "read_fundamentals"):
        wrap(Lake, attr, f"lake.{attr}")
    for attr in (
        "lake_read_plan", "exchange_sessions", "screen", "incremental_base", "full_build_reason", "window_starts",
        "build_marts", "run_state", "price_figures_from",
        "_read_bounded", "fundamentals_as_of", "published_before", "merge_published",
        "published_bars_bounded", "published_first_date",
    ):
        wrap(stage, attr, attr)
    for attr in (
        "_read_seed", "published_bars_compared", "first_published_difference", "published_base_state",
        "screen_rules", "quarantine_keys", "_merge_bars", "_symbol_runs",
    ):
        wrap(plan, attr, f"rebuild_plan.{attr}")
    wrap(graph, "tail", "graph.tail")
    for node in graph.GRAPH:
        wrap(node, "build", f"node:{node.name}")

    def undo() -> None:
        for owner, attr, fn in reversed(restore):
            if isinstance(owner, graph.Node):
                object.__setattr__(owner, attr, fn)
            else:
                setattr(owner, attr, fn)

    return undo


def stage_transform_next_day_whole(work: Path, args) -> None:
    stage_transform_next_day(work, args, bounded=False)


def stage_transform_next_day(work: Path, args, bounded: bool = True) -> None:
    from datetime import date

    from bench.__main__ import emit, rss_now
    from flows.stages.transform import transform
    from warehouse.lake import Lake

    settings, universe, next_as_of = _scratch(work)
    import flows.rebuild_plan

    seed_rows: dict[str, int] = {}
    real_read = flows.rebuild_plan.read_tables

    def counted(path, names, *where):
        out = real_read(path, names, *where)
        for name, frame in out.items():
            seed_rows[name] = seed_rows.get(name, 0) + frame.height
        return out

    flows.rebuild_plan.read_tables = counted
    # The seeds read from the published Parquet marts count too (``_read_seed`` prefers them).
    real_mart = flows.rebuild_plan.read_published_mart

    def counted_mart(table, *args):
        frame = real_mart(table, *args)
        if frame is not None:
            seed_rows[table.name] = seed_rows.get(table.name, 0) + frame.height
        return frame

    flows.rebuild_plan.read_published_mart = counted_mart
    # CPU seconds of the published-warehouse side (the seed reads and the merge), timed where
    # the transform calls them.
    import flows.stages.transform as stage

    step_cpu: dict[str, float] = {}

    def timed(name: str, fn):
        def call(*args, **kwargs):
            c0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                step_cpu[name] = round(step_cpu.get(name, 0.0) + time.process_time() - c0, 3)

        return call

    for name in ("published_before", "published_bars_bounded", "merge_published", "incremental_base"):
        setattr(stage, name, timed(name, getattr(stage, name)))
    steps: dict[str, list[float]] = {}
    undo = _time_steps(steps) if os.environ.get("BENCH_STEPS") else (lambda: None)
    lake = Lake(settings.lake_dir, "files")
    before = rss_now()
    t, c = time.perf_counter(), time.process_time()
    profile = os.environ.get("BENCH_PROFILE")  # a path: cProfile the transform into it (slower)
    if profile:
        import cProfile

        with cProfile.Profile() as prof:
            built = transform(lake, settings, universe, date.fromisoformat(next_as_of), synthetic=False, bounded=bounded)
        prof.dump_stats(profile)
    else:
        built = transform(lake, settings, universe, date.fromisoformat(next_as_of), synthetic=False, bounded=bounded)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    undo()
    emit(
        "transform_next_day" if bounded else "transform_next_day_whole", seconds,
        sum(f.height for f in built.tables.values()), rss_before=before, cpu=cpu,
        incremental_from=str(built.incremental_from), full_because=built.full_because, seed_rows=seed_rows,
        step_cpu=step_cpu, **({"steps": {k: [round(x, 3) for x in v] for k, v in steps.items()}} if steps else {}),
        lake_read=built.lake_read, digests=table_digests(built.tables),
    )


def stage_lake_read_order(work: Path, args) -> None:
    """``Lake.read_bar_files`` of this tree against ``warehouse/lake.py`` as of ``BENCH_BASELINE``
    (a git revision, default ``87589e1``: before the files were read in (symbol, year) order and the
    sort skipped), on the e2e lake, in one process, alternating: the next day's bounded read (the year
    files from the year before the as-of's on) and the whole lake (the full run's read). Median wall and
    CPU of ``--nights`` reps each (default 5), their ratio, and whether the frames are equal (bars and
    the sorted flag)::

        flock /tmp/xasset-big.lock python -m bench --stages lake_read_order --workdir /tmp/s8/p2000
    """
    import statistics
    from datetime import date

    import polars as pl

    from bench.__main__ import emit
    from bench.lake_land import lake_module
    from warehouse.lake import Lake

    rev = os.environ.get("BENCH_BASELINE", "87589e1")
    lake_dir = work / "e2e" / "data" / "lake"
    base, current = lake_module(rev).Lake(lake_dir, "files"), Lake(lake_dir, "files")
    files = current.bar_files()
    first = date.fromisoformat(args.as_of).year - 1
    reps = max(1, args.nights)
    for label, paths in (("bounded", files.filter(pl.col("year") >= first)["path"].to_list()),
                         ("whole", files["path"].to_list())):
        times: dict[str, list[tuple[float, float]]] = {"baseline": [], "current": []}
        frames = {}
        for _ in range(reps):
            for name, lake in (("baseline", base), ("current", current)):
                frames.pop(name, None)
                t, c = time.perf_counter(), time.process_time()
                frames[name] = lake.read_bar_files(paths)
                times[name].append((time.perf_counter() - t, time.process_time() - c))
        med = {n: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for n, v in times.items()}
        a, b = frames["baseline"], frames["current"]
        emit(
            f"lake_read_order_{label}", med["current"][0], b.height, cpu=med["current"][1], files=len(paths),
            baseline=rev, baseline_s=round(med["baseline"][0], 3), baseline_cpu_s=round(med["baseline"][1], 3),
            ratio_wall=round(med["current"][0] / med["baseline"][0], 3),
            ratio_cpu=round(med["current"][1] / med["baseline"][1], 3), reps=reps,
            equal=a.equals(b) and a["symbol"].flags == b["symbol"].flags,
        )
        del frames, a, b


STAGES = {
    "transform_next_day": stage_transform_next_day, "transform_next_day_whole": stage_transform_next_day_whole,
    "lake_read_order": stage_lake_read_order,
}
