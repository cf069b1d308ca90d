"""The one settings object.

Every tunable lives here with its default and documentation; each can be
overridden with an environment variable ``XASSET_<NAME>`` (nested fields use a
double underscore, e.g. ``XASSET_LIVE__LOOKBACK_SESSIONS=10``) or a ``.env``
file. ``docs/configuration.md`` lists them.

Transforms never import this module: flows read settings and pass plain values.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.vocabulary import (
    DEFAULT_JUMP_BOUNDS,
    DEFAULT_STABLECOINS,
    DEFAULT_WAREHOUSE_COMPACT_ABOVE,
    DEFAULT_WAREHOUSE_STORAGE_VERSION,
)
from flows.allocator import DEFAULT_ALLOCATOR_DECAY_MS
from flows.sources.live_config import LiveSettings
from transforms.events import DEFAULT_DEAD_BAND
from transforms.factors import DEFAULT_FAMILY_WEIGHTS, DEFAULT_MIN_CROSS_SECTION


class ExecutionSettings(BaseSettings):
    """How a run executes (task runner, extraction batching, retries, limits), never what it computes."""

    model_config = SettingsConfigDict(env_prefix="XASSET_", env_file=".env", extra="ignore")

    task_runner: Literal["threads", "dask"] = Field(
        "threads", description="threads: Prefect's thread pool in the flow process; dask: a Dask cluster."
    )
    dask_address: str | None = Field(
        None, description="Scheduler of an existing Dask cluster (tcp://host:8786); a local cluster when unset."
    )
    dask_workers: int = Field(2, ge=1, description="Worker processes of the local Dask cluster.")
    threads: int = Field(4, ge=1, description="Threads of the default task runner.")
    extract_batch_size: int = Field(
        16, ge=1, description="Symbols per extraction task: the unit of retry, caching and scale-out."
    )
    extract_timeout_seconds: float = Field(
        1800,
        gt=0,
        description="Deadline of the extract stage (of each year of a backfill), retries of single requests "
        "included: when it passes, requests in flight are cut short and the symbols not fetched by then are "
        "recorded failed (the failure policy then decides whether the run publishes).",
    )
    extract_retries: int = Field(
        2, ge=0, description="Task-level retries of a failed extraction batch (live source only)."
    )
    extract_retry_backoff_seconds: float = Field(
        30, ge=0, description="First retry delay; doubles on every further retry (with jitter)."
    )
    extract_cache_hours: float = Field(
        20, ge=0, description="How long a fetched batch is reused by a re-run of the same source and dates."
    )
    source_concurrency: int = Field(
        2, ge=1, description="Extraction batches of a run that may call the data source at the same time."
    )
    transform_block_size: int = Field(
        16,
        ge=0,
        description="Crypto assets per rolling-correlation task (0 = one task for all): the unit of transform "
        "scale-out, next to one task per matrix window, milestones and the Alpha Score.",
    )
    lock_wait_seconds: float = Field(
        3600,
        ge=0,
        description="How long a run (nightly or backfill) started while another holds the data directory waits "
        "for it, saying so, before giving up with an error (0: refuse at once).",
    )
    stop_grace_seconds: float = Field(
        6,
        gt=0,
        description="After Ctrl-C or SIGTERM, how long `xasset run`/`backfill` may take to record the run "
        "cancelled and stop cleanly before it stops at once (a second signal stops at once too).",
    )
    overlap_marts: bool = Field(
        True,
        description="Write the Parquet marts in a thread while the warehouse is loaded and audited (they do not "
        "depend on it; the switch still waits for the audit). A full run starts them after its load, beside the "
        "audit only: overlapping its two largest memory peaks went over 8 GiB.",
    )


class Settings(ExecutionSettings):
    model_config = SettingsConfigDict(
        env_prefix="XASSET_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    data_dir: Path = Field(
        Path("data"),
        description="Root of the Parquet lake, the DuckDB warehouse and the published marts.",
    )
    universe_path: Path | None = Field(
        None, description="Universe YAML; the packaged default universe when unset."
    )
    exchange_calendar: str = Field(
        "XNYS", description="exchange_calendars code of the session calendar returns align to."
    )
    crypto_close: Literal["utc_midnight", "equity_close"] = Field(
        "utc_midnight",
        description="When a crypto daily bar closes. utc_midnight: the exchange's daily candle (00:00 UTC, 3-4 h "
        "after the US close, so a same-day return holds crypto's after-hours move); equity_close: built from hourly "
        "candles, closing at the exchange calendar's session close of its date (16:00 New York, 13:00 on early "
        "closes; 20:00 or 21:00 UTC with daylight saving) or 16:00 New York on days without a session. Each "
        "convention has its own lake (lake/crypto_close=equity_close/), and a switch rebuilds every mart "
        "(docs/analytics.md, 'Crypto close').",
    )
    benchmarks: list[str] | None = Field(
        None, description="Benchmarks crypto is correlated against; the universe's when unset."
    )
    correlation_windows: list[int] = Field(
        [30, 90, 180, 365], description="Rolling windows, in equity sessions."
    )
    event_levels: list[float] = Field(
        [0.5, -0.5], description="Correlation levels whose crossings are events (crossed_above/below)."
    )
    event_confirm_sessions: int = Field(
        1, ge=1, description="Sessions a new correlation sign or side of a level must hold before it is an event."
    )
    event_dead_band: float = Field(
        DEFAULT_DEAD_BAND,
        ge=0.0,
        lt=1.0,
        description="A correlation's sign changes only once it goes beyond +-this on the new side; inside the band "
        "the series keeps its sign (no turned_positive/negative events from noise around zero).",
    )
    period_benchmark: str = Field("^GSPC", description="Benchmark of mart_period_returns' excess returns.")
    stablecoins: list[str] = Field(
        list(DEFAULT_STABLECOINS),
        description="Crypto assets left out of the ALTS indices (every USD- or EUR-pegged coin: a peg is no market view).",
    )
    policy_path: Path | None = Field(
        None, description="Allocation policy YAML; the packaged flows/policy.yaml when unset."
    )
    factor_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_FAMILY_WEIGHTS),
        description="Alpha Score weights of the momentum, value, quality and sentiment sub-scores (the published "
        "reference product's); a missing sub-score's weight is spread over the others in proportion.",
    )
    factor_strong_at: int = Field(75, description="Scores at or above this are labelled Strong.")
    factor_moderate_at: int = Field(40, description="Scores at or above this (and below Strong) are Moderate; below, Weak.")
    factor_min_sector_size: int = Field(
        5, description="Metrics are ranked within a sector only when it has this many stocks with the metric."
    )
    factor_min_cross_section: int = Field(
        DEFAULT_MIN_CROSS_SECTION,
        ge=1,
        description="A metric is ranked (and so scored) on a session only when at least this many stocks have it; "
        "fewer publish no score.",
    )
    # --- Spillover marts (issue 18): mart_spillover, mart_lead_lag, mart_spillover_index ---
    spillover: bool = Field(True, description="Publish mart_spillover, mart_lead_lag and mart_spillover_index.")
    spillover_windows: list[int] = Field(
        [90, 365], description="Windows (sessions) of mart_spillover and mart_lead_lag."
    )
    spillover_cadence: Literal["session", "month_end"] = Field(
        "session",
        description="Dates mart_spillover and mart_lead_lag publish: every session, or each month's last session "
        "plus the latest.",
    )
    spillover_regime_lookback: int = Field(
        252, ge=2,
        description="Sessions of the benchmark's returns before a session whose standard deviation sets that "
        "session's risk_on (> +1 sd) / risk_off (< -1 sd) threshold.",
    )
    spillover_min_observations: int = Field(
        10, ge=2, description="Fewest paired sessions a mart_spillover / mart_lead_lag correlation or beta rests on."
    )
    spillover_index_series: list[str] = Field(
        ["^RUT", "^GSPC", "BTC", "ETH", "ALTS"], description="Series of the spillover index's VAR (those with returns)."
    )
    spillover_index_window: int = Field(200, ge=20, description="Rolling window of the spillover index's VAR, in sessions.")
    spillover_index_horizon: int = Field(10, ge=1, description="Forecast horizon of the variance decomposition, in sessions.")
    spillover_index_max_lags: int = Field(5, ge=1, description="Largest VAR lag order the information criterion may choose.")
    spillover_index_ic: Literal["aic", "bic", "hqic", "fpe"] = Field(
        "aic", description="Information criterion choosing the VAR lag order (statsmodels select_order)."
    )
    spillover_index_step: int = Field(
        5, ge=1,
        description="The spillover index is computed every this many sessions (counted from the calendar's first) "
        "and on the latest: a VAR fit with its order selection costs ~11 ms of CPU per date.",
    )
    incremental: bool = Field(
        True,
        description="Rebuild only what newly landed bars touch when the published run was built from the same "
        "source, code and settings; false rebuilds every mart from the whole lake. Either way the tables are equal.",
    )
    lake_context_days: int = Field(
        14, ge=0,
        description=(
            "Days before the first date a bar landed or was withdrawn on that an incremental run re-reads and "
            "screens from the lake as the quality screen's context (a bar is judged by its clean neighbours); the "
            "earlier bars and their verdicts are the published run's. A symbol without two clean bars in them "
            "(a long gap, a spike at their start) makes the run take the whole year before as the context, then "
            "the whole lake: the published tables are the same either way, only the read differs. 0: always the "
            "year before."
        ),
    )
    history_start: date = Field(
        date(2015, 1, 2), description="First date a full (non-incremental) run asks sources for."
    )
    sample_seed: int = Field(20160714, description="Seed of the synthetic sample market.")
    files_overlap_rel_tol: float = Field(
        1e-4,
        description=(
            "Two files of one run may both hold a symbol if their prices agree on shared dates "
            "within this relative tolerance; otherwise they conflict (see files_on_conflict)."
        ),
    )
    files_on_conflict: Literal["refuse", "first-path"] = Field(
        "refuse",
        description=(
            "A symbol in two files that disagree on shared dates: refuse publishes neither (the symbol fails, "
            "every conflict is named in one warning with its likely cause); first-path keeps the file found "
            "first (the earlier --path, then by file name) on shared dates and adds the other's other dates."
        ),
    )
    stale_after_sessions: int = Field(
        5,
        ge=0,
        description=(
            "A warning names each asset whose last bar is more than this many sessions before the run's as-of "
            "(exchange sessions for equities and indices, days for crypto)."
        ),
    )
    jump_bounds: dict[str, float] = Field(
        dict(DEFAULT_JUMP_BOUNDS),
        description=(
            "Per asset class, the largest one-day move (a factor: 3.0 is x3 or /3) of close or adj_close a bar "
            "may make without the next bar confirming it. A bar beyond it that the next bar reverts (by more "
            "than the bound, back the other way), or that no later bar confirms yet, is quarantined; a move "
            "that persists is published. Every asset class in a run needs a bound."
        ),
    )
    live: LiveSettings = Field(
        default_factory=LiveSettings,
        description="The live source (yfinance + ccxt): exchanges, look-back, retries, failure policy.",
    )
    marts_mirror_url: str | None = Field(
        None,
        description=(
            "fsspec URL the published Parquet marts are mirrored to (s3://bucket/xasset/marts, "
            "file:///srv/bi/marts); no mirror when unset. Credentials come from the backend's own environment."
        ),
    )
    marts_mirror_keep: int = Field(
        3,
        ge=2,
        description=(
            "Runs kept in the mirror: the current one and those before it that a reader may still be reading "
            "(at least 2, so the run readers resolved last is never deleted under them)."
        ),
    )
    warehouse_storage_version: str = Field(
        DEFAULT_WAREHOUSE_STORAGE_VERSION,
        pattern=r"^v\d+\.\d+\.\d+$",
        description=(
            "DuckDB storage format the published warehouse is written in, named by the oldest DuckDB release that "
            "must open it (DuckDB's storage_compatibility_version). v1.1.0 (storage 64) is read by DuckDB 0.10 "
            "to 2.x and the JDBC/ODBC drivers of BI tools on 1.x; duckdb 2.0's own format (v2.0.0) is not "
            "readable by any 1.x client."
        ),
    )
    warehouse_compact_above: float = Field(
        DEFAULT_WAREHOUSE_COMPACT_ABOVE, gt=1,
        description=(
            "An incremental run copies the published warehouse and replaces only the changed rows; DuckDB does "
            "not give back all the space deleted rows held, so once the file is over this many times the size of "
            "the full build it descends from, the run builds it from scratch instead (docs/performance.md)."
        ),
    )
    warehouse_recycle: bool = Field(
        True,
        description=(
            "An incremental run rewrites the warehouse file of the run before the published one (kept for "
            "readers until this run publishes) instead of copying the published file (~1 s and 1 GB of writes "
            "at 2,000 equities): it replaces the rows either run changed, reading those of the published run "
            "from its file. Only when that file is untouched since its run wrote it and no reader has it open "
            "(its DuckDB path goes when this run loads, not when it publishes); otherwise the copy."
        ),
    )
    allocator_decay_ms: int = Field(
        DEFAULT_ALLOCATOR_DECAY_MS, ge=-1,
        description=(
            "How long Polars' allocator (jemalloc) keeps memory it freed before handing it back to the system "
            "(milliseconds; -1: never). Polars' own 0.5-1 s made a full run fault in and zero GiBs of new pages "
            "between steps seconds apart; longer kept too much at once (docs/performance.md). Read from the "
            "environment only, when the flows package is imported (before Polars starts; not from .env): "
            "flows/allocator.py."
        ),
    )
    lake_writers: int = Field(
        8, ge=1,
        description=(
            "Year files of the lake the land step compares and encodes at once (threads: Polars' encoding and the "
            "writes release the GIL). Each file is written to a temp file; all are made durable at once (one "
            "syncfs of the lake's filesystem on Linux, else an fsync per file), renamed in one pass, the renames "
            "made durable, and the lake's index is written after them (docs/performance.md)."
        ),
    )
    lake_delta_nights: int = Field(
        20, ge=0,
        description=(
            "Nights a land may append as delta files before they are folded into the lake's year files. A land "
            "whose bars all follow the last stored date of their symbol's last year file (an input cursor's "
            "night) writes them as one file per source and night under lake/delta/ instead of rewriting each year "
            "file; every reader takes a year file and its deltas as one. The deltas are folded (each year file "
            "written as the nightly rewrites would have left it) by the land that finds this many stored, by any "
            "land that is not such an append (a revision, a new symbol or year) and before a withdrawal. 0: no "
            "deltas (every land rewrites its year files)."
        ),
    )
    prefect_server_startup_timeout_seconds: float = Field(
        180, gt=0,
        description=(
            "Bound on a local Prefect API server's start-up: the one `xasset serve` starts when PREFECT_API_URL "
            "is unset, and a run's ephemeral one (a fresh PREFECT_HOME migrates its database first, which can "
            "take over a minute on a busy 2-core machine)."
        ),
    )
    prefect_quiet: bool = Field(
        True, description="Silence Prefect's analytics and per-task INFO chatter for local runs."
    )

    @field_validator("jump_bounds")
    @classmethod
    def _jump_bounds_above_one(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(k for k, v in value.items() if not v > 1)
        if bad:
            raise ValueError(f"jump bounds must be factors above 1, not for {', '.join(bad)}")
        return value

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def marts_dir(self) -> Path:
        return self.data_dir / "marts"

    @property
    def lake_dir(self) -> Path:
        # Bars of the two crypto-close conventions never mix: each has its own lake.
        lake = self.data_dir / "lake"
        return lake if self.crypto_close == "utc_midnight" else lake / f"crypto_close={self.crypto_close}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
