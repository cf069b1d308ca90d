"""Bench stage ``startup``: the CLI's fixed cost per run, against baselines measured in the same run.

Each measurement is a fresh process, repeated ``ROUNDS`` times with the kinds
interleaved (a burst of load on the shared machine then hits every kind alike);
each line gives the median wall and CPU seconds (user + system of the process
and its children) and the CPU ratio to the baselines:

* ``python_pass`` (``python -c pass``) and ``import_prefect``: the baselines;
* ``cli_help``: ``python -m flows.cli --help`` (what every command pays);
* ``run_imports``: ``import flows.cli, flows.nightly`` (a run before its flow body);
* ``sessions_computed`` / ``sessions_cached``: a process's first
  ``flows.calendar.sessions`` call, for the 20 years the e2e bench covers,
  without a calendar cache (exchange_calendars and pandas imported, the
  calendar built, as every run did before the cache) and with the file a
  previous run kept (``flows.calendar.cache_sessions_in``); the lists are
  checked equal;
* ``cli_run_server_first`` / ``cli_run_server_again``: ``xasset run --source sample``
  (a short range) against one running Prefect server, then the same run again
  with no new data: its CPU is the per-run fixed cost, split by
  ``bench.prefect_overhead`` into before the first stage, the pipeline and
  after it (``after_s``: the run log's end to the process's exit);
* ``cli_run_server_again_as_before``: the same run again with the CLI's fixed-cost
  cuts undone in its process (``flows.cli.settle_imports``: no ``gc.freeze``;
  ``flows.heartbeat``: Prefect's own heartbeat loop), interleaved with
  ``cli_run_server_again`` for ``RUN_ROUNDS`` rounds each; the ratio line
  compares their medians.

``python -m bench --stages startup`` (no panel needed).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROUNDS = 5
RUN_ROUNDS = 4
SESSIONS = """
import json, sys
from datetime import date
from pathlib import Path
from flows.calendar import cache_sessions_in, sessions
cache_sessions_in(Path(sys.argv[1]) if sys.argv[1] != "-" else None)
s = sessions(date(2006, 1, 2), date(2026, 11, 20))
print(json.dumps({"n": s.len(), "digest": int(s.hash().sum())}))
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    t, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - t, _children_cpu() - cpu, done.stdout


def _emit(stage: str, **fields) -> None:
    print(json.dumps({"stage": stage, "load_avg_1m": round(os.getloadavg()[0], 2), **fields}), flush=True)


def _summary(samples: list[tuple[float, float]]) -> dict:
    return {"wall_s": round(statistics.median(s[0] for s in samples), 3),
            "cpu_s": round(statistics.median(s[1] for s in samples), 3),
            "cpu_s_all": [round(s[1], 3) for s in samples]}


# The CLI's fixed-cost cuts undone in one process, as the code ran before them: the imported modules stay in
# every collection (no gc.freeze) and Prefect's own heartbeat loop is kept (its join waits out a 1 s sleep).
AS_BEFORE = """
import flows.cli, flows.heartbeat
flows.cli.settle_imports = lambda: None
flows.heartbeat.end_heartbeats_promptly = lambda: False
"""


def stage_startup(work: Path, args) -> None:
    from bench.prefect_overhead import CLI_DRIVER, _cli_run, _env
    from flows.serve import owned_api_server

    root = work / "startup"
    env = _env(root / "import-home", None)
    py = sys.executable
    kinds = {
        "python_pass": [py, "-c", "pass"],
        "import_prefect": [py, "-c", "import prefect"],
        "cli_help": [py, "-m", "flows.cli", "--help"],
        "run_imports": [py, "-c", "import flows.cli, flows.nightly"],
    }
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in [*kinds, "sessions_computed", "sessions_cached"]}
    answers: dict[str, set[str]] = {"sessions_computed": set(), "sessions_cached": set()}
    for r in range(ROUNDS):
        for kind, cmd in kinds.items():
            wall, cpu, _ = _timed(cmd, env)
            samples[kind].append((wall, cpu))
        # Computed with no cache (as every run did before it); a run that keeps it (not timed); the kept
        # file read by a fresh process.
        cache = root / f"calendar-{r}"
        wall, cpu, out = _timed([py, "-c", SESSIONS, "-"], env)
        samples["sessions_computed"].append((wall, cpu))
        answers["sessions_computed"].add(out.strip())
        _timed([py, "-c", SESSIONS, str(cache)], env)
        wall, cpu, out = _timed([py, "-c", SESSIONS, str(cache)], env)
        samples["sessions_cached"].append((wall, cpu))
        answers["sessions_cached"].add(out.strip())
    if len(answers["sessions_computed"] | answers["sessions_cached"]) != 1:
        raise SystemExit(f"startup: cached sessions differ from computed ones: {answers}")
    base = {k: statistics.median(s[1] for s in samples[k]) for k in ("python_pass", "import_prefect")}
    for kind, got in samples.items():
        line = _summary(got)
        line["cpu_over_import_prefect"] = round(line["cpu_s"] / base["import_prefect"], 2) if base["import_prefect"] else None
        line["cpu_minus_python_pass"] = round(line["cpu_s"] - base["python_pass"], 3)
        _emit(f"startup_{kind}", rounds=ROUNDS, **line)
    computed, cached = (statistics.median(s[1] for s in samples[k]) for k in ("sessions_computed", "sessions_cached"))
    _emit("startup_sessions_cache", computed_cpu_s=round(computed, 3), cached_cpu_s=round(cached, 3),
          saved_cpu_s=round(computed - cached, 3), ratio_cached_over_computed=round(cached / computed, 3) if computed else None,
          same_sessions=True)

    with owned_api_server(root / "server-home", startup_timeout=600) as api:
        client = _env(root / "client-home", api)
        _emit("startup_cli_run_server_first", **_cli_run(root / "server-data", client))
        runs: dict[str, list[dict]] = {"again": [], "again_as_before": []}
        for _ in range(RUN_ROUNDS):
            runs["again"].append(_cli_run(root / "server-data", client))
            runs["again_as_before"].append(_cli_run(root / "server-data", client, AS_BEFORE + CLI_DRIVER))
        medians = {}
        for kind, got in runs.items():
            medians[kind] = {k: round(statistics.median(r[k] for r in got), 3)
                             for k in ("wall_s", "cpu_s", "before_s", "pipeline_s", "after_s")}
            _emit(f"startup_cli_run_server_{kind}", rounds=RUN_ROUNDS, **medians[kind],
                  cpu_s_all=[r["cpu_s"] for r in got], after_s_all=[r["after_s"] for r in got])
        now, before = medians["again"], medians["again_as_before"]
        _emit("startup_cli_run_cuts_ratio", **{f"{k}_now_over_before": round(now[k] / before[k], 3) if before[k] else None
                                               for k in ("wall_s", "cpu_s", "after_s")},
              **{f"{k}_saved": round(before[k] - now[k], 3) for k in ("wall_s", "cpu_s", "after_s")})


STAGES = {"startup": stage_startup}
