"""Through the nightly flow: a files run the day after reads only the new rows (the input cursor) and
publishes the same tables as a full rebuild from the same files."""

from __future__ import annotations

import polars as pl
import pytest

from flows.sources.files import FilesSource
from tests.flows.test_incremental_run import assert_same_tables, tables
from tests.warehouse.test_integrity import D1, D2, full_rebuild, run, save, write_inputs

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_the_next_days_files_run_reads_only_the_new_rows_and_equals_a_full_rebuild(tmp_path, monkeypatch):
    folder, data = tmp_path / "in", tmp_path / "data"
    rows = write_inputs(folder)
    for symbol, by_date in rows.items():  # the files as they were on D1
        save(folder, symbol, {d: r for d, r in by_date.items() if d <= D1})
    full_reads = []
    real = FilesSource._read_full

    def counted(self, universe):
        full_reads.append(self.paths)
        return real(self, universe)

    monkeypatch.setattr(FilesSource, "_read_full", counted)
    first = run(folder, data, D1)
    assert len(full_reads) == 1 and (data / "lake" / "index" / "input-source=files.json").exists()
    for symbol, by_date in rows.items():  # a month more appended to every file
        save(folder, symbol, by_date)
    second = run(folder, data, D2)
    assert len(full_reads) == 1, "the next day read every row again"
    new = sum(1 for by_date in rows.values() for d in by_date if D1 < d <= D2)
    assert second.rows_written == new and second.incremental_from is not None
    assert first.status == second.status == "succeeded"
    # The night's appends went into one delta file (``lake_delta_nights``), read with the year files.
    assert len(list((data / "lake" / "delta" / "source=files").glob("*.parquet"))) == 1
    assert_same_tables(data, full_rebuild(folder, tmp_path))


def test_a_coin_listed_on_the_next_day_reads_the_matrix_whole_and_equals_a_full_rebuild(tmp_path, monkeypatch):
    """A symbol new to the correlation matrix rewrites every earlier block: the matrix node finds
    the seed read's window (from the previous latest session) too short, raises ``SeedTooShort``
    from its Prefect task, and the transform reads the published matrix whole and builds again."""
    import flows.rebuild_plan as plan
    from datetime import timedelta

    folder, data = tmp_path / "in", tmp_path / "data"
    rows = write_inputs(folder)
    (folder / "SOL-USD.csv").unlink()  # SOL is listed after D1
    for symbol, by_date in rows.items():
        if symbol != "SOL":
            save(folder, symbol, {d: r for d, r in by_date.items() if d <= D1})
    first = run(folder, data, D1)
    assert first.status == "succeeded"
    whole_reads = []
    real = plan.read_seeds_whole
    monkeypatch.setattr(plan, "read_seeds_whole", lambda settings, names: whole_reads.append(names) or real(settings, names))
    import flows.stages.transform as stage

    monkeypatch.setattr(stage, "read_seeds_whole", plan.read_seeds_whole)
    for symbol, by_date in rows.items():
        save(folder, symbol, by_date if symbol != "SOL" else {d: r for d, r in by_date.items() if d > D1})
    second = run(folder, data, D2)
    assert second.status == "succeeded" and second.incremental_from is not None
    assert second.incremental_from <= D1 + timedelta(days=1)
    assert whole_reads == [["mart_correlation_matrix"]]
    # Every table equals a full rebuild's, the spillover index too: its series change with SOL's
    # listing, which changes every earlier row of it (recomputed whole; main carried the old rows on).
    assert_same_tables(data, full_rebuild(folder, tmp_path))
    assert tables(data)["mart_correlation_matrix"].filter(pl.col("asset_a") == "SOL").height
