"""Bench stage ``price_figures_next_day``: the figures the next day's run states on the whole of
fact_prices (stale assets, the audit's gap and split-like warnings, the report's freshness), as the
transform stated them before (on the whole table in memory: ``stale_symbols``,
``warehouse.audit.price_warnings``, ``freshness``) against ``flows.price_figures.price_figures_from``
(the run's tail, one aggregate over the published rows before ``since``, the published run's carried
split-like moves), alternating in one process on the e2e bench's data.

Needs ``python -m bench --stages generate,e2e`` in the work dir (as ``transform_next_day``): the next
day's published fact_prices is the whole table, its rows from the next day's ``incremental_from``
on are the tail, and the full run (published in a scratch data dir, ``next_day_transform._scratch``)
gives the rows before. ``new_from_bars`` is the same with a published state that carries no moves
(written by an older version: the moves are found again from the published bars). Median wall and
CPU of ``--nights`` reps each (default 5), ratios, and whether all three give the same figures::

    flock /tmp/xasset-big.lock python -m bench --equities 2000 --coins 100 --years 20 \\
        --stages price_figures_next_day --workdir W
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import date
from functools import partial
from pathlib import Path


def stage_price_figures_next_day(work: Path, args) -> None:
    import polars as pl

    from bench.__main__ import emit
    from bench.next_day_transform import _runs, _scratch
    from flows.artifacts import freshness, stale_symbols
    from flows.calendar import sessions as exchange_sessions
    from flows.price_figures import MOVES_STATE, price_figures_from
    from warehouse.audit import price_warnings
    from warehouse.query import read_tables

    settings, _, next_as_of = _scratch(work)
    as_of = date.fromisoformat(next_as_of)
    runs = _runs(work / "e2e" / "data")
    (_, full), (_, nxt) = runs[-2], runs[-1]
    since = date.fromisoformat(json.loads((nxt / "run.json").read_text())["incremental_from"])
    whole = read_tables(nxt / "warehouse.duckdb", ["fact_prices"])["fact_prices"]
    assets = read_tables(nxt / "warehouse.duckdb", ["dim_asset"])["dim_asset"]
    tail = whole.filter(pl.col("date") >= since)
    # The full run's state as this version writes it: with the moves of its whole fact_prices.
    state_path = settings.data_dir / "current" / "run.json"
    plain = json.loads(state_path.read_text())
    plain.pop(MOVES_STATE, None)
    carried = dict(plain)
    published = read_tables(full / "warehouse.duckdb", ["fact_prices"])["fact_prices"]
    price_figures_from(published, None, assets, as_of, settings, state=carried)
    del published

    def old():
        stale = stale_symbols(whole, assets, as_of, exchange_sessions(whole["date"].min(), as_of,
                              settings.exchange_calendar), settings.stale_after_sessions)
        warnings = price_warnings(whole, assets, as_of, partial(exchange_sessions, code=settings.exchange_calendar))
        return stale, warnings, freshness(whole, assets)

    def new():
        return price_figures_from(tail, since, assets, as_of, settings, state={})

    times: dict[str, list[tuple[float, float]]] = {"old_whole": [], "new": [], "new_from_bars": []}
    got = {}
    for _ in range(max(1, args.nights)):
        for name, runs in times.items():
            if name != "old_whole":
                state_path.write_text(json.dumps(carried if name == "new" else plain, default=str))
            t, c = time.perf_counter(), time.process_time()
            got[name] = (old if name == "old_whole" else new)()
            runs.append((time.perf_counter() - t, time.process_time() - c))
    state_path.write_text(json.dumps(plain, default=str))
    med = {n: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for n, v in times.items()}
    base_w, base_c = med["old_whole"]
    for name, (w, c) in med.items():
        emit(
            f"price_figures_{name}", w, whole.height if name == "old_whole" else tail.height, cpu=c,
            since=str(since), carried_moves=len(carried[MOVES_STATE]),
            ratio_wall=round(w / base_w, 3), ratio_cpu=round(c / base_c, 3), reps=len(times[name]),
            equal=got[name] == got["old_whole"], warnings=got[name][1],
        )


STAGES = {"price_figures_next_day": stage_price_figures_next_day}
