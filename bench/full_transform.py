"""Bench stage ``transform_full_run``: the full run's transform stage alone, on the e2e bench's lake.

Needs ``python -m bench --stages generate,e2e`` in the same work dir first. A
scratch data dir links the e2e lake; with incremental rebuilds off
(``XASSET_INCREMENTAL=false``) ``flows.stages.transform.transform`` runs as the
full run did: the whole lake read and screened as of the full run's as-of, and
every mart built (partitions one after another, no Prefect). In a fresh
interpreter per stage: its peak RSS is this stage's alone.

Prints wall, CPU and peak RSS, then CPU seconds per piece: the lake read
(``read_bar_files``), the screen, each mart graph node (its partitions summed)
and ``assembler`` (the assembler's own work: combining partitions, levels),
and a digest of each table returned (outside the timing; equal tables, equal
digests, so a change can be checked against the code before it)::

    flock /tmp/xasset-big.lock python -m bench --equities 1000 --coins 100 --years 20 \\
        --stages generate,e2e,transform_full_run --workdir W
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path


def full_run_settings(work: Path, scratch: Path):
    """The settings and universe of a full rebuild into ``scratch`` over the e2e stage's universe
    (the environment the flow would take them from)."""
    from flows.settings import Settings
    from flows.universe import load_universe

    os.environ.update({
        "XASSET_DATA_DIR": str(scratch), "XASSET_UNIVERSE_PATH": str(work / "e2e" / "universe.yaml"),
        "XASSET_INCREMENTAL": "false",
    })  # fmt: skip
    settings = Settings()
    return settings, load_universe(settings.universe_path)


def stage_transform_full_run(work: Path, args) -> None:
    from datetime import date

    import flows.stages.transform as stage
    from bench.__main__ import emit, rss_now
    from bench.next_day_transform import _runs, table_digests
    from warehouse.lake import Lake

    data = work / "e2e" / "data"
    runs = _runs(data)
    if not runs:
        raise SystemExit(f"transform_full_run: {data} keeps no run; run the e2e stage first")
    full_as_of = runs[-2][0] if len(runs) > 1 else runs[-1][0]
    scratch = work / "full_transform"
    scratch.mkdir(parents=True, exist_ok=True)
    if not (scratch / "lake").is_symlink():
        os.symlink(data / "lake", scratch / "lake")
    settings, universe = full_run_settings(work, scratch)

    cpu: dict[str, float] = defaultdict(float)

    def timed(label, fn):
        def run(*a, **k):
            c = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                cpu[label] += time.process_time() - c

        return run

    def node_map(fn, arg_list, names=None):
        names = names or [f"part-{i}" for i in range(len(arg_list))]
        return [timed(f"node {n.split('-')[0]}", fn)(*a) for n, a in zip(names, arg_list, strict=True)]

    # The stage's own pieces, timed where the stage looks them up (module globals).
    stage.map_on_runner, stage.screen = node_map, timed("screen", stage.screen)
    stage.build_marts = timed("build_marts", stage.build_marts)
    Lake.read_bar_files = timed("read_bar_files", Lake.read_bar_files)
    lake = Lake(settings.lake_dir, "files")
    before = rss_now()
    t, c = time.perf_counter(), time.process_time()
    built = stage.transform(lake, settings, universe, date.fromisoformat(full_as_of), synthetic=False, bounded=False)
    seconds, total = time.perf_counter() - t, time.process_time() - c
    nodes = sum(v for k, v in cpu.items() if k.startswith("node "))
    pieces = {k: round(v, 2) for k, v in sorted(cpu.items()) if k != "build_marts"}
    pieces["assembler"] = round(cpu["build_marts"] - nodes, 2)
    emit(
        "transform_full_run", seconds, sum(f.height for f in built.tables.values()), rss_before=before, cpu=total,
        as_of=full_as_of, full_because=built.full_because, cpu_by_piece=pieces, digests=table_digests(built.tables),
    )


STAGES = {"transform_full_run": stage_transform_full_run}
