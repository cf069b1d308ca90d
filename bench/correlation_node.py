"""Bench stage ``correlation_node``: the next day's correlation node alone (``transforms.graph.build_correlation``
with ``since``), this tree against its code as of ``BENCH_BASELINE`` (a git revision, default ``35c6485``:
before the node looked its answers up in a recent window of the previous rows), in one process, alternating.

Its inputs are those of a real next day: ``BENCH_NODE_INPUTS`` names a pickle of the node's
``(inputs, params, since, previous)`` (default ``<workdir>/correlation_node.pkl``); without one the stage
runs the next day's transform on the e2e bench's data as ``transform_next_day`` does (``python -m bench
--stages generate,e2e`` first) with the node's build wrapped to capture its arguments, and keeps them there.

Prints the median wall and CPU seconds of ``--nights`` reps each (default 5), their ratios, the previous
rows the node was given, and whether both builds returned the same tables (exactly, rows in any order)
and the same ``unchanged_before``. Then ``correlation_events_since`` alone on each of the
``BENCH_EVENT_NIGHTS`` (default 20) sessions before the captured one, as that night's run would call it
(the previous rows cut before it, its rows as the new ones): the median CPU seconds of both, on how many
nights the current code looked a series up in all previous rows (``transforms.events.RECENT_SESSIONS``:
its answer lay before the recent window), and whether all events were equal::

    flock /tmp/xasset-big.lock python -m bench --stages correlation_node --workdir W
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _module_at(rev: str, rel: str, name: str):
    source = subprocess.run(["git", "show", f"{rev}:{rel}"], cwd=REPO, check=True, capture_output=True, text=True).stdout
    path = Path("/tmp") / f"xasset_{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def baseline_build(rev: str):
    """``build_correlation`` as of ``rev``, calling that revision's event, incremental and rolling-correlation helpers."""
    tag = rev[:12]
    graph = _module_at(rev, "transforms/graph.py", f"graph_{tag}")
    events = _module_at(rev, "transforms/events.py", f"events_{tag}")
    incremental = _module_at(rev, "transforms/incremental.py", f"incremental_{tag}")
    graph.correlation_events_since = events.correlation_events_since
    graph.mart_correlation_events = events.mart_correlation_events
    correlation = _module_at(rev, "transforms/correlation.py", f"correlation_{tag}")
    incremental.rolling_correlation = correlation.rolling_correlation
    graph._rolling_correlation_since = incremental._rolling_correlation_since
    return graph.build_correlation


def _capture(work: Path, path: Path) -> None:
    """Run the next day's transform on the e2e bench's data, keeping the correlation node's arguments."""
    from datetime import date

    import transforms.graph as graph
    from bench.next_day_transform import _scratch
    from flows.stages.transform import transform
    from warehouse.lake import Lake

    settings, universe, next_as_of = _scratch(work)
    node = next(n for n in graph.GRAPH if n.name == "correlation")
    build = node.build

    def keep(inputs, params, since, previous):
        if since is not None:
            wanted = [t for t in node.inputs if t != "fact_returns"]  # the incremental build reads no fact_returns
            with path.open("wb") as fh:
                pickle.dump(({t: inputs[t] for t in wanted}, params, since, dict(previous)), fh)
        return build(inputs, params, since, previous)

    object.__setattr__(node, "build", keep)
    try:
        transform(Lake(settings.lake_dir, "files"), settings, universe, date.fromisoformat(next_as_of), synthetic=False)
    finally:
        object.__setattr__(node, "build", build)
    if not path.exists():
        raise SystemExit("correlation_node: the next day's transform was not incremental; nothing captured")


def _same(a, b) -> bool:
    if set(a.tables) != set(b.tables) or a.unchanged_before != b.unchanged_before:
        return False
    for name, x in a.tables.items():
        y = b.tables[name]
        if x.schema != y.schema or not x.sort(x.columns, nulls_last=True).equals(y.sort(y.columns, nulls_last=True)):
            return False
    return True


def stage_correlation_node(work: Path, args) -> None:
    from bench.__main__ import emit
    from transforms.graph import build_correlation

    path = Path(os.environ.get("BENCH_NODE_INPUTS", work / "correlation_node.pkl"))
    if not path.exists():
        _capture(work, path)
    with path.open("rb") as fh:
        inputs, params, since, previous = pickle.load(fh)
    inputs = {**inputs, "_part": None}
    rev = os.environ.get("BENCH_BASELINE", "35c6485")
    builds = {"baseline": baseline_build(rev), "current": build_correlation}
    times: dict[str, list[tuple[float, float]]] = {"baseline": [], "current": []}
    out = {}
    for _ in range(max(1, args.nights)):
        for name, build in builds.items():
            out.pop(name, None)
            t, c = time.perf_counter(), time.process_time()
            out[name] = build(inputs, params, since, previous)
            times[name].append((time.perf_counter() - t, time.process_time() - c))
    med = {n: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for n, v in times.items()}
    emit(
        "correlation_node", med["current"][0], sum(f.height for f in out["current"].tables.values()),
        cpu=med["current"][1], baseline=rev, baseline_s=round(med["baseline"][0], 3),
        baseline_cpu_s=round(med["baseline"][1], 3), ratio_wall=round(med["current"][0] / med["baseline"][0], 3),
        ratio_cpu=round(med["current"][1] / med["baseline"][1], 3), reps=len(times["current"]), since=str(since),
        previous_rows={t: f.height for t, f in previous.items()}, equal=_same(out["baseline"], out["current"]),
    )
    _event_nights(rev, inputs, params, since, previous, int(os.environ.get("BENCH_EVENT_NIGHTS", "20")))


def _event_nights(rev: str, inputs, params, since, previous, nights: int) -> None:
    import polars as pl

    import transforms.events as events
    from bench.__main__ import emit
    from transforms.graph import _plan

    base = _module_at(rev, "transforms/events.py", f"events_{rev[:12]}").correlation_events_since
    plan = _plan(inputs["sessions"], since, params)
    corr, prev_events = previous["mart_rolling_correlation"], previous["mart_correlation_events"]
    kw = {"levels": params.event_levels, "dead_band": params.event_dead_band}
    series_rows = events._series_rows
    night = {"recent_rows": 0, "whole": False}

    def counted(frame, keys):
        # A look-up among more rows than the recent window's: the fallback to all previous rows.
        night["whole"] |= frame.height > night["recent_rows"]
        return series_rows(frame, keys)

    cpu: dict[str, list[float]] = {"baseline": [], "current": []}
    equal, new_events, fallback_nights = True, 0, 0
    events._series_rows = counted
    try:
        for back in range(1, nights + 1):
            at = plan.from_idx - back
            day = plan.sess[at]
            prev = corr.filter(pl.col("date") < day)
            new, ev = corr.filter(pl.col("date") == day), prev_events.filter(pl.col("date") < day)
            recent_from = plan.sess[max(at - events.RECENT_SESSIONS, 0)]
            night.update(recent_rows=prev.filter(pl.col("date") >= recent_from).height, whole=False)
            got = {}
            for name, fn in (("baseline", base), ("current", events.correlation_events_since)):
                c = time.process_time()
                got[name] = fn(prev, ev, new, plan.sess, day, **kw)
                cpu[name].append(time.process_time() - c)
            equal &= got["baseline"].equals(got["current"])
            new_events += got["current"].filter(pl.col("date") == day).height
            fallback_nights += night["whole"]
    finally:
        events._series_rows = series_rows
    med = {n: statistics.median(v) for n, v in cpu.items()}
    emit(
        "correlation_events_nights", sum(cpu["current"]), new_events, cpu=med["current"], baseline_cpu_s=round(med["baseline"], 3),
        ratio_cpu=round(med["current"] / med["baseline"], 3), nights=nights, fallback_nights=fallback_nights,
        equal=equal,
    )


STAGES = {"correlation_node": stage_correlation_node}
