"""Parquet marts mirrored to object storage: content, pointer-last order, pruning, idempotence, readers."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import duckdb
import fsspec
import polars as pl
import pyarrow.dataset as ds
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from typer.testing import CliRunner

from warehouse import marts as mart_files
from warehouse.marts import manifest_path
from warehouse import snapshots
from warehouse.build import build_database
from warehouse.mirror import POINTER, MirrorError, mirror_marts

RUN_A, RUN_B, RUN_C = "20260101T013000-aaaaaa", "20260102T013000-bbbbbb", "20260103T013000-cccccc"


def publish(data_dir: Path, frames: dict[str, pl.DataFrame], run_id: str) -> Path:
    """Publish the marts of one run the way the flow does; returns the ``marts`` link."""
    staging = snapshots.stage(data_dir, run_id)
    build_database(staging.warehouse_path, {})  # a run always publishes a warehouse beside its marts
    mart_files.stage_marts(frames, staging.marts_dir, run_id, {"source": "sample"})
    snapshots.publish(data_dir, staging, run_id)
    return data_dir / "marts"


def next_run(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """A later run: one year partition and one small table change, every other file is identical."""
    frames = dict(frames)
    frames["fact_returns"] = frames["fact_returns"].filter(pl.col("session_date") < date(2024, 6, 28))
    frames["mart_mix_summary"] = frames["mart_mix_summary"].head(1)
    return frames


@pytest.fixture
def memory_url():
    root = f"/mirror-{uuid.uuid4().hex[:8]}"
    yield f"memory://{root}"
    memory = MemoryFileSystem()  # one store per process: leave nothing for the next test
    if memory.exists(root):
        memory.rm(root, recursive=True)


def pointer_of(url: str) -> dict:
    fs, root = fsspec.core.url_to_fs(url)
    return json.loads(fs.cat_file(f"{root}/{POINTER}"))


def remote_files(url: str) -> dict[str, int]:
    fs, root = fsspec.core.url_to_fs(url)
    return {p[len(root) + 1:]: info["size"] for p, info in fs.find(root, detail=True).items()}


def local_tables(marts: Path) -> dict[str, dict]:
    return {p.name: json.loads(manifest_path(marts, p.name).read_text())
            for p in marts.iterdir() if p.is_dir() and not p.name.startswith(".")}


def test_mirror_copies_every_published_file_and_manifest_then_the_pointer(tmp_path, tables, memory_url):
    marts = publish(tmp_path, tables, RUN_A)
    summary = mirror_marts(marts, memory_url, keep=3)

    local = local_tables(marts)
    files = remote_files(memory_url)
    assert summary.run_id == RUN_A and summary.previous_run_id is None and summary.pointer_written
    assert summary.uploaded == sum(len(m["files"]) for m in local.values()) and summary.copied == 0
    for name, manifest in local.items():
        for f in manifest["files"]:
            assert files[f"runs/{RUN_A}/{name}/{f}"] == (marts / name / f).stat().st_size
        remote_manifest = fsspec.open(f"{memory_url}/runs/{RUN_A}/{name}.manifest.json").open().read()
        assert remote_manifest == manifest_path(marts, name).read_bytes()
    pointer = pointer_of(memory_url)
    assert pointer["run_id"] == RUN_A and pointer["history"] == [RUN_A]
    assert {n: t["row_count"] for n, t in pointer["tables"].items()} == {n: m["row_count"] for n, m in local.items()}
    assert all(t["path"] == f"runs/{RUN_A}/{n}" for n, t in pointer["tables"].items())
    assert not any(".versions" in f for f in files)


def test_remirroring_a_run_sends_nothing_and_keeps_the_pointer(tmp_path, tables, memory_url):
    marts = publish(tmp_path, tables, RUN_A)
    mirror_marts(marts, memory_url, keep=3)
    before, pointer = remote_files(memory_url), pointer_of(memory_url)

    again = mirror_marts(marts, memory_url, keep=3)
    assert (again.uploaded, again.copied, again.manifests_written, again.pointer_written) == (0, 0, 0, False)
    assert again.skipped == sum(len(m["files"]) for m in local_tables(marts).values())
    assert remote_files(memory_url) == before and pointer_of(memory_url) == pointer


def test_a_new_run_copies_unchanged_files_inside_the_store_and_prunes_to_keep(tmp_path, tables, memory_url):
    frames_b = next_run(tables)
    mirror_marts(publish(tmp_path, tables, RUN_A), memory_url, keep=2)
    b = mirror_marts(publish(tmp_path, frames_b, RUN_B), memory_url, keep=2)
    # Only the changed 2024 partition of fact_returns and the changed small table leave the machine.
    assert b.uploaded == 2 and b.copied > 0 and b.previous_run_id == RUN_A and b.pruned == []

    c = mirror_marts(publish(tmp_path, tables, RUN_C), memory_url, keep=2)
    assert c.pruned == [RUN_A] and c.uploaded == 0  # every file of C was in A or B
    assert pointer_of(memory_url)["history"] == [RUN_C, RUN_B]
    assert {f.split("/")[1] for f in remote_files(memory_url) if f.startswith("runs/")} == {RUN_B, RUN_C}


class FailingMemoryFS(MemoryFileSystem):
    """The same in-memory store, but the connection drops after ``allowed`` writes; records every write."""

    cachable = False

    def __init__(self, allowed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.allowed, self.writes = allowed, []

    def _write(self, path: str) -> None:
        if self.allowed is not None and len(self.writes) >= self.allowed:
            raise ConnectionError("connection reset by peer")
        self.writes.append(path)

    def put_file(self, lpath, rpath, *args, **kwargs):
        self._write(rpath)
        return super().put_file(lpath, rpath, *args, **kwargs)

    def cp_file(self, path1, path2, **kwargs):
        self._write(path2)
        return super().cp_file(path1, path2, **kwargs)

    def pipe_file(self, path, value, *args, **kwargs):
        self._write(path)
        return super().pipe_file(path, value, *args, **kwargs)


def test_the_pointer_is_written_last_and_a_failed_upload_leaves_the_previous_run_current(tmp_path, tables, memory_url):
    root = memory_url.removeprefix("memory://")
    recording = FailingMemoryFS()
    mirror_marts(publish(tmp_path, tables, RUN_A), memory_url, keep=3, fs=recording)
    kinds = ["pointer" if w.endswith(POINTER) else "manifest" if w.endswith(".manifest.json") else "data"
             for w in recording.writes]
    assert kinds[-1] == "pointer" and kinds.count("pointer") == 1
    assert kinds == sorted(kinds, key=["data", "manifest", "pointer"].index), "data, then manifests, then pointer"
    served_a = remote_files(memory_url)

    marts = publish(tmp_path, next_run(tables), RUN_B)
    for allowed in (1, len(recording.writes) - 2):  # dies among the data files; dies among the manifests
        with pytest.raises(ConnectionError):
            mirror_marts(marts, memory_url, keep=3, fs=FailingMemoryFS(allowed=allowed))
        assert pointer_of(memory_url)["run_id"] == RUN_A
        assert {k: v for k, v in remote_files(memory_url).items() if not k.startswith(f"runs/{RUN_B}/")} == served_a

    resumed = mirror_marts(marts, memory_url, keep=3, fs=FailingMemoryFS())
    assert resumed.skipped > 0 and pointer_of(memory_url)["run_id"] == RUN_B
    assert MemoryFileSystem().exists(f"{root}/runs/{RUN_A}")  # still within keep


def test_mirror_refuses_mixed_runs_and_going_back(tmp_path, tables, memory_url):
    marts = publish(tmp_path, tables, RUN_B)
    mirror_marts(marts, memory_url, keep=3)
    older = publish(tmp_path / "other", tables, RUN_A)
    with pytest.raises(MirrorError, match="newer than the local"):
        mirror_marts(older, memory_url, keep=3)

    # A table of another run inside the published one (copied in by hand, say).
    mart_files.write_table(mart_files.TABLES["dim_asset"], tables["dim_asset"], marts.resolve(), RUN_C, {})
    with pytest.raises(MirrorError, match="more than one run"):
        mirror_marts(marts, memory_url, keep=3)
    assert pointer_of(memory_url)["run_id"] == RUN_B
    with pytest.raises(MirrorError, match="no published marts"):
        mirror_marts(tmp_path / "empty" / "marts", memory_url, keep=3)


def test_mirror_follows_the_published_links(tmp_path, tables, memory_url):
    """<data>/marts is a link through <data>/current to one run's directory; the mirror resolves it once."""
    marts = publish(tmp_path, tables, RUN_A)
    assert marts.is_symlink() and (tmp_path / "current").is_symlink()
    assert mirror_marts(marts, memory_url, keep=3).run_id == RUN_A
    publish(tmp_path, next_run(tables), RUN_B)
    assert mirror_marts(marts, memory_url, keep=3).run_id == RUN_B


def test_a_file_url_mirror_reads_the_same_rows_with_polars_pyarrow_and_duckdb(tmp_path, tables):
    marts = publish(tmp_path / "data", tables, RUN_A)
    url = (tmp_path / "bucket" / "xasset").as_uri()
    mirror_marts(marts, url, keep=3)
    assert mirror_marts(marts, url, keep=3).uploaded == 0
    assert not list((tmp_path / "bucket").rglob(".tmp-*"))

    pointer = json.loads(fsspec.open(f"{url}/{POINTER}").open().read())  # resolved once
    con = duckdb.connect()
    try:
        for name, entry in pointer["tables"].items():
            local = pl.concat([pl.read_parquet(marts / name / f) for f in entry["files"]], how="vertical_relaxed") \
                if entry["files"] else pl.DataFrame()
            remote = [f"{url}/{entry['path']}/{f}" for f in entry["files"]]
            assert local.height == entry["row_count"]
            if not remote:
                continue
            by_polars = pl.read_parquet(remote)
            assert by_polars.equals(local), name
            # A whole table directory: only Parquet files in it (the manifest is beside it).
            table_dir = ds.dataset(f"{url}/{entry['path']}", format="parquet")
            assert table_dir.count_rows() == entry["row_count"]
            assert con.execute("SELECT count(*) FROM read_parquet(?)", [remote]).fetchone()[0] == entry["row_count"]
        glob = f"{url}/{pointer['tables']['fact_returns']['path']}/**/*.parquet"
        assert con.execute("SELECT count(*) FROM read_parquet(?)", [glob]).fetchone()[0] \
            == pointer["tables"]["fact_returns"]["row_count"]
    finally:
        con.close()


def test_cli_mirror_needs_a_url_and_reports_what_it_copied(tmp_path, tables, monkeypatch):
    from flows import cli

    monkeypatch.delenv("XASSET_MARTS_MIRROR_URL", raising=False)
    publish(tmp_path, tables, RUN_A)
    runner = CliRunner()
    missing = runner.invoke(cli.app, ["mirror", "--data-dir", str(tmp_path)])
    assert missing.exit_code == 2 and "no mirror URL" in missing.output

    url = (tmp_path / "bucket").as_uri()
    done = runner.invoke(cli.app, ["mirror", "--to", url, "--data-dir", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert f"run {RUN_A}" in done.output and "now 20260101T013000-aaaaaa" in done.output
    again = runner.invoke(cli.app, ["mirror", "--to", url, "--data-dir", str(tmp_path)])
    assert again.exit_code == 0 and "0 file(s) uploaded" in again.output and "already 20260101T013000" in again.output
    bad = runner.invoke(cli.app, ["mirror", "--to", "nosuchproto://x", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 1 and "current run is unchanged" in bad.output
