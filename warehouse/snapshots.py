"""One switch publishes a whole run: the DuckDB warehouse and every Parquet mart.

Layout under the data directory::

    .runs/<run_id>/warehouse.duckdb      one run's complete, audited outputs
    .runs/<run_id>/marts/<table>/...
    current          -> .runs/<run_id>   the only link a publish changes
    warehouse.duckdb -> current/warehouse.duckdb   (permanent)
    marts            -> current/marts              (permanent)

A run writes into ``.runs/.tmp-<run_id>/``, which nothing points at, renames
it to ``.runs/<run_id>`` once it is complete and audited, and then replaces
``current`` with one ``rename(2)`` of a symbolic link, which is atomic. So
the warehouse and all marts change together: a process killed at any point
leaves readers on exactly the previous run or exactly the new one, never a
mix of tables from two runs (per-object swaps could do that).

Readers resolve the links when they open a path. An analyst holding the old
DuckDB file open keeps reading that inode; a BI tool that wants a stable view
across several file opens resolves ``marts`` once (``os.path.realpath``). The
run before the current one is kept for readers still in the middle of it,
with one exception: its DuckDB file goes (from its path) when the next run
loads, not when that run publishes, because the next run rewrites that file
into its own staging directory instead of copying the current one
(``warehouse.build.recycle``). It does so only when no reader has the file
open (DuckDB's lock); a reader that opened it keeps it and its snapshot, and
the run copies instead. Its marts stay until the publish. Older runs,
unpublished run directories of killed runs and ``.tmp-`` staging are removed
by later runs (the latter by ``remove_stale_temp_files``).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from warehouse.files import TMP_PREFIX, atomic_write_text, fsync_dir

RUNS_DIR = ".runs"
CURRENT = "current"
WAREHOUSE_FILE = "warehouse.duckdb"
MARTS_DIR = "marts"
# What the next run needs to know about how this run's tables were built
# (source, as-of, a fingerprint of the settings): it decides whether the
# published tables can seed an incremental rebuild.
RUN_STATE = "run.json"
# The new run plus the one before it, which open readers may still be using.
KEEP_RUNS = 2
# The temp names publishing uses next to the links (see switch_current, ensure_links).
LINK_TEMPS = (
    f"{TMP_PREFIX}{CURRENT}",
    *(f"{TMP_PREFIX}{kind}-{name}" for kind in ("link", "legacy") for name in (WAREHOUSE_FILE, MARTS_DIR)),
)


@dataclass(frozen=True)
class Staging:
    """Where one run builds its outputs before they are published."""

    root: Path

    @property
    def warehouse_path(self) -> Path:
        return self.root / WAREHOUSE_FILE

    @property
    def marts_dir(self) -> Path:
        return self.root / MARTS_DIR

    def write_state(self, state: dict) -> None:
        atomic_write_text(json.dumps(state, indent=2, sort_keys=True, default=str) + "\n", self.root / RUN_STATE)


def runs_dir(data_dir: Path) -> Path:
    return data_dir / RUNS_DIR


def stage(data_dir: Path, run_id: str) -> Staging:
    """A fresh, empty staging directory for ``run_id``."""
    root = runs_dir(data_dir) / f"{TMP_PREFIX}{run_id}"
    if root.exists():
        shutil.rmtree(root)
    (root / MARTS_DIR).mkdir(parents=True)
    return Staging(root)


def current_run(data_dir: Path) -> str | None:
    """The run id the published links resolve to, or None before the first publish."""
    link = data_dir / CURRENT
    return Path(os.readlink(link)).name if link.is_symlink() else None


def published_state(data_dir: Path) -> dict | None:
    """The state the published run recorded, or None (no run yet, or one from before run state)."""
    path = data_dir / CURRENT / RUN_STATE
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class RewindRefused(RuntimeError):
    """A run would publish an older view of a source than the one analysts already see."""


def check_no_rewind(data_dir: Path, source: str, as_of: date) -> None:
    """Refuse a run of ``source`` as of a date before the published run of that source.

    Publishing it would silently take months of history away from every
    analyst (the warehouse is replaced whole); a deliberate rewind says so
    (``--rewind``). Another source's warehouse is replaced, as before.
    """
    state = published_state(data_dir)
    if not state or state.get("source") != source or not state.get("as_of"):
        return
    published = date.fromisoformat(str(state["as_of"]))
    if as_of < published:
        raise RewindRefused(
            f"as of {as_of} is before the published {source} run {state.get('run_id', '?')} as of {published}: "
            "publishing it would take that history away from analysts; pass --rewind to do it on purpose "
            "(or run a backfill, which extends history)"
        )


def publish(data_dir: Path, staging: Staging, run_id: str, keep: int = KEEP_RUNS) -> Path:
    """Make ``staging`` the published run in one switch; returns its final directory."""
    _fsync_tree(staging.root)
    final = runs_dir(data_dir) / run_id
    if final.exists():
        shutil.rmtree(final)
    os.rename(staging.root, final)
    fsync_dir(final.parent)
    previous = current_run(data_dir)
    # On a first publish the permanent links are made before ``current``
    # exists (they dangle for a moment: "no warehouse yet", as before), so a
    # kill right after the switch cannot leave a published run without links.
    ensure_links(data_dir, only_missing=True)
    switch_current(data_dir, final)
    ensure_links(data_dir)
    prune(data_dir, keep=[run_id, previous][:keep])
    return final


def switch_current(data_dir: Path, run_dir: Path) -> None:
    """The publish itself: point ``current`` at ``run_dir`` with one atomic rename."""
    tmp = data_dir / f"{TMP_PREFIX}{CURRENT}"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(run_dir, data_dir), tmp)
    os.replace(tmp, data_dir / CURRENT)
    fsync_dir(data_dir)


def ensure_links(data_dir: Path, only_missing: bool = False) -> None:
    """Create the permanent ``warehouse.duckdb`` and ``marts`` links through ``current``.

    A data directory from before run snapshots has a real file and a real
    directory there. The file is replaced by the link in one rename; the
    directory cannot be (rename will not replace a non-empty directory), so it
    is moved aside first: the only moment a reader can find no ``marts``, and
    it happens once per data directory. ``only_missing`` creates only links
    whose name does not exist at all (the legacy take-over waits for the switch).
    """
    for name in (WAREHOUSE_FILE, MARTS_DIR):
        link = data_dir / name
        target = os.path.join(CURRENT, name)
        if only_missing and os.path.lexists(link):
            continue
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.is_dir() and not link.is_symlink():
            legacy = data_dir / f"{TMP_PREFIX}legacy-{name}"
            shutil.rmtree(legacy, ignore_errors=True)
            os.rename(link, legacy)
            shutil.rmtree(legacy, ignore_errors=True)
        tmp = data_dir / f"{TMP_PREFIX}link-{name}"
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, link)
    fsync_dir(data_dir)


def recover(data_dir: Path) -> bool:
    """Finish a publish a kill interrupted: ``current`` switched but a link not made.

    Call while holding the run lock. Returns whether anything was repaired.
    """
    if not (data_dir / CURRENT).is_symlink():
        return False
    wrong = [
        n for n in (WAREHOUSE_FILE, MARTS_DIR)
        if not ((data_dir / n).is_symlink() and os.readlink(data_dir / n) == os.path.join(CURRENT, n))
    ]
    if wrong:
        ensure_links(data_dir)
    return bool(wrong)


def stale_temp_paths(data_dir: Path) -> list[Path]:
    """What a killed publish leaves: ``.runs/.tmp-<run_id>`` staging and the link temps.

    ``.runs/`` is the run's own (``prune`` removes anything there it does not keep).
    """
    root = runs_dir(data_dir)
    staging = [
        p for p in (sorted(root.glob(f"{TMP_PREFIX}*")) if root.is_dir() and not root.is_symlink() else [])
        if p.is_dir() and not p.is_symlink()
    ]
    return staging + [data_dir / n for n in LINK_TEMPS if os.path.lexists(data_dir / n)]


def prune(data_dir: Path, keep: list[str | None]) -> list[Path]:
    """Remove every complete run directory not in ``keep``; returns what was removed.

    Staging directories (``.tmp-``) are left alone: one may belong to a run in
    progress, and the run lock's clean-up removes those of killed runs.
    """
    root = runs_dir(data_dir)
    removed = []
    for entry in sorted(root.iterdir()) if root.exists() else []:
        if entry.name.startswith(TMP_PREFIX) or entry.name in keep:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def discard(staging: Staging) -> None:
    shutil.rmtree(staging.root, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    # The Parquet, manifest and state writers fsync their own files; the
    # DuckDB file and the directory entries are synced here, so the renamed
    # run survives a power cut whole without reading every mart file again.
    with open(root / WAREHOUSE_FILE, "rb") as fh:
        os.fsync(fh.fileno())
    for dirpath, _, _ in os.walk(root):
        fsync_dir(Path(dirpath))
