"""Bench stage ``prefect_overhead``: what one ``xasset run`` spends outside the pipeline (issue #13).

Runs the real CLI (``python -m flows.cli run --source sample``, a short
range so the pipeline itself is small) in fresh processes and splits each
run's wall time with the run's own record (``pipeline_runs.started_at`` /
``finished_at``, written by the flow):

* ``before_s``: process start to the pipeline's start: interpreter, imports,
  Prefect start-up (the ephemeral API server, or the client against a running
  one), flow-run creation;
* ``pipeline_s``: the run as the run log records it;
* ``after_s``: the pipeline's end to process exit (reporting, Prefect shutdown);
* ``first_stage_s`` / ``first_stage_cpu_s``: process start to the first stage
  event (extract), wall and the CLI process's CPU (all threads, so a warm-up
  thread's imports count; the server's CPU does not).

Modes, each twice (the second run finds no new data):

* ``ephemeral``: nothing configured, as a new user runs it; Prefect starts its
  in-process API server with a fresh, then a warm ``PREFECT_HOME``;
* ``server``: ``PREFECT_API_URL`` points at a ``prefect server start`` that is
  already running (started before, its start-up timed separately).

Also, in the same run: ``import prefect`` and ``import flows.nightly`` alone, a
no-op flow in each mode (Prefect's own cost, without xasset's imports), the
load average at each line, and the ratios of the ephemeral to the server mode. ``python -m bench --stages prefect_overhead``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RANGE = ("--start", "2024-01-02", "--as-of", "2024-06-28")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env(home: Path, api_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "XASSET_"))}
    # The CLI's own start-up bound (prepare_prefect): a fresh home migrates its database first.
    env |= {"PREFECT_HOME": str(home), "DO_NOT_TRACK": "1", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


# ``python -m flows.cli`` as is, plus a listener on the flow's stage events (flows.progress, the
# CLI's progress bars use the same) that notes the process's CPU and wall clock at the first
# stage: CPU before the first stage is the figure a loaded machine does not inflate.
CLI_DRIVER = """
import atexit, json, os, sys, time
from flows import progress
first = {}
def note(event):
    if not first:
        first.update(stage=event.stage, cpu_s=time.process_time(), at=time.time())
progress._listeners.append(note)
atexit.register(lambda: open(os.environ["XASSET_BENCH_FIRST_STAGE"], "w").write(json.dumps(first)))
sys.argv = ["xasset", *sys.argv[1:]]
from flows.cli import app
app()
"""


def _cli_run(data: Path, env: dict[str, str], driver: str = CLI_DRIVER) -> dict:
    from warehouse.runs import RunLog

    marker = data.parent / f"{data.name}-first-stage.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    launched = datetime.now(UTC)
    t, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run([sys.executable, "-c", driver, "run", "--source", "sample", *RANGE,
                           "--data-dir", str(data)], env=env | {"XASSET_BENCH_FIRST_STAGE": str(marker)},
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    wall, cpu = time.perf_counter() - t, _children_cpu() - cpu
    exited = datetime.now(UTC)
    if done.returncode != 0:
        raise RuntimeError(f"xasset run failed:\n{done.stderr[-2000:]}")
    first = json.loads(marker.read_text())
    last = RunLog(data).runs().sort("started_at").row(-1, named=True)
    started, finished = (last[k].replace(tzinfo=UTC) if last[k].tzinfo is None else last[k]
                         for k in ("started_at", "finished_at"))
    return {
        "wall_s": round(wall, 2),
        # CPU seconds of the whole run (process and the children it reaped): steadier than wall on a busy machine.
        "cpu_s": round(cpu, 2),
        "before_s": round((started - launched).total_seconds(), 2),
        # Process start to the first stage event (extract): wall, and the CLI process's own CPU
        # (all its threads; the server's CPU is not in it).
        "first_stage_s": round(first["at"] - launched.timestamp(), 2),
        "first_stage_cpu_s": round(first["cpu_s"], 2),
        "pipeline_s": round((finished - started).total_seconds(), 2),
        "after_s": round((exited - finished).total_seconds(), 2),
        "rows_written": last["rows_written"],
    }


NOOP_FLOW = """
import time
from prefect import flow

@flow
def noop():
    print(time.time(), flush=True)

noop()
"""


def _noop_flow(env: dict[str, str]) -> dict:
    """A flow that does nothing: Prefect's own fixed cost, without xasset's imports."""
    launched = time.time()
    t, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run([sys.executable, "-c", NOOP_FLOW], env=env | {"PREFECT_LOGGING_LEVEL": "WARNING"},
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"no-op flow failed:\n{done.stderr[-2000:]}")
    wall, cpu = time.perf_counter() - t, _children_cpu() - cpu
    entered = float(done.stdout.split()[0])
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "before_s": round(entered - launched, 2)}


def _import(module: str, env: dict[str, str]) -> dict:
    t, cpu = time.perf_counter(), _children_cpu()
    subprocess.run([sys.executable, "-c", f"import {module}"], env=env, cwd=REPO, check=True, capture_output=True,
                   timeout=600)
    return {"seconds": round(time.perf_counter() - t, 2), "cpu_s": round(_children_cpu() - cpu, 2)}


def _attempt(measure, *args) -> dict:
    """A failed measurement is a result too (on a saturated machine Prefect's start-up times out)."""
    try:
        return measure(*args)
    except RuntimeError as exc:
        return {"error": str(exc).strip().splitlines()[-1]}


def _emit(stage: str, **fields) -> None:
    print(json.dumps({"stage": stage, "load_avg_1m": round(os.getloadavg()[0], 2), **fields}), flush=True)


def stage_prefect_overhead(work: Path, args) -> None:
    from flows.serve import owned_api_server

    root = work / "prefect_overhead"
    _emit("import_prefect", **_import("prefect", _env(root / "import-home", None)))
    _emit("import_flows_nightly", **_import("flows.nightly", _env(root / "import-home", None)),
          note="prefect plus polars, duckdb, pyarrow; exchange_calendars and dataframely load at first use")

    results: dict[str, list[dict]] = {"ephemeral": [], "server": []}
    _emit("noop_flow_ephemeral", **_attempt(_noop_flow, _env(root / "noop-home", None)))
    for attempt in ("first", "second"):
        r = _cli_run(root / "ephemeral-data", _env(root / "ephemeral-home", None))
        results["ephemeral"].append(r)
        _emit(f"cli_run_ephemeral_{attempt}", **r)

    home = root / "server-home"
    t = time.perf_counter()
    with owned_api_server(home, startup_timeout=600) as api:
        _emit("prefect_server_start", seconds=round(time.perf_counter() - t, 2), note="once per server, not per run")
        _emit("noop_flow_server", **_attempt(_noop_flow, _env(root / "client-home", api)))
        for attempt in ("first", "second"):
            r = _cli_run(root / "server-data", _env(root / "client-home", api))
            results["server"].append(r)
            _emit(f"cli_run_server_{attempt}", **r)

    ratios = {}
    for i, attempt in enumerate(("first", "second")):
        eph, srv = results["ephemeral"][i], results["server"][i]
        ratios[f"before_{attempt}"] = round(eph["before_s"] / srv["before_s"], 1) if srv["before_s"] > 0 else None
        ratios[f"wall_{attempt}"] = round(eph["wall_s"] / srv["wall_s"], 1) if srv["wall_s"] > 0 else None
    _emit("prefect_overhead_ratio_ephemeral_to_server", **ratios)


STAGES = {"prefect_overhead": stage_prefect_overhead}
