"""What a run leaves behind: the run report (artifacts, CLI) and the charts/HTML report."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from flows.artifacts import alpha_moves, summarize
from flows.nightly import nightly
from flows.report import write_report

AS_OF = date(2017, 3, 31)
PNG = b"\x89PNG\r\n\x1a\n"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def published(tmp_path_factory, prefect_harness):
    data = tmp_path_factory.mktemp("report")
    summary = nightly(source="sample", as_of=AS_OF, data_dir=str(data))
    return data, summary


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_report_summarises_the_run(published):
    _, summary = published
    report = summary.report
    assert report is not None and report.status == "succeeded" and report.audit == "passed"
    assert {r["source"] for r in report.freshness} == {"sample", "derived"}
    assert all(r["newest_bar"] == AS_OF for r in report.freshness)
    assert report.problems == [], "the sample market has no failed or stale symbols"
    assert report.events and all(e["date"] <= AS_OF for e in report.events)
    assert {r["sleeve"] for r in report.allocation} >= {"core", "midcap_alts", "reserve"}
    md = report.markdown()
    assert "SYNTHETIC" in md and "Audit: **passed**" in md and "## New correlation events" in md


def test_run_leaves_prefect_artifacts(published):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    _, summary = published
    with get_client(sync_client=True) as client:
        latest = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["xasset-run-report", "xasset-freshness"]))
        )
        progress = [a for a in client.read_artifacts() if a.type == "progress"]
    # The harness is shared by every flow test: find this run's versions of the keys.
    reports = [a for a in latest if a.key == "xasset-run-report" and summary.run_id in a.data]
    freshness = [a for a in latest if a.key == "xasset-freshness" and summary.run_id in (a.description or "")]
    assert len(reports) == 1 and "Audit: **passed**" in reports[0].data
    assert len(freshness) == 1 and "newest_bar" in str(freshness[0].data)
    assert progress and max(float(a.data) for a in progress) == 100.0


def test_alpha_moves_are_guarded_and_ranked():
    assert alpha_moves({})[0] == [] and "not part of this build" in alpha_moves({})[1]
    scores = pl.DataFrame(
        {
            "date": [date(2024, 1, 2)] * 3 + [date(2024, 1, 3)] * 3 + [date(2024, 1, 4)] * 3,
            "symbol": ["A", "B", "C"] * 3,
            "sector": ["Tech", "Energy", "Tech"] * 3,
            "alpha_score": [50, 50, 50, 52, 40, 50, 55, 41, 80],
        }
    )
    moves, _ = alpha_moves({"mart_factor_scores": scores})
    assert [(m["symbol"], m["change"]) for m in moves] == [("C", 30), ("A", 3), ("B", 1)]
    # Since the previous run's day, not just the last session.
    moves, _ = alpha_moves({"mart_factor_scores": scores}, previous_as_of=date(2024, 1, 2))
    assert [(m["symbol"], m["change"]) for m in moves] == [("C", 30), ("B", -9), ("A", 5)]


def test_summary_of_a_failed_symbol_and_a_stale_one():
    from flows.sources.base import SymbolOutcome

    prices = pl.DataFrame(
        {
            "symbol": ["BTC", "ETH", "^RUT"],
            "date": [date(2024, 1, 5), date(2024, 1, 3), date(2024, 1, 5)],
            "source": ["binance", "binance", "yfinance"],
            "ingested_at": [None, None, None],
        },
        schema_overrides={"ingested_at": pl.Datetime("us", "UTC")},
    )
    assets = pl.DataFrame({"symbol": ["BTC", "ETH", "^RUT"], "asset_class": ["crypto", "crypto", "index"]})
    outcomes = [SymbolOutcome("ETH", "binance", "error", error="timeout"), SymbolOutcome("BTC", "binance", "ok")]
    report = summarize(
        {"fact_prices": prices, "dim_asset": assets}, run_id="r", source="live", as_of=date(2024, 1, 5),
        status="succeeded", synthetic=False, audit="passed", outcomes=outcomes, previous_as_of=None,
    )
    assert report.problems == [{"symbol": "ETH", "status": "failed", "detail": "timeout"}]
    assert {r["source"]: r["symbols"] for r in report.freshness} == {"binance": 2, "yfinance": 1}
    assert "| ETH | failed | timeout |" in report.markdown()


def test_report_writes_charts_and_one_self_contained_page(published):
    data, _ = published
    db = data / "warehouse.duckdb"
    before = digest(db)
    report = write_report(db, data / "reports")
    assert digest(db) == before, "the report only reads the warehouse"
    assert report.as_of == AS_OF and report.synthetic
    assert report.directory == data / "reports" / str(AS_OF)
    names = {c.name for c in report.charts}
    assert {"rolling_correlation", "milestones", "correlation_heatmap", "allocation_mix"} <= names
    con = duckdb.connect(str(db), read_only=True)
    has_scores = "mart_factor_scores" in {r[0] for r in con.sql("SHOW TABLES").fetchall()}
    con.close()
    assert ("alpha_by_sector" in names) == has_scores
    assert any("mart_factor_scores" in s for s in report.skipped) != has_scores
    for chart in report.charts:
        assert (report.directory / f"{chart.name}.png").read_bytes().startswith(PNG)
    page = report.html_path.read_text()
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(report.charts)
    assert all(base64.b64decode(i).startswith(PNG) for i in images)
    assert "SYNTHETIC" in page and not re.search(r'src="(?!data:)', page), "nothing loads from outside the page"


def test_report_first_screen_answers_the_question(published, tmp_path):
    """Headline: the day's 90-session ALTS vs ^RUT correlation, its change, the latest regime event."""
    data, _ = published
    db = data / "warehouse.duckdb"
    report = write_report(db, tmp_path / "reports")
    con = duckdb.connect(str(db), read_only=True)
    history = con.sql("SELECT date, correlation FROM mart_rolling_correlation WHERE asset = 'ALTS' AND benchmark = '^RUT' "
                      "AND window_days = 90 AND correlation IS NOT NULL ORDER BY date").pl()
    latest = con.sql("SELECT * FROM analytics.latest_correlations WHERE asset = 'ALTS' AND benchmark = '^RUT' "
                     "AND window_days = 90").pl().row(0, named=True)
    event = con.sql("SELECT date, event FROM mart_correlation_events WHERE asset = 'ALTS' AND benchmark = '^RUT' "
                    "AND window_days = 90 AND (sessions_since IS NULL OR sessions_since >= 20) ORDER BY date DESC LIMIT 1").pl()
    con.close()
    h = report.headline
    assert h["date"] == report.as_of == history["date"][-1] == latest["date"]
    assert h["value"] == pytest.approx(history["correlation"][-1])
    assert h["correlation"] == f"{history['correlation'][-1]:.2f}"
    size = f"{abs(latest['change_1w']):.2f}"
    sign = "\u00b1" if size == "0.00" else "+" if latest["change_1w"] > 0 else "\u2212"
    week = f"{sign}{size} over 1 week (since {latest['date_1w']})"
    assert h["changes"][0]["text"] == week, "the same change analytics.latest_correlations reports"
    if event.height:
        assert h["event"].startswith(f"on {event['date'][0]} the correlation ")
    page = report.html_path.read_text()
    top = page.index('id="headline"')
    assert top < page.index("<figure"), "the headline comes before every chart"
    assert f'<p class="figure" id="headline-correlation">{h["correlation"]}</p>' in page


@pytest.mark.parametrize("level,value,text", [(0.5, 0.4954905386395126, "0.495"), (0.5, 0.51, "0.51"),
                                              (0.0, -0.0012, "-0.001"), (0.3, 0.29999999, "0.29999999")])
def test_event_figures_never_round_onto_the_level(level, value, text):
    from flows.report import _figure

    assert _figure(value, level) == text


def test_event_sentences_never_contradict_their_level():
    from flows.report import event_sentence

    base = {"previous_date": date(2025, 5, 23), "sessions_since": 7}
    assert event_sentence({**base, "event": "turned_negative", "level": None, "correlation": -0.0012}) == \
        "turned negative (-0.001), after 7 sessions on the other side (since 2025-05-23)."
    assert event_sentence({**base, "event": "crossed_below", "level": 0.5, "correlation": 0.4954905,
                           "sessions_since": None}) == "fell below 0.50 (0.495), the first on record."


def test_heatmap_is_of_the_page_day(published, tmp_path):
    """On a day the mart keeps no matrix for (not a month end), the heatmap is still of that day."""
    from flows.report import HEATMAP_WINDOW, Warehouse, day_matrix
    from warehouse.query import connect_read_only

    data, _ = published
    db = data / "warehouse.duckdb"
    report = write_report(db, tmp_path / "reports", date(2017, 2, 15))
    heat = next(c for c in report.charts if c.name == "correlation_heatmap")
    assert report.as_of == heat.day == date(2017, 2, 15) and str(report.as_of) in heat.title
    # The day's matrix is computed by the mart's own function: on a day the mart has, they agree.
    con = connect_read_only(db)
    try:
        month_end = con.sql(f"SELECT max(date) AS d FROM mart_correlation_matrix WHERE window_days = {HEATMAP_WINDOW} "
                            "AND date < DATE '2017-03-01'").pl()["d"][0]
        wh = Warehouse(con, month_end)
        mart = wh.query("correlation_matrix", window=HEATMAP_WINDOW)
        computed = day_matrix(wh, sorted(set(mart["asset_a"].to_list())))
    finally:
        con.close()
    assert computed.height == mart.height > 0
    assert computed["date"].unique().to_list() == [month_end]
    joined = mart.join(computed, on=["asset_a", "asset_b"], suffix="_c")
    assert ((joined["correlation"] - joined["correlation_c"]).abs().max() or 0) < 1e-12
    assert joined["correlation"].is_null().sum() == joined["correlation_c"].is_null().sum()


def test_report_as_of_an_earlier_day_with_and_without_alpha_scores(published, tmp_path):
    data, _ = published
    with_scores, without = tmp_path / "with.duckdb", tmp_path / "without.duckdb"
    shutil.copy(data / "warehouse.duckdb", with_scores)
    shutil.copy(data / "warehouse.duckdb", without)
    con = duckdb.connect(str(with_scores))
    # Made-up scores when this build has none, so both cases are always exercised.
    con.sql(
        "CREATE TABLE IF NOT EXISTS mart_factor_scores AS SELECT DATE '2016-12-30' AS date, symbol, sector, "
        "CAST(hash(symbol) % 100 AS BIGINT) AS alpha_score FROM dim_asset WHERE asset_class = 'equity'"
    )
    con.close()
    con = duckdb.connect(str(without))
    con.sql("DROP TABLE IF EXISTS mart_factor_scores")
    con.close()

    report = write_report(with_scores, tmp_path / "reports", date(2017, 1, 1))
    assert report.as_of == date(2016, 12, 30), "the newest session on or before the day asked for"
    assert "alpha_by_sector" in {c.name for c in report.charts} and not report.skipped
    assert (tmp_path / "reports" / "2016-12-30" / "alpha_by_sector.png").exists()
    bare = write_report(without, tmp_path / "bare", date(2017, 1, 1))
    assert "alpha_by_sector" not in {c.name for c in bare.charts}
    assert bare.skipped == ["Alpha Score by sector: mart_factor_scores not in this warehouse"]
    assert "mart_factor_scores not in this warehouse" in bare.html_path.read_text()


def test_report_command(published):
    from flows.cli import app

    data, _ = published
    result = CliRunner().invoke(app, ["report", "--data-dir", str(data), "--as-of", "2017-02-15"])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output and (data / "reports" / "2017-02-15" / "index.html").exists()
    missing = CliRunner().invoke(app, ["report", "--data-dir", str(data / "nowhere")])
    assert missing.exit_code == 1 and "run `xasset run` first" in missing.output


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def rendered_dom(page: Path, profile: Path) -> str:
    out = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
         "--window-size=1280,800", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert "<body" in out.stdout, f"no DOM (exit {out.returncode}): {out.stderr[-500:]}"
    return out.stdout


def loaded_images(page: Path, profile: Path) -> str:
    dom = rendered_dom(page, profile)
    match = re.search(r'<body[^>]*data-images-loaded="(\d+/\d+)"', dom)
    assert match, "no image check in the DOM"
    return match.group(1)


def test_every_chart_loads_in_headless_chromium(published, tmp_path):
    if chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing on CI: .ci/run installs it")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); CI installs it")
    data, _ = published
    report = write_report(data / "warehouse.duckdb", data / "reports")
    n = len(report.charts)
    assert loaded_images(report.html_path, tmp_path / "profile") == f"{n}/{n}"
    # The check can fail: a page with one corrupt image reports it.
    broken = tmp_path / "broken.html"
    page = report.html_path.read_text()
    broken.write_text(page.replace("data:image/png;base64,iVBOR", "data:image/png;base64,AAAA", 1))
    assert loaded_images(broken, tmp_path / "profile2") == f"{n - 1}/{n}"
    # The first screen (1280x800) answers the question: the headline is whole above the fold.
    dom = rendered_dom(report.html_path, tmp_path / "profile3")
    assert re.search(r'<body[^>]*data-headline-on-first-screen="true"', dom)
    assert f'id="headline-correlation">{report.headline["correlation"]}<' in dom
