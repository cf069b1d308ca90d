"""Import the pipeline's heavy libraries in a thread while Prefect starts the flow run.

The CLI imports only what it needs to reach Prefect (``flows.nightly`` keeps
exchange_calendars and dataframely out of its import, see docs/performance.md,
"Per-run fixed cost"). The first stages need them, though; importing them in a
daemon thread while the main thread waits on Prefect's API (creating the flow
run, setting its state) overlaps the two instead of paying them in a row.

A thread, not a process: the point is to have the modules in this process's
``sys.modules``. Python's import lock makes a stage that needs a module the
thread is still importing wait for it, so nothing is imported twice or half;
a failed import here is ignored (the stage imports it again and reports the
error where it belongs).
"""

from __future__ import annotations

import importlib
import threading

# What the first stages import that flows.nightly does not: the exchange
# calendar (sessions for extract/screen) and dataframely (row screening).
HEAVY_MODULES = ("exchange_calendars", "dataframely")


def _import_all(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # the stage that needs it imports it again and reports it there
            pass


def start(modules: tuple[str, ...] = HEAVY_MODULES) -> threading.Thread:
    """Start importing ``modules`` in a daemon thread; returns it (``join`` to wait)."""
    thread = threading.Thread(target=_import_all, args=(modules,), name="xasset-warmup", daemon=True)
    thread.start()
    return thread
