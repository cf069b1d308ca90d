"""Atomic file writes: a reader or a crash never sees half a file."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import polars as pl

TMP_PREFIX = ".tmp-"
# mkstemp creates files only the owner can read; published files are read by
# BI tools and analysts running as other users.
PUBLISHED_MODE = 0o644


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


def remove_stale_temp_files(root: Path) -> list[Path]:
    """Temp files left by a killed run; call only while holding the run lock."""
    if not root.exists():
        return []
    stale = [p for p in root.rglob(TMP_PREFIX + "*")]
    for p in stale:
        if p.is_dir():
            import shutil

            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale
