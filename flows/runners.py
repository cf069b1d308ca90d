"""The task runner a run executes on: Prefect's thread pool or Dask.

Its settings (``ExecutionSettings`` in ``flows.settings``) change how a run
executes, never what it computes: a run on Dask and a run on the thread pool
publish identical marts. E.g. ``XASSET_TASK_RUNNER=dask``,
``XASSET_DASK_ADDRESS=tcp://scheduler:8786``.
"""

from __future__ import annotations

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.settings import ExecutionSettings


# The fields are declared with the one settings object; see flows.settings.
RunnerSettings = ExecutionSettings


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
