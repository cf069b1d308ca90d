"""``xasset`` as the operator runs it, except that it can freeze at a chosen point.

Run as a script: ``python pausing_cli.py run --source sample ...``. With
``XASSET_TEST_PAUSE_AT=<point>`` the process writes the point's name to
``XASSET_TEST_PAUSE_FILE`` when it gets there and then sleeps, so a test can
SIGKILL it at a known stage without a hook in ``flows/nightly.py``. The
patches wrap the real functions; everything else is the production code path.

Points: ``extract`` (source fetch starts, lock held), ``transform``
(bars landed, marts not built), ``load`` (the main thread inside a DuckDB
query as the load starts: a signal there reaches DuckDB, not Python),
``stage`` (warehouse staged, marts not yet),
``publish`` (warehouse and marts staged and
audited, the ``current`` link not yet switched), ``switched`` (the link
switched, the run not yet recorded as succeeded nor older runs pruned).
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

POINT = os.environ.get("XASSET_TEST_PAUSE_AT", "")
MARKER = os.environ.get("XASSET_TEST_PAUSE_FILE", "")


def pause(point: str) -> None:
    if point != POINT:
        return
    Path(MARKER).write_text(f"{point} {os.getpid()}\n")
    # Long enough for any test to kill us; bounded so a forgotten process ends.
    time.sleep(float(os.environ.get("XASSET_TEST_PAUSE_SECONDS", "300")))


def busy_in_duckdb(point: str) -> None:
    """Like ``pause``, but the main thread waits inside DuckDB queries, as during a long load."""
    if point != POINT:
        return
    import duckdb

    Path(MARKER).write_text(f"{point} {os.getpid()}\n")
    con = duckdb.connect()
    deadline = time.monotonic() + float(os.environ.get("XASSET_TEST_PAUSE_SECONDS", "300"))
    while time.monotonic() < deadline:  # each query a few seconds: the signal lands inside one
        con.execute("select count(*) from range(1000000000) t(i) where i % 7 = 3").fetchall()


def before(point: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        pause(point)
        return fn(*args, **kwargs)

    return wrapper


def install() -> None:
    # Imported only after prepare_prefect(): Prefect reads its settings at import.
    import flows.nightly as nightly
    from flows.sources.sample import SampleSource
    from warehouse import marts, snapshots

    SampleSource.fetch = before("extract", SampleSource.fetch)
    nightly.transform = before("transform", nightly.transform)
    load = nightly.load

    def load_after_a_query(*args, **kwargs):
        busy_in_duckdb("load")
        return load(*args, **kwargs)

    nightly.load = load_after_a_query
    marts.stage_marts = before("stage", marts.stage_marts)
    switch = snapshots.switch_current

    def switch_between_pauses(data_dir, run_dir):
        pause("publish")
        switch(data_dir, run_dir)
        pause("switched")

    snapshots.switch_current = switch_between_pauses


def main() -> None:
    import flows.cli as cli

    prepare = cli.prepare_prefect

    def prepare_then_install(settings):
        prepare(settings)
        install()

    cli.prepare_prefect = prepare_then_install
    sys.argv[0] = "xasset"
    cli.app()


if __name__ == "__main__":
    main()
