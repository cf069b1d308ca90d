"""How long Polars' allocator keeps memory it freed, set before Polars starts.

Polars allocates with jemalloc, which hands freed pages back to the operating
system after a delay. Polars' own delay is 0.5 s (1 s for pages it already
advised away), set in ``polars/__init__.py``. A full run frees and allocates
GiBs between the steps of its transform, its load and its marts, seconds
apart: what went back comes back as new pages the kernel must fault in and
zero (page faults, ``clear_page_erms`` and cgroup charges: ~14 of the ~120
CPU seconds of a full run at 2,000 equities under ``perf``, ~10 of them outside
the load, whose DuckDB has an allocator of its own). A few
seconds' delay keeps that memory for the next step, without letting the
retained pages pile up across the stages (docs/performance.md).

jemalloc reads its options once, when Polars' native library is loaded, from
``_RJEM_MALLOC_CONF``, to which Polars adds its own defaults first (the last
value of an option wins). So the delay is put into that variable when the
``flows`` package is imported, before anything of ours imports Polars
(``flows/__init__.py``; and first thing in the modules Prefect loads as
scripts, ``flows/nightly.py`` and ``flows/backfill.py``). It is read from the
environment only (``XASSET_ALLOCATOR_DECAY_MS``, documented with the other
settings in ``flows.settings``), since a ``.env`` file is read after Polars
is loaded. It is put last in that variable, so it wins over a decay option
already there; jemalloc's other options there are kept.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

JEMALLOC_ENV = "_RJEM_MALLOC_CONF"
SETTING_ENV = "XASSET_ALLOCATOR_DECAY_MS"
# Measured at 2,000 equities (docs/performance.md): the full run's CPU fell with no rise of its
# peak RSS; 30 s kept too much (the peak went from 6.9 to 8.4 GiB, over the 8 GiB target).
DEFAULT_ALLOCATOR_DECAY_MS = 3000


def jemalloc_options(decay_ms: int) -> str:
    """jemalloc's options for a delay of ``decay_ms`` (-1: never hand memory back)."""
    return f"dirty_decay_ms:{decay_ms},muzzy_decay_ms:{decay_ms}"


def configure(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Put the delay into ``_RJEM_MALLOC_CONF`` unless Polars is loaded already (then it is too
    late, and nothing is changed); returns the variable's new value, or None.

    A value of ``XASSET_ALLOCATOR_DECAY_MS`` that is not an integer >= -1 is left alone here:
    ``Settings`` names it when the run reads its settings.
    """
    if "polars" in sys.modules:
        return None
    raw = environ.get(SETTING_ENV)
    try:
        decay_ms = DEFAULT_ALLOCATOR_DECAY_MS if raw is None else int(raw)
    except ValueError:
        return None
    if decay_ms < -1:
        return None
    ours = jemalloc_options(decay_ms)
    existing = environ.get(JEMALLOC_ENV, "")
    if existing == ours or existing.endswith("," + ours):
        # A child process inherits the variable as its parent left it (Polars' defaults before ours).
        return existing
    environ[JEMALLOC_ENV] = f"{existing},{ours}" if existing else ours
    return environ[JEMALLOC_ENV]
