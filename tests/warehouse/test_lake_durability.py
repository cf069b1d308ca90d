"""A land's year files are durable before they are visible, and their renames durable after.

Every ``os.fsync``, ``syncfs`` and ``os.replace`` of a land is logged with the
path it concerns (a descriptor resolved through ``/proc/self/fd``), so the
order a crash could interrupt is checked, not only the result. Both ways of
making the data durable are checked: one ``syncfs`` of the lake's filesystem
before the renames (Linux) and one fsync per file (the fallback elsewhere).
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from warehouse import files
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
    """("fsync", path, None), ("syncfs", path, None) and ("replace", src, dst), in the order they happen."""
    log: list[tuple[str, str, str | None]] = []
    real_fsync, real_replace, real_syncfs = os.fsync, os.replace, files.syncfs

    def fsync(fd):
        log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"), None))
        return real_fsync(fd)

    def syncfs(fd):
        log.append(("syncfs", os.readlink(f"/proc/self/fd/{fd}"), None))
        return real_syncfs(fd)

    monkeypatch.setattr(files, "syncfs", syncfs)

    def replace(src, dst, **k):
        log.append(("replace", str(src), str(dst)))
        return real_replace(src, dst, **k)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return log


needs_syncfs = pytest.mark.skipif(files._SYNCFS is None, reason="syncfs(2) is Linux-only; the per-file case covers the rest")


@pytest.fixture(params=["syncfs", "per-file fsync"])
def mechanism(request, monkeypatch) -> str:
    if request.param == "syncfs" and files._SYNCFS is None:
        pytest.skip("syncfs(2) is Linux-only; the per-file case covers the rest")
    if request.param == "per-file fsync":
        monkeypatch.setattr(files, "_SYNCFS", None)  # as where there is no syncfs
    return request.param


@pytest.mark.parametrize("writers", [1, 4])
def test_a_full_land_makes_every_file_durable_before_any_rename_and_the_renames_durable_after(
    tmp_path, events, writers, mechanism
):
    lake = Lake(tmp_path, "files", writers=writers)
    lake.upsert_bars(bars(date(2024, 1, 30)), datetime(2024, 2, 1, tzinfo=UTC))
    year_files = sorted(lake.bars_dir.glob("*/*.parquet"))
    assert len(year_files) == 9  # 3 symbols x 2022..2024
    fsyncs = [p for kind, p, _ in events if kind == "fsync"]
    syncs = [i for i, (kind, _, _) in enumerate(events) if kind == "syncfs"]
    renames = [(src, dst) for kind, src, dst in events if kind == "replace"]
    if mechanism == "syncfs":
        # Two syncfs of the lake's filesystem (the data, then the renames) instead of an fsync per
        # year file and per symbol directory; the index and its directory: 2 fsyncs (it was 14, 20 before).
        assert len(syncs) == 2 and all(Path(events[i][1]).is_relative_to(tmp_path) for i in syncs)
        assert len(fsyncs) == 2
    else:
        # Each year file once, each symbol directory once, and the index and its directory: 14.
        assert not syncs and len(fsyncs) == len(year_files) + len(SYMBOLS) + 2
    assert sorted(dst for _, dst in renames if "/bars/" in dst) == [str(p) for p in year_files]
    for i, (kind, src, dst) in enumerate(events):
        if kind == "replace" and "/bars/" in dst:
            # The data is durable before the name points at it: the filesystem synced (after every
            # file of the batch was written: the renames start once all writers are done) or the file
            # fsynced ...
            assert ("fsync", src, None) in events[:i] if mechanism != "syncfs" else syncs[0] < i
            # ... and the rename is made durable after it: the filesystem synced again, or the
            # directory fsynced once, after the last rename into it.
            if mechanism == "syncfs":
                assert syncs[1] > i
            else:
                later = [j for j, e in enumerate(events) if e == ("fsync", str(Path(dst).parent), None)]
                assert len(later) == 1 and later[0] > i
    assert not list(tmp_path.rglob(".tmp-*"))


@needs_syncfs
def test_a_batch_syncs_the_filesystem_after_every_write_and_before_the_first_rename(tmp_path, events, monkeypatch):
    """The order inside one batch: writes (unsynced), one syncfs, the renames, one syncfs; a rename
    before the first syncfs, a write after it, or a rename after the second, fails here."""
    # What is on disk, in full, when the filesystem is synced: every temp file and its size.
    at_sync: dict[str, int] = {}
    logged_syncfs = files.syncfs

    def syncfs(fd):
        at_sync.update({str(p): p.stat().st_size for p in tmp_path.rglob(".tmp-*")})
        return logged_syncfs(fd)

    monkeypatch.setattr(files, "syncfs", syncfs)
    batch = AtomicBatch()
    targets = [tmp_path / d / f"{y}.parquet" for d in ("a", "b") for y in (2023, 2024)]
    for n, path in enumerate(targets):
        batch.write_parquet(pl.DataFrame({"x": [n]}), path)
    # Written, not yet made durable by any call, not visible.
    assert not events and not any(p.exists() for p in targets)
    assert batch.commit() == targets
    kinds = [kind for kind, _, _ in events]
    assert kinds == ["syncfs"] + ["replace"] * len(targets) + ["syncfs"]
    # Each renamed file was whole when the filesystem was first synced.
    for _, src, dst in events[1: 1 + len(targets)]:
        assert at_sync[src] == Path(dst).stat().st_size > 0
    assert [pl.read_parquet(p)["x"].item() for p in targets] == [0, 1, 2, 3]


@needs_syncfs
def test_a_failed_syncfs_renames_nothing_and_leaves_the_old_files(tmp_path, monkeypatch):
    old = tmp_path / "AAA" / "2024.parquet"
    old.parent.mkdir()
    pl.DataFrame({"x": [1]}).write_parquet(old)
    before = old.read_bytes()

    def failing(fd):
        raise OSError(5, "syncfs: Input/output error")

    monkeypatch.setattr(files, "syncfs", failing)
    batch = AtomicBatch()
    batch.write_parquet(pl.DataFrame({"x": [2]}), old)
    batch.write_parquet(pl.DataFrame({"x": [3]}), old.with_name("2025.parquet"))
    with pytest.raises(OSError, match="Input/output error"):
        batch.commit()
    assert old.read_bytes() == before and not old.with_name("2025.parquet").exists()
    assert not list(tmp_path.rglob(".tmp-*"))


@needs_syncfs
def test_a_batch_of_no_files_syncs_nothing_and_a_discarded_one_closes_its_descriptors(tmp_path, events):
    assert AtomicBatch().commit() == [] and events == []
    batch = AtomicBatch()
    batch.write_parquet(pl.DataFrame({"x": [1]}), tmp_path / "a" / "1.parquet")
    opened = set(os.listdir("/proc/self/fd"))
    batch.discard()
    assert len(opened - set(os.listdir("/proc/self/fd"))) == 1 and events == []
    assert not list(tmp_path.rglob(".tmp-*")) and not (tmp_path / "a" / "1.parquet").exists()


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


@pytest.mark.parametrize("renamers", [1, 4])
def test_a_rename_that_fails_leaves_every_path_old_or_new_and_no_temp_file(tmp_path, monkeypatch, mechanism, renamers):
    paths = [tmp_path / f"s{i}" / "2024.parquet" for i in range(12)]
    for i, path in enumerate(paths):
        path.parent.mkdir()
        pl.DataFrame({"x": [i]}).write_parquet(path)
    batch = AtomicBatch(renamers=renamers)
    for i, path in enumerate(paths):
        batch.write_parquet(pl.DataFrame({"x": [100 + i]}), path)
    real_replace = os.replace

    def replace(src, dst, **k):
        if str(dst) == str(paths[5]):
            raise OSError("rename refused")
        return real_replace(src, dst, **k)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="rename refused"):
        batch.commit()
    values = [pl.read_parquet(p)["x"][0] for p in paths]
    assert values[5] == 5, "the path whose rename failed keeps its old bytes"
    assert all(v in (i, 100 + i) for i, v in enumerate(values))
    assert not list(tmp_path.rglob(".tmp-*")), "no temp file is left behind"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000, 0o002])
def test_a_batch_publishes_files_readable_by_all_whatever_the_umask(tmp_path, umask):
    """Temp files are created with the published mode rather than chmodded after: the umask
    (which masks that mode) must not leave a year file its owner alone can read."""
    old = os.umask(umask)
    try:
        batch = AtomicBatch()
        paths = [tmp_path / "a" / "1.parquet", tmp_path / "b" / "c" / "2.parquet"]
        for path in paths:
            batch.write_parquet(pl.DataFrame({"x": [1]}), path)
        assert batch.commit() == paths
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o777 for p in paths] == [files.PUBLISHED_MODE] * 2


def test_a_temp_name_taken_is_never_opened_and_another_is_drawn(tmp_path, monkeypatch):
    """The batch creates its temp files itself (exclusive create, ``tempfile``'s names): a name
    another file holds is skipped, that file untouched, and the name drawn instead is one the next
    run's cleanup recognises."""
    directory = tmp_path / "AAA"
    directory.mkdir()
    taken = directory / f"{files.TMP_PREFIX}aaaaaaaa.parquet"
    taken.write_bytes(b"someone else's")
    draws = iter([list("aaaaaaaa"), list("aaaaaaaa"), list("bbbbbbbb")])
    monkeypatch.setattr(files._TEMP_RNG, "choices", lambda *a, **k: next(draws))
    batch = AtomicBatch()
    batch.write_parquet(pl.DataFrame({"x": [1]}), directory / "2024.parquet")
    assert taken.read_bytes() == b"someone else's"
    temp = directory / f"{files.TMP_PREFIX}bbbbbbbb.parquet"
    assert files.MKSTEMP_NAME.fullmatch(temp.name) and pl.read_parquet(temp)["x"].to_list() == [1]
    assert batch.commit() == [directory / "2024.parquet"] and not temp.exists()
    assert pl.read_parquet(directory / "2024.parquet")["x"].to_list() == [1]


def test_a_batch_makes_each_directory_once_and_again_if_it_went_away(tmp_path, monkeypatch):
    made: list[str] = []
    real_mkdir = os.mkdir

    def mkdir(path, *a, **k):
        made.append(str(path))
        return real_mkdir(path, *a, **k)

    monkeypatch.setattr(os, "mkdir", mkdir)
    batch = AtomicBatch()
    for year in (2022, 2023, 2024):
        batch.write_parquet(pl.DataFrame({"x": [year]}), tmp_path / "AAA" / f"{year}.parquet")
    assert made == [str(tmp_path / "AAA")], "one mkdir for a directory's three files"
    # The directory removed behind the batch's back (no run does this): the next file makes it again.
    shutil.rmtree(tmp_path / "AAA")
    batch.write_parquet(pl.DataFrame({"x": [2025]}), tmp_path / "AAA" / "2025.parquet")
    assert made == [str(tmp_path / "AAA")] * 2 and len(list((tmp_path / "AAA").glob(".tmp-*"))) == 1
    batch.discard()
    assert not list((tmp_path / "AAA").iterdir())


@needs_syncfs
def test_a_batch_used_again_after_its_commit_syncs_the_filesystem_again(tmp_path, events):
    """The directories a batch made are forgotten with its filesystems at the commit: the next
    files into the same directory are synced before their renames too."""
    batch = AtomicBatch()
    batch.write_parquet(pl.DataFrame({"x": [1]}), tmp_path / "AAA" / "2024.parquet")
    batch.commit()
    events.clear()
    batch.write_parquet(pl.DataFrame({"x": [2]}), tmp_path / "AAA" / "2025.parquet")
    batch.commit()
    assert [kind for kind, _, _ in events] == ["syncfs", "replace", "syncfs"]


def test_a_land_after_a_symbol_directory_was_removed_writes_it_again(tmp_path):
    lake = Lake(tmp_path, "files", writers=4)
    lake.upsert_bars(bars(date(2024, 1, 30)), datetime(2024, 2, 1, tzinfo=UTC))
    before = {p.relative_to(tmp_path): p.read_bytes() for p in lake.bars_dir.rglob("*.parquet")}
    gone = lake.bars_dir / "AAA"
    for p in gone.iterdir():
        p.unlink()
    gone.rmdir()
    lake.upsert_bars(bars(date(2024, 1, 30)), datetime(2024, 2, 1, tzinfo=UTC))
    assert {p.relative_to(tmp_path): p.read_bytes() for p in lake.bars_dir.rglob("*.parquet")} == before
