"""Time the rolling-correlation mart against numpy, before and after a change, in one run.

``python -m bench.correlation --workdir /tmp/corr-500 [--before main] [--repeat 3]``
reads a bench panel (``python -m bench --stages generate --workdir ...``) and,
in a fresh process per code tree, times ``transforms.correlation.rolling_correlation``
as the bench's ``correlation`` stage calls it (100 coins x 2 benchmarks x 4
windows) and, in the same process right after it, the two numpy baselines of
``bench/baseline.py`` (the working tree's, for both trees):

- ``numpy``: correlations only, as dense session x asset matrices (the
  ``correlation`` stage's yardstick);
- ``numpy_mart``: everything the mart holds (correlation, beta, paired count)
  as rows in the mart's order over each pair's span.

Each round runs the three in that order; the first round is cold (one-time
costs such as lazy imports fall on the mart, which runs first; the
``correlation`` stage warms both sides up instead). Printed per tree: CPU and wall seconds of each
round, and the ratios to each baseline (of the cold round and of the best
round). ``--before REV`` (e.g. ``main``) runs the code of that git revision
(``git archive`` into a temporary directory) first, on the same inputs, and
prints whether the two trees' outputs are equal bit for bit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def child(workdir: Path, out: Path, repeat: int) -> None:
    """Runs in the tree under test (its root first on sys.path)."""
    import importlib.util

    import polars as pl

    from transforms.correlation import rolling_correlation
    from transforms.returns import log_returns

    spec = importlib.util.spec_from_file_location("_baseline", HERE / "bench" / "baseline.py")
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)

    prices = pl.read_parquet(workdir / "prices.parquet")
    assets = pl.read_parquet(workdir / "assets.parquet")
    sessions = pl.read_parquet(workdir / "sessions.parquet")["session_date"]
    returns = log_returns(prices, sessions)
    coins = assets.filter(pl.col("asset_class") == "crypto")["symbol"].to_list()
    benchmarks, windows = ["^RUT", "^GSPC"], (30, 90, 180, 365)

    def numpy_corr():
        x = baseline.dense_returns(returns, sessions, coins)
        ys = baseline.dense_returns(returns, sessions, benchmarks)
        return {b: baseline.rolling_correlation(x, ys[:, j], windows) for j, b in enumerate(benchmarks)}

    runs = {
        "mart": lambda: rolling_correlation(returns, sessions, coins, benchmarks, windows),
        "numpy": numpy_corr,
        "numpy_mart": lambda: baseline.rolling_correlation_mart(returns, sessions, coins, benchmarks, windows),
    }
    rounds = []
    for _ in range(repeat):
        row = {}
        for name, run in runs.items():
            t, c = time.perf_counter(), time.process_time()
            result = run()
            row[name] = {"wall_s": round(time.perf_counter() - t, 3), "cpu_s": round(time.process_time() - c, 3)}
            if name == "mart":
                result.write_parquet(out)
        rounds.append(row)
    print(json.dumps(rounds))


def _run_tree(root: Path, args, out: Path) -> list[dict]:
    # This file's ``child`` (by path), with the tree under test first on sys.path.
    code = (
        f"import sys, importlib.util, pathlib; sys.path.insert(0, {str(root)!r});"
        f"spec = importlib.util.spec_from_file_location('_bench_corr', {str(Path(__file__).resolve())!r});"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m);"
        f"m.child(pathlib.Path({str(args.workdir)!r}), pathlib.Path({str(out)!r}), {args.repeat})"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{root}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _summary(label: str, rounds: list[dict]) -> dict:
    def ratio(r: dict, base: str, key: str) -> float:
        return round(r["mart"][key] / r[base][key], 2)

    best = {name: {k: min(r[name][k] for r in rounds) for k in ("wall_s", "cpu_s")} for name in rounds[0]}
    line = {"tree": label, "rounds": rounds, "best": best}
    for base in ("numpy", "numpy_mart"):
        for key in ("wall_s", "cpu_s"):
            line[f"cold_{key[:-2]}_ratio_to_{base}"] = ratio(rounds[0], base, key)
            line[f"best_{key[:-2]}_ratio_to_{base}"] = ratio(best, base, key)
    return line


def _bit_equal(a_path: Path, b_path: Path) -> dict:
    import numpy as np
    import polars as pl

    a, b = pl.read_parquet(a_path), pl.read_parquet(b_path)
    if a.schema != b.schema or a.height != b.height:
        return {"bit_equal": False, "why": f"schema/rows {a.schema}/{a.height} vs {b.schema}/{b.height}"}
    for col in a.columns:
        x, y = a[col], b[col]
        if not (x.is_null() == y.is_null()).all():
            return {"bit_equal": False, "why": f"null pattern of {col}"}
        if x.dtype == pl.Float64:
            xv, yv = x.fill_null(0.0).to_numpy(), y.fill_null(0.0).to_numpy()
            if (xv.view(np.int64) != yv.view(np.int64)).any():
                return {"bit_equal": False, "why": col, "max_abs_diff": float(np.nanmax(np.abs(xv - yv)))}
        elif not x.equals(y):
            return {"bit_equal": False, "why": col}
    return {"bit_equal": True, "rows": a.height}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.correlation", description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True, help="a bench panel (prices/assets/sessions.parquet)")
    ap.add_argument("--before", help="also time this git revision's code first (e.g. main)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds per tree (the first is the cold one)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="xasset-corr-") as tmp:
        tmp = Path(tmp)
        trees = []
        if args.before:
            old = tmp / "before"
            old.mkdir()
            archive = subprocess.run(["git", "archive", args.before], cwd=HERE, capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            trees.append((f"before ({args.before})", old))
        trees.append(("after (working tree)", HERE))
        outs = []
        for label, root in trees:
            out = tmp / f"{len(outs)}.parquet"
            print(json.dumps(_summary(label, _run_tree(root, args, out))), flush=True)
            outs.append(out)
        if len(outs) == 2:
            print(json.dumps({"before_vs_after": _bit_equal(outs[0], outs[1])}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
