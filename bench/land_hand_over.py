"""Bench stage ``land_hand_over``: the full run's transform reading the whole lake back
(``Lake.read_bar_files``) against taking the bars its land just wrote (``Lake.hand_over``),
in one process, alternating.

Needs the e2e stage's data in the work dir (``python -m bench --stages e2e``). Its lake's bars
(with their origins) are landed into an empty scratch lake (``<work>/land_hand_over``) as the
full run lands its input (``Lake.upsert_bars``; every year file new), then
``flows.stages.transform.transform`` runs as the full run does (whole lake, incremental off,
partitions one after another, no Prefect), ``BENCH_REPS`` times each way (default 2), alternating: ``read``
with nothing handed over, ``hand_over`` with the land's frame handed back to the lake before
each run (the files are the ones it wrote, so the proof holds each time), after one
unmeasured run. Prints wall and CPU
of each transform, the medians' ratio, the time the read itself took, and checks that every
table is the same each way, row for row in order (``ordered_digests``)::

    flock /tmp/xasset-big.lock python -m bench --equities 2000 --coins 100 --years 20 \\
        --stages land_hand_over --workdir W
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import time
from datetime import UTC, date, datetime
from pathlib import Path


def ordered_digests(tables: dict) -> dict[str, str]:
    """Per table: rows and a digest of its rows in order (equal tables in equal order, equal digests)."""
    out = {}
    for name, frame in sorted(tables.items()):
        h = hashlib.blake2b(frame.hash_rows(seed=1).to_numpy().tobytes(), digest_size=8).hexdigest() if frame.height else "0"
        out[name] = f"{frame.height}:{h}:{','.join(f'{c}={t}' for c, t in frame.schema.items())}"
    return out


def stage_land_hand_over(work: Path, args) -> None:
    import flows.stages.transform as stage
    from bench.__main__ import emit
    from bench.full_transform import full_run_settings
    from bench.next_day_transform import _runs
    from warehouse.lake import Lake

    data = work / "e2e" / "data"
    runs = _runs(data)
    if not runs:
        raise SystemExit(f"land_hand_over: {data} keeps no run; run the e2e stage first")
    as_of = date.fromisoformat(runs[-2][0] if len(runs) > 1 else runs[-1][0])
    scratch = work / "land_hand_over"
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    settings, universe = full_run_settings(work, scratch)

    # The full run's input as it reached the land: the e2e lake's bars up to the full run's as-of, with their origins.
    source = Lake(data / "lake", "files")
    import polars as pl

    bars = source.read_bar_files(source.bar_files()["path"].to_list())
    bars = bars.filter(pl.col("date") <= as_of).drop("source", "ingested_at")
    lake = Lake(settings.lake_dir, "files", writers=settings.lake_writers)
    t, c = time.perf_counter(), time.process_time()
    lake.upsert_bars(bars, datetime.now(UTC))
    emit("land_hand_over_land", time.perf_counter() - t, bars.height, cpu=time.process_time() - c)
    del bars
    lake.upsert_assets(source.read_assets())
    fundamentals = source.read_fundamentals()
    if fundamentals is not None:
        lake.upsert_fundamentals(fundamentals)
    landed = lake._landed
    if landed is None:
        raise SystemExit("land_hand_over: the land handed nothing over")

    read_s: list[float] = []
    real_read = Lake.read_bar_files

    def timed_read(self, files):
        t = time.perf_counter()
        try:
            return real_read(self, files)
        finally:
            read_s.append(time.perf_counter() - t)

    Lake.read_bar_files = timed_read
    stage.map_on_runner = lambda fn, arg_list, names=None: [fn(*a) for a in arg_list]
    # Once unmeasured first (imports, the calendar): the first transform of a process pays them.
    lake._landed = landed
    stage.transform(lake, settings, universe, as_of, synthetic=False, bounded=False)
    times: dict[str, list[tuple[float, float]]] = {"read": [], "hand_over": []}
    digests: dict[str, dict] = {}
    for rep in range(int(os.environ.get("BENCH_REPS", "2"))):
        for way in ("read", "hand_over") if rep % 2 == 0 else ("hand_over", "read"):
            lake._landed = landed if way == "hand_over" else None
            t, c = time.perf_counter(), time.process_time()
            built = stage.transform(lake, settings, universe, as_of, synthetic=False, bounded=False)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            assert ("not read back" in built.lake_read) == (way == "hand_over"), built.lake_read
            times[way].append((wall, cpu))
            got = ordered_digests(built.tables)
            del built
            if digests.setdefault(way, got) != got:
                raise SystemExit(f"land_hand_over: {way} gave other tables on rep {rep + 1}")
            emit(f"land_hand_over_{way}", wall, sum(int(v.split(':')[0]) for v in got.values()), cpu=cpu, rep=rep + 1)
    if digests["read"] != digests["hand_over"]:
        bad = [k for k in digests["read"] if digests["read"][k] != digests["hand_over"].get(k)]
        raise SystemExit(f"land_hand_over: the tables differ: {bad}")
    med = {w: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for w, v in times.items()}
    emit(
        "land_hand_over", med["hand_over"][0], landed.bars.height, cpu=med["hand_over"][1],
        read_wall_s=round(med["read"][0], 3), read_cpu_s=round(med["read"][1], 3),
        ratio_wall=round(med["hand_over"][0] / med["read"][0], 3), ratio_cpu=round(med["hand_over"][1] / med["read"][1], 3),
        lake_read_s=[round(s, 3) for s in read_s], year_files=len(landed.files), tables_equal=True,
        load_avg=list(os.getloadavg()),
    )
    shutil.rmtree(scratch)


STAGES = {"land_hand_over": stage_land_hand_over}
