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


_PLAIN = (str, int, float, bool, type(None))


def plain_parameters(flow_):
    """``flow_`` with its run's parameters stored as Prefect stores them, without FastAPI.

    Prefect serialises a flow run's parameters with FastAPI's ``jsonable_encoder``,
    whose import brings FastAPI's whole application stack (0.1-0.2 s of a next day's
    start, ``python -X importtime``). The pipeline's flows take plain values: text,
    numbers, dates (ISO text, as the encoder gives them) and lists of text; any other
    value still goes through Prefect's own serialiser.
    """
    from datetime import date

    prefect_serialize = flow_.serialize_parameters

    def serialize_parameters(parameters: dict) -> dict:
        def plain(v) -> bool:
            return isinstance(v, _PLAIN + (date,)) or (isinstance(v, list) and all(isinstance(x, _PLAIN) for x in v))

        if not all(plain(v) for v in parameters.values()):
            return prefect_serialize(parameters)
        return {k: v.isoformat() if isinstance(v, date) else (list(v) if isinstance(v, list) else v)
                for k, v in parameters.items()}

    flow_.serialize_parameters = serialize_parameters
    return flow_
