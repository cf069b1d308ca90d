"""The copy-on-write load equals a full build, and leaves the published run alone.

A published warehouse (and marts) is built whole from a real run's tables;
then some tables change from a random day on (rows dropped, changed, added),
others change whole, and ``load_database`` copies the published file and
replaces only what changed. The staged file must hold exactly what a fresh
``build_database`` of the same frames holds: every table's rows (as sorted
frames), every comment, every view definition (the whole catalog), while the
published file keeps its bytes, inode and mtime and a reader holding it open
keeps its snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from warehouse import marts as mart_files
from warehouse import build as build_module
from warehouse.build import build_database, catalog_path, catalog_shape, full_size_path, load_database
from contracts.schema import Column
from contracts.tables import TABLES

DATED = [n for n, t in TABLES.items() if t.date_column]


def sha(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fingerprint(path: Path) -> tuple:
    st = path.stat()
    return sha(path), st.st_ino, st.st_mtime_ns, st.st_size


def contents(path: Path) -> tuple[dict[str, pl.DataFrame], list[tuple]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = {}
        for name, table in TABLES.items():
            frame = con.sql(f"SELECT * FROM {name}").pl()
            rows[name] = frame.sort(table.column_names, nulls_last=True)
        return rows, catalog_shape(con)
    finally:
        con.close()


def assert_same_warehouse(got: Path, want: Path) -> None:
    got_rows, got_catalog = contents(got)
    want_rows, want_catalog = contents(want)
    assert got_catalog == want_catalog  # tables, columns, types, comments, views, no constraints beyond NOT NULL
    for name in TABLES:
        assert got_rows[name].equals(want_rows[name], null_equal=True), name


def change_from(name: str, frame: pl.DataFrame, since: date, rng: random.Random) -> pl.DataFrame:
    """Rows before ``since`` kept as they are; from ``since`` on, some dropped, some changed, some added."""
    table = TABLES[name]
    col = pl.col(table.date_column)
    head, tail = frame.filter(col < since), frame.filter(col.is_null() | (col >= since))
    if tail.height:
        tail = tail.filter(pl.Series([rng.random() > 0.3 for _ in range(tail.height)]))
        floats = [c.name for c in table.columns if c.type == "float" and c.gt is None and c.ge is None]
        if floats:
            tail = tail.with_columns((pl.col(floats[0]) * 0.5).alias(floats[0]))
    added = frame.tail(3).with_columns((col + timedelta(days=rng.randint(1, 40))).alias(table.date_column))
    return pl.concat([head, tail, added.filter(col >= since)])


def incremental_change(tables: dict[str, pl.DataFrame], seed: int) -> tuple[dict[str, pl.DataFrame], dict[str, date]]:
    rng = random.Random(seed)
    new, unchanged_before = dict(tables), {}
    for name, frame in tables.items():
        if frame.is_empty():
            continue
        if name in DATED and rng.random() < 0.75:
            dates = frame[TABLES[name].date_column].drop_nulls().unique().sort()
            pick = rng.random()
            # Mostly a day inside the table, sometimes before every row or after every row.
            since = (dates[0] - timedelta(days=1) if pick < 0.1 else dates[-1] + timedelta(days=30) if pick < 0.2
                     else dates[rng.randrange(dates.len())])
            new[name] = change_from(name, frame, since, rng)
            unchanged_before[name] = since
        elif rng.random() < 0.5:  # not named: replaced whole (here: one row fewer, order shuffled)
            new[name] = frame.slice(1).sample(fraction=1.0, shuffle=True, seed=seed)
    return new, unchanged_before


def tails(frames: dict[str, pl.DataFrame], unchanged_before: dict[str, date]) -> dict[str, pl.DataFrame]:
    """What a run hands on (Marts.unchanged_before): a named table's rows from its date only
    (a null date counts as changed); the rows before are the published run's."""
    out = dict(frames)
    for name, since in unchanged_before.items():
        col = pl.col(TABLES[name].date_column)
        out[name] = frames[name].filter(col.is_null() | (col >= since))
    return out


@pytest.fixture
def published(tmp_path, tables) -> Path:
    run = tmp_path / "runs" / "previous"
    run.mkdir(parents=True)
    build_database(run / "warehouse.duckdb", tables)
    mart_files.stage_marts(tables, run / "marts", "previous", {"source": "sample"})
    return run


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_copy_on_write_equals_a_full_build(tmp_path, tables, published, seed):
    new, unchanged_before = incremental_change(tables, seed)
    assert unchanged_before, "the generator named no table"
    before = fingerprint(published / "warehouse.duckdb")
    reader = duckdb.connect(str(published / "warehouse.duckdb"), read_only=True)
    try:
        seen = reader.execute("SELECT count(*), sum(close) FROM fact_prices").fetchone()
        staged = tmp_path / "staged" / "warehouse.duckdb"
        staged.parent.mkdir()
        loaded = load_database(staged, tails(new, unchanged_before), published=published / "warehouse.duckdb",
                               unchanged_before=unchanged_before)
        assert loaded.full_because is None
        assert loaded.counts == {n: new.get(n, pl.DataFrame()).height for n in TABLES}
        # The reader still sees its snapshot, in the same connection.
        assert reader.execute("SELECT count(*), sum(close) FROM fact_prices").fetchone() == seen
    finally:
        reader.close()
    assert fingerprint(published / "warehouse.duckdb") == before
    full = tmp_path / "full.duckdb"
    build_database(full, new)
    assert_same_warehouse(staged, full)
    # The copy remembers the full build it descends from (the compaction rule's base).
    assert full_size_path(staged).read_text() == full_size_path(published / "warehouse.duckdb").read_text()


def test_repeated_incremental_loads_stay_equal(tmp_path, tables, published):
    """Three runs in a row, each copying the one before, equal a full build of the last."""
    base, frames = published / "warehouse.duckdb", tables
    for seed in (11, 12, 13):
        frames, unchanged_before = incremental_change(frames, seed)
        staged = tmp_path / f"run{seed}" / "warehouse.duckdb"
        staged.parent.mkdir()
        assert load_database(staged, tails(frames, unchanged_before), published=base,
                             unchanged_before=unchanged_before).full_because is None
        base = staged
    full = tmp_path / "full.duckdb"
    build_database(full, frames)
    assert_same_warehouse(base, full)


def full_reason(tmp_path, frames, published, **kwargs) -> str:
    """Why the load built whole (it must have); the result still equals a full build."""
    new, unchanged_before = incremental_change(frames, 5)
    staged = tmp_path / "staged.duckdb"
    unchanged_before = kwargs.pop("unchanged_before", unchanged_before)
    loaded = load_database(staged, tails(new, unchanged_before), published=published / "warehouse.duckdb",
                           unchanged_before=unchanged_before, **kwargs)
    assert loaded.full_because
    # Built whole, each tail with the published rows before its date (warehouse.build.whole_tables).
    assert set(loaded.whole) == set(unchanged_before)
    for name, frame in loaded.whole.items():
        keys = TABLES[name].column_names
        assert frame.sort(keys, nulls_last=True).equals(
            TABLES[name].conform(new[name]).sort(keys, nulls_last=True), null_equal=True), name
    full = tmp_path / "full.duckdb"
    build_database(full, new, kwargs.get("tables", TABLES), kwargs.get("storage_version", "v1.1.0"))
    if "tables" not in kwargs:
        assert_same_warehouse(staged, full)
    else:
        assert sha(staged) != sha(published / "warehouse.duckdb")
    return loaded.full_because


def test_an_extra_table_in_the_published_file_means_a_full_build(tmp_path, tables, published):
    con = duckdb.connect(str(published / "warehouse.duckdb"))
    con.execute("CREATE TABLE retired_mart (x INTEGER)")
    con.close()
    assert "retired_mart" in full_reason(tmp_path, tables, published)


def test_a_changed_contract_means_a_full_build(tmp_path, tables, published):
    changed = dict(TABLES)
    t = changed["mart_mix_summary"]
    changed["mart_mix_summary"] = replace(t, columns=(*t.columns, Column("new_metric", "float", "A new column.")))
    frames = {**tables, "mart_mix_summary": tables["mart_mix_summary"].with_columns(new_metric=pl.lit(1.0))}
    assert "new_metric" in full_reason(tmp_path, frames, published, tables=changed)


def test_a_changed_comment_means_a_full_build(tmp_path, tables, published):
    con = duckdb.connect(str(published / "warehouse.duckdb"))
    con.execute("COMMENT ON TABLE dim_asset IS 'old words'")
    con.close()
    assert "dim_asset" in full_reason(tmp_path, tables, published)


def test_a_published_file_with_primary_keys_means_a_full_build(tmp_path, tables, published):
    path = published / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("ALTER TABLE dim_asset ADD PRIMARY KEY (symbol)")  # as files were written before this change
    con.close()
    assert "dim_asset" in full_reason(tmp_path, tables, published)


def test_a_storage_version_change_means_a_full_build(tmp_path, tables, published):
    reason = full_reason(tmp_path, tables, published, storage_version="v1.2.0")
    assert "storage format" in reason


def test_compaction_once_the_file_outgrows_its_full_build(tmp_path, tables, published):
    full_size_path(published / "warehouse.duckdb").write_text("1000\n")
    assert "compaction" in full_reason(tmp_path, tables, published)


def test_nothing_unchanged_or_no_published_file_means_a_full_build(tmp_path, tables, published):
    assert "no table is unchanged" in full_reason(tmp_path, tables, published, unchanged_before={})
    staged = tmp_path / "s.duckdb"
    # A tail without the published file that holds the rest: an error, never a warehouse of tails.
    since = {"fact_prices": date(2024, 1, 1)}
    with pytest.raises(ValueError, match="fact_prices hold only their changed rows, and the published warehouse"):
        load_database(staged, tails(tables, since), published=tmp_path / "absent.duckdb", unchanged_before=since)


def mart_tree(marts: Path) -> dict[str, bytes]:
    return {str(p.relative_to(marts)): p.read_bytes() for p in sorted(marts.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("seed", [1, 2])
def test_marts_rewrite_only_changed_years(tmp_path, tables, published, seed):
    new, unchanged_before = incremental_change(tables, seed)
    old_marts = published / "marts"
    before = {k: v for k, v in mart_tree(old_marts).items()}
    before_inodes = {p: p.stat().st_ino for p in old_marts.rglob("*.parquet")}
    inc, full = tmp_path / "inc", tmp_path / "full"
    extra = {"source": "sample"}
    mart_files.stage_marts(tails(new, unchanged_before), inc, "next", extra, unchanged_before, old_marts)
    mart_files.stage_marts(new, full, "next", extra)
    # Byte for byte what a full write makes: the same files, the same manifests.
    assert mart_tree(inc) == mart_tree(full)
    # The previous run is left as it was.
    assert mart_tree(old_marts) == before
    assert {p: p.stat().st_ino for p in old_marts.rglob("*.parquet")} == before_inodes
    # Years before the changed day's year are the published files themselves (hard links).
    linked = 0
    for name, since in unchanged_before.items():
        table = TABLES[name]
        if not (table.publish and table.partition_year_by):
            continue
        manifest = json.loads(mart_files.manifest_path(inc, name).read_text())
        for f in manifest["files"]:
            year = int(f.split("/")[0])
            same = (inc / name / f).stat().st_ino == (old_marts / name / f).stat().st_ino if (old_marts / name / f).exists() else False
            assert same == (year < since.year), (name, f, since)
            linked += same
    if seed == 1:
        assert linked, "seed 1 is meant to reuse at least one year"


def test_marts_in_a_changed_schema_are_written_fresh(tmp_path, tables, published):
    """A published manifest that does not describe this run's files: nothing is linked."""
    path = mart_files.manifest_path(published / "marts", "mart_rolling_correlation")
    manifest = json.loads(path.read_text())
    manifest["schema"][0]["description"] = "old words"
    path.write_text(json.dumps(manifest))
    out = tmp_path / "inc"
    since = {"mart_rolling_correlation": date(2099, 1, 1)}
    mart_files.stage_marts(tails(tables, since), out, "next", {}, since, published / "marts")
    files = json.loads(mart_files.manifest_path(out, "mart_rolling_correlation").read_text())["files"]
    assert files and all(os.stat(out / "mart_rolling_correlation" / f).st_nlink == 1 for f in files)


@pytest.fixture
def recorded(tmp_path, tables) -> Path:
    """A published run whose load recorded its catalog (``warehouse.build.record_shape``), as a run's does."""
    run = tmp_path / "runs" / "recorded"
    run.mkdir(parents=True)
    assert load_database(run / "warehouse.duckdb", tables).full_because
    assert catalog_path(run / "warehouse.duckdb").exists()
    return run


def test_a_copy_compares_its_catalog_with_the_published_runs_record_without_an_empty_build(
    tmp_path, tables, recorded, monkeypatch
):
    def no_empty_build(*args, **kwargs):
        raise AssertionError("expected_shape: an empty warehouse was built")

    monkeypatch.setattr(build_module, "expected_shape", no_empty_build)
    new, unchanged_before = incremental_change(tables, 1)
    staged = tmp_path / "staged" / "warehouse.duckdb"
    staged.parent.mkdir()
    loaded = load_database(staged, tails(new, unchanged_before), published=recorded / "warehouse.duckdb",
                           unchanged_before=unchanged_before)
    assert loaded.full_because is None
    full = tmp_path / "full.duckdb"
    build_database(full, new)
    assert_same_warehouse(staged, full)
    # The copy records the catalog in turn, for the night after.
    assert catalog_path(staged).read_text() == catalog_path(recorded / "warehouse.duckdb").read_text()


def test_a_record_of_another_catalog_key_is_not_trusted(tmp_path, tables, recorded, monkeypatch):
    record = catalog_path(recorded / "warehouse.duckdb")
    saved = json.loads(record.read_text())
    record.write_text(json.dumps({**saved, "key": "another contract", "shape": []}))
    built = []
    real = build_module.expected_shape
    monkeypatch.setattr(build_module, "expected_shape", lambda *a: built.append(a) or real(*a))
    new, unchanged_before = incremental_change(tables, 2)
    staged = tmp_path / "staged.duckdb"
    loaded = load_database(staged, tails(new, unchanged_before), published=recorded / "warehouse.duckdb",
                           unchanged_before=unchanged_before)
    assert loaded.full_because is None and len(built) == 1


def test_a_view_added_by_hand_is_found_with_the_recorded_catalog_too(tmp_path, tables, recorded):
    con = duckdb.connect(str(recorded / "warehouse.duckdb"))
    con.execute("CREATE VIEW my_view AS SELECT 1 AS x")
    con.close()
    assert "my_view" in full_reason(tmp_path, tables, recorded)


def test_a_copy_and_its_marts_conform_only_the_rows_they_write(tmp_path, tables, published, monkeypatch):
    """A next-day run hands on tables of millions of rows of which it writes a few: the load and
    the marts conform (cast to the contract) only those, not the whole frame first."""
    from contracts.schema import Table

    seen: dict[str, list[int]] = {}
    real = Table.conform
    monkeypatch.setattr(Table, "conform", lambda self, frame: seen.setdefault(self.name, []).append(frame.height)
                        or real(self, frame))
    new, unchanged_before = incremental_change(tables, 1)
    staged = tmp_path / "staged.duckdb"
    assert load_database(staged, tails(new, unchanged_before), published=published / "warehouse.duckdb",
                         unchanged_before=unchanged_before).full_because is None
    narrowed = 0
    for name, since in unchanged_before.items():
        col = pl.col(TABLES[name].date_column)
        written = new[name].filter(col.is_null() | (col >= since)).height
        assert max(seen.get(name, [0])) == written, name
        narrowed += written < new[name].height
    assert narrowed, "seed 1 is meant to keep rows of some table"
    seen.clear()
    marts = tmp_path / "marts"
    mart_files.stage_marts(tails(new, unchanged_before), marts, "next", {}, unchanged_before, published / "marts")
    for name, since in unchanged_before.items():
        table = TABLES[name]
        if table.publish and mart_files.reusable_years(table, published / "marts", since):
            # The tail and the changed year's published rows before the day: that year's rows, no more.
            this_year = pl.col(table.partition_year_by).dt.year() >= since.year
            assert sum(seen[name]) == new[name].filter(this_year | pl.col(table.partition_year_by).is_null()).height


def test_a_published_mart_reads_back_as_its_warehouse_table(tables, published):
    con = duckdb.connect(str(published / "warehouse.duckdb"), read_only=True)
    try:
        for name, table in TABLES.items():
            if not table.publish:
                continue
            got = mart_files.read_published(table, published / "marts")
            want = con.sql(f"SELECT * FROM {name}").pl()
            assert got is not None and got.schema == table.polars_schema, name
            keys = table.column_names
            assert got.sort(keys, nulls_last=True).equals(table.conform(want).sort(keys, nulls_last=True),
                                                          null_equal=True), name
    finally:
        con.close()


def test_a_mart_that_cannot_stand_for_its_table_is_not_read(tables, published):
    marts, name = published / "marts", "mart_rolling_correlation"
    table = TABLES[name]
    manifest_file = mart_files.manifest_path(marts, name)
    manifest = json.loads(manifest_file.read_text())
    assert mart_files.read_published(table, marts) is not None
    manifest_file.write_text(json.dumps({**manifest, "row_count": manifest["row_count"] + 1}))
    assert mart_files.read_published(table, marts) is None
    other = dict(manifest, schema=[{**manifest["schema"][0], "description": "old words"}, *manifest["schema"][1:]])
    manifest_file.write_text(json.dumps(other))
    assert mart_files.read_published(table, marts) is None
    manifest_file.write_text(json.dumps(manifest))
    (marts / name / manifest["files"][0]).unlink()
    assert mart_files.read_published(table, marts) is None
    assert mart_files.read_published(TABLES["dim_asset"], published / "no-marts") is None


def test_a_published_mart_reads_back_from_a_day_from_its_years_files(tables, published, monkeypatch):
    """``read_published(..., since)``: the rows on/after the day, read from the files of its year
    on (the earlier years' data is not read), equal to the warehouse's rows filtered the same way;
    a manifest whose row count the files do not add up to is still refused."""
    marts, name = published / "marts", "mart_rolling_correlation"
    table = TABLES[name]
    whole = mart_files.read_published(table, marts)
    years = sorted(whole["date"].dt.year().unique().to_list())
    assert len(years) > 1, "the fixture spans several years"
    day = date(years[-1], 1, 1) + timedelta(days=3)
    read: list[list] = []
    real = pl.read_parquet
    monkeypatch.setattr(mart_files.pl, "read_parquet", lambda paths, *a, **k: read.append(list(paths)) or real(paths, *a, **k))
    got = mart_files.read_published(table, marts, day)
    keys = table.column_names
    want = whole.filter(pl.col("date") >= day)
    assert 0 < got.height < whole.height
    assert got.sort(keys, nulls_last=True).equals(want.sort(keys, nulls_last=True), null_equal=True)
    assert read and all(int(Path(p).parent.name) >= day.year for p in read[-1])
    manifest_file = mart_files.manifest_path(marts, name)
    manifest = json.loads(manifest_file.read_text())
    manifest_file.write_text(json.dumps({**manifest, "row_count": manifest["row_count"] + 1}))
    assert mart_files.read_published(table, marts, day) is None
