"""Atomic file writes: a reader or a crash never sees half a file."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import io
import os
import random
import re
import shutil
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl

TMP_PREFIX = ".tmp-"
# mkstemp creates files only the owner can read; published files are read by
# BI tools and analysts running as other users.
PUBLISHED_MODE = 0o644


class StoredFileError(RuntimeError):
    """A file of the data directory's own state (lake, run log) that cannot be read."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot read {path}: {reason}")
        self.path, self.reason = path, reason


def read_stored_parquet(path: Path, **kwargs) -> pl.DataFrame:
    """``pl.read_parquet`` whose error names the file (Polars' own message names none), in one bounded line."""
    try:
        return pl.read_parquet(path, **kwargs)
    except (Exception, pl.exceptions.PanicException) as exc:  # a corrupt file can make Polars panic
        lines = str(exc).strip().splitlines()
        raise StoredFileError(path, lines[0][:300] if lines else type(exc).__name__) from exc


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_parquet(frame: pl.DataFrame, path: Path, **kwargs) -> None:
    """Write to a temp file in the same directory, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".parquet", dir=path.parent)
    os.close(fd)
    try:
        frame.write_parquet(tmp, compression="zstd", statistics=True, **kwargs)
        os.chmod(tmp, PUBLISHED_MODE)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _load_syncfs():
    """``syncfs(2)`` from the C library (Linux); None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn


_SYNCFS = _load_syncfs()


def syncfs(fd: int) -> None:
    """Flush and wait for every dirty page and inode of the filesystem holding ``fd`` (``syncfs(2)``).

    Linux >= 5.8 reports a writeback error of that filesystem since ``fd`` was opened
    as the call's error, as ``fsync`` does for one file.
    """
    if _SYNCFS(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syncfs: {os.strerror(err)}")


# The characters of a temp file's eight random ones (``MKSTEMP_NAME``), as ``tempfile`` picks them.
_TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_TEMP_RNG = random.Random()


def _create_temp(directory: Path) -> tuple[int, str]:
    """A new file ``<TMP_PREFIX><8 random characters>.parquet`` in ``directory``, opened for writing
    with ``PUBLISHED_MODE`` (less the umask): ``tempfile.mkstemp``'s names and its exclusive create
    (a name taken is never opened: another is drawn), without its mode 0600 to chmod after."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(tempfile.TMP_MAX):
        tmp = os.path.join(directory, f"{TMP_PREFIX}{''.join(_TEMP_RNG.choices(_TEMP_CHARS, k=8))}.parquet")
        try:
            return os.open(tmp, flags, PUBLISHED_MODE), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temp file name in {directory}")


def _umask() -> int | None:
    """The process's umask, read without setting it (``os.umask`` would change it for every thread
    for a moment); None where ``/proc`` does not say (Linux < 4.7, not Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


class AtomicBatch:
    """Many Parquet files replaced atomically, with one rename pass and one sync for all of them.

    ``write_parquet`` (thread-safe) writes a frame to a temp file beside its
    path: no reader sees it. ``commit`` makes every temp file's data durable,
    then renames every temp file over its path and makes the renames durable,
    instead of an fsync of the file and its directory per file as
    ``atomic_write_parquet`` does. A crash at any point leaves
    every path with its old bytes or its new ones, never a part: the renames
    start only after every file's data is on disk, and a rename the crash lost
    leaves the old file (the temp file is removed by the next run,
    ``remove_stale_temp_files``). ``discard`` removes the temp files of a batch
    that is not committed.

    How: on Linux, one ``syncfs(2)`` per filesystem the batch wrote to before
    the first rename (the data), and one after the last (the directories); a
    descriptor of the filesystem is opened before the first write, so a
    writeback error of any file written since is reported by the call. That
    replaces an fsync per file and one per directory (a full land at 2,000
    equities writes ~25,000 year files into ~2,100 directories; the next day
    ~2,100 files, one per directory: `python -m bench.lake_land --fsync both`).
    It also flushes other processes' dirty data on that filesystem, which can
    make the call wait longer on a busy disk. Where ``syncfs`` is missing (not
    Linux, or ``per_file_fsync``), each file is fsynced as it is written and
    each directory once after the renames, as before: the same guarantee.
    """

    def __init__(self, per_file_fsync: bool = False, renamers: int = 1) -> None:
        self._pending: list[tuple[str, Path]] = []
        # Renames made at once: a rename over an existing file frees the old file's blocks, which
        # on a disk mounted with ``discard`` waits for the device (~1-3 ms each on this VM's disk,
        # with no CPU); several in flight overlap those waits (``python -m bench.lake_land``).
        self._renamers = max(1, renamers)
        self._lock = threading.Lock()
        self._fsync_each = per_file_fsync or _SYNCFS is None
        # st_dev -> a descriptor of a directory on that filesystem, opened before its first write.
        self._filesystems: dict[int, int] = {}
        # The directories this batch made (or found) and watched, each once: a symbol's year files
        # share one, and a mkdir and stat per file cost a land of ~25,000 files ~75,000 system calls,
        # each a hand-over of the GIL between the writer threads. Cleared with ``_filesystems``.
        self._dirs: set[Path] = set()
        # A temp file is created with ``PUBLISHED_MODE``, which the umask may strip (then chmodded).
        umask = _umask()
        self._chmod = umask is None or umask & PUBLISHED_MODE != 0

    def write_parquet(self, frame: pl.DataFrame, path: Path) -> None:
        directory = path.parent
        if directory not in self._dirs:
            self._made(directory)
        # Encoded in memory (a year file is small), written by Python: a full disk is then an
        # OSError with its errno, named here; Polars' own file writer reports it as whatever its
        # encoder was doing ("Invalid thrift: transport error") and names no file.
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression="zstd", statistics=True)
        try:
            fd, tmp = _create_temp(directory)
        except FileNotFoundError:  # the directory went away since this batch made it
            self._made(directory)
            fd, tmp = _create_temp(directory)
        try:
            try:
                try:
                    if self._chmod:
                        os.fchmod(fd, PUBLISHED_MODE)
                    data = memoryview(buffer.getbuffer())
                    while data:  # a raw write may write part (a disk filling up) and raise only on the next
                        data = data[os.write(fd, data):]
                    if self._fsync_each:
                        os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise OSError(exc.errno, f"writing {path}: {exc.strerror or exc}") from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        with self._lock:
            self._pending.append((tmp, path))

    def _made(self, directory: Path) -> None:
        """Make ``directory`` (and its parents) if missing, and watch its filesystem."""
        directory.mkdir(parents=True, exist_ok=True)
        if not self._fsync_each:
            self._watch(directory)
        self._dirs.add(directory)

    def _watch(self, directory: Path) -> None:
        """Open a descriptor of ``directory``'s filesystem once, before anything is written to it."""
        dev = os.stat(directory).st_dev
        if dev in self._filesystems:
            return
        fd = os.open(directory, os.O_RDONLY)
        with self._lock:
            if dev in self._filesystems:
                os.close(fd)
            else:
                self._filesystems[dev] = fd

    def commit(self) -> list[Path]:
        """Make every written file durable, rename each over its path, then make the renames
        durable; returns the paths."""
        with self._lock:
            pending, self._pending = self._pending, []
            filesystems, self._filesystems = self._filesystems, {}
            self._dirs = set()
        done = []
        try:
            try:
                for fd in filesystems.values():  # the data, before any name points at it
                    syncfs(fd)
                self._rename(pending, done)
            except BaseException:
                renamed = set(done)
                for tmp, path in pending:
                    if path not in renamed:
                        Path(tmp).unlink(missing_ok=True)
                raise
            finally:
                if done and filesystems:
                    # The renames: one more syncfs writes every directory the batch renamed into.
                    for fd in filesystems.values():
                        syncfs(fd)
                else:
                    for directory in sorted({p.parent for p in done}):
                        fsync_dir(directory)
        finally:
            for fd in filesystems.values():
                os.close(fd)
        return done

    def _rename(self, pending: list[tuple[str, Path]], done: list[Path]) -> None:
        """Rename every temp file over its path, ``renamers`` at once; ``done`` gets each path renamed
        (also when one fails: the first failure is raised once the renames under way are over)."""
        if self._renamers == 1 or len(pending) < 2:
            for tmp, path in pending:
                os.replace(tmp, path)
                done.append(path)
            return

        def rename(items: list[tuple[str, Path]]) -> None:
            for tmp, path in items:
                os.replace(tmp, path)
                done.append(path)  # list.append is atomic

        # Each path is renamed once, into its own name: the order among them changes nothing a
        # reader or a crash can see (each path is old or new), only that all come after the first
        # sync and before the second, which the pool's shutdown (waiting for all) keeps. One share
        # of the paths per thread (a task per rename would cost more than many renames).
        n = min(self._renamers, len(pending))
        with ThreadPoolExecutor(n, thread_name_prefix="renamer") as pool:
            futures = [pool.submit(rename, pending[i::n]) for i in range(n)]
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise errors[0]

    def discard(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            filesystems, self._filesystems = self._filesystems, {}
            self._dirs = set()
        for fd in filesystems.values():
            os.close(fd)
        for tmp, _ in pending:
            Path(tmp).unlink(missing_ok=True)


def write_parquet_content_named(frame: pl.DataFrame, directory: Path, prefix: str = "part-") -> str:
    """Write ``frame`` as ``<prefix><content hash>.parquet`` in ``directory``; returns the name.

    Named by content so a reader that listed one version's files and opens
    them after the next version was swapped in gets the identical bytes or
    no file at all, never another run's rows under a familiar name; and a
    re-run that produces the same data produces the same names.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".parquet", dir=directory)
    os.close(fd)
    try:
        frame.write_parquet(tmp, compression="zstd", statistics=True)
        os.chmod(tmp, PUBLISHED_MODE)
        with open(tmp, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256")
            os.fsync(fh.fileno())
        name = f"{prefix}{digest.hexdigest()[:16]}.parquet"
        os.replace(tmp, directory / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    return name


def atomic_write_text(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        os.chmod(tmp, PUBLISHED_MODE)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# The names ``tempfile.mkstemp(prefix=TMP_PREFIX, ...)`` gives the writers
# above (and ``_create_temp`` gives ``AtomicBatch``'s): eight characters of its
# alphabet, then the writer's suffix.
MKSTEMP_NAME = re.compile(re.escape(TMP_PREFIX) + r"[a-z0-9_]{8}(\.parquet)?")
# The data directory's areas the run's atomic writers write into (the lake and
# the run state); anything else under the data directory is not the run's.
WRITER_AREAS = ("lake", "state")


def remove_stale_temp_files(root: Path) -> list[Path]:
    """Temp paths a killed run left; call only while holding the run lock.

    Only what the run's own writers create, where they create it: the atomic
    writers' ``mkstemp`` names under ``lake/`` and ``state/``, and the publish
    layout's staging directories and link temps (``warehouse.snapshots``).
    A user's own ``.tmp-`` file anywhere else, or with another name, is never
    touched.
    """
    from warehouse import snapshots

    if not root.exists():
        return []
    stale = snapshots.stale_temp_paths(root)
    for area in WRITER_AREAS:
        base = root / area
        if base.is_dir() and not base.is_symlink():
            stale += sorted(
                p for p in base.rglob(TMP_PREFIX + "*")
                if MKSTEMP_NAME.fullmatch(p.name) and p.is_file() and not p.is_symlink()
            )
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale


class StagingThread:
    """``fn(*args, stop=<event>)`` in a thread of its own, writing into a run's staging beside the run.

    ``fn`` checks ``stop`` between its steps and raises once it is set. ``wait`` joins the
    thread (a signal still interrupts the wait in the main thread) and raises what failed
    it; ``abandon`` (a failed or cancelled run, before its staging is removed) sets
    ``stop`` and waits at most ``wait_s``. ``context``: the contextvars the thread runs in
    (a copy of the caller's, for code that finds its Prefect run there).
    """

    def __init__(self, name: str, fn, *args, context=None) -> None:
        self.stop = threading.Event()
        self._error: BaseException | None = None
        run = (context.run, self._run) if context is not None else (self._run,)
        self._thread = threading.Thread(target=run[0], args=(*run[1:], fn, args), name=name, daemon=True)
        self._thread.start()

    def _run(self, fn, args: tuple) -> None:
        try:
            fn(*args, stop=self.stop)
        except BaseException as exc:  # handed to the waiting thread by wait()
            self._error = exc

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abandon(self, wait_s: float) -> None:
        self.stop.set()
        self._thread.join(wait_s)
