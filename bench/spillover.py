"""Time the spillover node (issue 18's three marts), before and after a change, in one run.

``python -m bench.spillover --workdir /tmp/spill-500`` reads a bench panel
(``python -m bench --stages generate --workdir ...``); ``--data-dir DIR``
reads fact_returns, fact_prices and dim_asset of a finished run instead. From
them it builds the spillover node's inputs (fact_returns of the crypto series,
crypto indices and benchmarks; the crypto bars) and the node's previous
tables as of the session before the last, then times, in a fresh process per
code tree:

- ``full``: ``mart_spillover``, ``mart_lead_lag`` and ``mart_spillover_index``
  with production's settings, as ``spillover_marts`` calls them (the node's
  full build);
- ``next_day``: ``spillover_marts_since`` from the last session with the
  previous tables (the node's incremental build, previous rows included).

``--before REV`` (e.g. ``main``) also times the code of that git revision
(``git archive`` into a temporary directory) on the same inputs, right before
the working tree's, and prints each figure's ratio and the largest absolute
difference between the two trees' outputs (keys and null patterns must be
equal). CPU seconds of one process; wall seconds are printed too but move
with the machine's load. The node's work does not grow with equities: it
reads only crypto and benchmark series.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TABLES = ("mart_spillover", "mart_lead_lag", "mart_spillover_index")


def _inputs(args) -> tuple:
    """(returns, crypto prices, sessions, crypto names, benchmarks, params) of the node."""
    import polars as pl

    from contracts.vocabulary import CRYPTO_CLASSES
    from flows.params import mart_params
    from flows.settings import get_settings
    from transforms.graph import build_indices, build_returns

    params = mart_params(get_settings())
    if args.workdir:
        prices = pl.read_parquet(args.workdir / "prices.parquet")
        assets = pl.read_parquet(args.workdir / "assets.parquet")
        sessions = pl.read_parquet(args.workdir / "sessions.parquet")["session_date"]
        built = build_indices({"prices": prices, "assets": assets}, params, None, {}).tables
        all_prices, dim, benchmarks = built["fact_prices"], built["dim_asset"], built["_benchmarks"]["symbol"].to_list()
        returns = build_returns({"fact_prices": all_prices, "sessions": sessions}, params, None, {}).tables["fact_returns"]
    else:
        from warehouse.query import read_tables

        t = read_tables(args.data_dir / "warehouse.duckdb", ["fact_returns", "fact_prices", "dim_asset"])
        returns, all_prices, dim = t["fact_returns"], t["fact_prices"], t["dim_asset"]
        present = set(returns["symbol"].unique().to_list())
        benchmarks = [b for b in params.benchmarks if b in present]
        sessions = returns.filter(pl.col("symbol") == benchmarks[0])["session_date"]
    sessions = sessions.cast(pl.Date).unique().sort()
    crypto = dim.filter(pl.col("asset_class").is_in(CRYPTO_CLASSES))["symbol"].to_list()
    sp = params.spillover
    focus = sorted(set(crypto) | set(benchmarks) | set(sp.index_series))
    return (
        returns.filter(pl.col("symbol").is_in(focus)),
        all_prices.filter(pl.col("symbol").is_in(crypto)),
        sessions,
        crypto,
        benchmarks,
        sp,
    )


def prepare(args, into: Path) -> dict:
    """Write the node's inputs and its previous tables (as of the session before the last) to ``into``."""
    import polars as pl

    from transforms.spillover_marts import spillover_marts

    returns, prices, sessions, crypto, benchmarks, sp = _inputs(args)
    returns.write_parquet(into / "returns.parquet")
    prices.write_parquet(into / "prices.parquet")
    pl.DataFrame({"session_date": sessions}).write_parquet(into / "sessions.parquet")
    last = sessions[-1]
    previous = spillover_marts(
        returns.filter(pl.col("session_date") < last), prices.filter(pl.col("date") < last),
        sessions.filter(sessions < last), crypto, benchmarks, sp,
    )  # fmt: skip
    for name, frame in previous.items():
        frame.write_parquet(into / f"previous.{name}.parquet")
    meta = {"crypto": crypto, "benchmarks": benchmarks, "last": last.isoformat(), "sessions": sessions.len()}
    (into / "meta.json").write_text(json.dumps(meta))
    return meta


def time_tree(inputs: Path, out: Path) -> list[dict]:
    """Run in a code tree's own process: time the node's full and next-day builds, write their outputs."""
    from datetime import date

    import polars as pl

    import transforms
    from flows.params import mart_params
    from flows.settings import get_settings
    from transforms.lead_lag import mart_lead_lag
    from transforms.spillover import mart_spillover
    from transforms.spillover_index import mart_spillover_index
    from transforms.spillover_marts import spillover_marts_since

    meta = json.loads((inputs / "meta.json").read_text())
    crypto, benchmarks, last = meta["crypto"], meta["benchmarks"], date.fromisoformat(meta["last"])
    returns = pl.read_parquet(inputs / "returns.parquet")
    prices = pl.read_parquet(inputs / "prices.parquet")
    sess = pl.read_parquet(inputs / "sessions.parquet")["session_date"]
    previous = {t: pl.read_parquet(inputs / f"previous.{t}.parquet") for t in TABLES}
    sp = mart_params(get_settings()).spillover
    w = tuple(sp.windows)
    full = {
        "mart_spillover": lambda: mart_spillover(
            returns, sess, crypto, benchmarks, w, sp.regime_lookback, sp.min_observations, sp.cadence),
        "mart_lead_lag": lambda: mart_lead_lag(
            returns, prices, sess, crypto, benchmarks, w, sp.min_observations, sp.cadence),
        "mart_spillover_index": lambda: mart_spillover_index(
            returns, sess, tuple(sp.index_series), sp.index_window, sp.index_horizon, sp.index_max_lags, sp.index_ic,
            sp.index_step),
    }  # fmt: skip
    lines = []
    for name, fn in [*full.items(), ("next_day", None)]:
        t0, c0 = time.perf_counter(), time.process_time()
        if fn is None:
            result = spillover_marts_since(previous, returns, prices, sess, crypto, benchmarks, sp, last)
        else:
            result = {name: fn()}
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        for t, frame in result.items():
            frame.write_parquet(out / f"{'next_day.' if fn is None else ''}{t}.parquet")
        lines.append({
            "mart": name, "rows": sum(f.height for f in result.values()), "cpu_s": round(cpu, 2),
            "wall_s": round(wall, 2), "tree": str(Path(transforms.__file__).parent.parent),
        })  # fmt: skip
    return lines


def _run_tree(tree: Path, inputs: Path, out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, __file__, "--time-tree", str(inputs), "--out", str(out)],
        cwd=tree, env=env, check=True, capture_output=True, text=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def max_abs_diff(before: Path, after: Path) -> dict:
    """Per output table: equal keys and null patterns, and the largest absolute difference of each float column."""
    import numpy as np
    import polars as pl

    out = {}
    for path in sorted(after.glob("*.parquet")):
        a, b = pl.read_parquet(before / path.name), pl.read_parquet(path)
        floats = [c for c, t in b.schema.items() if t == pl.Float64]
        same_keys = a.height == b.height and a.drop(floats).equals(b.drop(floats))
        diffs = {}
        for c in floats:
            x, y = a[c].to_numpy(), b[c].to_numpy()
            if x.shape != y.shape or not (np.isnan(x) == np.isnan(y)).all():
                diffs[c] = "null pattern differs"
                continue
            d = np.abs(x - y)[~np.isnan(x)]
            diffs[c] = float(d.max()) if d.size else 0.0
        out[path.stem] = {"keys_equal": same_keys, "max_abs_diff": diffs}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.spillover", description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--workdir", type=Path, help="a bench panel (prices/assets/sessions parquet)")
    src.add_argument("--data-dir", type=Path, help="a finished run's data directory (warehouse.duckdb)")
    ap.add_argument("--before", help="a git revision whose code is timed on the same inputs first")
    ap.add_argument("--time-tree", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.time_tree:
        for line in time_tree(args.time_tree, args.out):
            print(json.dumps(line), flush=True)
        return 0
    if not (args.workdir or args.data_dir):
        ap.error("one of --workdir or --data-dir is required")
    here = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="bench-spillover-") as tmp:
        tmp = Path(tmp)
        (tmp / "inputs").mkdir()
        meta = prepare(args, tmp / "inputs")
        print(json.dumps({"crypto_series": len(meta["crypto"]), "benchmarks": meta["benchmarks"],
                          "sessions": meta["sessions"]}), flush=True)  # fmt: skip
        runs = {}
        if args.before:
            tree = tmp / "before"
            tree.mkdir()
            archive = subprocess.run(["git", "archive", args.before], cwd=here, check=True, capture_output=True)
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
            runs["before"] = _run_tree(tree, tmp / "inputs", tmp / "out-before")
        runs["after"] = _run_tree(here, tmp / "inputs", tmp / "out-after")
        for label, lines in runs.items():
            for line in lines:
                print(json.dumps({"code": label, **line}), flush=True)
        if "before" in runs:
            for b, a in zip(runs["before"], runs["after"], strict=True):
                print(json.dumps({
                    "mart": a["mart"], "before_cpu_s": b["cpu_s"], "after_cpu_s": a["cpu_s"],
                    "cpu_ratio": round(a["cpu_s"] / b["cpu_s"], 3) if b["cpu_s"] else None,
                    "before_wall_s": b["wall_s"], "after_wall_s": a["wall_s"],
                }))  # fmt: skip
            full_b = sum(x["cpu_s"] for x in runs["before"] if x["mart"] != "next_day")
            full_a = sum(x["cpu_s"] for x in runs["after"] if x["mart"] != "next_day")
            print(json.dumps({"mart": "full (three marts)", "before_cpu_s": round(full_b, 2),
                              "after_cpu_s": round(full_a, 2), "cpu_ratio": round(full_a / full_b, 3)}))  # fmt: skip
            print(json.dumps({"max_abs_diff_after_vs_before": max_abs_diff(tmp / "out-before", tmp / "out-after")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
