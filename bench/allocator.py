"""Bench stage ``allocator``: the full run's transform with Polars' allocator delay of the setting
against ~Polars' own (``flows.allocator``), in the same run.

Runs the ``transform_full_run`` stage (bench/full_transform.py; needs ``generate,e2e`` in the work
dir first) in fresh interpreters, ``ROUNDS`` times per delay, the delays interleaved (a burst of
load on the shared machine hits both alike). Each child gets the delay both ways (the setting and
jemalloc's variable), so it holds whatever the child imports first. Prints one line per child,
then per delay the median wall, CPU and peak RSS with their ratios to the baseline, and whether
every table's digest was the same under both (it must be: the allocator changes no number)::

    flock /tmp/xasset-big.lock python -m bench --stages allocator --workdir W
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from flows.allocator import DEFAULT_ALLOCATOR_DECAY_MS, JEMALLOC_ENV, SETTING_ENV, jemalloc_options

ROUNDS = 2
# About Polars' own (500 ms dirty, 1,000 ms muzzy: polars/__init__.py), what the setting replaced.
BASELINE_MS = 500


def _child(work: Path, args, decay_ms: int) -> dict:
    env = {**os.environ, SETTING_ENV: str(decay_ms), JEMALLOC_ENV: jemalloc_options(decay_ms)}
    cmd = [sys.executable, "-m", "bench", "--stage", "transform_full_run", "--workdir", str(work),
           "--equities", str(args.equities), "--coins", str(args.coins), "--years", str(args.years),
           "--as-of", args.as_of, "--seed", str(args.seed)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    return next(x for x in lines if x.get("stage") == "transform_full_run")


def stage_allocator(work: Path, args) -> None:
    runs: dict[int, list[dict]] = {BASELINE_MS: [], DEFAULT_ALLOCATOR_DECAY_MS: []}
    for _ in range(ROUNDS):
        for decay in runs:
            out = _child(work, args, decay)
            runs[decay].append(out)
            print(json.dumps({"stage": "allocator_run", "decay_ms": decay, "wall_s": out["seconds"],
                              "cpu_s": out["cpu_s"], "peak_rss_gib": out["peak_rss_gib"]}), flush=True)
    base = runs[BASELINE_MS]
    same = all(r["digests"] == base[0]["digests"] for rs in runs.values() for r in rs)
    for decay, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("seconds", "cpu_s", "peak_rss_gib")}
        ref = {k: statistics.median(r[k] for r in base) for k in med}
        print(json.dumps({
            "stage": "allocator", "decay_ms": decay, "baseline_ms": BASELINE_MS, "rounds": len(rs),
            "wall_s": round(med["seconds"], 2), "cpu_s": round(med["cpu_s"], 2),
            "peak_rss_gib": round(med["peak_rss_gib"], 3),
            "wall_ratio": round(med["seconds"] / ref["seconds"], 3), "cpu_ratio": round(med["cpu_s"] / ref["cpu_s"], 3),
            "rss_ratio": round(med["peak_rss_gib"] / ref["peak_rss_gib"], 3), "same_tables": same,
        }), flush=True)


STAGES = {"allocator": stage_allocator}
