"""The ``xasset`` command line."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from datetime import date
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from flows.settings import Settings, get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="xasset: Russell 2000 vs crypto market-data pipeline.")
out = Console()
err = Console(stderr=True)


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def settings_for(data_dir: Path | None) -> Settings:
    settings = get_settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return settings


def prepare_prefect(settings: Settings) -> None:
    """Local, serverless Prefect: state under the data dir, no telemetry, quiet logs.

    Must run before ``prefect`` is imported: Prefect reads these at import.
    """
    home = (settings.data_dir / ".prefect").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(home))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # A fresh PREFECT_HOME migrates its database on first start, which can
    # take longer than Prefect's 20 s default on a busy 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    if settings.prefect_quiet:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
    # Prefect's temporary API server dies with this process, however it ends.
    from flows.ephemeral_server import own_ephemeral_server

    own_ephemeral_server()


def quiet_console_logs(settings: Settings) -> None:
    """Keep the terminal to xasset's own progress, summary and one-line errors.

    Call after Prefect is imported (it configures logging at import). Prefect's
    crash report (a traceback), its per-task notes and yfinance's per-request
    complaints all repeat what the run records itself (ingest_log, the run
    report, the error line); they remain in the Prefect API's run logs.
    """
    if not settings.prefect_quiet:
        return
    for name in ("prefect.flow_runs", "prefect.task_runs", "yfinance"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def refuse_if_running(settings: Settings) -> None:
    """Queue behind a run holding the data directory (bounded, saying so), before paying Prefect's start-up.

    The flow takes the lock again for real (and would wait too); this spares
    the operator a slow start for a run that cannot proceed yet, and fails
    with one line when the wait (``XASSET_LOCK_WAIT_SECONDS``) runs out.
    """
    from warehouse.lock import RunLock, RunLockedError

    def waiting(message: str) -> None:
        err.print(f"[yellow]{message}[/] (Ctrl-C gives up)", highlight=False, soft_wrap=True)

    try:
        with RunLock(settings.data_dir, wait_s=settings.lock_wait_seconds, on_wait=waiting):
            pass
    except RunLockedError as exc:
        raise fail(str(exc)) from None


_stopping = threading.Lock()
_stopping_owner: int | None = None


def stop_now(signum: int, run_id: str | None = None, published: bool = False) -> None:
    """End a run stopped by Ctrl-C or SIGTERM: record it, print one line, stop Prefect's server, exit.

    Called by the main thread once the run has recorded itself, by the
    watchdog of ``flows.cancel`` when that takes longer than the grace period,
    or by a second signal. It does not wait for Prefect's worker threads (one
    blocked in a request would hold the exit for that request's timeout), so
    it ends with ``os._exit``, after flushing what it printed.
    """
    global _stopping_owner
    if not _stopping.acquire(blocking=False):
        if _stopping_owner == threading.get_ident():
            return  # a further signal while this thread is already stopping
        while True:  # another thread is ending the process right now
            time.sleep(1)
    _stopping_owner = threading.get_ident()
    from flows import cancel
    from flows.ephemeral_server import stop_ephemeral_servers
    from warehouse.runs import RunLog

    name = signal.Signals(signum).name
    current, data_dir = cancel.run_in_progress()
    run_id = run_id or current
    if run_id and data_dir and not published:
        try:
            RunLog(data_dir).mark_cancelled(run_id, f"cancelled by {name}; nothing published")
        except Exception:  # noqa: BLE001 - the next run marks it interrupted instead
            pass
    if run_id is None:
        line = f"stopped by {name} before the run started; nothing changed"
    elif published:
        line = f"run {run_id} stopped by {name} right after it published; recorded succeeded"
    else:
        line = f"run {run_id} cancelled by {name}; nothing published, the published data is unchanged"
    err.print(f"[bold yellow]cancelled:[/] {line}", highlight=False, soft_wrap=True)
    stop_ephemeral_servers(timeout_s=2)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(cancel.exit_code(signum))


@contextmanager
def stoppable(settings: Settings):
    """Ctrl-C and SIGTERM end the run within seconds: recorded cancelled, one line, no traceback."""
    from flows import cancel

    previous = cancel.install(settings.stop_grace_seconds, stop_now)
    try:
        yield
    except BaseException as exc:
        if not cancel.is_cancellation(exc):
            raise
        signum = cancel.requested() or getattr(exc, "signum", None) or signal.SIGINT
        stop_now(signum, getattr(exc, "run_id", None), getattr(exc, "published", False))
        raise
    finally:
        cancel.uninstall(previous)


def print_frame(frame, fmt: Format) -> None:
    if fmt is Format.csv:
        sys.stdout.write(frame.write_csv())
    elif fmt is Format.json:
        sys.stdout.write(frame.write_json() + "\n")
    else:
        table = RichTable(show_header=True, header_style="bold")
        for name in frame.columns:
            table.add_column(name, justify="right" if frame.schema[name].is_numeric() else "left")
        for row in frame.iter_rows():
            # Text, not markup: a value like "[synthetic]" must print as is.
            table.add_row(*[Text("" if v is None else str(v)) for v in row])
        out.print(table)


@contextmanager
def stage_progress():
    """One progress bar per pipeline stage on stderr, fed by the flow's progress events."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flows import progress as events

    bars = Progress(
        TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=False, disable=not err.is_terminal,
    )
    ids = {stage: bars.add_task(stage, total=None, start=False) for stage in events.STAGES}

    def on_event(e: events.Progress) -> None:
        task_id = ids.get(e.stage)
        if task_id is None:
            return
        bars.start_task(task_id)
        bars.update(task_id, completed=e.done, total=e.total)
        if bars.disable and e.done == e.total:  # logs and pipes get one line per finished stage
            err.print(f"[dim]{e.stage} done ({e.done}/{e.total})[/]")

    with bars, events.listening(on_event):
        yield


@app.command()
def run(
    source: Annotated[str, typer.Option(help="sample (offline synthetic market), files or live.")] = "sample",
    path: Annotated[list[Path] | None, typer.Option(help="Folder or file of price histories (files source); repeatable.")] = None,
    start: Annotated[str | None, typer.Option(help="First date to extract (YYYY-MM-DD).")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Last date covered (default: the last complete day).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory (default $XASSET_DATA_DIR or ./data).")] = None,
) -> None:
    """Run the nightly pipeline once: extract, land, transform, load, audit, publish."""
    settings = settings_for(data_dir)
    try:
        start_d = date.fromisoformat(start) if start else None
        as_of_d = date.fromisoformat(as_of) if as_of else None
    except ValueError as exc:
        raise fail(f"bad date: {exc}") from None
    if source not in ("sample", "files", "live"):
        raise fail(f"unknown source {source!r}: choose sample, files or live")
    if source == "files" and not path:
        raise fail("the files source needs --path DIR (repeatable)")
    with stoppable(settings):
        refuse_if_running(settings)
        prepare_prefect(settings)
        from flows.nightly import nightly

        quiet_console_logs(settings)

        from flows.artifacts import print_report

        err.print(
            f"[dim]running {source} pipeline into {settings.data_dir} (Prefect starts first) ...[/]",
            highlight=False, soft_wrap=True,
        )
        try:
            with stage_progress():
                summary = nightly(
                    source=source,
                    paths=[str(p) for p in path or []],
                    start=start_d,
                    as_of=as_of_d,
                    data_dir=str(settings.data_dir),
                )
        except Exception as exc:  # one line for the operator, never a traceback
            raise fail(str(exc).splitlines()[0] if str(exc) else repr(exc)) from None
    label = " [bold yellow](SYNTHETIC sample market)[/]" if summary.synthetic else ""
    out.print(f"[bold green]run {summary.run_id} succeeded[/]{label}: source {summary.source}, as of {summary.as_of}")
    out.print(f"bars landed: {summary.rows_written}; stages (s): {summary.stage_seconds}")
    for w in summary.warnings:
        out.print(f"[yellow]warning:[/] {w}", highlight=False)
    if summary.report is not None:
        print_report(out, summary.report)
    out.print(f"warehouse: {summary.warehouse_path}")
    out.print(f"marts:     {summary.marts_dir}/<table>/")


class SqlFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def emit_frame(frame, fmt: SqlFormat, output: Path | None) -> None:
    """Print, or write to ``output``; parquet only goes to a file (binary on a terminal helps no one)."""
    if output is None:
        if fmt is SqlFormat.parquet:
            raise fail("--format parquet needs --output FILE", 2)
        print_frame(frame, Format(fmt.value))
        return
    try:
        if fmt is SqlFormat.parquet:
            frame.write_parquet(output, compression="zstd", statistics=True)
        elif fmt is SqlFormat.json:
            output.write_text(frame.write_json() + "\n")
        elif fmt is SqlFormat.csv:
            frame.write_csv(output)
        else:
            with open(output, "w") as fh:
                Console(file=fh, width=200).print(frame)
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror}", 2) from None
    err.print(f"[dim]{frame.height} row(s) written to {output}[/]")


@app.command()
def sql(
    query: Annotated[str | None, typer.Argument(help="A read-only SQL query.")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Read the query from this .sql file ('-' for stdin).")] = None,
    format: Annotated[SqlFormat, typer.Option("--format", "-f")] = SqlFormat.table,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the result to this file.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory.")] = None,
) -> None:
    """Answer a read-only SQL query against the published warehouse."""
    from warehouse.query import QueryError, run_query

    if (query is None) == (file is None):
        raise fail("give a query or --file FILE (one of them)", 2)
    if format is SqlFormat.parquet and output is None:
        raise fail("--format parquet needs --output FILE", 2)
    if file is not None:
        try:
            query = sys.stdin.read() if str(file) == "-" else file.read_text()
        except OSError as exc:
            raise fail(f"cannot read {file}: {exc.strerror}", 2) from None
    settings = settings_for(data_dir)
    try:
        frame = run_query(settings.warehouse_path, query)
    except QueryError as exc:
        raise fail(str(exc)) from None
    emit_frame(frame, format, output)


@app.command()
def tables(
    format: Annotated[SqlFormat, typer.Option("--format", "-f")] = SqlFormat.table,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory.")] = None,
) -> None:
    """List the warehouse's tables and views with their descriptions (and row counts once built)."""
    from warehouse.catalog import list_objects
    from warehouse.query import QueryError

    try:
        frame = list_objects(settings_for(data_dir).warehouse_path)
    except QueryError as exc:
        raise fail(str(exc)) from None
    emit_frame(frame, format, None)


@app.command()
def describe(
    table: Annotated[str, typer.Argument(help="Table or view, e.g. mart_rolling_correlation or analytics.latest_correlations.")],
    format: Annotated[SqlFormat, typer.Option("--format", "-f")] = SqlFormat.table,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory.")] = None,
) -> None:
    """Print a table's columns from its contract (a view's from the warehouse)."""
    from warehouse.catalog import describe as describe_table
    from warehouse.query import QueryError

    try:
        description, frame = describe_table(settings_for(data_dir).warehouse_path, table)
    except QueryError as exc:
        raise fail(str(exc)) from None
    if format is SqlFormat.table:
        out.print(f"[bold]{table}[/]: {description}", highlight=False)
    emit_frame(frame, format, None)


@app.command()
def runs(
    limit: Annotated[int, typer.Option("--limit", "-n", help="Most recent runs to show.")] = 20,
    format: Annotated[SqlFormat, typer.Option("--format", "-f")] = SqlFormat.table,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory.")] = None,
) -> None:
    """List recent pipeline runs: status, timings, audit result, error (failed runs too)."""
    from warehouse.runs import RunLog, summarize_runs

    frame = summarize_runs(RunLog(settings_for(data_dir).data_dir).runs(), limit)
    if frame.is_empty():
        err.print("no runs recorded yet")
        return
    emit_frame(frame, format, None)


@app.command()
def report(
    as_of: Annotated[str | None, typer.Option("--as-of", help="Report day (default: the newest in the warehouse).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory.")] = None,
) -> None:
    """Write charts and one self-contained HTML page to <data dir>/reports/<date>/."""
    from flows.report import ReportError, write_report
    from warehouse.query import QueryError

    settings = settings_for(data_dir)
    try:
        day = date.fromisoformat(as_of) if as_of else None
    except ValueError as exc:
        raise fail(f"bad date: {exc}") from None
    try:
        result = write_report(settings.warehouse_path, settings.data_dir / "reports", day)
    except (ReportError, QueryError) as exc:
        raise fail(str(exc)) from None
    label = " [bold yellow](SYNTHETIC sample market)[/]" if result.synthetic else ""
    out.print(f"report as of {result.as_of}{label}: {len(result.charts)} charts", highlight=False)
    for skipped in result.skipped:
        out.print(f"[yellow]skipped:[/] {skipped}", highlight=False)
    out.print(f"{result.html_path}", highlight=False, soft_wrap=True)


@app.command()
def backfill(
    start: Annotated[str, typer.Option(help="First date (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option(help="Last date (YYYY-MM-DD) to land; published as of the later of it and the current as-of.")],
    source: Annotated[str, typer.Option(help="sample or live.")] = "live",
    data_dir: Annotated[Path | None, typer.Option(help="Data directory.")] = None,
) -> None:
    """Land a history year by year (resumable), then publish once; never rewinds the published as-of."""
    from flows.artifacts import print_report

    settings = settings_for(data_dir)
    try:
        start_d, end_d = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError as exc:
        raise fail(f"bad date: {exc}") from None
    if source not in ("sample", "live"):
        raise fail(f"backfills fetch from sample or live, not {source!r}")
    with stoppable(settings):
        refuse_if_running(settings)
        prepare_prefect(settings)
        from flows.backfill import backfill as backfill_flow

        quiet_console_logs(settings)

        try:
            with stage_progress():
                summary = backfill_flow(start=start_d, end=end_d, source=source, data_dir=str(settings.data_dir))
        except Exception as exc:
            raise fail((str(exc).splitlines()[0] if str(exc) else repr(exc)) + " (re-run the same command to resume)") from None
    out.print(
        f"[bold green]backfill {summary.run_id} succeeded[/]: {start_d}..{end_d}, bars landed: {summary.rows_written}; "
        f"published as of {summary.as_of}", highlight=False,
    )
    for w in summary.warnings:
        out.print(f"[yellow]warning:[/] {w}", highlight=False)
    if summary.report is not None:
        print_report(out, summary.report)


@app.command()
def serve(
    source: Annotated[str, typer.Option(help="Source of the scheduled runs.")] = "live",
    cron: Annotated[str | None, typer.Option(help="Cron expression (default: the nightly deployment's).")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone of the cron (default UTC).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory.")] = None,
) -> None:
    """Run the nightly schedule in this process until interrupted (no work pool needed)."""
    from flows.serve import NIGHTLY_CRON, NIGHTLY_TIMEZONE, nightly_schedule, serve_nightly

    settings = settings_for(data_dir)
    cron, timezone = cron or NIGHTLY_CRON, timezone or NIGHTLY_TIMEZONE
    try:
        nightly_schedule(cron, timezone)
    except ValueError as exc:
        raise fail(str(exc)) from None
    prepare_prefect(settings)
    err.print(f"[dim]serving nightly ({cron}, {timezone}, source {source}) into {settings.data_dir}; Ctrl-C stops[/]")
    serve_nightly({"source": source, "data_dir": str(settings.data_dir.resolve())}, cron, timezone)



@app.command()
def mirror(
    to: Annotated[str | None, typer.Option("--to", help="fsspec URL (default $XASSET_MARTS_MIRROR_URL).")] = None,
    keep: Annotated[int | None, typer.Option(min=2, help="Runs kept there (default $XASSET_MARTS_MIRROR_KEEP).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory.")] = None,
) -> None:
    """Copy the published Parquet marts to object storage; readers resolve <url>/_current.json."""
    from warehouse.lock import RunLock, RunLockedError
    from warehouse.mirror import MirrorError, mirror_marts

    settings = settings_for(data_dir)
    url = to or settings.marts_mirror_url
    if not url:
        raise fail("no mirror URL: pass --to URL or set XASSET_MARTS_MIRROR_URL", 2)
    try:
        # Under the run lock: no run publishes while the marts are copied.
        with RunLock(settings.data_dir):
            summary = mirror_marts(settings.marts_dir, url, keep or settings.marts_mirror_keep)
    except (RunLockedError, MirrorError) as exc:
        raise fail(str(exc)) from None
    except (OSError, ImportError, ValueError) as exc:  # unreachable store, missing backend (s3fs), bad URL
        raise fail(f"mirror to {url} failed, its current run is unchanged: {exc!r}") from None
    pointer = (f"now {summary.run_id} (was {summary.previous_run_id})" if summary.pointer_written
               else f"already {summary.run_id}")
    out.print(
        f"mirrored {summary.tables} tables of run {summary.run_id} to {url}: {summary.uploaded} file(s) uploaded, "
        f"{summary.copied} copied from earlier runs, {summary.skipped} already there; current run {pointer}",
        highlight=False, soft_wrap=True,
    )
    if summary.pruned:
        out.print(f"pruned runs: {', '.join(summary.pruned)}", highlight=False)
    for w in summary.warnings:
        out.print(f"[yellow]warning:[/] {w}", highlight=False)


if __name__ == "__main__":  # pragma: no cover
    app()
