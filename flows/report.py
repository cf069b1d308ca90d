"""The operator report: PNG charts and one self-contained HTML page per day.

``write_report`` reads the published warehouse read-only (queries live in
``flows/report_sql/``), draws each chart with matplotlib and writes
``<data dir>/reports/<as_of>/`` with the PNGs and ``index.html`` (a jinja2
template in ``flows/report_templates/``), whose images are embedded as base64
so the page can be mailed or attached as one file. Its first screen answers
the question: the day's 90-session ALTS vs ^RUT correlation, its change over
1 and 4 weeks, and the latest regime event; every chart is of the page's day.

A chart whose table is not in the warehouse is listed as skipped, never an
error: the report works on any build that has the core marts.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import jinja2
import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from transforms.matrix import mart_correlation_matrix  # noqa: E402
from warehouse.query import connect_read_only  # noqa: E402

SQL_DIR = Path(__file__).with_name("report_sql")
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("report_templates")),
    autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
)
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
    day: date | None = None  # the day a single-day chart shows (the heatmap)


@dataclass
class Report:
    as_of: date
    synthetic: bool
    directory: Path
    charts: list[Chart] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    events: pl.DataFrame | None = None
    headline: dict | None = None
    # When the crypto bars behind the correlations close (pipeline_runs.crypto_close); None: not recorded.
    crypto_close: str | None = None

    @property
    def crypto_close_text(self) -> str:
        return CRYPTO_CLOSE_TEXT.get(self.crypto_close or "", "crypto close convention not recorded")

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


# How the report names each crypto-close convention (Settings.crypto_close, docs/analytics.md).
CRYPTO_CLOSE_TEXT = {
    "utc_midnight": "crypto daily bars close at 00:00 UTC (after the US close)",
    "equity_close": "crypto sampled at the equity close (16:00 New York, 13:00 on early closes)",
}


def source_note(as_of: date, synthetic: bool, crypto_close: str | None = None) -> str:
    origin = "SYNTHETIC sample market (made-up prices)" if synthetic else "xasset warehouse"
    close = f"; {CRYPTO_CLOSE_TEXT[crypto_close]}" if crypto_close in CRYPTO_CLOSE_TEXT else ""
    return f"Source: {origin}; as of {as_of}{close}"


def crypto_close_of(wh: Warehouse) -> str | None:
    """The published run's crypto close, or None (no run log, or one written before it was recorded)."""
    if "pipeline_runs" not in wh.tables:
        return None
    try:
        rows = wh.query("crypto_close")
    except duckdb.Error:  # a warehouse published before pipeline_runs.crypto_close existed
        return None
    return rows["crypto_close"][0] if rows.height else None


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


def heatmap_matrix(wh: Warehouse) -> pl.DataFrame:
    """The page day's matrix: the mart's, or computed the mart's way when the mart has none for that day.

    The mart keeps month ends and the build's latest session; a report for
    another day would otherwise show an older matrix than the page's date.
    """
    m = wh.query("correlation_matrix", window=HEATMAP_WINDOW)
    if m.is_empty() or m["date"][0] == wh.as_of or "fact_returns" not in wh.tables:
        return m
    day = day_matrix(wh, sorted(set(m["asset_a"].to_list())))
    return day if day.height else m


def day_matrix(wh: Warehouse, symbols: list[str]) -> pl.DataFrame:
    """``symbols``' matrix for the report day, by the mart's own function; empty if the day is no session."""
    returns = wh.query("returns_window", symbols=symbols)
    sessions = returns["session_date"].unique().sort()
    if sessions.is_empty() or sessions[-1] != wh.as_of:
        return pl.DataFrame(schema={"asset_a": pl.String, "asset_b": pl.String, "correlation": pl.Float64, "date": pl.Date})
    day = mart_correlation_matrix(returns, sessions, symbols, [HEATMAP_WINDOW], since=wh.as_of)
    return day.filter(pl.col("date") == wh.as_of).select("asset_a", "asset_b", "correlation", "date").sort("asset_a", "asset_b")


def chart_heatmap(wh: Warehouse, note: str) -> Chart | None:
    m = heatmap_matrix(wh)
    if m.is_empty():
        return None
    symbols = sorted(set(m["asset_a"].to_list()))
    idx = {s: i for i, s in enumerate(symbols)}
    grid = np.full((len(symbols), len(symbols)), np.nan)
    for a, b, c, _ in m.iter_rows():
        if c is not None:
            grid[idx[a], idx[b]] = c
    fig, ax = plt.subplots(figsize=(10.5, 9))
    im = ax.imshow(grid, cmap="RdBu_r", vmin=-1, vmax=1)
    # Each cell says its value: colours alone cannot be read to two decimals.
    size = max(4.0, min(9.0, 170 / max(len(symbols), 1)))
    for (i, j), c in np.ndenumerate(grid):
        if not np.isnan(c):
            ax.text(j, i, f"{c:.2f}", ha="center", va="center", fontsize=size,
                    color="white" if abs(c) > 0.6 else "black")
    ax.set_xticks(range(len(symbols)), symbols, rotation=90, fontsize=7)
    ax.set_yticks(range(len(symbols)), symbols, fontsize=7)
    ax.set_xlabel("Asset")
    ax.set_ylabel("Asset")
    day = m["date"][0]
    ax.set_title(f"Correlation matrix, {HEATMAP_WINDOW}-session window ending {day}")
    fig.colorbar(im, ax=ax, shrink=0.8, label="Pearson correlation of daily log returns (unitless)")
    caption = "Blank cells: not enough paired sessions in the window (e.g. an asset listed later)."
    if day != wh.as_of:
        caption = f"The newest matrix on or before {wh.as_of} is of {day}. " + caption
    chart = Chart("correlation_heatmap", f"Correlation heatmap, {day}", caption, _finish(fig, note))
    chart.day = day
    return chart


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


def _figure(value: float, level: float | None = None) -> str:
    """Two decimals, more when two would round onto the level crossed ("fell below 0.50 (0.50)")."""
    for places in (2, 3, 4, 6):
        text = f"{value:.{places}f}"
        if level is None or float(text) != level:
            return text
    return f"{value}"


EVENT_WORDS = {
    "turned_positive": "turned positive",
    "turned_negative": "turned negative",
    "crossed_above": "rose above {level}",
    "crossed_below": "fell below {level}",
}


def event_sentence(e: dict) -> str:
    """What happened, with a figure that never contradicts the level: "fell below 0.50 (0.495), after ..."."""
    level = e["level"]
    words = EVENT_WORDS.get(e["event"], e["event"].replace("_", " "))
    words = words.format(level=f"{level:.2f}" if level is not None else "")
    after = (f", after {e['sessions_since']} sessions on the other side (since {e['previous_date']})"
             if e["sessions_since"] is not None else ", the first on record")
    # A sign change's level is 0: "turned negative (-0.00)" would contradict itself too.
    return f"{words} ({_figure(e['correlation'], level if level is not None else 0.0)}){after}."


def events_table(events: pl.DataFrame) -> pl.DataFrame:
    """The recent events for the page: who, when, and one sentence each."""
    return events.select(
        "date", "asset", "benchmark", "window_days",
        pl.Series("what happened", [event_sentence(e).capitalize() for e in events.iter_rows(named=True)],
                  dtype=pl.String),
    )


def headline(wh: Warehouse, asset: str = CORRELATION_ASSETS[0]) -> dict | None:
    """The day's correlation of ``asset`` with the benchmark, its changes and the latest regime event."""
    today = wh.query("headline", asset=asset, benchmark=BENCHMARK, window=CORRELATION_WINDOW)
    if today.is_empty():
        return None
    row = today.row(0, named=True)
    changes = []
    for key, since, span in (("change_1w", "date_1w", "1 week"), ("change_4w", "date_4w", "4 weeks")):
        if row[key] is None:
            changes.append({"text": f"no reading {span} earlier", "direction": ""})
        else:
            size = f"{abs(row[key]):.2f}"
            # The sign of what is printed: a change that rounds to 0.00 is neither up nor down.
            direction = "" if size == "0.00" else "up" if row[key] > 0 else "down"
            sign = {"up": "+", "down": "\u2212", "": "\u00b1"}[direction]
            changes.append({"text": f"{sign}{size} over {span} (since {row[since]})", "direction": direction})
    event_text = f"none held {EVENT_MIN_SESSIONS}+ sessions on record"
    if "mart_correlation_events" in wh.tables:
        ev = wh.query("latest_event", asset=asset, benchmark=BENCHMARK, window=CORRELATION_WINDOW,
                      min_sessions=EVENT_MIN_SESSIONS)
        if ev.height:
            e = ev.row(0, named=True)
            event_text = f"on {e['date']} the correlation {event_sentence(e)}"
    return {
        "asset": asset, "benchmark": BENCHMARK, "window": CORRELATION_WINDOW, "date": row["date"],
        "correlation": _figure(row["correlation"]), "value": row["correlation"],
        "changes": changes, "event": event_text,
    }


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
        crypto_close = crypto_close_of(wh)
        note = source_note(day, synthetic, crypto_close)
        report = Report(day, synthetic, reports_dir / str(day), crypto_close=crypto_close)
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
            report.events = events_table(wh.query("recent_events"))
        report.headline = headline(wh)
    finally:
        con.close()
    report.directory.mkdir(parents=True, exist_ok=True)
    for chart in report.charts:
        (report.directory / f"{chart.name}.png").write_bytes(chart.png)
    report.html_path.write_text(render_html(report))
    return report


def render_html(report: Report) -> str:
    charts = [
        {"name": c.name, "title": c.title, "caption": c.caption, "data": base64.b64encode(c.png).decode("ascii")}
        for c in report.charts
    ]
    return TEMPLATES.get_template("index.html.j2").render(
        report=report, charts=charts, headline=report.headline, events=report.events,
    )
