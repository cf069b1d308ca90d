"""Bench stage ``files_read``: the files source's extract on the panel written as files.

Needs the ``generate`` stage's panel in the work dir. Writes it as ``bench/e2e.py``
does (``_write_files``: long Parquet per asset class, date-major, a ``symbol``
column; ``_universe``: the universe YAML), then times ``FilesSource.fetch`` over
the whole history in this process, as the flow's extract task calls it: wall,
CPU seconds of all threads, peak RSS. Twice in a row with a fresh source each
time (the first read also pays the page cache). Checks what it returns: one
outcome per symbol, their rows summing to the bars, no problems (the panel is
clean). ``python -m bench --equities 1000 --stages generate,files_read``.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path


def stage_files_read(work: Path, args) -> None:
    from bench.__main__ import _inputs, emit, rss_now
    from bench.e2e import _universe, _write_files
    from flows.sources.base import empty_bars
    from flows.sources.files import FilesSource
    from flows.universe import load_universe

    prices, assets, _ = _inputs(work)
    folder = work / "files_read"
    rows = _write_files(prices, assets, prices["date"].max(), folder / "files")
    _universe(assets, folder / "universe.yaml")
    del prices
    universe = load_universe(folder / "universe.yaml")
    for attempt in (1, 2):
        before = rss_now()
        t, c = time.perf_counter(), time.process_time()
        batch = FilesSource([folder / "files"]).fetch(universe, date(1900, 1, 1), date(2100, 1, 1), {}, empty_bars())
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
        if batch.bars.height != rows or sum(o.rows for o in batch.outcomes) != rows or batch.problems:
            raise SystemExit(f"files_read: {batch.bars.height} bars and {len(batch.problems)} problem(s) "
                             f"from {rows} rows written")
        emit(f"files_read_{attempt}", seconds, rows, cpu=cpu, rss_before=before,
             symbols=len(batch.outcomes), files=2)
        del batch


STAGES = {"files_read": stage_files_read}
