"""A land's year files are durable before they are visible, with one directory fsync per symbol.

Every ``os.fsync`` and ``os.replace`` of a land is logged with the path it
concerns (an fsync's descriptor resolved through ``/proc/self/fd``), so the
order a crash could interrupt is checked, not only the result.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from warehouse.files import AtomicBatch, remove_stale_temp_files
from warehouse.lake import BARS_SCHEMA, Lake

START = date(2022, 11, 1)
SYMBOLS = ["AAA", "BBB", "^RUT"]


def bars(through: date) -> pl.DataFrame:
    days = [START + timedelta(days=i) for i in range((through - START).days + 1)]
    rows = [
        {"symbol": s, "date": d, "open": 1.0 + i, "high": 2.0 + i, "low": 0.5 + i, "close": 1.5 + i,
         "adj_close": 1.5 + i, "volume": 100.0 + k, "origin": f"{s}.csv line {i + 2}"}
        for k, s in enumerate(SYMBOLS) for i, d in enumerate(days)
    ]
    return pl.DataFrame(rows, schema={k: v for k, v in BARS_SCHEMA.items() if k not in ("source", "ingested_at")})


@pytest.fixture
def events(monkeypatch) -> list[tuple[str, str, str | None]]:
    """("fsync", path, None) and ("replace", src, dst), in the order they happen."""
    log: list[tuple[str, str, str | None]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"), None))
        return real_fsync(fd)

    def replace(src, dst, **k):
        log.append(("replace", str(src), str(dst)))
        return real_replace(src, dst, **k)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return log


@pytest.mark.parametrize("writers", [1, 4])
def test_a_full_land_fsyncs_each_file_before_its_rename_and_each_directory_once_after(tmp_path, events, writers):
    lake = Lake(tmp_path, "files", writers=writers)
    lake.upsert_bars(bars(date(2024, 1, 30)), datetime(2024, 2, 1, tzinfo=UTC))
    year_files = sorted(lake.bars_dir.glob("*/*.parquet"))
    assert len(year_files) == 9  # 3 symbols x 2022..2024
    fsyncs = [p for kind, p, _ in events if kind == "fsync"]
    renames = [(src, dst) for kind, src, dst in events if kind == "replace"]
    # Each year file once, each symbol directory once, and the index and its directory: 14 (it was 20,
    # a directory fsync after every file).
    assert len(fsyncs) == len(year_files) + len(SYMBOLS) + 2
    assert sorted(dst for _, dst in renames if "/bars/" in dst) == [str(p) for p in year_files]
    for i, (kind, src, dst) in enumerate(events):
        if kind == "replace" and "/bars/" in dst:
            # The data is durable before the name points at it ...
            assert ("fsync", src, None) in events[:i]
            # ... and the directory is fsynced after the rename, once, after the last one into it.
            later = [j for j, e in enumerate(events) if e == ("fsync", str(Path(dst).parent), None)]
            assert len(later) == 1 and later[0] > i
    assert not list(tmp_path.rglob(".tmp-*"))


def test_a_batch_killed_before_its_commit_leaves_the_old_files_and_temp_files_the_next_run_removes(tmp_path):
    old = tmp_path / "lake" / "bars" / "source=files" / "AAA" / "2024.parquet"
    old.parent.mkdir(parents=True)
    pl.DataFrame({"x": [1]}).write_parquet(old)
    before = old.read_bytes()
    batch = AtomicBatch()
    batch.write_parquet(pl.DataFrame({"x": [2]}), old)
    batch.write_parquet(pl.DataFrame({"x": [3]}), old.with_name("2025.parquet"))
    # A crash here: nothing renamed, the old file as it was, no new file visible.
    assert old.read_bytes() == before and not old.with_name("2025.parquet").exists()
    stale = remove_stale_temp_files(tmp_path)
    assert len(stale) == 2 and not list(tmp_path.rglob(".tmp-*"))


def test_a_batch_commit_renames_and_discard_removes(tmp_path):
    batch = AtomicBatch()
    batch.write_parquet(pl.DataFrame({"x": [1]}), tmp_path / "a" / "1.parquet")
    assert batch.commit() == [tmp_path / "a" / "1.parquet"]
    assert pl.read_parquet(tmp_path / "a" / "1.parquet")["x"].to_list() == [1]
    batch.write_parquet(pl.DataFrame({"x": [2]}), tmp_path / "a" / "1.parquet")
    batch.discard()
    assert batch.commit() == []
    assert pl.read_parquet(tmp_path / "a" / "1.parquet")["x"].to_list() == [1]
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["1.parquet"]
