"""Bench stage of the full run's audit (issue #16): ``audit_full``.

Needs the ``transform`` stage's tables in the work dir. Times, in one process,
what the publish step's audit runs on a full build: the rules
(``warehouse.audit.audit``; also as before 2026-12-05, every primary key hashed by
dataframely, with the ratio and a check of equal failures) and the warnings (``audit_warnings``: session gaps
and split-like moves), each after one untimed call (lazy imports, the exchange
calendar). The split-like moves are also timed as they were computed before
(all of fact_prices sorted by symbol and date, then a shift over symbol):
``split_like_moves_before``, with the ratio and a check that both find the
same moves.
"""

from __future__ import annotations

import math
import time
from functools import partial
from pathlib import Path


def _split_like_moves_before(prices, assets):
    """The moves as ``warehouse.quality.split_like_moves`` found them before 2026-12-05."""
    import polars as pl

    from warehouse.quality import EQUITY_CLASSES, SPLIT_LIKE_LOG_MOVE

    equities = assets.filter(pl.col("asset_class").is_in(EQUITY_CLASSES))["symbol"].implode()
    return (
        prices.filter(pl.col("symbol").is_in(equities))
        .sort("symbol", "date")
        .with_columns((pl.col("adj_close") / pl.col("adj_close").shift(1).over("symbol")).log().alias("_m"))
        .filter(pl.col("_m").abs() >= SPLIT_LIKE_LOG_MOVE)
    )


def stage_audit_full(work: Path, args) -> None:
    import polars as pl

    from bench.__main__ import emit, rss_now
    from flows.calendar import sessions
    from flows.settings import get_settings
    from warehouse import quality
    from warehouse.audit import audit, audit_warnings

    tables = {p.stem: pl.read_parquet(p) for p in sorted((work / "tables").glob("*.parquet"))}
    rows = sum(f.height for f in tables.values())
    prices, assets = tables["fact_prices"], tables["dim_asset"]
    as_of = prices["date"].max()
    calendar = partial(sessions, code=get_settings().exchange_calendar)
    before = rss_now()

    def timed(fn):
        fn()  # untimed: one-time costs
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        return out, time.perf_counter() - t, time.process_time() - c

    failures, s, c = timed(lambda: audit(tables, as_of))
    # Before 2026-12-05 (branch fullwh) every primary key went through dataframely's hash of
    # every key; now only keys ``key_is_unique`` cannot prove do. The old way: nothing proven.
    proven = quality.key_is_unique
    quality.key_is_unique = lambda frame, key: False
    try:
        failures_old, s_old, c_old = timed(lambda: audit(tables, as_of))
    finally:
        quality.key_is_unique = proven
    emit("audit_full_rules_before", s_old, rows, cpu=c_old, failures=len(failures_old))
    emit("audit_full_rules", s, rows, rss_before=before, cpu=c, failures=len(failures),
         ratio_to_before=round(s / s_old, 3), cpu_ratio_to_before=round(c / c_old, 3),
         same_failures=failures == failures_old)
    warnings, s, c = timed(lambda: audit_warnings(tables, as_of, None, calendar))
    emit("audit_full_warnings", s, prices.height, rss_before=before, cpu=c, warnings=len(warnings))
    old, s_old, c_old = timed(lambda: _split_like_moves_before(prices, assets))
    emit("split_like_moves_before", s_old, prices.height, cpu=c_old, moves=old.height)
    saved = quality.MAX_LISTED
    quality.MAX_LISTED = old.height + 1  # every move listed, to compare them all
    try:
        new, s, c = timed(lambda: quality.split_like_moves(prices, assets))
    finally:
        quality.MAX_LISTED = saved
    listed = ", ".join(f"{r['symbol']} {r['date']} ({math.exp(r['_m']) - 1:+.0%})" for r in old.iter_rows(named=True))
    same = new == [] if old.is_empty() else (len(new) == 1 and new[0].endswith(": " + listed))
    emit("split_like_moves", s, prices.height, cpu=c, moves=old.height, ratio_to_before=round(s / s_old, 3),
         same_moves=bool(same))


def stage_marts_full(work: Path, args) -> None:
    """The full run's staging of the Parquet marts (``warehouse.marts.stage_marts``), and the same
    as before 2026-12-05 (every year sorted with Polars' multi-column sort: no key-order check,
    no ``key_codes``) in the same process, with the ratio and a check that both wrote the same
    files (content-named: the same bytes). Twice each, alternating; the best of each counts.

    Also ``marts_full_split``: as before the one-gather year split (``marts.year_parts``: each
    year split off, then sorted), with ``now``'s ratio to it (``ratio_to_split``)."""
    import json
    import shutil

    import polars as pl

    from bench.__main__ import emit, rss_now
    from warehouse import marts

    tables = {p.stem: pl.read_parquet(p) for p in sorted((work / "tables").glob("*.parquet"))}
    rows = sum(f.height for f in tables.values())
    before = rss_now()
    now = (marts.strictly_increasing, marts.key_codes, marts._year_and_code)
    best: dict[str, tuple[float, float]] = {}
    files: dict[str, dict] = {}
    for variant in ("before", "split", "now", "before", "split", "now"):
        if variant == "before":
            marts.strictly_increasing, marts.key_codes = (lambda *_: False), (lambda *_: None)
        if variant == "split":
            marts._year_and_code = lambda *_: None
        out = work / f"marts-{variant}"
        shutil.rmtree(out, ignore_errors=True)
        try:
            t, c = time.perf_counter(), time.process_time()
            marts.stage_marts(tables, out, "bench", {"source": "bench"})
            s, cpu = time.perf_counter() - t, time.process_time() - c
        finally:
            marts.strictly_increasing, marts.key_codes, marts._year_and_code = now
        best[variant] = min(best.get(variant, (s, cpu)), (s, cpu))
        files[variant] = {p.name: json.loads(p.read_text())["files"] for p in out.glob("*.manifest.json")}
        shutil.rmtree(out)
    (s_old, c_old), (s, c) = best["before"], best["now"]
    emit("marts_full_before", s_old, rows, cpu=c_old)
    emit("marts_full", s, rows, rss_before=before, cpu=c, ratio_to_before=round(s / s_old, 3),
         cpu_ratio_to_before=round(c / c_old, 3), same_files=files["before"] == files["now"])
    s_split, c_split = best["split"]
    emit("marts_full_split", s_split, rows, cpu=c_split)
    emit("marts_full_vs_split", s, rows, cpu=c, ratio_to_split=round(s / s_split, 3),
         cpu_ratio_to_split=round(c / c_split, 3), same_files=files["split"] == files["now"])


STAGES = {"audit_full": stage_audit_full, "marts_full": stage_marts_full}
