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
the rows read back from the published warehouse per table (summed over the
reads of ``flows.rebuild_plan``), so a bounded read shows as a row count,
not only as a time; also how many of the lake's year files the transform
read (``lake_read``) and a digest of each table it returned (outside the timing).

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
    universe = load_universe(settings.universe_path)
    state = json.loads((full / "run.json").read_text())
    state["fingerprint"] = transform_fingerprint(mart_params(settings, universe), settings, "files")
    state.setdefault(LAKE_LISTED, (full / "run.json").stat().st_ctime_ns)
    (current / "run.json").write_text(json.dumps(state))
    return settings, universe, next_as_of


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
    emit(
        "transform_next_day" if bounded else "transform_next_day_whole", seconds,
        sum(f.height for f in built.tables.values()), rss_before=before, cpu=cpu,
        incremental_from=str(built.incremental_from), full_because=built.full_because, seed_rows=seed_rows,
        lake_read=built.lake_read, digests=table_digests(built.tables),
    )


def merge_published_before(plan, files, stored, clean, quarantined, published, published_quarantine, as_of):
    """The yardstick for ``flows.rebuild_plan.merge_published``: its version before it kept the
    published bars by one filter (main 90e1048), verbatim but for the early returns."""
    import polars as pl

    from flows.rebuild_plan import _merge_bars
    from warehouse.quality import in_screen_order, quarantine_keys

    whole = pl.Series(sorted(plan.whole), dtype=pl.String).implode()
    read = stored.filter(~pl.col("symbol").is_in(whole))["symbol"].unique()
    cut = (
        clean.filter(pl.col("symbol").is_in(read.implode()) & (pl.col("date") < plan.changed_from))
        .group_by("symbol").agg(pl.col("date").min().alias("_f"), pl.col("date").len().alias("_n"))
    )
    cut = cut.select("symbol", "_f")
    kept = published.filter(~pl.col("symbol").is_in(whole)).join(cut, on="symbol", how="left", maintain_order="left")
    first = clean.join(cut, on="symbol").filter(pl.col("date") == pl.col("_f")).drop("_f")
    was = kept.filter(pl.col("date") == pl.col("_f")).drop("_f")
    assert not first.join(was, on=first.columns, how="anti", nulls_equal=True).height
    kept = kept.filter(pl.col("_f").is_null() | (pl.col("date") <= pl.col("_f"))).drop("_f")
    gone = (
        kept.select("symbol", pl.col("date").dt.year().cast(pl.Int32).alias("year")).unique()
        .join(files.select("symbol", "year"), on=["symbol", "year"], how="anti")
    )
    assert not gone.height
    new = clean.join(cut, on="symbol", how="left").filter(pl.col("_f").is_null() | (pl.col("date") > pl.col("_f")))
    prices = _merge_bars(kept, new.drop("_f"))
    old_q = (
        published_quarantine.filter(~pl.col("_symbol").is_in(whole))
        .join(cut, left_on="_symbol", right_on="symbol", how="left")
        .filter(pl.col("_f").is_null() | (pl.col("_date") < pl.col("_f"))).drop("_f")
    )
    new_q = (
        quarantine_keys(quarantined).join(cut, left_on="_symbol", right_on="symbol", how="left")
        .filter(pl.col("_f").is_null() | (pl.col("_date") > pl.col("_f"))).drop("_f")
    )
    return prices, in_screen_order(pl.concat([old_q, new_q]), "fact_prices", as_of)


def stage_merge_published(work: Path, args) -> None:
    """``merge_published`` (the bounded lake read's merge of the published bars with the
    screened ones) on the next day's real inputs, against ``merge_published_before`` in the
    same process: each timed ``BENCH_REPEAT`` (3) times in turn after one untimed call; the
    median wall and CPU of each, their ratio, and whether both gave the same frames."""
    from datetime import date
    from statistics import median

    from bench.__main__ import emit, rss_now
    import flows.stages.transform as stage
    from flows.rebuild_plan import merge_published
    from warehouse.lake import Lake

    settings, universe, next_as_of = _scratch(work)
    captured = []

    class Captured(Exception):
        pass

    def capture(*a):
        captured.extend(a)
        raise Captured

    stage.merge_published = capture
    try:
        stage.transform(Lake(settings.lake_dir, "files"), settings, universe, date.fromisoformat(next_as_of), synthetic=False)
    except Captured:
        pass
    finally:
        stage.merge_published = merge_published
    if not captured:
        raise SystemExit("merge_published: the next day's transform did not take the bounded lake read")
    sides = {"before": merge_published_before, "now": merge_published}
    out = {name: fn(*captured) for name, fn in sides.items()}
    same = all(a.equals(b) for a, b in zip(out["before"], out["now"], strict=True))
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    before = rss_now()
    for _ in range(int(os.environ.get("BENCH_REPEAT", "3"))):
        for name, fn in sides.items():
            t, c = time.perf_counter(), time.process_time()
            fn(*captured)
            times[name].append((time.perf_counter() - t, time.process_time() - c))
    wall = {n: median(w for w, _ in v) for n, v in times.items()}
    cpu = {n: median(c for _, c in v) for n, v in times.items()}
    emit(
        "merge_published", wall["now"], out["now"][0].height, rss_before=before, cpu=cpu["now"],
        baseline_s=round(wall["before"], 3), baseline_cpu_s=round(cpu["before"], 3),
        ratio_wall=round(wall["now"] / wall["before"], 3), ratio_cpu=round(cpu["now"] / cpu["before"], 3),
        same_frames=same, published_rows=captured[5].height,
    )
    if not same:
        raise SystemExit("merge_published: the frames differ from merge_published_before's")


STAGES = {
    "transform_next_day": stage_transform_next_day, "transform_next_day_whole": stage_transform_next_day_whole,
    "merge_published": stage_merge_published,
}
