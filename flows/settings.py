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

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from flows.sources.live_config import LiveSettings


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
        1800, gt=0, description="Upper bound on one extraction task, retries of single requests included."
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
    period_benchmark: str = Field("^GSPC", description="Benchmark of mart_period_returns' excess returns.")
    stablecoins: list[str] = Field(
        ["USDT", "USDC", "DAI", "BUSD", "TUSD", "USDP", "FDUSD", "PYUSD", "USDE"],
        description="Crypto assets left out of the ALTS index.",
    )
    policy_path: Path | None = Field(
        None, description="Allocation policy YAML; the packaged flows/policy.yaml when unset."
    )
    factor_weights: dict[str, float] | None = Field(
        None,
        description="Alpha Score weights of the momentum, value, quality and sentiment sub-scores; equal when unset.",
    )
    factor_strong_at: int = Field(75, description="Scores at or above this are labelled Strong.")
    factor_moderate_at: int = Field(40, description="Scores at or above this (and below Strong) are Moderate; below, Weak.")
    factor_min_sector_size: int = Field(
        5, description="Metrics are ranked within a sector only when it has this many stocks with the metric."
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
    history_start: date = Field(
        date(2015, 1, 2), description="First date a full (non-incremental) run asks sources for."
    )
    sample_seed: int = Field(20160714, description="Seed of the synthetic sample market.")
    files_overlap_rel_tol: float = Field(
        1e-4,
        description=(
            "Two files of one run may both hold a symbol if their prices agree on shared dates "
            "within this relative tolerance; otherwise the run stops naming both files."
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
    prefect_quiet: bool = Field(
        True, description="Silence Prefect's analytics and per-task INFO chatter for local runs."
    )

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def marts_dir(self) -> Path:
        return self.data_dir / "marts"

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
