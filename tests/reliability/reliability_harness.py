"""Helpers for the reliability suite: real ``xasset`` processes and snapshots of
what a data directory publishes. (A module, not conftest, so tests can import it.)
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[2]
PAUSING_CLI = Path(__file__).with_name("pausing_cli.py")
# Prefect's ephemeral server needs 15-30 s to start on 2 busy cores, more on a fresh home.
START_TIMEOUT = 240


def cli_env(prefect_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "XASSET_TEST_"))}
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        **extra,
    )
    return env


def xasset_cmd(*args: str) -> list[str]:
    return [sys.executable, str(PAUSING_CLI), *args]


def run_xasset(prefect_home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        xasset_cmd(*args), env=cli_env(prefect_home, **env), cwd=REPO, capture_output=True, text=True,
        timeout=START_TIMEOUT + 120,
    )


@dataclass
class Paused:
    proc: subprocess.Popen
    point: str

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


def start_paused(prefect_home: Path, point: str, marker: Path, *args: str, new_session: bool = False) -> Paused:
    """Start ``xasset`` and return once it is frozen at ``point`` (or fail, bounded).

    ``new_session``: its own process group, as a shell gives a foreground
    command, so a test can deliver a terminal's Ctrl-C to the whole group.
    """
    marker.unlink(missing_ok=True)
    proc = subprocess.Popen(
        xasset_cmd(*args),
        env=cli_env(prefect_home, XASSET_TEST_PAUSE_AT=point, XASSET_TEST_PAUSE_FILE=str(marker)),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=new_session,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while not marker.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"xasset exited ({proc.returncode}) before reaching {point}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(timeout=30)
            pytest.fail(f"xasset did not reach {point} within {START_TIMEOUT} s")
        time.sleep(0.2)
    return Paused(proc, point)


def reaches(prefect_home: Path, point: str, marker: Path, *args: str, within: float = 150) -> bool:
    """Whether a run gets to ``point`` within ``within`` s (it is killed there either way)."""
    marker.unlink(missing_ok=True)
    proc = subprocess.Popen(
        xasset_cmd(*args),
        env=cli_env(prefect_home, XASSET_TEST_PAUSE_AT=point, XASSET_TEST_PAUSE_FILE=str(marker)),
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + within
    try:
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        return marker.exists()
    finally:
        proc.kill()
        proc.wait(timeout=30)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def published(data_dir: Path) -> dict[str, str]:
    """Everything a reader can see: the current run, the warehouse file and every mart file."""
    out = {"current ->": os.readlink(data_dir / "current"), "warehouse.duckdb": digest(data_dir / "warehouse.duckdb")}
    marts = data_dir / "marts"
    for p in sorted(marts.resolve().rglob("*")):
        if p.is_file():
            out[f"marts/{p.relative_to(marts.resolve())}"] = digest(p)
    return out


def temp_leftovers(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.rglob(".tmp-*") if ".prefect" not in p.parts)


def read_table(db: Path, name: str, drop: tuple[str, ...] = ()) -> pl.DataFrame:
    from contracts.tables import TABLES

    con = duckdb.connect(str(db), read_only=True)
    try:
        cols = [c for c in TABLES[name].column_names if c not in drop]
        order = [c for c in TABLES[name].key if c in cols] + cols  # a total order even without the key
        q = lambda c: '"' + c + '"'  # noqa: E731 - "table" is a column name
        return con.sql(f"SELECT {', '.join(map(q, cols))} FROM {name} ORDER BY {', '.join(map(q, order))}").pl()
    finally:
        con.close()


def assert_same_rows(got: pl.DataFrame, want: pl.DataFrame, name: str) -> None:
    """Equal tables, bit for bit: an incremental rebuild must equal a full one exactly."""
    from polars.testing import assert_frame_equal

    try:
        assert_frame_equal(got, want, check_exact=True)
    except AssertionError as exc:
        raise AssertionError(f"{name}: {exc}") from None
