"""Bench stage ``correlation_node``: the next day's correlation node alone (``transforms.graph.build_correlation``
with ``since``), this tree against its code as of ``BENCH_BASELINE`` (a git revision, default ``35c6485``:
before the node looked its answers up in a recent window of the previous rows), in one process, alternating.

Its inputs are those of a real next day: ``BENCH_NODE_INPUTS`` names a pickle of the node's
``(inputs, params, since, previous)`` (default ``<workdir>/correlation_node.pkl``); without one the stage
runs the next day's transform on the e2e bench's data as ``transform_next_day`` does (``python -m bench
--stages generate,e2e`` first) with the node's build wrapped to capture its arguments, and keeps them there.

Prints the median wall and CPU seconds of ``--nights`` reps each (default 5), their ratios, the previous
rows the node was given, and whether both builds returned the same tables (exactly, rows in any order)
and the same ``unchanged_before``::

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


STAGES = {"correlation_node": stage_correlation_node}
