"""The operator report: PNG charts and one self-contained HTML page per day.

``write_report`` reads the published warehouse read-only (queries live in
``flows/report_sql/``), draws each chart with matplotlib and writes
``<data dir>/reports/<as_of>/`` with the PNGs and ``index.html``, whose images
are embedded as base64 so the page can be mailed or attached as one file.

A chart whose table is not in the warehouse is listed as skipped, never an
error: the report works on any build that has the core marts.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from warehouse.query import connect_read_only  # noqa: E402

SQL_DIR = Path(__file__).with_name("report_sql")
SYNTHETIC_TAG = "[synthetic]"

BENCHMARK = "^RUT"
CORRELATION_ASSETS = ("ALTS", "BTC", "ETH")
CORRELATION_WINDOW = 90
HEATMAP_WINDOW = 90
MIX = "policy_mid"
# Events that end a state held this long are regime changes worth marking.
EVENT_MIN_SESSIONS = 20


class ReportError(RuntimeError):
    pass


@dataclass
class Chart:
    name: str
    title: str
    caption: str
    png: bytes


@dataclass
class Report:
    as_of: date
    synthetic: bool
    directory: Path
    charts: list[Chart] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    events: pl.DataFrame | None = None

    @property
    def html_path(self) -> Path:
        return self.directory / "index.html"


def sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


class Warehouse:
    def __init__(self, con: duckdb.DuckDBPyConnection, as_of: date) -> None:
        self.con = con
        self.as_of = as_of
        self.tables = set(self.query("tables")["table_name"].to_list())

    def query(self, name: str, **params) -> pl.DataFrame:
        text = sql(name)
        # DuckDB refuses unused named parameters: pass only those the file uses.
        if "$as_of" in text:
            params.setdefault("as_of", self.as_of)
        return self.con.sql(text, params=params).pl()


def source_note(as_of: date, synthetic: bool) -> str:
    origin = "SYNTHETIC sample market (made-up prices)" if synthetic else "xasset warehouse"
    return f"Source: {origin}; as of {as_of}"


def _finish(fig, note: str) -> bytes:
    fig.text(0.01, 0.005, note, fontsize=7, color="dimgray", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _date_axis(ax) -> None:
    ax.xaxis.set_major_locator(mdates.AutoDateLocator())
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))


def chart_rolling_correlation(wh: Warehouse, note: str) -> Chart | None:
    corr = wh.query("rolling_correlation", benchmark=BENCHMARK, window=CORRELATION_WINDOW, assets=list(CORRELATION_ASSETS))
    if corr.is_empty():
        return None
    events = wh.query(
        "correlation_events", benchmark=BENCHMARK, window=CORRELATION_WINDOW, asset=CORRELATION_ASSETS[0],
        min_sessions=EVENT_MIN_SESSIONS,
    )
    fig, ax = plt.subplots(figsize=(11, 4.8))
    for asset in CORRELATION_ASSETS:
        part = corr.filter(pl.col("asset") == asset)
        if part.height:
            main = asset == CORRELATION_ASSETS[0]
            ax.plot(part["date"].to_list(), part["correlation"].to_list(), label=f"{asset} vs {BENCHMARK}",
                    lw=1.6 if main else 0.9, alpha=1.0 if main else 0.7)
    if events.height:
        up = events.filter(pl.col("event").is_in(["turned_positive", "crossed_above"]))
        down = events.filter(pl.col("event").is_in(["turned_negative", "crossed_below"]))
        ax.scatter(up["date"].to_list(), up["correlation"].to_list(), marker="^", color="green", zorder=3, s=28,
                   label=f"{CORRELATION_ASSETS[0]} event: up")
        ax.scatter(down["date"].to_list(), down["correlation"].to_list(), marker="v", color="red", zorder=3, s=28,
                   label=f"{CORRELATION_ASSETS[0]} event: down")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylim(-1, 1)
    ax.set_title(f"Rolling {CORRELATION_WINDOW}-session correlation of daily log returns vs {BENCHMARK}")
    ax.set_xlabel("Date")
    ax.set_ylabel("Pearson correlation (unitless, -1 to 1)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, ncol=3)
    _date_axis(ax)
    caption = (
        f"Markers: sign changes and level crossings of {CORRELATION_ASSETS[0]} vs {BENCHMARK} after a state "
        f"held {EVENT_MIN_SESSIONS}+ sessions ({events.height} events)."
    )
    title = f"Rolling correlation: {', '.join(CORRELATION_ASSETS)} vs {BENCHMARK}"
    return Chart("rolling_correlation", title, caption, _finish(fig, note))


def chart_milestones(wh: Warehouse, note: str) -> Chart | None:
    ms = wh.query("milestones", symbol=BENCHMARK)
    if ms.is_empty():
        return None
    fig, (ax, dd) = plt.subplots(2, 1, figsize=(11, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    dates = ms["date"].to_list()
    ax.plot(dates, ms["close"].to_list(), lw=1.2, label=f"{BENCHMARK} close")
    # "All-time" only as far back as the history held (issue 14): say since when.
    since = ms["ath_since"].min()
    ax.plot(dates, ms["ath_close"].to_list(), lw=0.8, ls="--", color="gray", label=f"Highest close since {since}")
    ath = ms.filter(pl.col("is_new_ath"))
    ax.scatter(ath["date"].to_list(), ath["close"].to_list(), s=8, color="darkorange", zorder=3,
               label=f"New high since {since} ({ath.height})")
    ax.set_title(f"{BENCHMARK}: close, highs since {since} and drawdown")
    ax.set_ylabel("Adjusted close (index points)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    dd.fill_between(dates, (ms["drawdown_from_ath"] * 100).to_list(), 0, color="firebrick", alpha=0.5)
    dd.set_ylabel("Drawdown (%)")
    dd.set_xlabel("Date")
    dd.grid(alpha=0.3)
    _date_axis(dd)
    last = ms.row(-1, named=True)
    caption = (
        f"Last close {last['close']:,.2f} on {last['date']}; highest close since {since} {last['ath_close']:,.2f}; "
        f"drawdown {last['drawdown_from_ath']:.1%}."
    )
    return Chart("milestones", f"{BENCHMARK} market milestones", caption, _finish(fig, note))


def chart_heatmap(wh: Warehouse, note: str) -> Chart | None:
    m = wh.query("correlation_matrix", window=HEATMAP_WINDOW)
    if m.is_empty():
        return None
    symbols = sorted(set(m["asset_a"].to_list()))
    idx = {s: i for i, s in enumerate(symbols)}
    grid = np.full((len(symbols), len(symbols)), np.nan)
    for a, b, c, _ in m.iter_rows():
        if c is not None:
            grid[idx[a], idx[b]] = c
    fig, ax = plt.subplots(figsize=(9.5, 8))
    im = ax.imshow(grid, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(symbols)), symbols, rotation=90, fontsize=7)
    ax.set_yticks(range(len(symbols)), symbols, fontsize=7)
    ax.set_xlabel("Asset")
    ax.set_ylabel("Asset")
    day = m["date"][0]
    ax.set_title(f"Correlation matrix, {HEATMAP_WINDOW}-session window ending {day}")
    fig.colorbar(im, ax=ax, shrink=0.8, label="Pearson correlation of daily log returns (unitless)")
    caption = "Blank cells: not enough paired sessions in the window (e.g. an asset listed later)."
    return Chart("correlation_heatmap", "Correlation heatmap", caption, _finish(fig, note))


def chart_alpha_by_sector(wh: Warehouse, note: str) -> Chart | None:
    scores = wh.query("alpha_by_sector")
    if scores.is_empty():
        return None
    sectors = sorted(set(scores["sector"].to_list()))
    data = [scores.filter(pl.col("sector") == s)["alpha_score"].to_list() for s in sectors]
    fig, ax = plt.subplots(figsize=(11, 4.8))
    ax.boxplot(data, tick_labels=sectors, showmeans=True)
    for i, values in enumerate(data, start=1):
        ax.scatter(np.full(len(values), i) + np.linspace(-0.12, 0.12, len(values)), values, s=10, alpha=0.6)
    ax.set_ylim(0, 100)
    ax.set_title(f"Alpha Score distribution by sector, {scores['date'][0]}")
    ax.set_xlabel("Sector")
    ax.set_ylabel("Alpha Score (0-100 points)")
    ax.tick_params(axis="x", labelrotation=20)
    ax.grid(alpha=0.3, axis="y")
    caption = f"{scores.height} scored stocks; boxes: quartiles, triangles: means, dots: stocks."
    return Chart("alpha_by_sector", "Alpha Score by sector", caption, _finish(fig, note))


def chart_allocation(wh: Warehouse, note: str) -> Chart | None:
    w = wh.query("allocation_weights", mix=MIX)
    perf = wh.query("mix_performance")
    if w.is_empty() and perf.is_empty():
        return None
    fig, (ax, nav) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for i, sleeve in enumerate(sorted(set(w["sleeve"].to_list()))):
        part = w.filter(pl.col("sleeve") == sleeve)
        color = f"C{i}"
        dates = part["date"].to_list()
        ax.plot(dates, (part["weight"] * 100).to_list(), color=color, lw=1.1, label=f"{sleeve} weight")
        ax.fill_between(dates, (part["band_min"] * 100).to_list(), (part["band_max"] * 100).to_list(),
                        color=color, alpha=0.12, label=f"{sleeve} band")
    ax.set_title(f"Mix '{MIX}': drifted sleeve weights and policy bands")
    ax.set_ylabel("Weight (% of NAV)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    for mix in sorted(set(perf["mix"].to_list())):
        part = perf.filter(pl.col("mix") == mix)
        nav.plot(part["date"].to_list(), part["nav"].to_list(), lw=1.6 if mix == MIX else 0.9, label=mix)
    nav.set_yscale("log")
    nav.set_title("NAV of every allocation mix (after costs)")
    nav.set_ylabel("NAV (multiple of start, log scale)")
    nav.set_xlabel("Date")
    nav.grid(alpha=0.3, which="both")
    nav.legend(loc="upper left", fontsize=8, ncol=3)
    _date_axis(nav)
    caption = f"Upper panel: the '{MIX}' mix; shaded: each sleeve's band. Lower panel: all mixes."
    return Chart("allocation_mix", "Allocation mix: weights, bands and NAV", caption, _finish(fig, note))


CHARTS: list[tuple[str, tuple[str, ...], Callable[[Warehouse, str], Chart | None]]] = [
    ("Rolling correlation", ("mart_rolling_correlation", "mart_correlation_events"), chart_rolling_correlation),
    ("Market milestones", ("mart_market_milestones",), chart_milestones),
    ("Correlation heatmap", ("mart_correlation_matrix",), chart_heatmap),
    ("Alpha Score by sector", ("mart_factor_scores",), chart_alpha_by_sector),
    ("Allocation mix", ("mart_allocation_weights", "mart_mix_performance"), chart_allocation),
]


def write_report(warehouse_path: Path, reports_dir: Path, as_of: date | None = None) -> Report:
    con = connect_read_only(warehouse_path)
    try:
        probe = Warehouse(con, as_of or date.max)
        if "mart_rolling_correlation" not in probe.tables:
            raise ReportError(f"{warehouse_path} has no mart_rolling_correlation: run `xasset run` first")
        day = probe.query("latest_date")["as_of"][0]
        if day is None:
            raise ReportError(f"no correlations on or before {as_of} in {warehouse_path}")
        wh = Warehouse(con, day)
        assets = wh.query("assets")
        synthetic = assets.height > 0 and assets["name"].str.ends_with(SYNTHETIC_TAG).all()
        note = source_note(day, synthetic)
        report = Report(day, synthetic, reports_dir / str(day))
        for label, needs, draw in CHARTS:
            missing = [t for t in needs if t not in wh.tables]
            if missing:
                report.skipped.append(f"{label}: {', '.join(missing)} not in this warehouse")
                continue
            chart = draw(wh, note)
            if chart is None:
                report.skipped.append(f"{label}: no rows on or before {day}")
            else:
                report.charts.append(chart)
        if "mart_correlation_events" in wh.tables:
            report.events = wh.query("recent_events")
    finally:
        con.close()
    report.directory.mkdir(parents=True, exist_ok=True)
    for chart in report.charts:
        (report.directory / f"{chart.name}.png").write_bytes(chart.png)
    report.html_path.write_text(render_html(report))
    return report


def render_html(report: Report) -> str:
    e = html.escape
    banner = (
        '<p class="synthetic">SYNTHETIC: these charts show the offline sample market; prices are made up.</p>'
        if report.synthetic
        else ""
    )
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>xasset report {report.as_of}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "figure{margin:2em 0}img{max-width:100%;border:1px solid #ddd}"
        "figcaption{color:#555;font-size:.9em}.synthetic{background:#fff3cd;padding:.6em;font-weight:bold}"
        "#image-check.bad{background:#f8d7da;padding:.6em}"
        "table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:.2em .5em}</style>",
        "</head><body>",
        f"<h1>xasset report, as of {report.as_of}</h1>",
        banner,
        '<p id="image-check"></p>',
    ]
    for chart in report.charts:
        data = base64.b64encode(chart.png).decode("ascii")
        parts += [
            f'<figure id="{e(chart.name)}"><h2>{e(chart.title)}</h2>',
            f'<img alt="{e(chart.title)}" src="data:image/png;base64,{data}">',
            f"<figcaption>{e(chart.caption)}</figcaption></figure>",
        ]
    if report.events is not None and report.events.height:
        parts.append("<h2>Correlation events in the last 30 days</h2><table><tr>")
        parts += [f"<th>{e(c)}</th>" for c in report.events.columns]
        parts.append("</tr>")
        for row in report.events.iter_rows():
            parts.append("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>")
        parts.append("</table>")
    if report.skipped:
        parts.append("<h2>Skipped</h2><ul>" + "".join(f"<li>{e(s)}</li>" for s in report.skipped) + "</ul>")
    # Tells a reader (and the report's browser test) when an image failed to decode.
    parts.append(
        "<script>window.addEventListener('load',function(){"
        "var imgs=Array.from(document.images);"
        "var ok=imgs.filter(function(i){return i.complete&&i.naturalWidth>0;}).length;"
        "var el=document.getElementById('image-check');"
        "document.body.setAttribute('data-images-loaded',ok+'/'+imgs.length);"
        "if(ok<imgs.length){el.className='bad';el.textContent=(imgs.length-ok)+' chart(s) failed to load.';}"
        "});</script>"
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
