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


def test_sql_from_stdin_and_a_missing_file(warehouse, tmp_path):
    res = runner.invoke(app, ["sql", "--file", "-", "-f", "csv", "--data-dir", str(warehouse)], input="SELECT 1 AS x\n")
    assert res.exit_code == 0 and res.stdout.splitlines() == ["x", "1"]
    missing = tmp_path / "nope.sql"
    res = runner.invoke(app, ["sql", "--file", str(missing), "--data-dir", str(warehouse)])
    assert res.exit_code == 2 and res.stderr.splitlines() == [f"error: cannot read {missing}: No such file or directory"]


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
        (["run", "--source", "bogus"], "'bogus' is not one of 'sample', 'files', 'live'"),
        (["run", "--source", "files"], "needs --path"),
        (["run", "--as-of", "2024-13-01"], "'2024-13-01' does not match the format"),
    ],
)
def test_run_argument_errors(args, message, tmp_path):
    res = runner.invoke(app, [*args, "--data-dir", str(tmp_path)])
    assert res.exit_code != 0
    assert message in res.stderr and "Traceback" not in res.output


# --- read-only commands never destroy, never trace back (issues 15, 17, 19) ---

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

XASSET = [sys.executable, "-m", "flows.cli"]
REPO = Path(__file__).resolve().parents[2]


def xasset(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The real CLI in its own process, output piped (no TTY), as cron or make run it."""
    return subprocess.run([*XASSET, *args], capture_output=True, text=True, cwd=REPO, timeout=300, input=stdin)


@pytest.fixture
def published(tmp_path):
    """A data directory laid out as a publish leaves it: links through `current` into .runs/<run_id>."""
    data = tmp_path / "data"
    run = data / ".runs" / "run-1"
    (run / "marts" / "dim_asset").mkdir(parents=True)
    assets = pl.DataFrame({"symbol": ["BTC"], "name": ["Bitcoin"], "asset_class": ["crypto"]}).with_columns(
        [pl.lit(None, dtype=pl.String).alias(c) for c in ("sector", "industry", "quote_currency", "source", "source_symbol")])
    build_database(run / "warehouse.duckdb", {"dim_asset": assets})
    assets.write_parquet(run / "marts" / "dim_asset" / "part-abc.parquet")
    os.symlink(".runs/run-1", data / "current")
    os.symlink("current/warehouse.duckdb", data / "warehouse.duckdb")
    os.symlink("current/marts", data / "marts")
    return data


def test_sql_output_never_lands_inside_the_data_directory(published, tmp_path):
    warehouse = published / ".runs" / "run-1" / "warehouse.duckdb"
    mart = published / ".runs" / "run-1" / "marts" / "dim_asset" / "part-abc.parquet"
    before = {p: p.read_bytes() for p in (warehouse, mart)}
    outside_link = tmp_path / "looks-harmless.csv"
    os.symlink(mart, outside_link)
    hard = tmp_path / "hard.duckdb"
    os.link(warehouse, hard)
    hard_mart = tmp_path / "hard.parquet"
    os.link(mart, hard_mart)
    targets = [published / "warehouse.duckdb", published / "marts" / "dim_asset" / "part-abc.parquet",
               published / "new.csv", outside_link, hard, hard_mart, published]
    for target in targets:
        res = runner.invoke(app, ["sql", "SELECT 1 AS x", "-f", "csv", "-o", str(target), "--data-dir", str(published)])
        assert res.exit_code == 2, target
        assert res.stderr.splitlines() == [
            f"error: refused: {target} is inside the data directory {published}; write results elsewhere"], target
    assert not (published / "new.csv").exists()
    assert {p: p.read_bytes() for p in before} == before, "nothing published was touched"
    ok = tmp_path / "out.csv"
    assert runner.invoke(app, ["sql", "SELECT 1 AS x", "-f", "csv", "-o", str(ok), "--data-dir", str(published)]).exit_code == 0
    assert ok.read_text() == "x\n1\n"


# query -> (its value as CSV/table text, as JSON)
AWKWARD = {
    "interval": ("SELECT INTERVAL 3 DAY AS v", "3 days", "3 days"),
    "union": ("SELECT 1 AS v UNION SELECT 1", "1", 1),
    "union_type": ("SELECT union_value(k := 7) AS v", "7", "7"),
    "infinite_date": ("SELECT 'infinity'::DATE AS v", "infinity", "infinity"),
    "infinite_timestamp": ("SELECT '-infinity'::TIMESTAMP AS v", "-infinity", "-infinity"),
    "list": ("SELECT [1, 2] AS v", "[1, 2]", [1, 2]),
    "struct": ("SELECT {'a': 1} AS v", "{'a': 1}", {"a": 1}),
    "blob": ("SELECT 'ab'::BLOB AS v", "ab", "ab"),
    "nested_interval": ("SELECT [INTERVAL 1 HOUR] AS v", "['01:00:00']", "['01:00:00']"),
    "map": ("SELECT MAP {'k': 1} AS v", "{k=1}", {"k": 1}),
}


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
@pytest.mark.parametrize("kind", sorted(AWKWARD))
def test_sql_renders_every_result_type(warehouse, kind, fmt):
    query, text, as_json = AWKWARD[kind]
    res = runner.invoke(app, ["sql", query, "-f", fmt, "--data-dir", str(warehouse)])
    assert res.exit_code == 0, (res.stderr, res.exception)
    if fmt == "csv":
        assert pl.read_csv(res.stdout.encode(), infer_schema=False).rows() == [(text,)]
    elif fmt == "json":
        assert json.loads(res.stdout) == [{"v": as_json}]
    else:
        assert f"│ {text} " in res.stdout


def test_sql_json_keeps_plain_nesting(warehouse):
    res = runner.invoke(app, ["sql", "SELECT [1, 2] AS l, {'a': 1} AS s", "-f", "json", "--data-dir", str(warehouse)])
    assert json.loads(res.stdout) == [{"l": [1, 2], "s": {"a": 1}}]


@pytest.mark.parametrize(
    "kind,first_line",
    [
        ("empty", "error: cannot open {db}: not a DuckDB database (empty, truncated or another kind of file)"),
        ("text", "error: cannot open {db}: not a DuckDB database (empty, truncated or another kind of file)"),
        ("directory", "error: {db} is not a warehouse file (a directory?)"),
        ("corrupt", "error: cannot open {db}: Corrupt database file: "),
        ("missing", "error: no warehouse at {db}: run `xasset run` first"),
    ],
)
@pytest.mark.parametrize("command", [["sql", "SELECT 1"], ["tables"]])
def test_broken_warehouse_is_one_line(tmp_path, warehouse, kind, first_line, command):
    data = tmp_path / "broken"
    data.mkdir()
    db = data / "warehouse.duckdb"
    if kind == "empty":
        db.write_bytes(b"")
    elif kind == "text":
        db.write_text("date,close\n2024-01-02,1.0\n" * 200)
    elif kind == "directory":
        db.mkdir()
    elif kind == "corrupt":
        good = bytearray((warehouse / "warehouse.duckdb").read_bytes())
        good[4096:len(good)] = b"\xff" * (len(good) - 4096)
        db.write_bytes(bytes(good))
    if kind == "missing" and command == ["tables"]:
        pytest.skip("tables lists the contracts before any run")
    res = runner.invoke(app, [*command, "--data-dir", str(data)])
    assert res.exit_code == 1
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output
    assert lines[0].startswith(first_line.format(db=db)), lines[0]


def test_locked_warehouse_is_one_line(warehouse):
    """Another process (a notebook's duckdb.connect(path)) holds the warehouse read-write."""
    db = warehouse / "warehouse.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(db)!r}); print('open', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        for command in (["sql", "SELECT 1"], ["tables"], ["describe", "analytics.latest_correlations"]):
            res = xasset(*command, "--data-dir", str(warehouse))
            assert res.returncode == 1, res.stderr
            lines = res.stderr.splitlines()
            assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
            assert lines[0].startswith(f"error: cannot open {db}: another process holds it open for writing (")
            assert lines[0].endswith("; close it there, or open it with read_only=True")
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def test_duckdb_hints_are_kept_on_the_one_line(warehouse):
    res = runner.invoke(app, ["sql", "SELECT * FROM dim_aset", "--data-dir", str(warehouse)])
    assert res.stderr.splitlines() == [
        'error: Catalog Error: Table with name dim_aset does not exist! Did you mean "dim_asset"?']
    res = runner.invoke(app, ["sql", "SELECT nam FROM dim_asset", "--data-dir", str(warehouse)])
    (line,) = res.stderr.splitlines()
    assert line.startswith('error: Binder Error: Referenced column "nam" not found in FROM clause! Candidate bindings: "name"')


def test_runs_with_a_corrupt_run_log_is_one_line(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "pipeline_runs.parquet").write_bytes(b"PAR1" + b"\x00" * 64)
    res = xasset("runs", "--data-dir", str(tmp_path))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    (line,) = res.stderr.splitlines()
    assert line.startswith(f"error: cannot read the run log {state / 'pipeline_runs.parquet'}: ")


@pytest.mark.parametrize("command", [
    ["sql", "SELECT 1"], ["tables"], ["runs"], ["describe", "dim_asset"], ["report"],
    ["run", "--source", "sample"], ["backfill", "--start", "2024-01-02", "--end", "2024-01-05", "--source", "sample"],
    ["serve", "--source", "sample"],
])
def test_data_dir_that_is_a_file_is_one_line(tmp_path, command):
    f = tmp_path / "not-a-dir"
    f.write_text("x")
    res = runner.invoke(app, [*command, "--data-dir", str(f)])
    assert res.exit_code == 2 and res.stderr.splitlines() == [f"error: data directory {f} is a file, not a directory"]


def test_run_refuses_start_after_as_of(tmp_path):
    res = runner.invoke(app, ["run", "--start", "2024-06-01", "--as-of", "2024-05-01", "--data-dir", str(tmp_path)])
    assert res.exit_code == 1
    assert res.stderr.splitlines() == ["error: --start 2024-06-01 is after --as-of 2024-05-01"]


def test_backfill_refuses_an_end_before_its_start_before_prefect_starts(tmp_path):
    res = runner.invoke(app, ["backfill", "--start", "2024-06-01", "--end", "2024-05-01", "--source", "sample",
                              "--data-dir", str(tmp_path)])
    assert res.exit_code == 1
    assert res.stderr.splitlines() == ["error: backfill end 2024-05-01 is before its start 2024-06-01"]
    assert not (tmp_path / ".prefect").exists(), "refused before Prefect was prepared"


def test_describe_suggests_close_names(warehouse):
    res = runner.invoke(app, ["describe", "dim_assets", "--data-dir", str(warehouse)])
    assert res.exit_code == 1 and res.stderr.splitlines() == ["error: no table or view 'dim_assets'; did you mean dim_asset?"]


# --- output outside a terminal (issue 17) ---


def test_piped_tables_are_whole(tmp_path):
    """cron, make and CI pipe the output: whole run ids, one line per row, stage times as text."""
    from datetime import UTC, datetime

    from warehouse.runs import RunLog

    run_id = "20241205T040029-ac1bc4d9e8f7"
    RunLog(tmp_path).record_run({
        "run_id": run_id, "source": "sample", "as_of": date(2024, 6, 28), "code_version": "xasset 0.1.0 (65f6533)",
        "stage_seconds": json.dumps({"extract": 2.04, "land": 2.6, "transform": 2.61, "load": 5.5, "audit": 0.4, "publish": 1.7}),
        "started_at": datetime(2024, 7, 1, tzinfo=UTC), "finished_at": datetime(2024, 7, 1, 0, 1, tzinfo=UTC),
        "status": "failed", "audit": "failed", "error": "audit failed, nothing published: " + "x" * 100,
    })
    res = xasset("runs", "--data-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 5, "header box, one row, bottom border: nothing folded down a column"
    row = lines[3]
    assert run_id in row and "xasset 0.1.0 (65f6533)" in row
    assert "extract 2.0s, land 2.6s, transform 2.6s, load 5.5s, audit 0.4s, publish 1.7s" in row
    assert "{" not in row


def test_piped_sql_table_does_not_wrap_names_and_caps_rows(warehouse):
    long_name = "Russell 2000 small-cap index, total return, USD (a long display name)"
    query = f"SELECT range AS n, '{long_name}' AS name FROM range(1500)"
    res = xasset("sql", query, "--data-dir", str(warehouse))
    assert res.returncode == 0, res.stderr
    rows = [line for line in res.stdout.splitlines() if long_name in line]
    assert len(rows) == 1000, "a terminal table stops at 1000 rows by default"
    assert res.stderr.splitlines() == ["first 1000 row(s) shown; the result has more (--all for every row, or --format csv)"]
    assert len(xasset("sql", query, "--limit", "10", "-f", "csv", "--data-dir", str(warehouse)).stdout.splitlines()) == 11
    assert len(xasset("sql", query, "-f", "csv", "--data-dir", str(warehouse)).stdout.splitlines()) == 1501, "csv is never capped"
    everything = xasset("sql", query, "--all", "--data-dir", str(warehouse))
    assert sum(long_name in line for line in everything.stdout.splitlines()) == 1500 and everything.stderr == ""


def test_report_into_an_unwritable_place_is_one_line(warehouse):
    """The reports directory cannot be made (here: a file stands in its place): one line, no traceback."""
    (warehouse / "reports").write_text("not a directory")
    res = xasset("report", "--data-dir", str(warehouse))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    (line,) = res.stderr.splitlines()
    assert line.startswith(f"error: cannot write the report under {warehouse / 'reports'}: ")


# --- usage errors and progress, piped (issue 17) ---


@pytest.mark.parametrize(
    "args,line",
    [
        (["run", "--source", "bogus"],
         "error: Invalid value for '--source': Value error, 'bogus' is not one of 'sample', 'files', 'live'."),
        (["run", "--start", "2024-02-30"],
         "error: Invalid value for '--start': Value error, '2024-02-30' does not match the formats '%Y-%m-%d'."),
        (["backfill", "--start", "2015-01-01", "--end", "2016-01-01", "--source", "files"],
         "error: Invalid value for '--source': Value error, 'files' is not one of 'sample', 'live'."),
        (["serve", "--source", "files"],
         "error: Invalid value for '--source': Value error, 'files' is not one of 'sample', 'live'."),
        (["report", "--as-of", "yesterday"],
         "error: Invalid value for '--as-of': Value error, 'yesterday' does not match the formats '%Y-%m-%d'."),
        (["backfill", "--start", "2015-01-01"], "error: Missing option '--end'."),
        (["run", "--bogus"], "error: No such option: --bogus"),
        (["bogus"], "error: No such command 'bogus'."),
    ],
)
def test_usage_errors_piped_are_one_line(args, line, tmp_path):
    """Typer's boxed usage panel becomes the one `error:` line every other mistake gets, exit code 2."""
    res = xasset(*args, "--data-dir", str(tmp_path)) if args != ["bogus"] else xasset(*args)
    assert res.returncode == 2, res.stderr
    [only] = res.stderr.splitlines()
    assert only.startswith(line + " (see "), only
    assert only.endswith(" --help)") and "\u256d" not in res.stderr and res.stdout == ""
    assert not (tmp_path / ".prefect").exists(), "refused before Prefect was prepared"


def test_plain_xasset_still_shows_the_help():
    res = xasset()
    assert "Usage:" in res.stdout + res.stderr and "error:" not in res.stderr


@pytest.mark.process
def test_piped_files_run_prints_one_line_per_stage_with_its_seconds_and_no_prefect_warning(real_data, tmp_path):
    """Off a terminal each stage is one line with its own time; the files source leaks no Prefect warning."""
    import re

    folder = real_data / "alitalbi-storage_data_fy"
    if not folder.exists():
        pytest.skip(f"{folder} absent (see ../shared/data/real/SOURCES.md)")
    res = subprocess.run(
        [*XASSET, "run", "--source", "files", "--path", str(folder), "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, cwd=REPO, timeout=600,
        env={k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
    )
    assert res.returncode == 0, res.stderr
    done = [line for line in res.stderr.splitlines() if " done (" in line]
    stages = ["extract", "land", "transform", "load", "audit", "publish"]
    assert [line.split()[0] for line in done] == stages, res.stderr
    for line in done:
        assert re.fullmatch(r"\w+ done \(1/1\) in \d+\.\d s", line), line
    assert "cache_policy" not in res.stderr and "persist_result" not in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
