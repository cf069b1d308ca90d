"""``python -m bench --equities 2000 --coins 100 --years 20``

Generates a synthetic panel, then times each stage in a fresh subprocess and
prints one JSON line per stage: seconds, rows per second, peak RSS. The
rolling-correlation stage is compared with a numpy baseline measured in the
same run. Results and their interpretation: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

GIB = 1024**3


def rss_now() -> int:
    # /proc, not tracemalloc: Polars and Arrow allocate outside Python's allocator.
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss(who: int = resource.RUSAGE_SELF) -> int:
    return resource.getrusage(who).ru_maxrss * 1024


def emit(stage: str, seconds: float, rows: int, **extra) -> None:
    line = {
        "stage": stage,
        "seconds": round(seconds, 3),
        "rows": rows,
        "rows_per_s": round(rows / seconds) if seconds > 0 else None,
        "peak_rss_gib": round(extra.pop("peak", peak_rss()) / GIB, 3),
        "rss_before_gib": round(extra.pop("rss_before", 0) / GIB, 3),
        # CPU seconds of all threads: steadier than wall time on a shared machine.
        "cpu_s": round(extra.pop("cpu"), 3) if "cpu" in extra else None,
        **extra,
    }
    print(json.dumps(line), flush=True)


def _inputs(work: Path):
    import polars as pl

    prices = pl.read_parquet(work / "prices.parquet")
    assets = pl.read_parquet(work / "assets.parquet")
    sessions = pl.read_parquet(work / "sessions.parquet")["session_date"]
    return prices, assets, sessions


def _params():
    import dataclasses

    from flows.params import mart_params
    from flows.settings import get_settings

    # Production's parameters (stablecoins, windows, thresholds, policy), built in one partition:
    # the stage times build_marts itself, in this process.
    return dataclasses.replace(mart_params(get_settings()), correlation_block_size=0)


def stage_generate(work: Path, args) -> None:
    from bench.panel import generate

    t, c = time.perf_counter(), time.process_time()
    prices, assets, sessions = generate(args.equities, args.coins, args.years, date.fromisoformat(args.as_of), args.seed)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    prices.write_parquet(work / "prices.parquet")
    assets.write_parquet(work / "assets.parquet")
    sessions.to_frame("session_date").write_parquet(work / "sessions.parquet")
    emit("generate", seconds, prices.height, cpu=cpu, symbols=assets.height, sessions=sessions.len())


def stage_transform(work: Path, args) -> None:
    from transforms.marts import build_marts

    prices, assets, sessions = _inputs(work)
    params = _params()
    before = rss_now()
    t, c = time.perf_counter(), time.process_time()
    marts = build_marts(prices, assets, sessions, params)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    out = work / "tables"
    out.mkdir(exist_ok=True)
    for name, frame in marts.tables.items():
        frame.write_parquet(out / f"{name}.parquet")
    emit(
        "transform_full", seconds, prices.height, rss_before=before, cpu=cpu,
        output_rows={k: v.height for k, v in marts.tables.items()},
    )


def stage_load(work: Path, args) -> None:
    import polars as pl

    from warehouse import marts as mart_files
    from warehouse.build import build_database

    tables = {p.stem: pl.read_parquet(p) for p in sorted((work / "tables").glob("*.parquet"))}
    rows = sum(f.height for f in tables.values())
    before = rss_now()
    t, c = time.perf_counter(), time.process_time()
    build_database(work / "bench.duckdb", tables)
    db_s = time.perf_counter() - t
    emit("load_duckdb", db_s, rows, rss_before=before, cpu=time.process_time() - c, file_gib=round((work / "bench.duckdb").stat().st_size / GIB, 3))
    t, c = time.perf_counter(), time.process_time()
    mart_files.stage_marts(tables, work / "marts", "bench", {"source": "bench"})
    emit("write_marts", time.perf_counter() - t, rows, rss_before=before, cpu=time.process_time() - c)


def stage_correlation(work: Path, args) -> None:
    import numpy as np
    import polars as pl

    from bench import baseline
    from transforms.correlation import rolling_correlation
    from transforms.returns import log_returns

    prices, assets, sessions = _inputs(work)
    returns = log_returns(prices, sessions)
    coins = assets.filter(pl.col("asset_class") == "crypto")["symbol"].to_list()
    benchmarks = ["^RUT", "^GSPC"]
    windows = (30, 90, 180, 365)
    # One untimed call of each side first: one-time costs (lazy imports,
    # Polars' first use of an operation, most likely the first touch of fresh
    # heap: ~0.2-0.3 s at 500 equities) would otherwise fall on whichever runs
    # first, and the process's heap is then warm for both, as in a run.
    rolling_correlation(returns, sessions, coins, benchmarks, windows)
    baseline.rolling_correlation(baseline.dense_returns(returns, sessions, coins), baseline.dense_returns(returns, sessions, benchmarks)[:, 0], windows)
    baseline.rolling_correlation_mart(returns, sessions, coins, benchmarks, windows)
    before = rss_now()
    t, c = time.perf_counter(), time.process_time()
    corr = rolling_correlation(returns, sessions, coins, benchmarks, windows)
    polars_s, polars_cpu = time.perf_counter() - t, time.process_time() - c

    t, c = time.perf_counter(), time.process_time()
    x = baseline.dense_returns(returns, sessions, coins)
    ys = baseline.dense_returns(returns, sessions, benchmarks)
    base = {b: baseline.rolling_correlation(x, ys[:, j], windows) for j, b in enumerate(benchmarks)}
    numpy_s, numpy_cpu = time.perf_counter() - t, time.process_time() - c

    # The two must agree, or the comparison means nothing.
    idx = pl.DataFrame({"date": sessions.unique().sort(), "i": pl.int_range(0, sessions.n_unique(), eager=True)})
    got = corr.drop_nulls("correlation").join(idx, on="date")
    col = {s: i for i, s in enumerate(coins)}
    worst = 0.0
    for (b, w), part in got.group_by("benchmark", "window_days"):
        ref = base[b][w][part["i"].to_numpy(), part["asset"].replace_strict(col, return_dtype=pl.Int64).to_numpy()]
        worst = max(worst, float(np.nanmax(np.abs(ref - part["correlation"].to_numpy()))))
    # Two more rounds of each, alternating: on a shared machine one call moves
    # with the load.
    best = {"mart": [polars_s, polars_cpu], "numpy": [numpy_s, numpy_cpu]}
    for _ in range(2):
        for side, run in (("mart", lambda: rolling_correlation(returns, sessions, coins, benchmarks, windows)),
                          ("numpy", lambda: [baseline.rolling_correlation(baseline.dense_returns(returns, sessions, coins),
                                                                          baseline.dense_returns(returns, sessions, benchmarks)[:, j], windows)
                                             for j in range(len(benchmarks))])):
            t, c = time.perf_counter(), time.process_time()
            run()
            best[side] = [min(best[side][0], time.perf_counter() - t), min(best[side][1], time.process_time() - c)]
    emit("rolling_correlation", polars_s, corr.height, rss_before=before, cpu=polars_cpu,
         best_of_3_s=round(best["mart"][0], 3), best_of_3_cpu_s=round(best["mart"][1], 3))
    emit(
        "rolling_correlation_numpy_baseline", numpy_s, corr.height, cpu=numpy_cpu,
        ratio_polars_over_numpy=round(polars_s / numpy_s, 2),
        cpu_ratio_polars_over_numpy=round(polars_cpu / numpy_cpu, 2), max_abs_diff=worst,
        best_of_3_s=round(best["numpy"][0], 3), best_of_3_cpu_s=round(best["numpy"][1], 3),
        best_of_3_ratio_polars_over_numpy=round(best["mart"][0] / best["numpy"][0], 2),
        best_of_3_cpu_ratio_polars_over_numpy=round(best["mart"][1] / best["numpy"][1], 2),
    )
    # The baseline above computes correlations only, as dense matrices. The
    # mart also needs beta and the paired count, as rows in its own order:
    # the same numpy way, for the ratio against all the mart's work.
    t, c = time.perf_counter(), time.process_time()
    mart = baseline.rolling_correlation_mart(returns, sessions, coins, benchmarks, windows)
    mart_s, mart_cpu = time.perf_counter() - t, time.process_time() - c
    keys = ["date", "asset", "benchmark", "window_days"]
    same_rows = mart.select(*keys, "observations").equals(
        corr.select(*keys, pl.col("observations").cast(mart.schema["observations"]))
    )
    emit(
        "rolling_correlation_numpy_mart_baseline", mart_s, mart.height, cpu=mart_cpu,
        ratio_polars_over_numpy=round(polars_s / mart_s, 2), cpu_ratio_polars_over_numpy=round(polars_cpu / mart_cpu, 2),
        same_rows_and_observations=same_rows,
        max_abs_diff=(mart["correlation"] - corr["correlation"]).abs().max() if same_rows else None,
        max_abs_diff_beta=(mart["beta"] - corr["beta"]).abs().max() if same_rows else None,
    )

    # What a one-new-day recompute of this mart needs: only the last
    # max(window) sessions of returns feed the new day's values.
    tail_sessions = sessions.sort().tail(max(windows) + 1)
    tail = returns.filter(pl.col("session_date") >= tail_sessions.min())
    t, c = time.perf_counter(), time.process_time()
    new = rolling_correlation(tail, tail_sessions, coins, benchmarks, windows).filter(
        pl.col("date") == tail_sessions.max()
    )
    tail_s, tail_cpu = time.perf_counter() - t, time.process_time() - c
    full_last = corr.filter(pl.col("date") == tail_sessions.max()).sort("asset", "benchmark", "window_days")
    new = new.sort("asset", "benchmark", "window_days")
    same = full_last.select("asset", "benchmark", "window_days").equals(new.select("asset", "benchmark", "window_days"))
    diff = (full_last["correlation"] - new["correlation"]).abs().max() if same else None
    emit(
        "rolling_correlation_last_day_only", tail_s, new.height, cpu=tail_cpu,
        ratio_to_full=round(tail_s / polars_s, 3), same_keys_as_full=same, max_abs_diff_vs_full=diff,
    )


def stage_ranks(work: Path, args) -> None:
    """Cross-sectional percentile ranks (the Alpha Score's core step) vs numpy.

    The metric is each stock's 21-session log return; the Polars side is the
    expression ``transforms.factors.build_factor_marts`` ranks with (within the sector when
    it has ``min_sector_size`` values that day, else across all stocks).
    """
    import numpy as np
    import polars as pl

    from bench import baseline
    from transforms.returns import log_returns

    prices, assets, sessions = _inputs(work)
    stocks = assets.filter(pl.col("asset_class") == "equity").select("symbol", "sector")
    r = log_returns(prices.filter(pl.col("symbol").is_in(stocks["symbol"].implode())), sessions)
    panel = (
        r.with_columns(pl.col("log_return").rolling_sum(21, min_samples=21).over("symbol").alias("v"))
        .join(stocks, on="symbol")
        .select(pl.col("session_date").alias("date"), "symbol", "sector",
                pl.col("sector").rank("dense").cast(pl.Int32).alias("sector_code"), "v")
        .sort("date", "symbol")
    )
    min_size = 5
    v = pl.col("v")
    n_sector = v.count().over("date", "sector_code")
    before = rss_now()
    t, c = time.perf_counter(), time.process_time()
    ranked = panel.with_columns(
        pl.when(v.is_null()).then(None)
        .when(n_sector >= min_size).then(100.0 * v.rank("average").over("date", "sector_code") / n_sector)
        .otherwise(100.0 * v.rank("average").over("date") / v.count().over("date"))
        .alias("rank")
    )
    polars_s, polars_cpu = time.perf_counter() - t, time.process_time() - c

    t, c = time.perf_counter(), time.process_time()
    wide = panel.pivot(on="symbol", index="date", values="v", aggregate_function="first").sort("date")
    names = wide.columns[1:]
    x = wide.select(names).to_numpy().astype(np.float64)
    sector_of = dict(zip(stocks["symbol"], stocks["sector"], strict=True))
    codes = np.array([hash(sector_of[n]) for n in names])
    dense = baseline.sector_percentile_ranks(x, codes, min_size)
    numpy_s, numpy_cpu = time.perf_counter() - t, time.process_time() - c

    got = ranked.pivot(on="symbol", index="date", values="rank", aggregate_function="first").sort("date")
    g = got.select(names).to_numpy().astype(np.float64)
    both = ~np.isnan(g) & ~np.isnan(dense)
    emit("percentile_ranks", polars_s, panel.height, rss_before=before, cpu=polars_cpu)
    emit(
        "percentile_ranks_numpy_baseline", numpy_s, panel.height, cpu=numpy_cpu,
        ratio_polars_over_numpy=round(polars_s / numpy_s, 2),
        cpu_ratio_polars_over_numpy=round(polars_cpu / numpy_cpu, 2),
        # Not 1.0 only where values tie (ordinal vs average ranks).
        share_equal=round(float(np.isclose(g[both], dense[both]).mean()), 6),
    )


def _alpha_inputs(work: Path):
    import polars as pl

    prices, assets, sessions = _inputs(work)
    # As build_marts calls it: the factor marts from the stocks' prices only.
    stocks = assets.filter(pl.col("asset_class") == "equity")["symbol"]
    return prices, prices.filter(pl.col("symbol").is_in(stocks.implode())), assets, sessions


def _run_alpha_score(work: Path, stage: str, build, evaluate, keep: bool) -> None:
    import polars as pl

    prices, stock_prices, assets, sessions = _alpha_inputs(work)
    before = rss_now()
    t, c = time.perf_counter(), time.process_time()
    scores, metrics = build(stock_prices, assets, sessions, None)
    build_s, build_cpu = time.perf_counter() - t, time.process_time() - c
    ic, summary = evaluate(scores, prices, sessions)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    emit(
        stage, seconds, stock_prices.height, rss_before=before, cpu=cpu,
        build_factor_marts_s=round(build_s, 3), build_factor_marts_cpu_s=round(build_cpu, 3),
        evaluate_factors_s=round(seconds - build_s, 3), evaluate_factors_cpu_s=round(cpu - build_cpu, 3),
        output_rows={"mart_factor_scores": scores.height, "mart_factor_metrics": metrics.height,
                     "mart_factor_ic": ic.height, "mart_factor_ic_summary": summary.height},
    )
    if keep:
        # The tail alpha_score_last_day checks itself against (not the whole
        # marts: writing 17M metric rows would cost more than the stage).
        out = work / "alpha"
        out.mkdir(exist_ok=True)
        since = sessions.sort().tail(64).min()
        scores.filter(pl.col("date") >= since).write_parquet(out / "scores_tail.parquet")
        metrics.filter(pl.col("date") == sessions.max()).write_parquet(out / "metrics_last.parquet")
        ic.filter(pl.col("date") >= since).write_parquet(out / "ic_tail.parquet")


def stage_alpha_score(work: Path, args) -> None:
    """build_factor_marts + evaluate_factors on the whole panel (no fundamentals, like transform_full)."""
    from transforms.factor_eval import evaluate_factors
    from transforms.factors import build_factor_marts

    _run_alpha_score(work, "alpha_score", build_factor_marts, evaluate_factors, keep=True)


def stage_alpha_score_last_day(work: Path, args) -> None:
    """The nightly case: scores and metrics of the last session only
    (``from_date``), and the IC rows that session completes, from the stored
    scores of the last max(horizon) sessions. Checked equal to the full run's
    rows when the alpha_score stage ran before in the same workdir."""
    import polars as pl

    from transforms.factor_eval import evaluate_factors
    from transforms.factors import build_factor_marts

    prices, stock_prices, assets, sessions = _alpha_inputs(work)
    last = sessions.max()
    tail = work / "alpha" / "scores_tail.parquet"
    stored = pl.read_parquet(tail).filter(pl.col("date") < last) if tail.exists() else None
    before = rss_now()
    t, c = time.perf_counter(), time.process_time()
    scores, metrics = build_factor_marts(stock_prices, assets, sessions, None, from_date=last)
    build_s, build_cpu = time.perf_counter() - t, time.process_time() - c
    recent = scores if stored is None else pl.concat([stored, scores])
    ic, _ = evaluate_factors(recent, prices, sessions, from_date=last)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    checks = {}
    if stored is not None:
        full_tail = pl.read_parquet(tail)
        checks = {
            "scores_equal_full": scores.equals(full_tail.filter(pl.col("date") == last)),
            "metrics_equal_full": metrics.equals(pl.read_parquet(work / "alpha" / "metrics_last.parquet")),
            "ic_equal_full": ic.equals(pl.read_parquet(work / "alpha" / "ic_tail.parquet").filter(pl.col("date") >= ic["date"].min())),
        }
    emit(
        "alpha_score_last_day", seconds, stock_prices.height, rss_before=before, cpu=cpu,
        build_factor_marts_s=round(build_s, 3), build_factor_marts_cpu_s=round(build_cpu, 3),
        evaluate_factors_s=round(seconds - build_s, 3), evaluate_factors_cpu_s=round(cpu - build_cpu, 3),
        output_rows={"mart_factor_scores": scores.height, "mart_factor_metrics": metrics.height, "mart_factor_ic": ic.height},
        **checks,
    )


def stage_prefect(work: Path, args) -> None:
    home = work / "prefect_home"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "WARNING",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    code = "from prefect import flow\n@flow\ndef noop():\n    return 1\nnoop()\n"
    for label in ("prefect_noop_flow_fresh_home", "prefect_noop_flow_warm_home"):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, timeout=600)
        # The flow runs in a grandchild: its peak is a child's, not ours.
        emit(label, time.perf_counter() - t, 0, peak=peak_rss(resource.RUSAGE_CHILDREN))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import prefect"], env=env, check=True, capture_output=True, timeout=600)
    emit("prefect_import_only", time.perf_counter() - t, 0, peak=peak_rss(resource.RUSAGE_CHILDREN))


STAGES = {
    "generate": stage_generate,
    "transform": stage_transform,
    "load": stage_load,
    "correlation": stage_correlation,
    "ranks": stage_ranks,
    "alpha_score": stage_alpha_score,
    "alpha_score_last_day": stage_alpha_score_last_day,
    "prefect": stage_prefect,
}


def _more_stages() -> None:
    # Stages kept in their own modules (one line each here, for easy merges).
    from bench import full_audit
    from bench import full_load
    from bench import full_transform
    from bench import e2e, files_read, incremental, incremental_load, next_day_publish, next_day_transform, prefect_overhead
    from bench import land_hand_over, price_figures, startup
    from bench import correlation_node
    from bench import allocator

    STAGES.update(allocator.STAGES)
    STAGES.update(e2e.STAGES)
    STAGES.update(full_audit.STAGES)
    STAGES.update(full_load.STAGES)
    STAGES.update(full_transform.STAGES)
    STAGES.update(files_read.STAGES)
    STAGES.update(incremental.STAGES)
    STAGES.update(incremental_load.STAGES)
    STAGES.update(next_day_publish.STAGES)
    STAGES.update(next_day_transform.STAGES)
    STAGES.update(prefect_overhead.STAGES)
    STAGES.update(price_figures.STAGES)
    STAGES.update(startup.STAGES)
    STAGES.update(land_hand_over.STAGES)
    STAGES.update(correlation_node.STAGES)


_more_stages()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--equities", type=int, default=2000)
    ap.add_argument("--coins", type=int, default=100)
    ap.add_argument("--years", type=int, default=20)
    ap.add_argument("--as-of", default="2026-11-20")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--nights", type=int, default=5, help="load_incremental: nightly loads in a row (file growth)")
    # 5: the first night copies the full run's file (there is no run before it to recycle, warehouse.build),
    # every later one recycles, as a deployment's nights do; the median is one of those.
    ap.add_argument("--e2e-nights", type=int, default=5,
                    help="e2e: next days run in a row after the full run (the median stands for the next day)")
    ap.add_argument("--load-variants", default="large_string,one_chunk",
                    help="load_full: variants loaded besides now (bench/full_load.py)")
    ap.add_argument("--files-baseline", default="",
                    help="files_read: also read with flows/sources/files.py as of this git revision, interleaved")
    ap.add_argument("--stages", default="generate,transform,load,correlation,ranks,prefect",
                    help="comma-separated subset, in order (each after generate needs its inputs)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep inputs/outputs here (default: a temp dir, removed)")
    ap.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args(argv)

    if args.stage:
        STAGES[args.stage](args.workdir, args)
        return 0

    work = args.workdir or Path(tempfile.mkdtemp(prefix="xasset-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"stage": "config", "equities": args.equities, "coins": args.coins, "years": args.years,
                      "as_of": args.as_of, "cpus": os.cpu_count(), "workdir": str(work)}), flush=True)
    try:
        for stage in args.stages.split(","):
            # A fresh interpreter per stage: its ru_maxrss is that stage's peak alone.
            cmd = [sys.executable, "-m", "bench", "--stage", stage, "--workdir", str(work),
                   "--equities", str(args.equities), "--coins", str(args.coins), "--years", str(args.years),
                   "--as-of", args.as_of, "--seed", str(args.seed), "--nights", str(args.nights),
                   "--e2e-nights", str(args.e2e_nights), "--load-variants", args.load_variants,
                   "--files-baseline", args.files_baseline]
            proc = subprocess.run(cmd, stdout=sys.stdout, stderr=sys.stderr)
            if proc.returncode:
                print(json.dumps({"stage": stage, "error": f"exit status {proc.returncode}"}), flush=True)
                return proc.returncode
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
