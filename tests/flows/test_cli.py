"""The command line: one clear error line and a non-zero exit for user mistakes."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import app
from warehouse.build import build_database

runner = CliRunner()


@pytest.fixture
def warehouse(tmp_path):
    assets = pl.DataFrame(
        {"symbol": ["BTC", "^RUT"], "name": ["Bitcoin", "Russell 2000"], "asset_class": ["crypto", "index"]}
    ).with_columns([pl.lit(None, dtype=pl.String).alias(c) for c in ("sector", "industry", "quote_currency", "source", "source_symbol")])
    corr = pl.DataFrame(
        {"date": [date(2024, 1, 2)], "asset": ["BTC"], "benchmark": ["^RUT"], "window_days": [90],
         "correlation": [0.25], "beta": [1.1], "observations": [90]}
    )
    build_database(tmp_path / "warehouse.duckdb", {"dim_asset": assets, "mart_rolling_correlation": corr})
    return tmp_path


def test_sql_formats(warehouse):
    q = "SELECT asset, correlation FROM mart_rolling_correlation"
    res = runner.invoke(app, ["sql", q, "--format", "json", "--data-dir", str(warehouse)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == [{"asset": "BTC", "correlation": 0.25}]
    res = runner.invoke(app, ["sql", q, "-f", "csv", "--data-dir", str(warehouse)])
    assert res.stdout.splitlines() == ["asset,correlation", "BTC,0.25"]


def test_sql_from_file_starting_with_a_comment(warehouse, tmp_path):
    f = tmp_path / "q.sql"
    f.write_text("-- a comment first\nSELECT count(*) AS n FROM dim_asset\n")
    res = runner.invoke(app, ["sql", "--file", str(f), "-f", "csv", "--data-dir", str(warehouse)])
    assert res.exit_code == 0 and res.stdout.splitlines() == ["n", "2"]


@pytest.mark.parametrize(
    "query", ["DROP TABLE dim_asset", "SELECT 1; DELETE FROM dim_asset", "INSERT INTO dim_asset VALUES ('x')",
              "COPY dim_asset TO '/tmp/x.csv'", "ATTACH '/tmp/other.duckdb'"],
)
def test_sql_refuses_writes(warehouse, query):
    res = runner.invoke(app, ["sql", query, "--data-dir", str(warehouse)])
    assert res.exit_code != 0
    assert "refused" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    check = runner.invoke(app, ["sql", "SELECT count(*) AS n FROM dim_asset", "-f", "csv", "--data-dir", str(warehouse)])
    assert check.stdout.splitlines()[1] == "2", "nothing was changed"


def test_sql_cannot_reach_the_file_system(warehouse, tmp_path):
    (tmp_path / "secret.csv").write_text("a\n1\n")
    res = runner.invoke(app, ["sql", f"SELECT * FROM read_csv('{tmp_path / 'secret.csv'}')", "--data-dir", str(warehouse)])
    assert res.exit_code != 0 and "error:" in res.stderr


def test_sql_errors_are_one_line(tmp_path, warehouse):
    res = runner.invoke(app, ["sql", "SELECT 1", "--data-dir", str(tmp_path / "empty")])
    assert res.exit_code != 0 and "no warehouse at" in res.stderr and "Traceback" not in res.output
    res = runner.invoke(app, ["sql", "SELECT nope FROM dim_asset", "--data-dir", str(warehouse)])
    assert res.exit_code != 0 and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "--source", "bogus"], "unknown source 'bogus'"),
        (["run", "--source", "files"], "needs --path"),
        (["run", "--as-of", "2024-13-01"], "bad date"),
    ],
)
def test_run_argument_errors(args, message, tmp_path):
    res = runner.invoke(app, [*args, "--data-dir", str(tmp_path)])
    assert res.exit_code != 0
    assert message in res.stderr and "Traceback" not in res.output
