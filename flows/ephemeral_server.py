"""Prefect's temporary local API server, owned by the run that starts it.

Without a configured ``PREFECT_API_URL``, Prefect starts an API server for the
run as a ``uvicorn`` subprocess (``prefect.server.api.server.SubprocessASGIServer``)
and stops it from an ``atexit`` hook. That hook never runs when the run is
killed (SIGKILL, or SIGTERM with Python's default handler), and a terminal's
Ctrl-C reaches the server too (same process group), so it dies while the run
still needs it to record its end. ``own_ephemeral_server()`` changes how that
subprocess is started:

* in its own session, so a Ctrl-C at the terminal reaches only the run, which
  then stops the server itself after recording the cancellation;
* through this module's ``__main__``, which watches its parent: when the parent
  dies, by whatever means, the server stops (SIGTERM to itself, a hard exit if
  that has not ended it within ``SHUTDOWN_GRACE_S``). On Linux the kernel's
  ``PR_SET_PDEATHSIG`` is not used on purpose: it fires when the *thread* that
  started the child ends, and Prefect starts the server from whichever thread
  first needs the API.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import types
from typing import Any

PARENT_ENV = "XASSET_SERVER_PARENT_PID"
# How often the server checks that its parent is alive, and how long it may
# take to stop once it is not.
WATCH_INTERVAL_S = 0.5
SHUTDOWN_GRACE_S = 5.0


def own_ephemeral_server(always: bool = False) -> bool:
    """Start Prefect's temporary API server the way described above; idempotent.

    Only when Prefect will start one (no ``PREFECT_API_URL``): importing the
    server module costs seconds that a run against a real server need not pay.
    ``always``: whatever the URL says (the test harness starts a server of its own).
    Returns whether the patch is in place.
    """
    from prefect.settings import get_current_settings

    if get_current_settings().api.url and not always:
        return False
    from prefect.server.api import server

    if isinstance(server.subprocess, _OwnedSubprocess):
        return True
    # The server module's only use of subprocess.Popen is starting uvicorn: its
    # own command line and environment are kept, only how it starts changes.
    server.subprocess = _OwnedSubprocess()
    return True


class _OwnedSubprocess(types.ModuleType):
    """``subprocess`` as ``prefect.server.api.server`` sees it, with an owned Popen."""

    def __init__(self) -> None:
        super().__init__("subprocess")

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    @staticmethod
    def Popen(args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:  # noqa: N802 - the name Prefect calls
        args = list(args)
        if args[1:3] == ["-m", "uvicorn"]:
            args = [args[0], "-m", __name__, *args[3:]]
            kwargs["env"] = {**(kwargs.get("env") or os.environ), PARENT_ENV: str(os.getpid())}
            kwargs["start_new_session"] = True
        return subprocess.Popen(args, **kwargs)


def stop_ephemeral_servers(timeout_s: float = SHUTDOWN_GRACE_S) -> None:
    """Stop every temporary API server this process started (bounded; never raises)."""
    server = sys.modules.get("prefect.server.api.server")
    if server is None:
        return
    for instance in list(server.SubprocessASGIServer._instances.values()):
        proc = instance.server_process
        if proc is None:
            continue
        try:
            proc.terminate()
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        instance.server_process = None
        instance.running = False


def watch_parent(parent: int, interval_s: float = WATCH_INTERVAL_S, grace_s: float = SHUTDOWN_GRACE_S) -> None:
    """Stop this process once ``parent`` is gone (we are then re-parented)."""

    def loop() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful shutdown
        time.sleep(grace_s)
        os._exit(1)

    threading.Thread(target=loop, name="xasset-parent-watch", daemon=True).start()


def main() -> None:  # pragma: no cover - runs as the server subprocess
    parent = int(os.environ.get(PARENT_ENV, "0"))
    if parent:
        watch_parent(parent)
    import uvicorn.main

    sys.argv[0] = "uvicorn"
    uvicorn.main.main()


if __name__ == "__main__":  # pragma: no cover
    main()
