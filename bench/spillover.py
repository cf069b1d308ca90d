"""Time and size of the spillover marts (issue 18) on a run's published tables.

``python -m bench.spillover --data-dir /tmp/spill`` reads fact_returns,
fact_prices and dim_asset of a finished run and times ``mart_spillover`` and
``mart_lead_lag`` (per cadence) and ``mart_spillover_index`` (per step), full
and for the last session only (what a nightly incremental run computes),
printing rows and seconds as JSON lines. CPU-bound, single process.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import polars as pl


def main(argv: list[str] | None = None) -> int:
    from transforms.lead_lag import mart_lead_lag
    from contracts.vocabulary import CRYPTO_CLASSES
    from transforms.spillover import mart_spillover
    from transforms.spillover_index import mart_spillover_index
    from warehouse.query import read_tables

    ap = argparse.ArgumentParser(prog="python -m bench.spillover", description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    args = ap.parse_args(argv)
    t = read_tables(args.data_dir / "warehouse.duckdb", ["fact_returns", "fact_prices", "dim_asset"])
    returns, prices, assets = t["fact_returns"], t["fact_prices"], t["dim_asset"]
    crypto = assets.filter(pl.col("asset_class").is_in(CRYPTO_CLASSES))["symbol"].to_list()
    sess = returns.filter(pl.col("symbol") == "^RUT")["session_date"].sort()
    bench = ["^RUT", "^GSPC"]
    returns = returns.filter(pl.col("symbol").is_in(crypto + bench))
    last = sess[-1]
    runs = []
    for cadence in ("session", "month_end"):
        runs.append((f"mart_spillover cadence={cadence}", lambda c=cadence, s=None: mart_spillover(returns, sess, crypto, bench, cadence=c, since=s)))
        runs.append((f"mart_lead_lag cadence={cadence}", lambda c=cadence, s=None: mart_lead_lag(returns, prices, sess, crypto, bench, cadence=c, since=s)))
    for step in (5, 1):
        runs.append((f"mart_spillover_index step={step}", lambda k=step, s=None: mart_spillover_index(returns, sess, step=k, since=s)))
    print(json.dumps({"sessions": sess.len(), "crypto_series": len(crypto), "benchmarks": bench}))
    for name, fn in runs:
        for scope, since in (("full", None), ("last_session", last)):
            if name.endswith("step=1") and scope == "full":
                continue  # ~3000 fits: extrapolate from step=5
            t0 = time.process_time()
            out = fn(s=since)
            print(json.dumps({"mart": name, "scope": scope, "rows": out.height, "cpu_seconds": round(time.process_time() - t0, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
