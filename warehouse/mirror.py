"""Mirror the published Parquet marts to object storage (any fsspec URL).

Object stores have no atomic rename, so a run's marts cannot be switched in
the way ``warehouse/snapshots.py`` switches the local ``current`` link. Instead the mirror keeps every
run in its own prefix and flips one small pointer object last::

    <url>/runs/<run_id>/<table>/[YYYY/]part-<hash>.parquet      data files (as in the local manifest)
    <url>/runs/<run_id>/<table>.manifest.json                   the local manifest, byte for byte
    <url>/_current.json                                           {"run_id", "tables", "history", ...}

Upload order: every data file of every table, then every table's manifest,
then the pointer. A reader resolves ``_current.json`` once and reads only
``runs/<run_id>/``, so it never sees a mix of two runs; an upload that fails
at any point leaves the previous pointer, and the files it names, in place.
Re-mirroring a run sends nothing already there (files are named by content,
so a name and size match means the same bytes), and a file an earlier run
already mirrored under the same name is copied inside the store instead of
uploaded again. After the pointer moves, runs other than the newest ``keep``
the pointer has named (its ``history``) are deleted: unfinished uploads and
runs that readers can no longer resolve.

One writer per URL: the mirror of a data directory runs under its run lock
(in the flow after publish, or ``xasset mirror``), and two data directories
must not mirror to the same URL.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from warehouse.marts import MANIFEST_SUFFIX, manifest_path

POINTER = "_current.json"
RUNS = "runs"
MANIFEST = MANIFEST_SUFFIX  # <table>.manifest.json, beside the table's directory


class MirrorError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalTable:
    name: str
    run_id: str
    directory: Path
    manifest: bytes
    files: list[str]
    row_count: int


@dataclass
class MirrorSummary:
    url: str
    run_id: str
    previous_run_id: str | None
    tables: int = 0
    uploaded: int = 0          # data files sent from local disk
    copied: int = 0            # data files copied inside the store from an earlier run
    skipped: int = 0           # data files already in place
    manifests_written: int = 0
    pointer_written: bool = False
    pruned: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_published(marts_dir: Path) -> tuple[str, list[LocalTable]]:
    """One run's published marts, read through ``<marts_dir>/<table>`` (links resolved once)."""
    root = Path(os.path.realpath(marts_dir))
    if not root.is_dir():
        raise MirrorError(f"no published marts at {marts_dir}: run the pipeline first")
    tables: list[LocalTable] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):  # .versions, temp files: never read directly
            continue
        directory = Path(os.path.realpath(entry))
        manifest_file = manifest_path(root, entry.name)
        if not directory.is_dir() or not manifest_file.is_file():
            continue
        raw = manifest_file.read_bytes()
        manifest = json.loads(raw)
        files = list(manifest["files"])
        for name in files:
            rel = PurePosixPath(name)
            if rel.is_absolute() or ".." in rel.parts:
                raise MirrorError(f"{manifest_file}: unsafe file name {name!r}")
        tables.append(LocalTable(entry.name, manifest["run_id"], directory, raw, files, int(manifest["row_count"])))
    if not tables:
        raise MirrorError(f"no published marts at {marts_dir}: run the pipeline first")
    runs = {t.run_id for t in tables}
    if len(runs) != 1:
        mixed = ", ".join(f"{t.name}={t.run_id}" for t in tables)
        raise MirrorError(f"published marts are from more than one run ({mixed}); re-run the pipeline")
    return runs.pop(), tables


def _read_pointer(fs, root: str) -> dict | None:
    path = f"{root}/{POINTER}"
    try:
        return json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return None


def _is_local(fs) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return "file" in protocols or "local" in protocols


def _parent_for(fs, path: str) -> str:
    """``path``, after creating its parent where the filesystem has real directories (local disk)."""
    if _is_local(fs):
        fs.makedirs(fs._parent(path), exist_ok=True)
    return path


def _write_pointer(fs, root: str, text: str) -> None:
    path = _parent_for(fs, f"{root}/{POINTER}")
    if _is_local(fs):
        # A local write is not atomic: write beside it, then rename over it.
        tmp = f"{root}/.tmp-{POINTER}"
        fs.pipe_file(tmp, text.encode())
        fs.mv(tmp, path)
    else:
        fs.pipe_file(path, text.encode())  # one PUT: readers see the old or the new object


def _remote_index(fs, runs_root: str) -> dict[str, int | None]:
    """Every file under ``runs/``, path -> size, from one listing."""
    if not fs.exists(runs_root):
        return {}
    return {path.rstrip("/"): info.get("size") for path, info in fs.find(runs_root, detail=True).items()}


def _upload_data(fs, run_root: str, tables: list[LocalTable], remote: dict, summary: MirrorSummary) -> None:
    """Each data file: skipped when in place, copied in the store from an earlier run, else uploaded."""
    runs_root, run_id = run_root.rsplit("/", 1)
    earlier: dict[str, str] = {}  # "<table>/<file>" of other runs -> a remote path holding it
    for path in sorted(remote):
        run, _, tail = path[len(runs_root) + 1:].partition("/")
        if tail and run != run_id:
            earlier.setdefault(tail, path)
    for table in tables:
        for name in table.files:
            local = table.directory / name
            size = local.stat().st_size
            dst = f"{run_root}/{table.name}/{name}"
            if remote.get(dst) == size:  # content-named: same name and size, same bytes
                summary.skipped += 1
                continue
            src = earlier.get(f"{table.name}/{name}")
            _parent_for(fs, dst)
            if src is not None and remote.get(src) == size:
                fs.copy(src, dst)
                summary.copied += 1
            else:
                fs.put_file(str(local), dst)
                summary.uploaded += 1


def _upload_manifests(fs, run_root: str, tables: list[LocalTable], remote: dict, summary: MirrorSummary) -> None:
    for table in tables:
        dst = f"{run_root}/{table.name}{MANIFEST}"
        if remote.get(dst) == len(table.manifest) and fs.cat_file(dst) == table.manifest:
            continue
        fs.pipe_file(_parent_for(fs, dst), table.manifest)
        summary.manifests_written += 1


def _prune(fs, runs_root: str, remote: dict, history: list[str], summary: MirrorSummary) -> None:
    """Delete runs the pointer no longer names; a failure here is a warning, the mirror itself succeeded."""
    present = {path[len(runs_root) + 1:].partition("/")[0] for path in remote}
    for stale in sorted(present - set(history)):
        try:
            fs.rm(f"{runs_root}/{stale}", recursive=True)
            summary.pruned.append(stale)
        except OSError as exc:
            summary.warnings.append(f"could not prune {runs_root}/{stale}: {exc}")


def mirror_marts(marts_dir: Path, url: str, keep: int = 3, *, fs=None) -> MirrorSummary:
    """Copy the published marts of ``marts_dir`` to ``url``; the pointer moves only once all is there.

    ``fs`` (an fsspec filesystem, ``url`` then being a path in it) is for
    tests and callers that build their own; by default the URL picks it.
    Raises ``MirrorError`` for marts that cannot be mirrored, and the
    backend's own errors (``OSError``, ``ImportError`` for a missing backend)
    for a failed upload, which leaves the previous run current.
    """
    import fsspec

    if keep < 1:
        raise ValueError("keep must be at least 1")
    run_id, tables = read_published(marts_dir)
    if fs is None:
        fs, root = fsspec.core.url_to_fs(url)
    else:
        root = fs._strip_protocol(url)
    root = root.rstrip("/")
    pointer = _read_pointer(fs, root)
    previous = pointer["run_id"] if pointer else None
    if previous is not None and run_id < previous:  # run ids start with their UTC start time
        raise MirrorError(f"{url} already serves run {previous}, newer than the local {run_id}; not going back")
    summary = MirrorSummary(url=url, run_id=run_id, previous_run_id=previous, tables=len(tables))

    runs_root = f"{root}/{RUNS}"
    run_root = f"{runs_root}/{run_id}"
    remote = _remote_index(fs, runs_root)
    _upload_data(fs, run_root, tables, remote, summary)
    _upload_manifests(fs, run_root, tables, remote, summary)  # only once every data file is in place

    earlier = (pointer or {}).get("history", [previous] if previous else [])
    history = ([run_id] + [r for r in earlier if r != run_id])[:keep]
    entries = {
        t.name: {"path": f"{RUNS}/{run_id}/{t.name}", "manifest": f"{RUNS}/{run_id}/{t.name}{MANIFEST}",
                 "row_count": t.row_count, "files": t.files}
        for t in tables
    }
    if not (pointer and (pointer.get("run_id"), pointer.get("tables"), pointer.get("history"))
            == (run_id, entries, history)):
        new_pointer = {"run_id": run_id, "mirrored_at": datetime.now(UTC).isoformat(timespec="seconds"),
                       "tables": entries, "history": history}
        _write_pointer(fs, root, json.dumps(new_pointer, indent=2) + "\n")
        summary.pointer_written = True

    # Last, once the pointer has moved: readers that resolved an older pointer
    # keep the `keep` newest runs it named.
    _prune(fs, runs_root, remote, history, summary)
    return summary
