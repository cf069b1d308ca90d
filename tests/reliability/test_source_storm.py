"""A rate-limit storm as the flow sees it: the partial-failure policy the flow
applies to a live batch, and what the run report says is stale.

Bounded retries of each request are the sources' (tests/flows/sources/
test_yahoo.py, test_exchanges.py: 429 then success, backoff, give-up); here the
per-symbol outcomes they end with go through ``flows.stages.extract.check_failures``.
"""

from __future__ import annotations

import polars as pl
import pytest

from flows.run import PipelineError, RunSummary
from flows.settings import get_settings
from flows.sources.base import SourceBatch, SymbolOutcome
from flows.stages.extract import check_failures
from flows.universe import load_universe

UNIVERSE = load_universe()
SETTINGS = get_settings()
SYMBOLS = [a.symbol for a in UNIVERSE.assets]
RATE_LIMITED = "HTTP 429 Too Many Requests after 4 attempts"


def batch(failing: set[str]) -> SourceBatch:
    outcomes = [
        SymbolOutcome(s, "live", "error", attempts=4, error=RATE_LIMITED) if s in failing
        else SymbolOutcome(s, "live", "ok", rows=1)
        for s in SYMBOLS
    ]
    return SourceBatch(bars=pl.DataFrame(), assets=pl.DataFrame(), outcomes=outcomes)


def check(failing: set[str]) -> RunSummary:
    run = RunSummary(run_id="r", source="live", as_of=None, status="running")  # type: ignore[arg-type]
    check_failures(batch(failing), "live", SETTINGS, UNIVERSE, run)
    return run


def test_a_few_rate_limited_symbols_are_reported_stale_and_the_run_goes_on():
    few = {s for s in SYMBOLS if s not in UNIVERSE.benchmarks}
    few = set(sorted(few)[:2])
    run = check(few)
    (stale,) = [w for w in run.warnings if w.startswith("stale")]
    for s in few:
        assert f"{s} ({RATE_LIMITED})" in stale


def test_a_rate_limited_benchmark_stops_the_run():
    with pytest.raises(PipelineError, match=r"not publishing: benchmark failed \(\^RUT: HTTP 429"):
        check({"^RUT"})


def test_too_many_rate_limited_symbols_stop_the_run_naming_them():
    share = SETTINGS.live.max_failed_share
    others = sorted(s for s in SYMBOLS if s not in UNIVERSE.benchmarks)
    many = set(others[: int(len(SYMBOLS) * share) + 1])
    with pytest.raises(PipelineError, match=rf"not publishing: {len(many)}/{len(SYMBOLS)} symbols failed .*{others[0]}"):
        check(many)


def test_a_storm_on_every_symbol_stops_the_run():
    with pytest.raises(PipelineError, match=r"every symbol failed, e\.g\. .*HTTP 429"):
        check(set(SYMBOLS))
