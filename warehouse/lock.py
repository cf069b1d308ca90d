"""One run at a time per data directory; a second run queues behind the first for a bounded time."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

# How often a waiting run retries the lock.
POLL_S = 0.5


class RunLockedError(RuntimeError):
    pass


class RunLock:
    """An exclusive advisory lock on ``<data dir>/.xasset.lock``.

    The kernel drops it when the holder dies (even by kill -9), so a crashed
    run never leaves the directory locked; the pid written in the file is only
    what the messages name. With ``wait_s`` > 0 a run that finds the lock held
    retries for up to that long (``on_wait`` is told once, with the message to
    show), then raises ``RunLockedError``; 0 fails at once.
    """

    def __init__(self, data_dir: Path, wait_s: float = 0, on_wait: Callable[[str], None] | None = None) -> None:
        self.path = Path(data_dir) / ".xasset.lock"
        self.wait_s = wait_s
        self.on_wait = on_wait
        self._fd: int | None = None

    def holder(self, fd: int) -> str:
        return os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._acquire(fd)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def _acquire(self, fd: int) -> None:
        deadline = time.monotonic() + self.wait_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            holder = self.holder(fd)
            if time.monotonic() >= deadline:
                waited = f" (waited {self.wait_s:g} s, XASSET_LOCK_WAIT_SECONDS)" if self.wait_s else ""
                raise RunLockedError(
                    f"another xasset run (pid {holder}) is using {self.path.parent}{waited}; wait for it to finish"
                )
            if not told and self.on_wait is not None:
                told = True
                self.on_wait(
                    f"another xasset run (pid {holder}) is using {self.path.parent}; "
                    f"waiting up to {self.wait_s:g} s for it to finish"
                )
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
