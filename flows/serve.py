"""``xasset serve``: the nightly schedule in this process, for people without a work pool.

Same schedule as the ``nightly`` deployment in ``prefect.yaml`` (a test keeps
them in step). Runs on the time zone given, so a cron in local market time
follows daylight saving.
"""

from __future__ import annotations

from typing import Any

NIGHTLY_CRON = "30 1 * * *"
NIGHTLY_TIMEZONE = "UTC"


def nightly_schedule(cron: str = NIGHTLY_CRON, timezone: str = NIGHTLY_TIMEZONE):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from prefect.schedules import Cron

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r} (use an IANA name such as UTC or America/New_York)") from None
    return Cron(cron, timezone=timezone)


def with_resolved_annotations(flow):
    """``flow`` with its parameter annotations evaluated, so it survives being pickled by value.

    ``flow.serve`` runs each flow run in a spawned process that receives the
    flow by cloudpickle. The function behind a ``@flow`` is not reachable by
    its module path (the module attribute is the Flow object), so it is pickled
    by value, with only the globals its body uses; the string annotations of
    ``from __future__ import annotations`` (``date | None``) then name types
    the copy cannot see, and Prefect's parameter validation fails every run.
    Annotations evaluated here travel as the types themselves.
    """
    import typing

    flow.fn.__annotations__ = typing.get_type_hints(flow.fn)
    return flow


def serve_nightly(parameters: dict[str, Any], cron: str = NIGHTLY_CRON, timezone: str = NIGHTLY_TIMEZONE) -> None:
    """Block, running the nightly flow on schedule until interrupted."""
    from flows.nightly import nightly

    with_resolved_annotations(nightly).serve(
        name="nightly-served",
        schedules=[nightly_schedule(cron, timezone)],
        parameters=parameters,
        description=f"xasset nightly, served in-process ({cron}, {timezone})",
        tags=["xasset", "nightly", "served"],
        # Runs take the data directory's lock anyway; one at a time keeps
        # a slow run from queueing a pile-up behind it.
        global_limit=1,
    )
