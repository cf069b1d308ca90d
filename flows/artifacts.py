"""What a run leaves behind for operators: one summary, two renderings.

``summarize`` turns a run's tables into a ``RunReport`` (plain rows, no
Prefect); ``publish_artifacts`` turns that into Prefect artifacts (a markdown
report plus table artifacts) and the CLI prints the same report with rich.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from contracts.tables import TABLES
from flows.sources.base import InputProblem, SymbolOutcome
from warehouse.markdown import markdown_table
from warehouse.marts import published_before

# Alpha Scores come from another mart that may not be in a given build yet.
ALPHA_TABLE = "mart_factor_scores"
ALPHA_COLUMNS = ("alpha_score", "score", "composite_score")
MAX_ROWS = 15
# Rows of the input problems table; the quarantine table has every one.
MAX_PROBLEM_ROWS = 100
# Lines listed per row of the input problems table.
MAX_LINES_LISTED = 5
EQUITY_CLASSES = ("index", "etf", "equity")


@dataclass
class RunReport:
    run_id: str
    source: str
    as_of: date
    status: str
    synthetic: bool
    audit: str
    freshness: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    # Files skipped and rows held back: file, symbol, problem, action.
    input_problems: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    events_since: date | None = None
    alpha_moves: list[dict[str, Any]] = field(default_factory=list)
    alpha_note: str = ""
    allocation: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def markdown(self) -> str:
        label = " (SYNTHETIC sample market)" if self.synthetic else ""
        lines = [
            f"# xasset run {self.run_id}: {self.status}{label}",
            "",
            f"Source **{self.source}**, as of **{self.as_of}**. Audit: **{self.audit}**.",
        ]
        if self.error:
            lines += ["", f"> Error: {self.error}"]
        sections = [
            ("Input problems (files skipped, rows held back)", self.input_problems, "None."),
            ("Data freshness per source", self.freshness, ""),
            ("Symbols that failed or are stale", self.problems, "None: every symbol is current."),
            (
                "New correlation events" + (f" since {self.events_since}" if self.events_since else ""),
                self.events,
                "No new events.",
            ),
            ("Biggest Alpha Score moves", self.alpha_moves, self.alpha_note or "No score changes."),
            ("Allocation mixes vs policy bands (latest day)", self.allocation, "No allocation mixes in this run."),
        ]
        for title, rows, empty in sections:
            lines += ["", f"## {title}", ""]
            lines += records_table(rows) if rows else [empty]
        return "\n".join(lines) + "\n"


def records_table(rows: list[dict[str, Any]]) -> list[str]:
    cols = list(rows[0])
    return markdown_table(cols, ([fmt(r[c]) for c in cols] for r in rows))


def fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


def stale_symbols(
    prices: pl.DataFrame, assets: pl.DataFrame, as_of: date, sessions: pl.Series, max_behind: int
) -> list[dict]:
    """Each stored asset whose last bar is more than ``max_behind`` sessions before ``as_of``.

    Judged against the run's as-of for every asset class: exchange ``sessions``
    (a Date series reaching ``as_of``) for equities and indices, calendar days
    for crypto. Derived indices follow their members and are left out.
    """
    if prices.is_empty():
        return []
    last = (
        prices.select("symbol", "date", "source").filter(pl.col("source") != "derived")
        .group_by("symbol").agg(pl.col("date").max().alias("last_bar"))
        .join(assets.select("symbol", "asset_class"), on="symbol", how="left")
        .sort("symbol")
    )
    cal = sessions.filter(sessions <= as_of).sort()
    # Sessions after each last bar, by position in the sorted calendar (not a comparison per symbol).
    after = cal.len() - pl.Series(cal.search_sorted(last["last_bar"], side="right"), dtype=pl.Int64)
    equity = pl.col("asset_class").is_in(EQUITY_CLASSES).fill_null(False)
    last = last.with_columns(
        pl.when(equity).then(pl.lit(after)).otherwise((pl.lit(as_of) - pl.col("last_bar")).dt.total_days()).alias("_behind"),
        equity.alias("_equity"),
    ).filter(pl.col("_behind") > max_behind)
    return [
        {"symbol": r["symbol"], "status": "stale",
         "detail": f"last bar {r['last_bar']}, {r['_behind']} {'session(s)' if r['_equity'] else 'day(s)'} before the as-of {as_of}"}
        for r in last.iter_rows(named=True)
    ]  # fmt: skip


def stale_warning(stale: list[dict], max_behind: int, as_of: date) -> str | None:
    """One line naming every stale asset, grouped by how far behind it is."""
    if not stale:
        return None
    groups: dict[str, list[str]] = {}
    for r in stale:
        groups.setdefault(r["detail"].removesuffix(f" before the as-of {as_of}"), []).append(r["symbol"])
    listed = "; ".join(f"{', '.join(syms)} ({how})" for how, syms in groups.items())
    return f"stale: {len(stale)} asset(s) end more than {max_behind} session(s) before the as-of {as_of}: {listed}"


_SCREEN_ORIGIN = re.compile(r"; from (?P<file>.+?) (?P<line>(?:line|row) \d+); row: ")


def input_problems(problems: list[InputProblem], quarantine: pl.DataFrame | None, run_id: str) -> list[dict]:
    """One compact row per file, symbol and kind of problem: what the source worked
    around (``problems``) and the rows this run's screen held back (``quarantine``)."""
    groups: dict[tuple, dict] = {}

    def add(file: str, symbol: str | None, kind: str, problem: str, action: str, line: str | None) -> None:
        g = groups.setdefault((file, symbol, kind, action), {"problem": problem, "lines": [], "n": 0})
        g["n"] += 1
        if line:
            g["lines"].append(line)

    for p in problems:
        add(p.file, p.symbol, p.kind, p.problem, p.action, p.line)
    if quarantine is not None and not quarantine.is_empty():
        mine = quarantine.filter(pl.col("run_id").is_in([run_id, ""]) & (pl.col("table_name") == "fact_prices"))
        for r in mine.iter_rows(named=True):
            for detail in r["detail"].split(" | "):
                m = _SCREEN_ORIGIN.search(detail)
                if m is None:  # a source problem (already listed) or a bar without origin
                    continue
                symbol = json.loads(r["key"]).get("symbol")
                add(m["file"], symbol, r["rule"], detail[: m.start()], "row held back", m["line"])
    rows = []
    for (file, symbol, _, action), g in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        problem = g["problem"]
        if g["n"] > 1:
            shown = ", ".join(x.split(" ")[-1] for x in g["lines"][:MAX_LINES_LISTED])
            more = ", ..." if len(g["lines"]) > MAX_LINES_LISTED else ""
            unit = g["lines"][0].split(" ")[0] if g["lines"] else "row"
            problem = f"{problem} ({g['n']} {unit}s: {shown}{more})"
        elif g["lines"]:
            problem = f"{g['lines'][0]}: {problem}"
        rows.append({"file": file, "symbol": symbol, "problem": problem, "action": action})
    if len(rows) > MAX_PROBLEM_ROWS:
        rest = rows[MAX_PROBLEM_ROWS - 1 :]
        rows = rows[: MAX_PROBLEM_ROWS - 1] + [{
            "file": f"... {len({r['file'] for r in rest})} more file(s)", "symbol": None,
            "problem": f"{len(rest)} more row(s) of this table", "action": "see the quarantine table",
        }]
    return rows


def freshness(prices: pl.DataFrame, assets: pl.DataFrame) -> tuple[list[dict], list[dict]]:
    """Per source the newest bar; per symbol, stale when behind the rest of its asset class."""
    if prices.is_empty():
        return [], []
    last = prices.group_by("symbol").agg(
        pl.col("date").max().alias("last_bar"), pl.col("source").last(), pl.col("ingested_at").max()
    )
    last = last.join(assets.select("symbol", "asset_class"), on="symbol", how="left")
    per_source = (
        last.group_by("source")
        .agg(
            pl.len().alias("symbols"),
            pl.col("last_bar").max().alias("newest_bar"),
            pl.col("last_bar").min().alias("oldest_last_bar"),
            pl.col("ingested_at").max().dt.strftime("%Y-%m-%d %H:%M UTC").alias("last_ingested"),
        )
        .sort("source")
    )
    stale = (
        last.with_columns(pl.col("last_bar").max().over("asset_class").alias("class_last"))
        .filter(pl.col("last_bar") < pl.col("class_last"))
        .sort("symbol")
        .select(
            "symbol",
            pl.lit("stale").alias("status"),
            pl.format("last bar {}, {} has {}", "last_bar", "asset_class", "class_last").alias("detail"),
        )
    )
    return per_source.to_dicts(), stale.to_dicts()


def new_events(events: pl.DataFrame, since: date | None, as_of: date) -> list[dict]:
    if events.is_empty():
        return []
    recent = events.filter(pl.col("date") > since) if since else events
    return (
        recent.filter(pl.col("date") <= as_of)
        .sort("date", "asset", "benchmark", "window_days", descending=[True, False, False, False])
        .head(MAX_ROWS)
        .select("date", "asset", "benchmark", "window_days", "event", pl.col("correlation").round(3))
        .to_dicts()
    )


def alpha_moves(tables: dict[str, pl.DataFrame], previous_as_of: date | None = None) -> tuple[list[dict], str]:
    """Largest Alpha Score changes since the last scored session of the previous run.

    Without a previous run (or nothing scored since) the baseline is the
    session before the latest.
    """
    scores = tables.get(ALPHA_TABLE)
    if scores is None:
        return [], f"{ALPHA_TABLE} is not part of this build."
    col = next((c for c in ALPHA_COLUMNS if c in scores.columns), None)
    if col is None or not {"symbol", "date"} <= set(scores.columns):
        return [], f"{ALPHA_TABLE} has no recognised score column."
    dates = scores["date"].unique().sort()
    if dates.len() < 2:
        return [], "Fewer than two scored sessions so far."
    last = dates[-1]
    before = dates.filter(dates <= previous_as_of) if previous_as_of else dates.head(0)
    prev = before[-1] if before.len() and before[-1] < last else dates[-2]
    keep = ["symbol"] + (["sector"] if "sector" in scores.columns else [])
    wide = scores.filter(pl.col("date") == last).select(*keep, pl.col(col).alias("score")).join(
        scores.filter(pl.col("date") == prev).select("symbol", pl.col(col).alias("previous")), on="symbol"
    )
    moves = (
        wide.with_columns((pl.col("score") - pl.col("previous")).alias("change"))
        .drop_nulls("change")
        .filter(pl.col("change") != 0)
        .sort(pl.col("change").abs(), "symbol", descending=[True, False])
        .head(10)
        .with_columns(pl.lit(f"{prev} -> {last}").alias("sessions"))
    )
    return moves.to_dicts(), f"No Alpha Score changed between {prev} and {last}."


def with_alpha_context(
    tables: dict[str, pl.DataFrame], unchanged_before: dict[str, date], published_marts: Path,
) -> dict[str, pl.DataFrame]:
    """``tables`` with ``ALPHA_TABLE`` as ``alpha_moves`` needs it: when the run hands on only its
    rows from a day (``Marts.unchanged_before``), with the published run's rows of the last
    two scored sessions before that day in front (read from its mart's files of that year and
    the one before, or of every year when those hold fewer than two sessions).

    ``alpha_moves`` compares the last session with the last one up to the previous run's
    as-of or, failing that, the one before the last: each is a session of the tail or one
    of those two. The rows before the day are the published run's, before or after this
    run publishes (it keeps them)."""
    since, scores = unchanged_before.get(ALPHA_TABLE), tables.get(ALPHA_TABLE)
    if since is None or scores is None:
        return tables
    table = TABLES[ALPHA_TABLE]
    marts = Path(os.path.realpath(published_marts))
    earlier = published_before(table, marts, since, [since.year - 1, since.year])
    if earlier["date"].n_unique() < 2:
        earlier = published_before(table, marts, since)
    last_two = earlier["date"].unique().sort().tail(2).implode()
    return {**tables, ALPHA_TABLE: pl.concat([earlier.filter(pl.col("date").is_in(last_two)), table.conform(scores)])}


def allocation_vs_bands(weights: pl.DataFrame | None, performance: pl.DataFrame | None) -> list[dict]:
    if weights is None or weights.is_empty():
        return []
    last = weights.filter(pl.col("date") == pl.col("date").max().over("mix"))
    sleeves = (
        last.group_by("mix", "sleeve", "date")
        .agg(
            pl.col("weight").sum().round(4).alias("weight"),
            pl.format("{}-{}", pl.col("band_min").first().round(2), pl.col("band_max").first().round(2)).alias("band"),
            pl.col("in_band").all(),
        )
        .sort("mix", "sleeve")
    )
    if performance is not None and not performance.is_empty():
        nav = performance.filter(pl.col("date") == pl.col("date").max().over("mix")).select(
            "mix", pl.col("nav").round(4)
        )
        sleeves = sleeves.join(nav, on="mix", how="left")
    return sleeves.to_dicts()


def summarize(
    tables: dict[str, pl.DataFrame],
    *,
    run_id: str,
    source: str,
    as_of: date,
    status: str,
    synthetic: bool,
    audit: str,
    outcomes: list[SymbolOutcome],
    previous_as_of: date | None,
    error: str | None = None,
    problems: list[InputProblem] | None = None,
    stale: list[dict] | None = None,
    fresh: tuple[list[dict], list[dict]] | None = None,
) -> RunReport:
    """The run's report. ``stale`` (``stale_symbols``, judged against the as-of)
    replaces the default staleness rule (behind the rest of the asset class).
    ``fresh``: ``freshness`` of the whole of fact_prices, when ``tables`` may hold its tail
    (``flows.stages.transform.Transformed.freshness``)."""
    report = RunReport(run_id, source, as_of, status, synthetic, audit, error=error)
    report.input_problems = input_problems(problems or [], tables.get("quarantine"), run_id)
    failed = [
        {"symbol": o.symbol, "status": "failed", "detail": o.error or ""} for o in outcomes if o.status == "error"
    ]
    prices, assets = tables.get("fact_prices"), tables.get("dim_asset")
    if fresh is not None or (prices is not None and assets is not None):
        report.freshness, behind = fresh if fresh is not None else freshness(prices, assets)
        stale = behind if stale is None else stale
        failed_symbols = {f["symbol"] for f in failed}
        report.problems = failed + [s for s in stale if s["symbol"] not in failed_symbols]
    else:
        report.problems = failed + [s for s in stale or [] if s["symbol"] not in {f["symbol"] for f in failed}]
    if "mart_correlation_events" in tables:
        # Its tail suffices (Marts.unchanged_before): the new events are dated after the previous
        # run's as-of, and the tail starts at the latest the day after the published run's as-of
        # (``flows.rebuild_plan.incremental_base``), which is no later than the previous as-of.
        report.events_since = previous_as_of
        report.events = new_events(tables["mart_correlation_events"], previous_as_of, as_of)
    report.alpha_moves, report.alpha_note = alpha_moves(tables, previous_as_of)
    report.allocation = allocation_vs_bands(tables.get("mart_allocation_weights"), tables.get("mart_mix_performance"))
    return report


def publish_artifacts(report: RunReport) -> None:
    """The report as Prefect artifacts on the current flow run (keys stay stable across runs)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_markdown_artifact(
        report.markdown(), key="xasset-run-report", description=f"xasset run {report.run_id} ({report.status})"
    )
    for key, rows in (("xasset-freshness", report.freshness), ("xasset-allocation-bands", report.allocation),
                      ("xasset-symbol-problems", report.problems), ("xasset-input-problems", report.input_problems)):
        if rows:
            create_table_artifact(jsonable(rows), key=key, description=f"run {report.run_id}, as of {report.as_of}")


def jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (v if v is None or isinstance(v, (int, float, str, bool)) else str(v)) for k, v in r.items()} for r in rows]


def print_whole(console, renderable) -> None:
    """Print fitted to a terminal; into a pipe, file or log at the renderable's natural width.

    Outside a terminal rich assumes 80 columns and folds every cell to fit;
    cron mail, CI and ``| less -S`` read better with one line per row.
    """
    if console.is_terminal:
        console.print(renderable)
        return
    from rich.console import Console

    width = Console(width=100_000).measure(renderable).maximum
    Console(file=console.file, width=max(width, 20), color_system=None).print(renderable)


def print_report(console, report: RunReport) -> None:
    """The report for a terminal: the same sections as the markdown artifact."""
    from rich.table import Table
    from rich.text import Text

    def section(title: str, rows: list[dict[str, Any]], empty: str) -> None:
        if not rows:
            console.print(f"[bold]{title}:[/] {empty}", highlight=False)
            return
        table = Table(title=title, title_justify="left", title_style="bold", show_header=True, header_style="bold")
        for col in rows[0]:
            # Folded, not cut: a file name or an error must stay whole.
            table.add_column(
                col, justify="right" if isinstance(rows[0][col], (int, float)) else "left", overflow="fold"
            )
        for r in rows:
            # Text, not markup: "[synthetic]" and error messages print as they are.
            table.add_row(*[Text(fmt(v)) for v in r.values()])
        print_whole(console, table)

    if report.input_problems:
        section("Input problems (files skipped, rows held back)", report.input_problems, "none")
    section("Data freshness per source", report.freshness, "no prices")
    section("Symbols that failed or are stale", report.problems, "none")
    since = f" since {report.events_since}" if report.events_since else ""
    section(f"New correlation events{since}", report.events, "none")
    section("Biggest Alpha Score moves", report.alpha_moves, report.alpha_note or "none")
    section("Allocation mixes vs policy bands (latest day)", report.allocation, "none")
    console.print(f"[bold]Audit:[/] {report.audit}", highlight=False)
