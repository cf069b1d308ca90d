"""Bench stage ``files_read``: the files source's extract on the panel written as files.

Needs the ``generate`` stage's panel in the work dir. Writes it as ``bench/e2e.py``
does (``_write_files``: long Parquet per asset class, date-major, a ``symbol``
column; ``_universe``: the universe YAML), then times ``FilesSource.fetch`` over
the whole history in this process, as the flow's extract task calls it: wall,
CPU seconds of all threads, peak RSS. Twice in a row with a fresh source each
time (the first read also pays the page cache). Checks what it returns: one
outcome per symbol, their rows summing to the bars, no problems (the panel is
clean). ``python -m bench --equities 1000 --stages generate,files_read``.

``--files-baseline REV``: then ``ROUNDS`` more reads each with this tree's ``flows/sources/files.py``
and with REV's, interleaved in this process; prints each side's median wall and CPU, their
ratios, and whether every read handed on the same bars, assets, outcomes, warnings and problems.
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
    if getattr(args, "files_baseline", ""):
        _compare(folder / "files", universe, rows, args.files_baseline)


ROUNDS = 3


def _compare(files: Path, universe, rows: int, rev: str) -> None:
    import statistics

    import flows.sources.files as now
    from bench.__main__ import emit
    from bench.lake_land import _module_at
    from flows.sources.base import empty_bars

    base = _module_at(rev, "flows/sources/files.py", "files")
    times: dict[str, list[tuple[float, float]]] = {"baseline": [], "now": []}
    ref, same = None, True
    for _ in range(ROUNDS):
        for side, mod in (("baseline", base), ("now", now)):
            t, c = time.perf_counter(), time.process_time()
            batch = mod.FilesSource([files]).fetch(universe, date(1900, 1, 1), date(2100, 1, 1), {}, empty_bars())
            times[side].append((time.perf_counter() - t, time.process_time() - c))
            got = (batch.bars, batch.assets, batch.outcomes, batch.warnings, batch.problems)
            ref = ref or got  # every read against the first one
            same = same and got[0].equals(ref[0]) and got[1].equals(ref[1]) and got[2:] == ref[2:]
            del batch, got
    med = {side: (statistics.median(w for w, _ in ts), statistics.median(c for _, c in ts)) for side, ts in times.items()}
    for side in ("baseline", "now"):
        emit(f"files_read_{side}", med[side][0], rows, cpu=med[side][1], rounds=ROUNDS, baseline=rev,
             wall_ratio=round(med[side][0] / med["baseline"][0], 3), cpu_ratio=round(med[side][1] / med["baseline"][1], 3),
             same_output=same)


def _night(files: Path, root: Path, universe, start, now, cursor: bool) -> dict:
    """One night's extract and land as the flow runs them (``--source files``, no ``--as-of``):
    the inputs' last date, the fetch, then the land and the ``withdraw_absent`` stage."""
    import logging

    from flows.run import RunSummary
    from flows.sources.base import empty_bars
    from flows.sources.files import FilesSource
    from flows.stages.extract import withdraw_absent
    from warehouse.lake import Lake

    lake = Lake(root, "files", writers=8)
    t, c = time.perf_counter(), time.process_time()
    src = FilesSource([files], lake=lake if cursor else None)
    as_of = src.last_date(universe)
    batch = src.fetch(universe, start, as_of, {}, empty_bars())
    extract, extract_cpu = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    written = lake.upsert_bars(batch.bars, now)
    lake.upsert_assets(batch.assets)
    run = RunSummary(run_id="bench", source="files", as_of=as_of, status="running")
    withdrawn, _ = withdraw_absent(batch, lake, (start, as_of), now, run, logging.getLogger("bench"))
    land, land_cpu = time.perf_counter() - t, time.process_time() - c
    return {"extract_s": round(extract, 3), "extract_cpu_s": round(extract_cpu, 3), "land_s": round(land, 3),
            "land_cpu_s": round(land_cpu, 3), "handed_on": batch.bars.height, "written": written,
            "withdrawn": withdrawn.height, "cursor_used": bool(batch.cursor is not None and batch.cursor.delta),
            "outcome_rows": sum(o.rows for o in batch.outcomes), "problems": len(batch.problems)}


def stage_input_cursor(work: Path, args) -> None:
    """The input cursor: a full night through D, then the next day (D+1 appended to the files), landed
    into a lake with the cursor and into one without it (``baseline``: today's full read) in the same
    run; the two lakes are compared file by file after each night.
    ``python -m bench --equities 1000 --stages generate,input_cursor``."""
    import json
    import shutil
    from datetime import UTC, datetime, timedelta

    from bench.__main__ import _inputs
    from bench.e2e import _universe, _write_files
    from bench.lake_land import same_files
    from flows.settings import Settings
    from flows.universe import load_universe

    prices, assets, _ = _inputs(work)
    last = prices["date"].max()
    day = prices.filter(prices["date"] < last)["date"].max()
    folder = work / "input_cursor"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _universe(assets, folder / "universe.yaml")
    universe = load_universe(folder / "universe.yaml")
    start = Settings().history_start
    now = datetime(2026, 11, 21, 6, tzinfo=UTC)
    for step, through in (("full", day), ("next_day", last)):
        _write_files(prices, assets, through, folder / "files")
        got = {}
        # by_rows: the cursor as before it followed Parquet files by row group (every row decoded and hashed).
        for label in ("baseline", "cursor", "by_rows"):
            got[label] = _night(folder / "files", folder / f"lake-{label}", universe, start, now, label != "baseline")
            if label == "by_rows" and step == "full":
                _forget_row_groups(folder / f"lake-{label}")
        differ = same_files(folder / "lake-baseline", folder / "lake-cursor")
        differ += same_files(folder / "lake-baseline", folder / "lake-by_rows")
        b, c, r = got["baseline"], got["cursor"], got["by_rows"]
        print(json.dumps({
            "stage": f"input_cursor_{step}", "through": str(through), "baseline": b, "cursor": c, "by_rows": r,
            "extract_land_s": {"baseline": round(b["extract_s"] + b["land_s"], 3),
                               "cursor": round(c["extract_s"] + c["land_s"], 3),
                               "by_rows": round(r["extract_s"] + r["land_s"], 3)},
            "ratio_cursor_to_baseline": round((c["extract_s"] + c["land_s"]) / (b["extract_s"] + b["land_s"]), 3),
            "ratio_extract_cursor_to_by_rows": round(c["extract_s"] / r["extract_s"], 3),
            "lakes_equal": not differ, "files_differing": differ[:5],
        }), flush=True)
        if differ or any(b[k] != x[k] for x in (c, r) for k in ("written", "withdrawn", "outcome_rows", "problems")):
            raise SystemExit(f"input_cursor: the lakes differ after {step}: {differ[:5]}")
        now += timedelta(days=1)


def _forget_row_groups(lake_root: Path) -> None:
    """The lake's input cursor without its row groups: the next night hashes every decoded row, as before."""
    import json

    from flows.sources.files import read_hashed
    from flows.sources.files_cursor import digest_rows

    path = lake_root / "index" / "input-source=files.json"
    raw = json.loads(path.read_text())
    for f in raw["files"]:
        if f.get("groups"):
            _, schema, hashes = read_hashed(Path(f["path"]), "parquet")
            f["groups"], f["digest"] = None, digest_rows(schema, hashes)
    path.write_text(json.dumps(raw))


STAGES = {"files_read": stage_files_read, "input_cursor": stage_input_cursor}
