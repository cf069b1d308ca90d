"""A full disk and a read-only data directory: a clear error, nothing published,
and the next run (with space back) completes.

The data directory is a small tmpfs mounted for the test (needs root or
CAP_SYS_ADMIN; skipped otherwise). chmod would not do: root ignores it.
"""

from __future__ import annotations

import errno
import os
import subprocess
from datetime import date
from pathlib import Path

import pytest

from flows.nightly import nightly
from reliability_harness import published, temp_leftovers

pytestmark = pytest.mark.usefixtures("prefect_harness")

D1, D2, D3 = date(2019, 6, 28), date(2019, 7, 31), date(2019, 8, 30)
# A published sample run to D1 takes ~60 MB (Alpha Score marts included); the next one
# needs about as much again while the old warehouse is still published.
SIZE = "384m"
HEADROOM = 6 * 1024 * 1024  # enough to start a run, not to stage a warehouse


def mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def small_fs(tmp_path):
    root = tmp_path / "fs"
    root.mkdir()
    done = mount("-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(root))
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); needs root or CAP_SYS_ADMIN")
    try:
        yield root
    finally:
        mount("-o", "remount,rw", str(root))
        subprocess.run(["umount", str(root)], capture_output=True, timeout=30)


def fill(fs: Path, leave: int) -> Path:
    """A file taking all but ``leave`` bytes of ``fs``."""
    st = os.statvfs(fs)
    filler = fs / "filler"
    with open(filler, "wb") as fh:
        fh.truncate(0)
        os.posix_fallocate(fh.fileno(), 0, max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def test_disk_full_is_a_clear_error_and_publishes_nothing(small_fs):
    data = small_fs / "data"
    assert nightly(source="sample", as_of=D1, data_dir=str(data)).status == "succeeded"
    before = published(data)
    filler = fill(small_fs, HEADROOM)
    # Whoever hits the wall first (DuckDB, Parquet, the OS) says so and names the file.
    with pytest.raises(Exception, match=rf"{data}/\S+.*No space left on device|No space left on device.*{data}"):
        nightly(source="sample", as_of=D2, data_dir=str(data))
    assert published(data) == before
    filler.unlink()
    assert nightly(source="sample", as_of=D2, data_dir=str(data)).status == "succeeded"
    assert published(data) != before
    assert temp_leftovers(data) == []


def test_read_only_data_dir_is_a_clear_error_and_publishes_nothing(small_fs):
    data = small_fs / "data"
    assert nightly(source="sample", as_of=D1, data_dir=str(data)).status == "succeeded"
    before = published(data)
    done = mount("-o", "remount,ro", str(small_fs))
    assert done.returncode == 0, done.stderr
    with pytest.raises(OSError) as err:
        nightly(source="sample", as_of=D3, data_dir=str(data))
    assert err.value.errno == errno.EROFS
    assert str(data) in str(err.value), "the error names the path"
    assert published(data) == before


def test_run_into_a_read_only_data_dir_is_one_line_and_reading_still_works(small_fs, prefect_home):
    """Issue 19 item 10, through the real CLI: ``xasset run`` names the directory in one line, before
    Prefect starts; sql, tables and runs read the published run as before."""
    from reliability_harness import run_xasset

    data = small_fs / "data"
    assert nightly(source="sample", as_of=D1, data_dir=str(data)).status == "succeeded"
    before = published(data)
    done = mount("-o", "remount,ro", str(small_fs))
    assert done.returncode == 0, done.stderr

    res = run_xasset(prefect_home, "run", "--source", "sample", "--as-of", str(D3), "--data-dir", str(data))
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.splitlines() == [
        f"error: cannot write to the data directory {data}: Read-only file system "
        "(read-only commands such as sql, tables and runs still work on it)"]
    assert published(data) == before

    query = run_xasset(prefect_home, "sql", "SELECT max(date) AS d FROM fact_prices", "-f", "csv", "--data-dir", str(data))
    assert query.returncode == 0 and query.stdout.splitlines() == ["d", str(D1)], query.stderr
    tables = run_xasset(prefect_home, "tables", "-f", "csv", "--data-dir", str(data))
    assert tables.returncode == 0 and "fact_prices" in tables.stdout, tables.stderr
    runs = run_xasset(prefect_home, "runs", "-f", "csv", "--data-dir", str(data))
    assert runs.returncode == 0 and "succeeded" in runs.stdout, runs.stderr
    assert published(data) == before
