"""What analysts query: schemas main/marts/analytics, the views, and the CLI."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import app
from warehouse.build import build_database
from warehouse.query import Target, run_query_result
from warehouse.runs import RunLog
from contracts.schema import Column, Table
from contracts.tables import TABLES


def run_query(db_path: Path, sql: str) -> pl.DataFrame:
    """Every row of a read-only query, with DuckDB's own types where polars has them."""
    return run_query_result(db_path, sql, Target.parquet).frame


EXAMPLE = Path(__file__).resolve().parents[2] / "warehouse" / "sql" / "examples" / "latest_rut_correlation.sql"


SPILLOVER_EXAMPLE = EXAMPLE.with_name("rut_rally_spillover.sql")


@pytest.fixture(scope="module")
def data_dir(run_tables, tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data")
    build_database(data / "warehouse.duckdb", run_tables)
    return data


@pytest.fixture(scope="module")
def db(data_dir) -> Path:
    return data_dir / "warehouse.duckdb"


def cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_unqualified_names_and_marts_schema_agree(db):
    for name, table in TABLES.items():
        if table.publish:
            plain = run_query(db, f"SELECT count(*) AS n FROM {name}")["n"].item()
            assert run_query(db, f"SELECT count(*) AS n FROM marts.{name}")["n"].item() == plain
    marts = set(run_query(db, "SELECT view_name FROM duckdb_views() WHERE schema_name = 'marts'")["view_name"])
    assert marts == {n for n, t in TABLES.items() if t.publish}, "internal tables stay out of marts"
    assert run_query(db, EXAMPLE.read_text()).height > 0


def test_latest_correlations_change_matches_the_history(db):
    latest = run_query(db, "SELECT * FROM analytics.latest_correlations WHERE asset = 'BTC' AND benchmark = '^RUT' AND window_days = 90")
    row = latest.row(0, named=True)
    history = run_query(db, "SELECT date, correlation FROM mart_rolling_correlation "
                            "WHERE asset = 'BTC' AND benchmark = '^RUT' AND window_days = 90 AND correlation IS NOT NULL")
    week_ago = history.filter(pl.col("date") <= row["date"] - pl.duration(days=7)).sort("date").row(-1, named=True)
    assert row["date"] == history["date"].max() and row["date_1w"] == week_ago["date"]
    assert row["change_1w"] == pytest.approx(row["correlation"] - week_ago["correlation"])
    n = run_query(db, "SELECT count(DISTINCT (asset, benchmark, window_days)) AS n FROM mart_rolling_correlation "
                      "WHERE correlation IS NOT NULL")["n"].item()
    assert run_query(db, "SELECT count(*) AS n FROM analytics.latest_correlations")["n"].item() == n


def test_recent_events_and_allocation_views(db):
    events = run_query(db, "SELECT * FROM analytics.recent_correlation_events")
    latest = run_query(db, "SELECT max(date) AS d FROM mart_rolling_correlation")["d"].item()
    recent = run_query(db, "SELECT * FROM mart_correlation_events").filter(pl.col("date") > latest - timedelta(days=30))
    assert events.height == recent.height > 0
    bands = run_query(db, "SELECT * FROM analytics.allocation_vs_bands")
    assert bands.group_by("mix").agg(pl.col("weight").sum())["weight"].to_list() == pytest.approx([1.0] * bands["mix"].n_unique())
    assert bands.filter(pl.col("in_band"))["outside_band_by"].abs().max() == 0


def test_band_history_view_ends_on_todays_bands(db):
    history = run_query(db, "SELECT * FROM analytics.allocation_vs_bands_history")
    assert history.columns[:7] == ["mix", "sleeve", "date", "weight", "band_min", "band_max", "in_band"]
    today = run_query(db, "SELECT mix, sleeve, date, weight, in_band, outside_band_by FROM analytics.allocation_vs_bands")
    last = history.join(history.group_by("mix").agg(pl.col("date").max()), on=["mix", "date"]).select(today.columns)
    cols = ["mix", "sleeve"]
    assert last.sort(cols).select(cols, "date", "in_band").equals(today.sort(cols).select(cols, "date", "in_band"))
    assert last.sort(cols)["weight"].to_list() == pytest.approx(today.sort(cols)["weight"].to_list(), abs=1e-12)
    assert last.sort(cols)["outside_band_by"].to_list() == pytest.approx(
        today.sort(cols)["outside_band_by"].to_list(), abs=1e-12)
    # The compliance figures agree with the mart of breaches day by day.
    out = history.filter(~pl.col("in_band"))
    breaches = run_query(db, "SELECT count(*) AS n FROM mart_band_breaches")["n"].item()
    assert out.height == breaches and (out["days_out_of_band"] >= 1).all()
    assert (history.filter(pl.col("in_band"))["trade_to_band"] == 0).all()


def test_alpha_score_view_waits_for_its_table(tmp_path, run_tables, db):
    views = set(run_query(db, "SELECT view_name FROM duckdb_views() WHERE schema_name = 'analytics'")["view_name"])
    assert "latest_alpha_scores" not in views or "mart_factor_scores" in TABLES
    scores = Table("mart_factor_scores", "test", tuple(
        Column(c, t, c) for c, t in [("date", "date"), ("symbol", "string"), ("sector", "string"),
                                     ("momentum_score", "float"), ("value_score", "float"), ("quality_score", "float"),
                                     ("sentiment_score", "float"), ("alpha_score", "float"), ("alpha_label", "string"),
                                     ("coverage", "int"), ("summary", "string"), ("headline", "string")]))
    frame = pl.DataFrame({"symbol": ["A", "B", "C"], "sector": ["Tech", "Tech", "Energy"], "alpha_score": [40.0, 80.0, 55.0]}) \
        .with_columns(pl.lit(run_tables["fact_prices"]["date"].max()).alias("date"))
    for c, dtype in scores.polars_schema.items():
        if c not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype).alias(c))
    path = tmp_path / "w.duckdb"
    build_database(path, {**run_tables, "mart_factor_scores": frame}, tables={**TABLES, scores.name: scores})
    ranked = run_query(path, "SELECT sector, rank_in_sector, symbol FROM analytics.latest_alpha_scores ORDER BY sector, rank_in_sector")
    assert ranked.rows() == [("Energy", 1, "C"), ("Tech", 1, "B"), ("Tech", 2, "A")]


def test_sql_refuses_writes_with_nonzero_exit(data_dir, db):
    before = db.read_bytes()
    for stmt in ("DELETE FROM dim_asset", "CREATE TABLE x AS SELECT 1", "SELECT 1; DROP TABLE dim_asset",
                 "COPY dim_asset TO '/tmp/x.csv'", "ATTACH '/tmp/other.duckdb'"):
        result = cli("sql", stmt, "--data-dir", str(data_dir))
        assert result.exit_code != 0, stmt
    assert db.read_bytes() == before


def test_sql_formats_and_output_files(data_dir, tmp_path):
    q = "SELECT symbol, asset_class FROM dim_asset ORDER BY symbol LIMIT 3"
    expected = run_query(data_dir / "warehouse.duckdb", q)
    for fmt, read in (("parquet", pl.read_parquet), ("csv", pl.read_csv), ("json", pl.read_json)):
        out = tmp_path / f"out.{fmt}"
        result = cli("sql", q, "--format", fmt, "--output", str(out), "--data-dir", str(data_dir))
        assert result.exit_code == 0, result.output
        assert read(out).equals(expected), fmt
    result = cli("sql", q, "--format", "json", "--data-dir", str(data_dir))
    assert [r["symbol"] for r in json.loads(result.stdout)] == expected["symbol"].to_list()
    piped = cli("sql", q, "--format", "parquet", "--data-dir", str(data_dir))  # CliRunner's stdout is a pipe
    assert piped.exit_code == 0 and pl.read_parquet(io.BytesIO(piped.stdout_bytes)).equals(expected)


def test_tables_and_describe(data_dir):
    listed = json.loads(cli("tables", "--format", "json", "--data-dir", str(data_dir)).stdout)
    names = {(r["schema"], r["name"]) for r in listed}
    assert {("main", "fact_prices"), ("marts", "mart_rolling_correlation"), ("analytics", "latest_correlations")} <= names
    prices = next(r for r in listed if r["name"] == "fact_prices")
    assert prices["description"] == TABLES["fact_prices"].key_comment and prices["rows"] > 0
    cols = json.loads(cli("describe", "fact_prices", "--format", "json", "--data-dir", str(data_dir)).stdout)
    assert [c["column"] for c in cols] == TABLES["fact_prices"].column_names
    close = next(c for c in cols if c["column"] == "close")
    assert close["unit"] == "quote currency" and close["type"] == "DOUBLE"
    view = cli("describe", "analytics.allocation_vs_bands", "--data-dir", str(data_dir))
    assert view.exit_code == 0 and "outside_band_by" in view.stdout
    missing = cli("describe", "no_such_table", "--data-dir", str(data_dir))
    assert missing.exit_code == 1 and missing.stderr.splitlines() == [
        "error: no table or view 'no_such_table'; `xasset tables` lists them"]
    close = cli("describe", "analytics.latest_correlation", "--data-dir", str(data_dir))
    assert close.exit_code == 1 and close.stderr.splitlines() == [
        "error: no table or view 'analytics.latest_correlation'; did you mean analytics.latest_correlations?"]


def test_describe_and_tables_work_before_any_run(tmp_path):
    assert cli("describe", "mart_rolling_correlation", "--data-dir", str(tmp_path)).exit_code == 0
    listed = json.loads(cli("tables", "--format", "json", "--data-dir", str(tmp_path)).stdout)
    assert [r["name"] for r in listed] == list(TABLES)


def test_runs_lists_newest_first_with_failures(tmp_path):
    from datetime import UTC, date, datetime

    log = RunLog(tmp_path)
    base = {"source": "sample", "as_of": date(2024, 6, 28), "stage_seconds": '{"load": 1.0}', "code_version": "x",
            "crypto_close": "equity_close"}
    log.record_run({**base, "run_id": "a", "started_at": datetime(2024, 7, 1, tzinfo=UTC),
                    "finished_at": datetime(2024, 7, 1, 0, 1, tzinfo=UTC), "status": "succeeded", "audit": "passed"})
    log.record_run({**base, "run_id": "b", "started_at": datetime(2024, 7, 2, tzinfo=UTC),
                    "finished_at": datetime(2024, 7, 2, 0, 0, 30, tzinfo=UTC), "status": "failed",
                    "audit": "failed", "error": "audit failed, nothing published: x"})
    rows = json.loads(cli("runs", "--format", "json", "--data-dir", str(tmp_path)).stdout)
    assert [(r["run_id"], r["status"], r["seconds"]) for r in rows] == [("b", "failed", 30.0), ("a", "succeeded", 60.0)]
    assert rows[0]["error"].startswith("audit failed")
    assert {r["crypto_close"] for r in rows} == {"equity_close"}  # which convention each run's correlations used
    assert len(json.loads(cli("runs", "-n", "1", "--format", "json", "--data-dir", str(tmp_path)).stdout)) == 1


@pytest.mark.parametrize("schema", ["marts", "analytics"])
def test_every_column_of_every_view_has_a_comment(db, schema):
    """An analyst browsing marts.* or analytics.* in a SQL client sees every column documented."""
    columns = run_query(db, "SELECT table_name, column_name, comment FROM duckdb_columns() "
                            f"WHERE schema_name = '{schema}' ORDER BY ALL")
    assert columns.height > 0
    missing = columns.filter(pl.col("comment").is_null() | (pl.col("comment").str.strip_chars() == ""))
    assert missing.is_empty(), missing.select("table_name", "column_name").rows()
    objects = run_query(db, f"SELECT view_name, comment FROM duckdb_views() WHERE schema_name = '{schema}'")
    assert objects["comment"].is_not_null().all(), objects.rows()
    if schema == "marts":  # the words come from the contracts, not a copy
        symbol = columns.filter((pl.col("table_name") == "dim_asset") & (pl.col("column_name") == "symbol"))
        assert symbol["comment"].item() == TABLES["dim_asset"].columns[0].description

def test_the_spillover_example_answers_from_the_three_marts(db):
    out = run_query(db, SPILLOVER_EXAMPLE.read_text())
    assert out.height == run_query(db, "SELECT count(DISTINCT asset) AS n FROM mart_spillover")["n"].item() > 0
    alts = out.filter(pl.col("asset") == "ALTS").row(0, named=True)
    assert alts["corr_rally"] is not None and alts["rally_days"] > 0 and alts["corr_next_day"] is not None
    assert 0 <= alts["spill_in_pct"] <= 100
