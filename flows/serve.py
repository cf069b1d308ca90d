"""``xasset serve``: the nightly schedule in this process, for people without a work pool.

Same schedule as the ``nightly`` deployment in ``prefect.yaml`` (a test keeps
them in step). Runs on the time zone given, so a cron in local market time
follows daylight saving.

Schedules need a real Prefect API server (its scheduler service creates the
runs; Prefect's ephemeral in-process server has none). When
``PREFECT_API_URL`` is not set, ``serve`` starts one of its own on
127.0.0.1 (:func:`owned_api_server`) and stops it on exit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

NIGHTLY_CRON = "30 1 * * *"
NIGHTLY_TIMEZONE = "UTC"


def check_timezone(timezone: str) -> None:
    """Raise ValueError for a name that is no IANA time zone (without importing Prefect)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r} (use an IANA name such as UTC or America/New_York)") from None


def nightly_schedule(cron: str = NIGHTLY_CRON, timezone: str = NIGHTLY_TIMEZONE):
    from prefect.schedules import Cron

    check_timezone(timezone)
    return Cron(cron, timezone=timezone)


# In PREFECT_HOME while ``xasset serve``'s own server is up: its API URL.
ANNOUNCE_FILE = "xasset-serve-api-url"


class ServerStartError(RuntimeError):
    """The local Prefect server did not come up; the message names its log."""


def free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_healthy(api_url: str, timeout: float = 5.0) -> bool:
    """``GET <api>/health`` answers 200 (stdlib only: callable before Prefect is imported)."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the server gets SIGTERM when the process that started it dies, even by kill -9."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process_group(proc: subprocess.Popen, grace_seconds: float = 30.0) -> None:
    """SIGTERM to ``proc``'s process group, SIGKILL after ``grace_seconds``; waits for it."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_seconds)
    except ProcessLookupError:
        proc.wait(timeout=grace_seconds)


@contextmanager
def owned_api_server(home: Path, startup_timeout: float, say: Callable[[str], None] = lambda _: None) -> Iterator[str]:
    """A ``prefect server start`` on a free 127.0.0.1 port, owned by this process: yields its API URL.

    The server keeps its database in ``home`` (``PREFECT_HOME``) and logs to
    ``home/server.log``. It runs in its own process group, so a Ctrl-C in the
    terminal reaches only this process, which then stops the server; on Linux
    it also dies with this process (kill -9 included). Raises
    :class:`ServerStartError` if it does not answer within ``startup_timeout``.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = free_local_port()
    api = f"http://127.0.0.1:{port}/api"
    log_path = home / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(home)}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    try:
        say(f"starting a local Prefect server on 127.0.0.1:{port} (log: {log_path}) ...")
        started = time.monotonic()
        while not api_healthy(api, timeout=2):
            if proc.poll() is not None:
                raise ServerStartError(f"the local Prefect server exited with status {proc.returncode}; see {log_path}")
            if time.monotonic() - started > startup_timeout:
                raise ServerStartError(
                    f"the local Prefect server did not answer within {startup_timeout:.0f} s; see {log_path}"
                )
            time.sleep(0.5)
        say(f"Prefect server ready after {time.monotonic() - started:.0f} s: UI http://127.0.0.1:{port}")
        # Other xasset commands on this PREFECT_HOME use it instead of starting their own.
        announce = home / ANNOUNCE_FILE
        announce.write_text(api + "\n")
        try:
            yield api
        finally:
            announce.unlink(missing_ok=True)
    finally:
        stop_process_group(proc)


def announced_api_server(home: Path) -> str | None:
    """The API of a server ``xasset serve`` runs for ``home``, if one is up and answering."""
    try:
        api = (home / ANNOUNCE_FILE).read_text().strip()
    except OSError:
        return None
    return api if api and api_healthy(api) else None


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


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def stop_flow_run_children(grace_seconds: float = 30.0) -> None:
    """Terminate the flow-run processes the runner started (multiprocessing children) and wait for them."""
    import multiprocessing

    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(grace_seconds)
        if child.is_alive():
            child.kill()
            child.join(grace_seconds)


def serve_nightly(parameters: dict[str, Any], cron: str = NIGHTLY_CRON, timezone: str = NIGHTLY_TIMEZONE) -> None:
    """Block, running the nightly flow on schedule until interrupted (Ctrl-C or SIGTERM)."""
    from flows.nightly import nightly

    # A plain handler, not Python's default one: asyncio then leaves SIGINT
    # alone instead of cancelling the runner's main task, which Prefect's
    # runner swallows (measured: it kept serving new runs 2 minutes after
    # Ctrl-C). The KeyboardInterrupt ends Flow.serve, which returns.
    previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        with_resolved_annotations(nightly).serve(
            name="nightly-served",
            schedules=[nightly_schedule(cron, timezone)],
            parameters=parameters,
            description=f"xasset nightly, served in-process ({cron}, {timezone})",
            tags=["xasset", "nightly", "served"],
            # One run at a time in this process; runs also queue on the data
            # directory's lock. Not global_limit: its deployment-concurrency
            # lease was reported lost at every start against serve's own server
            # ("slot lost during provisioning"), cancelling every scheduled run.
            limit=1,
        )
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, previous)
        stop_flow_run_children()
