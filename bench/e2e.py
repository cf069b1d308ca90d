"""Bench stage ``e2e``: issue #16's end-to-end targets, through the CLI, as a deployment runs.

Needs the ``generate`` stage's panel in the work dir (``python -m bench --stages
generate,e2e,correlation``: the correlation stage then gives the numpy
baseline ratio in the same bench run). The panel's last day is D+1, which
must be an exchange session (the default ``--as-of`` 2026-11-20 is a Friday).

1. The panel is written in the files source's long-Parquet layout
   (``flows/sources/files.py``: one file per asset class with a ``symbol``
   column) up to D, with a universe YAML naming every symbol, its class and
   sector (``XASSET_UNIVERSE_PATH``), so the run sees what bench builds.
2. ONE local Prefect server is started (``flows.serve.owned_api_server``, as
   ``xasset serve`` does) and ``PREFECT_API_URL`` points both runs at it; it
   is stopped at the end, also on error.
3. ``python -m flows.cli run --source files --path DIR --as-of D`` into an
   empty data dir (the full run), then the files get one more day of bars and
   ``--as-of D+1`` runs (the next day's run). With ``--e2e-nights N`` (default 5)
   N-1 more nights follow, each on bars made up for the next XNYS session (and
   every UTC day up to it for the coins: ``_made_up_night``), so the next day's
   figure is the median of N real next days on one data dir (deltas, cursor and
   published state as a deployment accumulates them), not one sample. Each is a subprocess reaped with
   ``os.wait4``: wall time, CPU seconds (user+sys of the run and the children
   it reaped) and peak RSS of that run alone (``ru_maxrss``: its largest process), and the
   peak of the run's process tree summed, sampled every 0.5 s (``peak_tree_rss_gib``).
4. From each run's own record (``state/pipeline_runs``): status, seconds and
   ``stage_seconds``; from its log: whether the transform was incremental
   ("incremental rebuild from ..." or "full rebuild: <why>") and whether the
   load recycled the file of the run before the published one, copied the published warehouse
   or "built whole: <why>".

Prints one JSON line per run and a summary line with the ratio next-day/full (the median night's)
and the targets (full <= 60 s wall, peak RSS <= 8 GiB, next day <= 10% of
full). The load average (``os.getloadavg``) is on every line: the machine is
shared. The CLI's output is kept in ``WORK/e2e/<run>.log``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3
TARGET_FULL_S = 60.0
TARGET_RSS_GIB = 8.0
TARGET_NEXT_DAY_SHARE = 0.10
# What the flow logs about the transform (flows/nightly.py) and the load (the ``load`` task).
_TRANSFORM = re.compile(r"(incremental rebuild from \S+|full rebuild: [^\n]*)")
_LOAD = re.compile(
    r"(warehouse built whole: [^\n]*|warehouse copied from the published run[^\n]*|warehouse recycled from run [^\n]*)"
)


def _load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _emit(stage: str, **fields) -> None:
    print(json.dumps({"stage": stage, "load_avg": _load_avg(), **fields}, default=str), flush=True)


def _universe(assets, path: Path) -> None:
    """Every bench symbol with its class and sector; JSON is YAML."""
    rows = []
    for a in assets.iter_rows(named=True):
        row = {"symbol": a["symbol"], "name": a["name"], "asset_class": a["asset_class"]}
        if a["sector"]:
            row["sector"] = a["sector"]
        if a["asset_class"] == "crypto":
            row["quote_currency"] = a["quote_currency"]
        rows.append(row)
    path.write_text(json.dumps({"benchmarks": ["^RUT", "^GSPC"], "assets": rows}, indent=0))


def _write_files(prices, assets, through, folder: Path) -> int:
    """The panel up to ``through`` as the files source reads it: one long Parquet per asset class."""
    import polars as pl

    folder.mkdir(parents=True, exist_ok=True)
    # Date-major, as a file one appends a day to grows: the next day's rows come last and every
    # earlier bar keeps its row number, so its ``origin`` ("equities.parquet row N") stays the same
    # (sorted by symbol, one more day would move every later symbol's rows and the lake would
    # rewrite every year file for the new origins).
    bars = prices.filter(pl.col("date") <= through).select(
        "symbol", "date", "open", "high", "low", "close", "adj_close", "volume"
    ).sort("date", "symbol")
    crypto = assets.filter(pl.col("asset_class") == "crypto")["symbol"].implode()
    for name, part in (("equities", bars.filter(~pl.col("symbol").is_in(crypto))),
                       ("crypto", bars.filter(pl.col("symbol").is_in(crypto)))):
        tmp = folder / f".{name}.parquet.tmp"
        part.write_parquet(tmp)
        tmp.replace(folder / f"{name}.parquet")  # a reader never sees half a file
    return bars.height


def _made_up_night(folder: Path, night: int, seed: int):
    """One more night of input bars, appended to the files as a day's input grows: the next XNYS
    session for the equities and indices, every UTC day up to it for the coins; each symbol's bar is
    its last one moved by a small seeded random return (open/high/low/close alike, volume kept).
    Returns the new as-of (the equity session)."""
    import numpy as np
    import polars as pl

    from flows.calendar import sessions as xnys_sessions

    rng = np.random.default_rng([seed, night])
    equities = pl.read_parquet(folder / "equities.parquet")
    last = equities["date"].max()
    session = xnys_sessions(last + timedelta(days=1), last + timedelta(days=14))[0]
    for name in ("equities", "crypto"):
        bars = equities if name == "equities" else pl.read_parquet(folder / "crypto.parquet")
        prev_day = bars["date"].max()
        days = [session] if name == "equities" else [
            prev_day + timedelta(days=i) for i in range(1, (session - prev_day).days + 1)]
        day = bars.filter(pl.col("date") == prev_day)
        added = []
        for d in days:
            move = pl.Series(np.exp(rng.normal(0.0, 0.01, day.height)))
            day = day.with_columns(pl.lit(d).alias("date"),
                                   *[(pl.col(c) * move).alias(c) for c in ("open", "high", "low", "close", "adj_close")])
            added.append(day)
        tmp = folder / f".{name}.parquet.tmp"
        pl.concat([bars, *added]).write_parquet(tmp)
        tmp.replace(folder / f"{name}.parquet")
    return session


def _tree_rss(pid: int) -> int:
    """Bytes resident in ``pid`` and every process below it (``/proc``; 0 once it is gone)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next((int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:")), 0)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (OSError, ValueError):
            continue
    return total


class _TreePeak(threading.Thread):
    """The peak of ``_tree_rss`` sampled every ``every`` seconds until stopped: a run's children
    (e.g. a DuckDB or Prefect helper) count together, where ``ru_maxrss`` is one process's peak."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.done = pid, every, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, _tree_rss(self.pid))
            self.done.wait(self.every)


def _cli_run(label: str, files: Path, data: Path, as_of, env: dict[str, str], logs: Path) -> dict:
    from warehouse.runs import RunLog

    log_path = logs / f"{label}.log"
    cmd = [sys.executable, "-m", "flows.cli", "run", "--source", "files", "--path", str(files),
           "--as-of", as_of.isoformat(), "--data-dir", str(data)]
    before = _load_avg()
    t = time.perf_counter()
    with log_path.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        sampler = _TreePeak(proc.pid)
        sampler.start()
        # wait4: this run's own rusage (it and the children it reaped), not every child's maximum so far.
        _, status, usage = os.wait4(proc.pid, 0)
        sampler.done.set()
        sampler.join()
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log_path.read_text(errors="replace")
    runs = RunLog(data).runs()
    last = runs.sort("started_at").row(-1, named=True) if runs.height else {}
    transform = _TRANSFORM.findall(text)
    load = _LOAD.findall(text)
    result = {
        "as_of": as_of.isoformat(),
        "exit_code": proc.returncode,
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_gib": round(usage.ru_maxrss * 1024 / GIB, 3),
        "peak_tree_rss_gib": round(sampler.peak / GIB, 3),  # the run and its children, sampled every 0.5 s
        "status": last.get("status"),
        "pipeline_s": round((last["finished_at"] - last["started_at"]).total_seconds(), 2)
        if last.get("finished_at") else None,
        "rows_written": last.get("rows_written"),
        "code_version": last.get("code_version"),
        "stage_seconds": json.loads(last["stage_seconds"]) if last.get("stage_seconds") else None,
        "transform": transform[-1] if transform else None,
        "load": load[-1] if load else None,
        "load_avg_before": before,
        "log": str(log_path),
    }
    if proc.returncode != 0:
        result["error_tail"] = text[-1500:]
    return result


def stage_e2e(work: Path, args) -> None:
    from bench.__main__ import _inputs
    from flows.serve import owned_api_server

    prices, assets, sessions = _inputs(work)
    next_day = sessions.max()
    if prices["date"].max() != next_day:
        raise SystemExit(f"e2e: the panel's last day {prices['date'].max()} is not a session; pick another --as-of")
    day = next_day - timedelta(days=1)
    root = work / "e2e"
    files, data, logs = root / "files", root / "data", root / "logs"
    if data.exists():  # the full run starts from an empty data dir
        import shutil

        shutil.rmtree(data)
    logs.mkdir(parents=True, exist_ok=True)
    universe = root / "universe.yaml"
    _universe(assets, universe)
    rows_d = _write_files(prices, assets, day, files)
    _emit("e2e_config", equities=int((assets["asset_class"] == "equity").sum()),
          coins=int((assets["asset_class"] == "crypto").sum()), price_rows=rows_d, full_as_of=day.isoformat(),
          next_as_of=next_day.isoformat(), files=str(files))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "XASSET_"))}
    env |= {"PREFECT_HOME": str(root / "client-home"), "DO_NOT_TRACK": "1",
            "XASSET_UNIVERSE_PATH": str(universe),
            # The flow's INFO lines (incremental or not, how the load went) on the console and in the
            # server's run logs, as a deployment's worker keeps them; the CLI's default silences them.
            "XASSET_PREFECT_QUIET": "false"}
    t = time.perf_counter()
    with owned_api_server(root / "server-home", startup_timeout=600) as api:
        _emit("e2e_prefect_server_start", seconds=round(time.perf_counter() - t, 2), api=api)
        env["PREFECT_API_URL"] = api
        full = _cli_run("full", files, data, day, env, logs)
        _emit("e2e_full_run", **full)
        if full["exit_code"] != 0:
            raise SystemExit(f"e2e: the full run failed; see {full['log']}")
        rows_next = _write_files(prices, assets, next_day, files)
        nights = [_cli_run("next_day", files, data, next_day, env, logs)]
        _emit("e2e_next_day_run", night=1, added_rows=rows_next - rows_d, **nights[0])
        if nights[0]["exit_code"] != 0:
            raise SystemExit(f"e2e: the next day's run failed; see {nights[0]['log']}")
        for night in range(2, max(1, args.e2e_nights) + 1):
            as_of = _made_up_night(files, night, args.seed)
            nights.append(_cli_run(f"next_day_{night}", files, data, as_of, env, logs))
            _emit("e2e_next_day_run", night=night, **nights[-1])
            if nights[-1]["exit_code"] != 0:
                raise SystemExit(f"e2e: night {night} failed; see {nights[-1]['log']}")
    del prices
    # The median night (by wall time) stands for the next day: one night is one sample on a shared machine.
    nxt = sorted(nights, key=lambda r: r["wall_s"])[(len(nights) - 1) // 2]
    share = nxt["wall_s"] / full["wall_s"]
    _emit(
        "e2e_summary",
        full_wall_s=full["wall_s"], full_cpu_s=full["cpu_s"], full_peak_rss_gib=full["peak_rss_gib"],
        next_wall_s=nxt["wall_s"], next_cpu_s=nxt["cpu_s"], next_peak_rss_gib=max(r["peak_rss_gib"] for r in nights),
        next_nights=len(nights), next_median_as_of=nxt["as_of"], next_walls_s=[r["wall_s"] for r in nights],
        next_stage_seconds=nxt["stage_seconds"],
        full_peak_tree_rss_gib=full["peak_tree_rss_gib"], next_peak_tree_rss_gib=nxt["peak_tree_rss_gib"],
        ratio_next_over_full_wall=round(share, 3), ratio_next_over_full_cpu=round(nxt["cpu_s"] / full["cpu_s"], 3),
        next_incremental=bool(nxt["transform"] and nxt["transform"].startswith("incremental")),
        next_load=nxt["load"],
        target_full_le_60s=full["wall_s"] <= TARGET_FULL_S,
        target_peak_rss_le_8gib=max(full["peak_rss_gib"], *(r["peak_rss_gib"] for r in nights)) <= TARGET_RSS_GIB,
        target_next_le_10pct=share <= TARGET_NEXT_DAY_SHARE,
    )


STAGES = {"e2e": stage_e2e}
