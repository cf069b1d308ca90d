"""A corrupt Prefect database (issue 19 item 10): moved aside with one warning, and the run publishes.

Prefect started on a corrupt ``prefect.db`` used to print 32 tracebacks over
199 s and fail the run. The file holds only Prefect's own run history, so the
CLI renames it ``prefect.db.corrupt-<timestamp>`` (never deletes it) before
Prefect starts, and Prefect creates a new one (``flows/prefect_db.py``).
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import date

import polars as pl
import pytest

from flows.nightly import nightly
from flows.prefect_db import corruption, set_aside_if_corrupt
from reliability_harness import published, run_xasset

D1, D2 = date(2019, 6, 28), date(2019, 7, 31)
GARBAGE = b"this is not an SQLite database\n" * 4096


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_on_a_corrupt_prefect_database_moves_it_aside_and_publishes(tmp_path):
    data = tmp_path / "data"
    first = nightly(source="sample", start=date(2019, 1, 2), as_of=D1, data_dir=str(data))
    assert first.status == "succeeded"
    before = published(data)
    home = tmp_path / "prefect-home"  # the run's own Prefect home, as PREFECT_HOME names it
    home.mkdir()
    db = home / "prefect.db"
    db.write_bytes(GARBAGE)
    (home / "prefect.db-wal").write_bytes(b"a stale write-ahead log")

    # run_xasset bounds the whole run (START_TIMEOUT + 120 s); it used to fail after 199 s of tracebacks.
    res = run_xasset(home, "run", "--source", "sample", "--start", "2019-01-02", "--as-of", str(D2),
                     "--data-dir", str(data))

    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    (moved,) = home.glob("prefect.db.corrupt-*")
    assert res.stderr.splitlines()[0] == (
        f"warning: Prefect's database {db} is corrupt (file is not a database); moved it to {moved.name} "
        f"and starting a new one (it holds only Prefect's own run history; xasset's run log in "
        f"{data / 'state'} is unaffected)")
    assert moved.read_bytes() == GARBAGE, "set aside, never deleted"
    assert (home / f"prefect.db-wal{moved.name[len('prefect.db'):]}").read_bytes() == b"a stale write-ahead log"
    assert corruption(db) is None, "Prefect made a new, sound database"
    after = published(data)
    assert after != before and after["current ->"] != before["current ->"]
    runs = pl.read_parquet(data / "state" / "pipeline_runs.parquet").sort("started_at")
    assert runs["status"].to_list() == ["succeeded", "succeeded"], "xasset's own run log kept both runs"
    assert runs["as_of"].to_list() == [D1, D2]


def make_db(path):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE flow_run (id INTEGER PRIMARY KEY, name TEXT)")
    con.executemany("INSERT INTO flow_run (name) VALUES (?)", [(f"run-{i}",) for i in range(2000)])
    con.commit()
    con.close()


def test_a_sound_empty_or_missing_database_is_left_alone(tmp_path):
    db = tmp_path / "prefect.db"
    assert set_aside_if_corrupt(db) is None, "missing: Prefect creates it"
    db.write_bytes(b"")
    assert set_aside_if_corrupt(db) is None and db.exists(), "empty: Prefect migrates it"
    db.unlink()
    make_db(db)
    assert set_aside_if_corrupt(db) is None and db.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prefect.db"]


def test_a_database_with_damaged_pages_is_set_aside_with_sqlites_reason(tmp_path):
    db = tmp_path / "prefect.db"
    make_db(db)
    raw = bytearray(db.read_bytes())
    raw[4096:] = b"\xff" * (len(raw) - 4096)  # header page intact, the table's pages not
    db.write_bytes(bytes(raw))
    moved = set_aside_if_corrupt(db)
    assert moved is not None and moved.reason == "database disk image is malformed"
    assert not db.exists() and moved.moved_to.read_bytes() == bytes(raw)


def test_a_database_busy_in_another_connection_is_not_called_corrupt(tmp_path):
    db = tmp_path / "prefect.db"
    make_db(db)
    holder = sqlite3.connect(db, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # a Prefect server in the middle of a write
    try:
        done = threading.Event()
        result = []
        threading.Thread(target=lambda: (result.append(set_aside_if_corrupt(db)), done.set()), daemon=True).start()
        assert done.wait(60)
        assert result == [None] and db.exists()
    finally:
        holder.rollback()
        holder.close()
