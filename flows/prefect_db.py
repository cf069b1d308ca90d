"""Prefect's own local database: a corrupt one is moved aside before Prefect starts on it.

With no ``PREFECT_API_URL``, ``xasset run``, ``backfill`` and ``serve`` start a
local Prefect API on the SQLite file Prefect's settings name (by default
``$PREFECT_HOME/prefect.db``; xasset sets ``PREFECT_HOME`` to
``<data dir>/.prefect``). Started on a corrupt file, that server fails every
request with a traceback until its start-up times out (32 tracebacks over 199 s).
The file holds only Prefect's flow-run history; xasset's own run log
(``<data dir>/state``) and the warehouse do not depend on it. So a corrupt one
is renamed ``<name>.corrupt-<UTC timestamp>`` (never deleted) with its
``-wal``/``-shm``/``-journal`` files, and Prefect creates a new one.

Only SQLite's own verdict counts as corrupt (``PRAGMA quick_check`` not ``ok``,
"file is not a database", "database disk image is malformed"); a database
another process holds busy or locked is left alone.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# SQLite's primary result codes that mean the file itself is unusable.
SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26
SIDECARS = ("-wal", "-shm", "-journal")


class PrefectDatabaseError(RuntimeError):
    """A corrupt Prefect database that could not be moved aside."""


@dataclass(frozen=True)
class SetAside:
    path: Path
    moved_to: Path
    reason: str


def local_database() -> Path | None:
    """The SQLite file a local Prefect server would use; None for Postgres, in-memory or a remote server."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if os.environ.get("PREFECT_API_URL") or settings.api.url:
        return None
    # Only for a local server (which imports it anyway): 0.15 s of import a run against a server skips.
    from sqlalchemy.engine import make_url

    url = settings.server.database.connection_url
    if url is None:
        return None
    parsed = make_url(url.get_secret_value())
    if not parsed.drivername.startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser()


def corruption(path: Path) -> str | None:
    """Why SQLite calls ``path`` corrupt (one line), or None: sound, absent, empty, or busy elsewhere."""
    if not path.is_file() or path.stat().st_size == 0:
        return None  # Prefect creates and migrates it
    try:
        # mode=ro: never creates the file, and never checkpoints or deletes a -wal file on close
        # (a read-write connection deletes a -wal it cannot use, which may be all that is left).
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            rows = con.execute("PRAGMA quick_check").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB):
            return str(exc).splitlines()[0]
        return None  # busy, locked, unreadable: not ours to judge; Prefect reports it
    if rows == [("ok",)]:
        return None
    return f"quick_check: {str(rows[0][0]).splitlines()[0]}" + (f" (+{len(rows) - 1} more)" if len(rows) > 1 else "")


@contextmanager
def _held(directory: Path):
    """Two runs starting together: one checks and moves, the other then finds the new database sound."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def set_aside_if_corrupt(path: Path | None = None) -> SetAside | None:
    """Move a corrupt Prefect database aside (with its sidecar files); None when there is nothing to do."""
    path = path or local_database()
    if path is None or not path.parent.is_dir():
        return None
    with _held(path.parent):
        reason = corruption(path)
        if reason is None:
            return None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target, n = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
        while target.exists():
            target, n = path.with_name(f"{path.name}.corrupt-{stamp}-{n}"), n + 1
        try:
            os.rename(path, target)
            for suffix in SIDECARS:
                side = path.with_name(path.name + suffix)
                if side.exists():
                    os.rename(side, target.with_name(path.name + suffix + target.name[len(path.name):]))
        except OSError as exc:
            raise PrefectDatabaseError(
                f"Prefect's database {path} is corrupt ({reason}) and cannot be moved aside: "
                f"{exc.strerror or exc}; move it away yourself (it holds only Prefect's own run history)"
            ) from None
    return SetAside(path, target, reason)
