"""Orchestration settings: task runner, extraction batching, retries, timeouts, limits.

Kept apart from ``flows.settings`` (analytics and data settings) because these
change how a run executes, never what it computes: a run on Dask and a run on
the thread pool publish identical marts. Environment variables use the same
``XASSET_`` prefix, e.g. ``XASSET_TASK_RUNNER=dask``,
``XASSET_DASK_ADDRESS=tcp://scheduler:8786``.
"""

from __future__ import annotations

from typing import Literal

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RunnerSettings(BaseSettings):
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


def build_task_runner(settings: RunnerSettings) -> TaskRunner:
    if settings.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if settings.dask_address:
            return DaskTaskRunner(address=settings.dask_address)
        return local_dask_runner(settings.dask_workers)
    return ThreadPoolTaskRunner(max_workers=settings.threads)


def local_dask_runner(workers: int) -> TaskRunner:
    from prefect_dask import DaskTaskRunner

    # Processes, one thread each: Polars and NumPy release the GIL only in
    # parts, and separate processes are what a remote cluster gives too, so a
    # pickling problem shows up locally first.
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
    )
