"""Bench stages of the incremental path (issue #9).

``transform_incremental[_no_factors]``: the previous run's tables (the full
build as of the session before the panel's last) are built in a child
process and written to the work dir, outside the timed part. The stage then
times, in one process, the full build as of the last session and the
incremental build of that session from the previous tables, and prints both
CPU times and their ratio. ``_no_factors`` leaves the Alpha Score out of both
sides (``MartParams(factors=False)``).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path


def _params(factors: bool):
    from bench.__main__ import _params as default_params

    return dataclasses.replace(default_params(), factors=factors)


def _tables_dir(work: Path, factors: bool) -> Path:
    return work / ("previous_tables" if factors else "previous_tables_no_factors")


def _previous(work: Path, factors: bool) -> None:
    """Child process: the full build as of the second-to-last session, written as Parquet."""
    import polars as pl

    from bench.__main__ import _inputs
    from transforms.marts import build_marts

    prices, assets, sessions = _inputs(work)
    sess = sessions.sort()
    prev = sess[-2]
    marts = build_marts(prices.filter(pl.col("date") <= prev), assets, sess.filter(sess <= prev), _params(factors))
    out = _tables_dir(work, factors)
    out.mkdir(exist_ok=True)
    for name, frame in marts.tables.items():
        frame.write_parquet(out / f"{name}.parquet")


def stage_previous(work: Path, args) -> None:
    _previous(work, factors=True)


def stage_previous_no_factors(work: Path, args) -> None:
    _previous(work, factors=False)


def _incremental(work: Path, args, factors: bool) -> None:
    import polars as pl

    from bench.__main__ import _inputs, emit, peak_rss, rss_now
    from transforms.marts import build_marts

    label = "transform_incremental" if factors else "transform_incremental_no_factors"
    if factors and not _factor_api_ready():
        # Do not pay two full builds (~9 GiB each at full size) to print this.
        print(json.dumps({"stage": label, "error": "build_factor_marts/evaluate_factors have no from_date yet "
                          "(alpha branch); run transform_incremental_no_factors"}), flush=True)
        return
    child = "incremental_previous" if factors else "incremental_previous_no_factors"
    cmd = [sys.executable, "-m", "bench", "--stage", child, "--workdir", str(work)]
    subprocess.run(cmd, check=True)
    previous = {p.stem: pl.read_parquet(p) for p in sorted(_tables_dir(work, factors).glob("*.parquet"))}
    prices, assets, sessions = _inputs(work)
    sess = sessions.sort()
    params = _params(factors)
    from_date = sess[-2] + timedelta(days=1)

    gc.collect()
    t, c = time.perf_counter(), time.process_time()
    full = build_marts(prices, assets, sess, params)
    full_s, full_cpu = time.perf_counter() - t, time.process_time() - c
    full_rows = {k: v.height for k, v in full.tables.items()}
    # Each table's dates, to count the full build's rows of the tails the incremental build hands on
    # (Marts.unchanged_before: a named table holds only its rows from that date).
    from contracts.tables import TABLES

    full_dates = {k: v[TABLES[k].date_column] for k, v in full.tables.items() if k in TABLES and TABLES[k].date_column}
    # Kept for the check below: the last session's correlations and events.
    last = sess[-1]
    full_corr = full.tables["mart_rolling_correlation"].filter(pl.col("date") == last)
    full_events = full.tables["mart_correlation_events"].filter(pl.col("date") == last)
    del full
    gc.collect()
    emit(f"{label}_full_build", full_s, prices.height, cpu=full_cpu, output_rows=full_rows)

    before = rss_now()
    t, c = time.perf_counter(), time.process_time()
    try:
        inc = build_marts(prices, assets, sess, params, previous=previous, since=from_date)
    except TypeError as exc:  # the Alpha Score's from_date API is not there yet
        print(json.dumps({"stage": label, "error": str(exc)}), flush=True)
        return
    inc_s, inc_cpu = time.perf_counter() - t, time.process_time() - c
    inc_rows = {k: v.height for k, v in inc.tables.items()}
    full_rows = {k: int(((full_dates[k] >= inc.unchanged_before[k]) | full_dates[k].is_null()).sum()) if k in inc.unchanged_before else n
                 for k, n in full_rows.items()}  # fmt: skip
    keys = ["asset", "benchmark", "window_days"]
    corr = inc.tables["mart_rolling_correlation"].filter(pl.col("date") == last).sort(keys)
    full_corr = full_corr.sort(keys)
    same_keys = corr.select(keys).equals(full_corr.select(keys))
    emit(
        label, inc_s, prices.height, rss_before=before, cpu=inc_cpu, peak=peak_rss(),
        cpu_ratio_to_full=round(inc_cpu / full_cpu, 4), wall_ratio_to_full=round(inc_s / full_s, 4),
        same_row_counts=inc_rows == full_rows,
        last_day_corr_max_abs_diff=float((corr["correlation"] - full_corr["correlation"]).abs().max() or 0.0) if same_keys else None,
        last_day_events_equal=inc.tables["mart_correlation_events"].filter(pl.col("date") == last).sort([*keys, "event", "level"]).drop("correlation").equals(full_events.sort([*keys, "event", "level"]).drop("correlation")),
    )  # fmt: skip


def _factor_api_ready() -> bool:
    import inspect

    from transforms.factor_eval import evaluate_factors
    from transforms.factors import build_factor_marts

    return all("from_date" in inspect.signature(f).parameters for f in (build_factor_marts, evaluate_factors))


def stage_transform_incremental(work: Path, args) -> None:
    _incremental(work, args, factors=True)


def stage_transform_incremental_no_factors(work: Path, args) -> None:
    _incremental(work, args, factors=False)


STAGES = {
    "transform_incremental": stage_transform_incremental,
    "transform_incremental_no_factors": stage_transform_incremental_no_factors,
    "incremental_previous": stage_previous,
    "incremental_previous_no_factors": stage_previous_no_factors,
}
