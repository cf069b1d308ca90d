"""`xasset run --source live` with no network: ends by itself, one error line, nothing published.

Every proxy variable points at a closed port on 127.0.0.1, so no request can
leave the machine whatever network it has: curl (yfinance) and requests/aiohttp
(ccxt) all honour them, and each connection is refused at once.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import polars as pl

from warehouse import snapshots
from warehouse.build import build_database

CLOSED = "http://127.0.0.1:9"  # discard port: nothing listens, every connection is refused


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_no_network_fails_cleanly_and_keeps_the_published_warehouse(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    published = data / "warehouse.duckdb"
    corr = pl.DataFrame(
        {"date": [date(2024, 1, 2)], "asset": ["BTC"], "benchmark": ["^RUT"], "window_days": [90],
         "correlation": [0.3], "beta": [1.0], "observations": [90]}
    )
    staging = snapshots.stage(data, "previous")
    build_database(staging.warehouse_path, {"mart_rolling_correlation": corr})
    snapshots.publish(data, staging, "previous")
    before = digest(published)

    env = {
        **os.environ,
        **{k: CLOSED for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")},
        # The flow talks to its own temporary Prefect API on loopback; only that is exempt.
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        # Fewer, shorter retries: the behaviour under test is the same, the wait is not.
        "XASSET_LIVE__MAX_ATTEMPTS": "2",
        "XASSET_LIVE__BACKOFF_BASE_S": "0.05",
        "XASSET_LIVE__YAHOO_BATCH_PAUSE_S": "0",
        "XASSET_EXTRACT_RETRIES": "0",
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--source", "live", "--data-dir", str(data)],
        env=env, capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "failed" in errors[0], done.stderr
    # The wait is not silent: each retried request is one line naming it, its attempt and the wait.
    retries = [line for line in done.stderr.splitlines() if line.startswith("retry:")]
    assert retries and all(" attempt 1 of 2 failed (" in r and "; retrying in " in r for r in retries), done.stderr
    assert digest(published) == before
    assert not list(data.glob(".tmp-*"))
    runs = pl.read_parquet(data / "state" / "pipeline_runs.parquet")
    assert runs["status"].to_list() == ["failed"]
