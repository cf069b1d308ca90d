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


def serve_nightly(parameters: dict[str, Any], cron: str = NIGHTLY_CRON, timezone: str = NIGHTLY_TIMEZONE) -> None:
    """Block, running the nightly flow on schedule until interrupted."""
    from flows.nightly import nightly

    nightly.serve(
        name="nightly-served",
        schedules=[nightly_schedule(cron, timezone)],
        parameters=parameters,
        description=f"xasset nightly, served in-process ({cron}, {timezone})",
        tags=["xasset", "nightly", "served"],
        # Runs take the data directory's lock anyway; one at a time keeps
        # a slow run from queueing a pile-up behind it.
        global_limit=1,
    )
