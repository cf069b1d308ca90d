"""The land step alone (``Lake.upsert_bars`` + ``Lake.withdraw_absent``), as the files source feeds it.

``python -m bench.lake_land --workdir DIR [--baseline REV] [--check-against LAKE]``

Reads a panel written by ``python -m bench --stages generate`` and lands it
four times into ``DIR/lake-<label>``: the full run (through the day before the
panel's last session), the next day, a historical correction (one bar ten
years back revised) and a withdrawal (one historical bar gone from the
input). Bars are what the files source hands the land stage for the bench's
date-major files (``bench/e2e.py``): from ``history_start``, each with its
``origin`` (``equities.parquet row N``). One JSON line per step: seconds for
the upsert and the withdrawal, bars written, files read (counted by wrapping
``read_stored_parquet``).

``--baseline REV`` lands with ``warehouse/lake.py`` (and the ``warehouse/files.py``
it writes with) as of that git revision instead (the code before the index), so before and after run the same
steps; ``--check-against`` compares every file of the two lakes (bars and
withdrawals) byte for byte after each step.

``--compare REV`` lands every step twice in one process, step by step: with
``warehouse/lake.py`` and ``warehouse/files.py`` as of REV into ``DIR/lake-baseline`` and with this tree's
into ``DIR/lake-current``; one JSON line per step with both timings (wall and
CPU of upsert + withdrawal), their ratio, and the files that differ between the
two lakes (none expected). The step ``next_day_new`` is the next day as the
files source's input cursor hands it to the land: only the new day's bars, and
no withdrawal (``flows.stages.extract.withdraw_absent`` skips it for a cursor's
delta): ``--compare REV --steps full,next_day_new``.

Deltas (``lake_delta_nights``): this tree's lake is made as the flow makes it,
so a cursor's night lands as one delta file and the year files stay as they
were until the deltas are folded. With ``--compare`` each line then also says
whether the two lakes READ alike (``reads_equal``: ``read_bars`` and
``last_dates`` of both), and the step ``fold`` folds the deltas
(``Lake.fold_deltas``, timed; nothing for the baseline), after which
``files_differing`` must be empty again. ``full:K`` lands everything through
the K-th session before the last (``full`` is ``full:1``) and ``new:K`` only
that session's bars, as a cursor does (``next_day_new`` is ``new:0``):
``--compare REV --steps full:3,new:2,new:1,new:0,fold`` lands three nights
into deltas and folds them. The step ``read_recent`` times what the next
day's transform reads of the lake (``bar_files`` + ``read_bar_files`` of the
last two years' files, as ``lake_read_plan`` picks them for a night) on both
lakes, interleaved three times (best of each): with deltas stored, the read
cost they add.

``--fsync both`` lands every step twice in one process, step by step, into
``DIR/lake-per-file`` (one fsync per written file, as where there is no
``syncfs``) and ``DIR/lake-syncfs`` (one ``syncfs`` of the lake's filesystem
before the renames, ``warehouse.files.AtomicBatch`` on Linux): one JSON line
per step with both timings, their ratio, and the files that differ between
the two lakes (none expected). ``--fsync per-file`` lands with the fallback
only.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parent.parent


def lake_module(rev: str | None):
    """``warehouse.lake`` as of ``rev`` (this tree's if None), importing ``warehouse.files`` as of
    ``rev`` too (the writer it lands with), so a baseline is that revision's land as a whole."""
    if rev is None:
        import warehouse.lake as mod

        return mod
    import warehouse.files

    try:
        files = _module_at(rev, "warehouse/files.py", "files")
    except subprocess.CalledProcessError:  # a revision before warehouse/files.py
        files = warehouse.files
    try:
        sys.modules["warehouse.files"] = files
        return _module_at(rev, "warehouse/lake.py", "lake")
    finally:
        sys.modules["warehouse.files"] = warehouse.files


def _module_at(rev: str, path: str, name: str):
    source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    tmp = Path("/tmp") / f"xasset_{name}_{rev[:12]}.py"
    tmp.write_text(source)
    spec = importlib.util.spec_from_file_location(f"{name}_{rev[:12]}", tmp)
    mod = importlib.util.module_from_spec(spec)
    # A dataclass of the module looks its module up in sys.modules as it is made.
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def input_bars(work: Path, start, through) -> pl.DataFrame:
    """The panel up to ``through`` as the files source lands it from the bench's date-major files."""
    prices = pl.read_parquet(work / "prices.parquet")
    assets = pl.read_parquet(work / "assets.parquet")
    crypto = assets.filter(pl.col("asset_class") == "crypto")["symbol"].implode()
    cols = ["symbol", "date", "open", "high", "low", "close", "adj_close", "volume"]
    bars = prices.filter(pl.col("date") <= through).select(cols).sort("date", "symbol")
    parts = []
    for name, part in (("equities", bars.filter(~pl.col("symbol").is_in(crypto))),
                       ("crypto", bars.filter(pl.col("symbol").is_in(crypto)))):
        # The header is line 1 of a CSV; a Parquet row counts from 1 here as the source words it.
        parts.append(part.with_row_index("_row", offset=1).with_columns(
            (pl.lit(f"{name}.parquet row ") + pl.col("_row").cast(pl.String)).alias("origin")).drop("_row"))
    return pl.concat(parts).filter(pl.col("date") >= start).sort("symbol", "date")


def same_files(a: Path, b: Path) -> list[str]:
    """Paths (relative) whose bytes differ or exist on one side only; the index is not compared."""
    def files(root: Path) -> dict[str, Path]:
        return {str(p.relative_to(root)): p for p in root.rglob("*.parquet") if p.relative_to(root).parts[0] != "index"}

    fa, fb = files(a), files(b)
    diff = sorted(set(fa) ^ set(fb))
    diff += [k for k in sorted(set(fa) & set(fb)) if fa[k].read_bytes() != fb[k].read_bytes()]
    return diff


def read_step(mod, lake) -> dict:
    """``Lake.read_bars`` (one multi-file scan) against the per-file read it replaced, same process."""
    files = lake._files()
    t, c = time.perf_counter(), time.process_time()
    per_file = pl.concat([mod.conform_stored(mod.read_stored_parquet(f)) for f in files]).sort("symbol", "date")
    base_s, base_cpu = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    scanned = lake.read_bars()
    scan_s, scan_cpu = time.perf_counter() - t, time.process_time() - c
    return {"stage": "lake_read", "files": len(files), "bars": scanned.height,
            "per_file_s": round(base_s, 2), "per_file_cpu_s": round(base_cpu, 2),
            "read_bars_s": round(scan_s, 2), "read_bars_cpu_s": round(scan_cpu, 2),
            "ratio_cpu": round(scan_cpu / base_cpu, 3), "equal": scanned.equals(per_file)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--baseline", default=None, help="git revision of warehouse/lake.py to land with instead")
    ap.add_argument("--label", default=None)
    ap.add_argument("--check-against", type=Path, default=None, help="another lake to compare after each step")
    ap.add_argument("--steps", default="full,next_day,correction,withdrawal",
                    help="land steps in order; 'read' times Lake.read_bars (what the transform reads) "
                    "against one read per file, on the lake as the steps before left it")
    ap.add_argument("--fsync", choices=["default", "per-file", "both"], default="default",
                    help="how AtomicBatch makes a land's files durable; 'both' compares the two step by step")
    ap.add_argument("--compare", default=None, metavar="REV",
                    help="land each step with warehouse/lake.py as of REV and with this tree's, in one process")
    args = ap.parse_args()
    if args.compare is not None:
        compare_revs(args)
        return
    if args.fsync == "both":
        compare_fsync(args)
        return
    if args.fsync == "per-file":
        from warehouse import files

        files._SYNCFS = None

    from flows.settings import Settings

    mod = lake_module(args.baseline)
    reads = [0]
    real_read = mod.read_stored_parquet

    def counted(*a, **k):
        reads[0] += 1
        return real_read(*a, **k)

    mod.read_stored_parquet = counted
    # fsync calls per step (files and directories), whoever makes them.
    syncs = [0]
    real_fsync = os.fsync

    def counted_fsync(fd):
        syncs[0] += 1
        return real_fsync(fd)

    os.fsync = counted_fsync
    label = args.label or ("baseline" if args.baseline else "index")
    root = args.workdir / f"lake-{label}"
    if root.exists():
        shutil.rmtree(root)
    settings = Settings()
    # As the flow makes it (flows/nightly.py); the code before the index took no writers.
    takes_writers = "writers" in inspect.signature(mod.Lake).parameters
    lake = mod.Lake(root, "files", writers=settings.lake_writers) if takes_writers else mod.Lake(root, "files")
    steps, start = land_steps(args.workdir)
    for i, name in enumerate(args.steps.split(",")):
        if name == "read":
            print(json.dumps(read_step(mod, lake)), flush=True)
            continue
        bars, as_of = steps[name]
        now = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(days=i)
        reads[0] = syncs[0] = 0
        t, c = time.perf_counter(), time.process_time()
        written = lake.upsert_bars(bars, now)
        upsert_s, upsert_cpu, upsert_reads = time.perf_counter() - t, time.process_time() - c, reads[0]
        reads[0] = 0
        t, c = time.perf_counter(), time.process_time()
        withdrawn = withdraw(lake, name, bars, start, as_of, now)
        line = {
            "stage": f"lake_land_{name}", "impl": label, "bars_in": bars.height, "written": written,
            "withdrawn": withdrawn.height, "upsert_s": round(upsert_s, 2), "upsert_cpu_s": round(upsert_cpu, 2),
            "upsert_files_read": upsert_reads, "withdraw_s": round(time.perf_counter() - t, 2),
            "withdraw_cpu_s": round(time.process_time() - c, 2), "withdraw_files_read": reads[0],
            "fsyncs": syncs[0],
        }
        line["land_s"] = round(line["upsert_s"] + line["withdraw_s"], 2)
        if args.check_against is not None:
            line["files_differing"] = same_files(root, args.check_against / f"after-{name}")
        else:
            # Keep a copy of the lake after each step for a later --check-against.
            snap = args.workdir / f"lake-{label}-after" / f"after-{name}"
            if snap.exists():
                shutil.rmtree(snap)
            shutil.copytree(root, snap)
        print(json.dumps(line), flush=True)


def withdraw(lake, step: str, bars: pl.DataFrame, start, as_of, now) -> pl.DataFrame:
    """The land's withdrawal as the flow makes it: none after an input cursor's delta (``next_day_new``)."""
    if step == "next_day_new" or step.startswith("new:"):
        return bars.clear()
    return lake.withdraw_absent(bars, start, as_of, now)


def land_steps(work: Path) -> tuple[dict, object]:
    """The steps' (bars, as-of) as ``main`` lands them, and the history start."""
    from flows.settings import Settings

    start = Settings().history_start
    sessions = pl.read_parquet(work / "sessions.parquet")["session_date"]
    next_day = sessions.max()
    day = next_day - timedelta(days=1)
    full = input_bars(work, start, next_day)
    first = full.filter(pl.col("symbol") == full["symbol"][0])
    key = (pl.col("symbol") == full["symbol"][0]) & (pl.col("date") == first["date"][len(first) // 3])
    back = sessions.sort(descending=True)
    steps = {}
    for k in range(1, 8):
        steps[f"full:{k}"] = (full.filter(pl.col("date") <= back[k]), back[k])
        steps[f"new:{k - 1}"] = (full.filter(pl.col("date") == back[k - 1]), back[k - 1])
    return steps | {
        "full": (full.filter(pl.col("date") <= day), day),
        "next_day": (full, next_day),
        # The input cursor's next day: only the bars after those the last landed run read.
        "next_day_new": (full.filter(pl.col("date") == next_day), next_day),
        "correction": (full.with_columns(pl.when(key).then(pl.col("close") * 1.01).otherwise(pl.col("close")).alias("close")), next_day),
        "withdrawal": (full.filter(~key), next_day),
    }, start


def compare_revs(args) -> None:
    """Each step landed with ``warehouse/lake.py`` as of ``args.compare`` and with this tree's, into two
    lakes, one after the other in one process (the machine's load is the same for both)."""
    from flows.settings import Settings

    impls = {"baseline": lake_module(args.compare), "current": lake_module(None)}
    writers = Settings().lake_writers
    lakes = {}
    for label, mod in impls.items():
        root = args.workdir / f"lake-{label}"
        if root.exists():
            shutil.rmtree(root)
        params = inspect.signature(mod.Lake).parameters
        kwargs = {"writers": writers} if "writers" in params else {}
        if "deltas" in params:  # as the flow makes it
            kwargs["deltas"] = Settings().lake_delta_nights
        lakes[label] = mod.Lake(root, "files", **kwargs)
    steps, start = land_steps(args.workdir)
    for i, name in enumerate(args.steps.split(",")):
        if name == "read_recent":
            print(json.dumps(read_recent(lakes, args.compare)), flush=True)
            continue
        if name == "fold":
            line = {"stage": "lake_land_compare_fold", "baseline_rev": args.compare}
            for label, lake in lakes.items():
                t, c = time.perf_counter(), time.process_time()
                line[f"{label}_folded"] = lake.fold_deltas() if hasattr(lake, "fold_deltas") else 0
                line[f"{label}_land_s"] = round(time.perf_counter() - t, 2)
                line[f"{label}_cpu_s"] = round(time.process_time() - c, 2)
            differing(line, same_files(lakes["baseline"].root, lakes["current"].root))
            line["reads_equal"] = reads_equal(lakes["baseline"], lakes["current"])
            print(json.dumps(line), flush=True)
            continue
        bars, as_of = steps[name]
        now = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(days=i)
        line = {"stage": f"lake_land_compare_{name}", "baseline_rev": args.compare, "bars_in": bars.height,
                "writers": writers}
        for label, lake in lakes.items():
            t, c = time.perf_counter(), time.process_time()
            line[f"{label}_written"] = lake.upsert_bars(bars, now)
            line[f"{label}_withdrawn"] = withdraw(lake, name, bars, start, as_of, now).height
            line[f"{label}_land_s"] = round(time.perf_counter() - t, 2)
            line[f"{label}_cpu_s"] = round(time.process_time() - c, 2)
        line["ratio_wall"] = round(line["current_land_s"] / max(line["baseline_land_s"], 1e-9), 3)
        line["ratio_cpu"] = round(line["current_cpu_s"] / max(line["baseline_cpu_s"], 1e-9), 3)
        differing(line, same_files(lakes["baseline"].root, lakes["current"].root))
        line["reads_equal"] = reads_equal(lakes["baseline"], lakes["current"])
        print(json.dumps(line), flush=True)


def differing(line: dict, files: list[str]) -> None:
    """``files_differing`` (the first 5 when there are more than 10) and their count."""
    line["files_differing_count"] = len(files)
    line["files_differing"] = files if len(files) <= 10 else [*files[:5], "..."]


def read_recent(lakes: dict, rev: str) -> dict:
    """Each lake's read of its last two years' files (listing included), best of 3, interleaved."""
    best: dict[str, tuple[float, float]] = {}
    frames = {}
    for _ in range(3):
        for label, lake in lakes.items():
            t, c = time.perf_counter(), time.process_time()
            files = lake.bar_files()
            recent = files.filter(pl.col("year") >= files["year"].max() - 1)["path"].to_list()
            frames[label] = lake.read_bar_files(recent)
            took = (time.perf_counter() - t, time.process_time() - c)
            best[label] = min(best.get(label, took), took)
    line = {"stage": "lake_read_recent", "baseline_rev": rev, "bars": frames["current"].height,
            "deltas": len(list(getattr(lakes["current"], "delta_dir", Path("/nonexistent")).glob("*.parquet")))}
    for label, (wall, cpu) in best.items():
        line[f"{label}_s"], line[f"{label}_cpu_s"] = round(wall, 3), round(cpu, 3)
    line["ratio_wall"] = round(best["current"][0] / max(best["baseline"][0], 1e-9), 3)
    line["ratio_cpu"] = round(best["current"][1] / max(best["baseline"][1], 1e-9), 3)
    line["equal"] = frames["current"].equals(frames["baseline"])
    return line


def reads_equal(a, b) -> bool:
    """Whether two lakes read alike (``read_bars`` and ``last_dates``): with deltas, the files differ until folded."""
    return a.read_bars().equals(b.read_bars()) and a.last_dates() == b.last_dates()


def compare_fsync(args) -> None:
    """Each step landed with one fsync per file, then with one syncfs, into two lakes (same process)."""
    from flows.settings import Settings
    from warehouse import files
    from warehouse.lake import Lake

    real_syncfs = files._SYNCFS
    if real_syncfs is None:
        raise SystemExit("syncfs(2) is not available here (Linux only): nothing to compare")
    calls = {"fsync": 0, "syncfs": 0}
    real_fsync, real_syncfs_call = os.fsync, files.syncfs

    def counted_fsync(fd):
        calls["fsync"] += 1
        return real_fsync(fd)

    def counted_syncfs(fd):
        calls["syncfs"] += 1
        return real_syncfs_call(fd)

    os.fsync, files.syncfs = counted_fsync, counted_syncfs
    writers = Settings().lake_writers
    lakes = {}
    for mode in ("per-file", "syncfs"):
        root = args.workdir / f"lake-{mode}"
        if root.exists():
            shutil.rmtree(root)
        lakes[mode] = Lake(root, "files", writers=writers)
    steps, start = land_steps(args.workdir)
    for i, name in enumerate(args.steps.split(",")):
        bars, as_of = steps[name]
        now = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(days=i)
        line = {"stage": f"lake_land_fsync_{name}", "bars_in": bars.height, "writers": writers}
        for mode, lake in lakes.items():
            files._SYNCFS = None if mode == "per-file" else real_syncfs
            calls.update(fsync=0, syncfs=0)
            t, c = time.perf_counter(), time.process_time()
            line[f"{mode}_written"] = lake.upsert_bars(bars, now)
            withdraw(lake, name, bars, start, as_of, now)
            line[f"{mode}_land_s"] = round(time.perf_counter() - t, 2)
            line[f"{mode}_cpu_s"] = round(time.process_time() - c, 2)
            line[f"{mode}_fsyncs"], line[f"{mode}_syncfs"] = calls["fsync"], calls["syncfs"]
        files._SYNCFS = real_syncfs
        line["ratio_wall"] = round(line["syncfs_land_s"] / max(line["per-file_land_s"], 1e-9), 3)
        line["ratio_cpu"] = round(line["syncfs_cpu_s"] / max(line["per-file_cpu_s"], 1e-9), 3)
        line["files_differing"] = same_files(lakes["per-file"].root, lakes["syncfs"].root)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
