"""The published warehouse opens in a real DuckDB 1.x client, not only in the duckdb that wrote it.

duckdb 2.0 writes storage version 69 by default, which no 1.x client (CLI,
Python, JDBC/ODBC drivers of BI tools) can read. The warehouse is written in
the storage format of ``XASSET_WAREHOUSE_STORAGE_VERSION`` instead. These tests
install the oldest DuckDB that setting names (and a recent 1.x) into a
throwaway virtual environment and read the file there, in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from flows.settings import Settings
from tests.warehouse.conftest import built_warehouse
from contracts.tables import TABLES

REPO = Path(__file__).resolve().parents[2]
DEFAULT_VERSION = Settings.model_fields["warehouse_storage_version"].default
# The oldest release the default storage version names, and the newest 1.x line.
CLIENTS = {"oldest": f"duckdb=={DEFAULT_VERSION.removeprefix('v')[:-1]}*", "newest-1.x": "duckdb>=1.4,<2"}

READ = """
import json, sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
tables = json.loads(sys.argv[2])
print(json.dumps({
    "version": duckdb.__version__,
    "counts": {t: con.sql(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables},
    "marts": {t: con.sql(f"SELECT count(*) FROM marts.{t}").fetchone()[0] for t in tables},
    "views": sorted(f"{s}.{v}" for s, v in con.sql(
        "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal").fetchall()),
    "view_rows": {f"{s}.{v}": con.sql(f'SELECT count(*) FROM "{s}"."{v}"').fetchone()[0] for s, v in con.sql(
        "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal").fetchall()},
    "comments": dict(con.sql(
        "SELECT table_name, comment FROM duckdb_tables() WHERE comment IS NOT NULL").fetchall()),
    "column_comments": con.sql(
        "SELECT count(*) FROM duckdb_columns() WHERE comment IS NOT NULL AND schema_name = 'main'").fetchone()[0],
}))
"""


def make_client_venv(root: Path, requirement: str) -> Path:
    """A throwaway venv holding only ``requirement``; skips the test if it cannot be built (no index)."""
    python = root / "bin" / "python"
    uv = shutil.which("uv") or next((str(p) for p in (REPO / ".tools/bin/uv",) if p.exists()), None)
    if uv:
        steps = [[uv, "venv", "--quiet", "--python", sys.executable, str(root)],
                 [uv, "pip", "install", "--quiet", "--python", str(python), requirement]]
    else:
        steps = [[sys.executable, "-m", "venv", str(root)],
                 [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", requirement]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.skip(f"cannot install {requirement} into a throwaway venv "
                        f"({' '.join(step[:3])}): {done.stderr.strip().splitlines()[-1:]}")
    return python


@pytest.fixture(scope="session", params=sorted(CLIENTS))
def old_client(request, tmp_path_factory) -> tuple[str, Path]:
    name = request.param
    return name, make_client_venv(tmp_path_factory.mktemp(f"duckdb-{name}"), CLIENTS[name])


def read_with(python: Path, path: Path) -> dict:
    published = sorted(n for n, t in TABLES.items() if t.publish)
    done = subprocess.run([str(python), "-c", READ, str(path), json.dumps(published)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ""})
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip()[-2000:] or f"exit status {done.returncode}")
    return json.loads(done.stdout)


def test_default_storage_version_is_a_1x_release():
    assert DEFAULT_VERSION.startswith("v1."), "1.x clients cannot read a 2.x storage version"


def copied_warehouse(path: Path, frames: dict) -> Path:
    """The incremental load's file: the published one (a day short) copied, its last day replaced."""
    import polars as pl

    from warehouse.build import load_database

    last = frames["fact_prices"]["date"].max()
    dated = {n for n in frames if TABLES[n].date_column}
    published = built_warehouse(path.with_name("published.duckdb"), {
        n: f.filter(pl.col(TABLES[n].date_column) < last) if n in dated else f for n, f in frames.items()})
    # The run hands on each dated table's tail (Marts.unchanged_before).
    tails = {n: f.filter(pl.col(TABLES[n].date_column).is_null() | (pl.col(TABLES[n].date_column) >= last))
             if n in dated else f for n, f in frames.items()}
    loaded = load_database(path, tails, published=published, unchanged_before=dict.fromkeys(dated, last))
    assert loaded.full_because is None, loaded.full_because
    return path


@pytest.mark.parametrize("write", [built_warehouse, copied_warehouse], ids=["full_build", "copy_on_write"])
def test_a_1x_client_reads_the_warehouse_tables_views_and_comments(old_client, run_tables, tmp_path, write):
    name, python = old_client
    path = write(tmp_path / "warehouse.duckdb", run_tables)
    got = read_with(python, path)
    assert got["version"].startswith("1."), got["version"]
    if name == "oldest":
        assert f"v{got['version']}".startswith(DEFAULT_VERSION[:-1]), got["version"]

    # Same answers as the duckdb that wrote it.
    con = duckdb.connect(str(path), read_only=True)
    try:
        for t, n in got["counts"].items():
            assert n == con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == got["marts"][t], t
            assert n > 0, t
        views = con.execute("SELECT schema_name || '.' || view_name FROM duckdb_views() WHERE NOT internal "
                        "ORDER BY 1").fetchall()
        assert got["views"] == [v for (v,) in views]
        comments = dict(con.execute("SELECT table_name, comment FROM duckdb_tables() WHERE comment IS NOT NULL").fetchall())
        tags = con.execute("SELECT tags['storage_version'] FROM duckdb_databases() WHERE database_name = 'warehouse'"
                       ).fetchone()[0]
    finally:
        con.close()
    assert any(v.startswith("analytics.") for v in got["views"]), got["views"]
    assert all(n >= 0 for n in got["view_rows"].values())
    assert got["comments"] == comments and set(comments) >= set(got["counts"])
    assert got["column_comments"] > 0
    assert tags.startswith("v1."), tags  # the format tag names the oldest release sharing it (v1.0.0+)


def test_a_1x_client_cannot_read_duckdb_2s_own_format(old_client, run_tables, tmp_path):
    """The control: without the setting the file is unreadable, so the test above can fail."""
    from warehouse.build import build_database

    _, python = old_client
    path = tmp_path / "warehouse.duckdb"
    build_database(path, {"dim_asset": run_tables["dim_asset"]}, storage_version=f"v{duckdb.__version__}")
    if duckdb.__version__.startswith("1."):
        pytest.skip(f"the writing duckdb is {duckdb.__version__}: its own format is a 1.x one")
    with pytest.raises(RuntimeError, match="(?i)version number"):
        read_with(python, path)
