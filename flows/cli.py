"""The ``xasset`` command line."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from contracts.vocabulary import SOURCES

if TYPE_CHECKING:  # imported when first used: its Polars, PyArrow and contracts are 0.6 s of `--help`
    from flows.settings import Settings

out = Console(soft_wrap=not sys.stdout.isatty())  # pipes and logs: one line per message
err = Console(stderr=True, soft_wrap=not sys.stderr.isatty())


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


class OneLineErrors(typer.core.TyperGroup):
    """A bad option is one line ``error: ...`` like every other error, not Typer's boxed usage panel.

    Typer prints usage errors inside its own bundled click's ``main`` and exits
    there; parsing happens in the group's ``make_context`` (its own options) and
    ``invoke`` (the command's), so the error is caught on its way out of those.
    """

    def make_context(self, *args, **kwargs):
        with self._one_line():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with self._one_line():
            return super().invoke(ctx)

    @staticmethod
    @contextmanager
    def _one_line():
        try:
            yield
        except typer.TyperException as exc:  # the bundled click's ClickException and its usage errors
            if type(exc).__name__ == "NoArgsIsHelpError" or not hasattr(exc, "format_message"):
                raise  # plain `xasset`: the help, as Typer shows it
            ctx = getattr(exc, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            raise fail(exc.format_message().replace("\n", " ") + hint, getattr(exc, "exit_code", 2)) from None


app = typer.Typer(
    cls=OneLineErrors, no_args_is_help=True, add_completion=False,
    help="xasset: Russell 2000 vs crypto market-data pipeline.",
)


# The source names, from the one vocabulary (contracts.vocabulary.SOURCES).
Source = Enum("Source", [(name, name) for name in SOURCES], type=str)


class FetchSource(str, Enum):
    """What a backfill or the schedule fetches from: the files source has no history to page through."""

    sample = "sample"
    live = "live"


# click parses a date option as a datetime; `day` turns it back into the date it names.
DateOption = dict(formats=["%Y-%m-%d"], metavar="YYYY-MM-DD")


def day(value: datetime | None) -> date | None:
    return value.date() if isinstance(value, datetime) else value


def settings_for(data_dir: Path | None) -> Settings:
    from flows.settings import get_settings

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
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
                          str(settings.prefect_server_startup_timeout_seconds))
    if settings.prefect_quiet:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
    # Prefect's temporary API server dies with this process, however it ends.
    from flows.ephemeral_server import own_ephemeral_server

    own_ephemeral_server()


def set_aside_corrupt_prefect_db(settings: Settings) -> None:
    """Before a local Prefect server starts: a corrupt Prefect database is moved aside, with one warning.

    It holds only Prefect's own run history (``flows/prefect_db.py``); started
    on it, Prefect would fail every request with a traceback for minutes.
    """
    from flows.prefect_db import PrefectDatabaseError, set_aside_if_corrupt

    try:
        moved = set_aside_if_corrupt()
    except PrefectDatabaseError as exc:
        raise fail(str(exc)) from None
    if moved:
        err.print(f"[yellow]warning:[/] Prefect's database {moved.path} is corrupt ({moved.reason}); moved it to "
                  f"{moved.moved_to.name} and starting a new one (it holds only Prefect's own run history; "
                  f"xasset's run log in {settings.data_dir / 'state'} is unaffected)", highlight=False, soft_wrap=True)


def check_writable(settings: Settings) -> None:
    """A command that writes the data directory (run, backfill, serve) gets one it can write, or one line."""
    import tempfile

    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        raise fail(f"data directory {settings.data_dir} is a file, not a directory", 2)
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=settings.data_dir):  # unnamed on Linux: nothing to clean up
            pass
    except OSError as exc:
        raise fail(f"cannot write to the data directory {settings.data_dir}: {exc.strerror or exc} "
                   "(read-only commands such as sql, tables and runs still work on it)") from None


def check_configured_server(reuse_served: bool = True) -> str | None:
    """The Prefect server to use, before Prefect is imported; None: Prefect's temporary one.

    PREFECT_API_URL if set (checked: one line at once instead of Prefect's
    retries); else, with ``reuse_served``, the server a running ``xasset serve``
    owns for this PREFECT_HOME, which spares the temporary server's start-up.
    """
    from flows.serve import announced_api_server, api_healthy

    api = os.environ.get("PREFECT_API_URL")
    if api and not api_healthy(api):
        raise fail(f"the Prefect server at PREFECT_API_URL={api} does not answer (start it, or unset "
                   "PREFECT_API_URL to run with a temporary local one)")
    if not api and reuse_served and (api := announced_api_server(Path(os.environ["PREFECT_HOME"]))):
        os.environ["PREFECT_API_URL"] = api
    return api


def prefect_startup_note() -> str:
    """What the operator waits for before the first stage: a running server, or Prefect's temporary one."""
    api = os.environ.get("PREFECT_API_URL")
    if api:
        return f"Prefect server {api}"
    return ("Prefect starts a temporary local API first, 20-60 s; a running server named by PREFECT_API_URL "
            "skips that, see docs/operations.md")


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


def settle_imports() -> None:
    """Move every object alive now (the imported modules: Prefect, pydantic, polars, ...) out of the collector's way.

    Call once a pipeline command has imported what it runs. Those objects
    (~150,000 tracked ones) live as long as the process, yet each full
    collection of the run walked them all again (0.43 of 0.65 s of collection
    in a short run, docs/performance.md). ``gc.freeze`` keeps them out of every
    collection until ``unsettle_imports``; objects the run creates are collected
    as before.
    """
    import gc

    gc.freeze()  # not collected first: the imports leave a few hundred objects of garbage, a collection costs 0.08 s


# Set by ``main``: this process is the command line (``xasset``, ``python -m flows.cli``), not a
# caller of ``app`` such as a test's CliRunner, whose process must end as it would.
_AS_PROGRAM = False


def end_without_teardown(code: int = 0) -> None:
    """Once a pipeline command has printed its result: the process ends right after its exit handlers, with ``code``.

    Python's own end then tears down every module and object of the run one by one
    (Prefect, pydantic, Polars, DuckDB, the frozen imports): 0.45 s of a next day's
    12 s, measured on a replay at 2,000 symbols, for nothing anyone reads. Prefect's and
    logging's exit handlers still run (all of them, in their order: ``atexit._run_exitfuncs``),
    worker threads are already joined by then, and everything the run writes is closed
    when its stage ends (atomic files, DuckDB connections closed in ``finally``).
    A failed run ends so too: its error may hold DuckDB objects, which DuckDB's
    teardown would report under the error line as "nanobind: leaked ...".
    """
    if not _AS_PROGRAM:
        return

    def end() -> None:
        atexit.unregister(end)
        atexit._run_exitfuncs()  # registered before this one: they would run after it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    atexit.register(end)  # the last registered runs first


def unsettle_imports() -> None:
    """Give the frozen objects back to the collector once the pipeline is done (``pipeline_process``).

    Left frozen, the interpreter's last collection would skip them at exit and
    extensions would report them (DuckDB's nanobind prints "leaked N instances!"
    for every object it still holds): the exit frees everything, as before.
    """
    import gc

    gc.unfreeze()


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

    # Whatever fails on the way, the process ends: a thread that raised here would keep the lock
    # above, and every later call (the main thread's, a second signal's) would wait on it forever.
    # Seen: a run whose reader had gone (stdout and stderr a broken pipe) idle for 28 minutes after
    # SIGTERM, deaf to a second one.
    try:
        _record_stop(signum, run_id, published)
    finally:
        os._exit(cancel.exit_code(signum))


def _record_stop(signum: int, run_id: str | None, published: bool) -> None:
    """``stop_now``'s work before the exit: the run recorded cancelled, one line, Prefect's server stopped."""
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
    try:
        err.print(f"[bold yellow]cancelled:[/] {line}", highlight=False, soft_wrap=True)
    except (OSError, ValueError):  # nobody reads the output any more (a broken pipe, a closed stream)
        pass
    try:
        stop_ephemeral_servers(timeout_s=2)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass


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


@contextmanager
def pipeline_process(settings: Settings):
    """Everything ``run`` and ``backfill`` check and set up before Prefect starts, and how they stop.

    A data directory that cannot be written, another run holding it, a
    configured server that does not answer or a corrupt Prefect database is
    one line at once, not a minute into Prefect's start-up.
    """
    check_writable(settings)
    with stoppable(settings):
        refuse_if_running(settings)
        prepare_prefect(settings)
        check_configured_server()
        set_aside_corrupt_prefect_db(settings)
        try:
            yield
        finally:
            unsettle_imports()


def short_values(frame, name: str, width: int = 40) -> bool:
    """Whether every value of a column fits ``width`` characters (names, symbols, ids: never wrapped)."""
    if frame.is_empty():
        return True
    try:
        longest = frame[name].cast(str).str.len_chars().max()
    except Exception:  # a type polars cannot cast to text: let rich fold it
        return False
    return longest is None or longest <= width


def frame_table(frame) -> RichTable:
    """A rich table of a frame: numbers right-aligned, short values (ids, names, dates) never wrapped."""
    table = RichTable(show_header=True, header_style="bold")
    for name in frame.columns:
        table.add_column(
            name,
            justify="right" if frame.schema[name].is_numeric() else "left",
            no_wrap=short_values(frame, name),
        )
    for row in frame.iter_rows():
        # Text, not markup: a value like "[synthetic]" must print as is.
        table.add_row(*[Text("" if v is None else str(v)) for v in row])
    return table


def print_table(table: RichTable) -> None:
    """A table fitted to a terminal, whole (one line per row) into a pipe, file or log."""
    from flows.artifacts import print_whole

    print_whole(out, table)


def print_frame(frame, fmt: Format) -> None:
    if fmt is Format.csv:
        sys.stdout.write(frame.write_csv())
    elif fmt is Format.json:
        sys.stdout.write(frame.write_json() + "\n")
    else:
        print_table(frame_table(frame))


@contextmanager
def stage_progress():
    """One progress bar per pipeline stage on stderr, fed by the flow's progress events.

    A bar starts when its stage does and shows the stage's elapsed time; outside
    a terminal each finished stage is one line with its seconds. A retried source
    request is one line either way (what, attempt, wait), so a stall has a reason.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flows import progress as events

    bars = Progress(
        TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=False, disable=not err.is_terminal,
    )
    ids = {stage: bars.add_task(stage, total=None, start=False) for stage in events.STAGES}
    started: dict[str, float] = {}
    finished: set[str] = set()

    def on_event(e: events.Progress | events.Retry) -> None:
        if isinstance(e, events.Retry):
            err.print(f"[yellow]retry:[/] {e.note}", highlight=False, soft_wrap=True)
            return
        task_id = ids.get(e.stage)
        if task_id is None:
            return
        if e.stage not in started or e.stage in finished:  # the stage starts (again, per backfill chunk)
            started[e.stage] = time.monotonic()
            finished.discard(e.stage)
            bars.reset(task_id, start=True, total=e.total, completed=0)
        bars.update(task_id, completed=e.done, total=e.total)
        if e.done == e.total:
            finished.add(e.stage)
        if bars.disable and e.done == e.total:  # logs and pipes get one line per finished stage
            seconds = time.monotonic() - started[e.stage]
            err.print(f"[dim]{e.stage} done ({e.done}/{e.total}) in {seconds:.1f} s[/]", highlight=False)

    with bars, events.listening(on_event):
        yield


@app.command()
def run(
    source: Annotated[Source, typer.Option(help="sample (offline synthetic market), files or live.")] = Source.sample,
    # Not exists=True: check_paths below says what is wrong with a path (missing, unreadable, not a price file).
    path: Annotated[list[Path] | None, typer.Option(help="Folder or file of price histories (files source); repeatable.")] = None,
    start: Annotated[datetime | None, typer.Option(help="First date to extract.", **DateOption)] = None,
    as_of: Annotated[datetime | None, typer.Option("--as-of", help="Last date covered (default: the last complete day).", **DateOption)] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory (default $XASSET_DATA_DIR or ./data).")] = None,
    rewind: Annotated[bool, typer.Option(
        "--rewind", help="Allow an --as-of before the published run's (publishes the older view on purpose).",
    )] = False,
) -> None:
    """Run the nightly pipeline once: extract, land, transform, load, audit, publish."""
    settings = settings_for(data_dir)
    source = source.value
    start_d, as_of_d = day(start), day(as_of)
    if start_d and as_of_d and start_d > as_of_d:
        raise fail(f"--start {start_d} is after --as-of {as_of_d}")
    if source == "files" and not path:
        raise fail("the files source needs --path DIR (repeatable)")
    if as_of_d and not rewind:
        from warehouse.snapshots import RewindRefused, check_no_rewind

        try:  # before Prefect's start-up; the flow checks again under the run lock
            check_no_rewind(settings.data_dir, source, as_of_d)
        except RewindRefused as exc:
            raise fail(str(exc)) from None
    if source == "files":
        from flows.sources.base import SourceError
        from flows.sources.files import check_paths

        try:  # before Prefect's start-up: a typo costs a second, not a minute
            check_paths(path)
        except SourceError as exc:
            raise fail(str(exc)) from None
    with pipeline_process(settings):
        # Before importing Prefect (seconds by itself): the wait starts here.
        err.print(f"[dim]running {source} pipeline into {settings.data_dir} ({prefect_startup_note()}) ...[/]",
                  highlight=False, soft_wrap=True)
        from flows.nightly import nightly

        quiet_console_logs(settings)

        from flows.artifacts import print_report
        from flows.heartbeat import end_heartbeats_promptly

        end_heartbeats_promptly()
        settle_imports()

        try:
            with stage_progress():
                summary = nightly(
                    source=source,
                    paths=[str(p) for p in path or []],
                    start=start_d,
                    as_of=as_of_d,
                    data_dir=str(settings.data_dir),
                    rewind=rewind,
                )
        except Exception as exc:  # one line for the operator, never a traceback
            end_without_teardown(1)
            raise fail(str(exc).splitlines()[0] if str(exc) else repr(exc)) from None
    label = " [bold yellow](SYNTHETIC sample market)[/]" if summary.synthetic else ""
    out.print(f"[bold green]run {summary.run_id} succeeded[/]{label}: source {summary.source}, as of {summary.as_of}")
    out.print(f"bars landed: {summary.rows_written}; stages: {format_stages(summary.stage_seconds)}", highlight=False)
    for w in summary.warnings:
        out.print(f"[yellow]warning:[/] {w}", highlight=False)
    if summary.report is not None:
        print_report(out, summary.report)
    out.print(f"warehouse: {summary.warehouse_path}")
    out.print(f"marts:     {summary.marts_dir}/<table>/")
    end_without_teardown()


class SqlFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


# Rows a terminal table shows unless --limit/--all say otherwise: rendering is
# the slow part (20,000 rows took 20 s); CSV, JSON and Parquet are not capped.
TABLE_ROWS = 1000

DataDir = Annotated[
    Path | None, typer.Option(help="Data directory (default $XASSET_DATA_DIR or ./data).")
]


def read_settings(data_dir: Path | None) -> Settings:
    """Settings for a read-only command, with a data directory that can be one."""
    settings = settings_for(data_dir)
    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        raise fail(f"data directory {settings.data_dir} is a file, not a directory", 2)
    return settings


def refuse_inside_data_dir(output: Path, settings: Settings) -> None:
    """A read-only command never writes into the data directory.

    ``-o data/warehouse.duckdb`` would write through the ``warehouse.duckdb``
    link into the published run, around the atomic publish; links are
    resolved, so no path that ends up under the data directory gets through.
    """
    data = settings.data_dir.resolve()
    target = output.resolve()
    inside = target == data or target.is_relative_to(data)
    if not inside and target.is_file():
        # A hard link to a published file is the same file under another name.
        st = target.stat()
        published = [settings.warehouse_path, *(settings.marts_dir.rglob("*") if settings.marts_dir.is_dir() else [])]
        inside = any(
            f.is_file() and (f.stat().st_dev, f.stat().st_ino) == (st.st_dev, st.st_ino) for f in published
        )
    if inside:
        raise fail(f"refused: {output} is inside the data directory {settings.data_dir}; write results elsewhere", 2)


def _target(fmt: SqlFormat):
    from warehouse.query import Target

    return {SqlFormat.json: Target.json, SqlFormat.parquet: Target.parquet}.get(fmt, Target.text)


def emit_frame(frame, fmt: SqlFormat, output: Path | None) -> None:
    """Print, or write to ``output``; parquet goes to a file or a pipe, never to a terminal."""
    if output is None:
        if fmt is SqlFormat.parquet:
            if out.is_terminal:
                raise fail("--format parquet needs --output FILE (or a pipe)", 2)
            frame.write_parquet(sys.stdout.buffer, compression="zstd", statistics=True)
            sys.stdout.buffer.flush()
            return
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
                Console(file=fh, width=100_000, color_system=None).print(frame_table(frame))
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror}", 2) from None
    err.print(f"[dim]{frame.height} row(s) written to {output}[/]", highlight=False, soft_wrap=True)


@app.command()
def sql(
    query: Annotated[str | None, typer.Argument(help="A read-only SQL query.")] = None,
    # Not exists=True: Typer's check refuses '-' (stdin); a missing file is one line below.
    file: Annotated[Path | None, typer.Option("--file", help="Read the query from this .sql file ('-' for stdin).")] = None,
    format: Annotated[SqlFormat, typer.Option("--format", "-f", help="table for people; csv, json or parquet for scripts.")] = SqlFormat.table,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the result to this file (never inside the data directory).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=0, help=f"At most N rows (default: {TABLE_ROWS} for a table, every row for csv/json/parquet).")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="Every row, also as a table.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Answer a read-only SQL query against the published warehouse."""
    from warehouse.query import QueryError, run_query_result

    if (query is None) == (file is None):
        raise fail("give a query or --file FILE (one of them)", 2)
    if limit is not None and all_rows:
        raise fail("--limit and --all contradict each other: give one", 2)
    if format is SqlFormat.parquet and output is None and out.is_terminal:
        raise fail("--format parquet needs --output FILE (or a pipe)", 2)
    settings = read_settings(data_dir)
    if output is not None:
        refuse_inside_data_dir(output, settings)
    if file is not None:
        try:
            query = sys.stdin.read() if str(file) == "-" else file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}", 2) from None
    cap = None if all_rows else limit if limit is not None else TABLE_ROWS if format is SqlFormat.table and output is None else None
    try:
        result = run_query_result(settings.warehouse_path, query, _target(format), cap)
    except QueryError as exc:
        raise fail(str(exc)) from None
    emit_frame(result.frame, format, output)
    if result.truncated:
        more = "--all for every row" if limit is None else "--all or a larger --limit for more"
        err.print(f"[dim]first {cap} row(s) shown; the result has more ({more}, or --format csv)[/]", highlight=False, soft_wrap=True)


def _suggest(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.8)
    if not close:
        bare = name.rpartition(".")[2]
        close = difflib.get_close_matches(bare, known, n=3, cutoff=0.8)
    return f"; did you mean {', '.join(close)}?" if close else "; `xasset tables` lists them"


@app.command()
def tables(
    format: Annotated[SqlFormat, typer.Option("--format", "-f")] = SqlFormat.table,
    data_dir: DataDir = None,
) -> None:
    """List the warehouse's tables and views with their descriptions (and row counts once built)."""
    from warehouse.catalog import list_objects
    from warehouse.query import QueryError

    try:
        frame = list_objects(read_settings(data_dir).warehouse_path)
    except QueryError as exc:
        raise fail(str(exc)) from None
    emit_frame(frame, format, None)


@app.command()
def describe(
    table: Annotated[str, typer.Argument(help="Table or view, e.g. mart_rolling_correlation or analytics.latest_correlations.")],
    format: Annotated[SqlFormat, typer.Option("--format", "-f")] = SqlFormat.table,
    data_dir: DataDir = None,
) -> None:
    """Print a table's columns from its contract (a view's from the warehouse)."""
    from warehouse.catalog import UnknownObject
    from warehouse.catalog import describe as describe_table
    from warehouse.query import QueryError

    try:
        description, frame = describe_table(read_settings(data_dir).warehouse_path, table)
    except UnknownObject as exc:
        raise fail(str(exc) + _suggest(table, exc.known)) from None
    except QueryError as exc:
        raise fail(str(exc)) from None
    if format is SqlFormat.table:
        out.print(f"[bold]{table}[/]: {description}", highlight=False, soft_wrap=not out.is_terminal)
    emit_frame(frame, format, None)


def format_stages(stage_seconds) -> str:
    """``extract 1.2s, land 0.3s, ...`` from a stage->seconds dict or its JSON text."""
    import json

    if stage_seconds is None:
        return ""
    if isinstance(stage_seconds, str):
        try:
            stage_seconds = json.loads(stage_seconds)
        except ValueError:
            return stage_seconds
    if not isinstance(stage_seconds, dict):
        return str(stage_seconds)
    return ", ".join(f"{k} {v:.1f}s" if isinstance(v, int | float) else f"{k} {v}" for k, v in stage_seconds.items())


@app.command()
def runs(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Most recent runs to show.")] = 20,
    format: Annotated[SqlFormat, typer.Option("--format", "-f")] = SqlFormat.table,
    data_dir: DataDir = None,
) -> None:
    """List recent pipeline runs: status, timings, audit result, error (failed runs too)."""
    import polars as pl

    from warehouse.runs import RunLog, summarize_runs

    log = RunLog(read_settings(data_dir).data_dir)
    try:
        frame = summarize_runs(log.runs(), limit)
    except Exception as exc:  # a corrupt or foreign state/pipeline_runs.parquet: one line, naming it
        first = getattr(exc, "reason", None) or (str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise fail(f"cannot read the run log {log.dir / 'pipeline_runs.parquet'}: {first}") from None
    if frame.is_empty():
        err.print("no runs recorded yet")
        return
    if format is SqlFormat.table:
        frame = frame.with_columns(pl.col("stage_seconds").map_elements(format_stages, return_dtype=pl.String))
    emit_frame(frame, format, None)


@app.command()
def report(
    as_of: Annotated[datetime | None, typer.Option("--as-of", help="Report day (default: the newest in the warehouse).", **DateOption)] = None,
    data_dir: DataDir = None,
) -> None:
    """Write charts and one self-contained HTML page to <data dir>/reports/<date>/."""
    from flows.report import ReportError, write_report
    from warehouse.query import QueryError

    settings = read_settings(data_dir)
    try:
        result = write_report(settings.warehouse_path, settings.data_dir / "reports", day(as_of))
    except (ReportError, QueryError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:  # a read-only data directory, a full disk
        raise fail(f"cannot write the report under {settings.data_dir / 'reports'}: {exc.strerror or exc}") from None
    label = " [bold yellow](SYNTHETIC sample market)[/]" if result.synthetic else ""
    out.print(f"report as of {result.as_of}{label}: {len(result.charts)} charts", highlight=False)
    for skipped in result.skipped:
        out.print(f"[yellow]skipped:[/] {skipped}", highlight=False, soft_wrap=True)
    out.print(f"{result.html_path}", highlight=False, soft_wrap=True)


@app.command()
def backfill(
    start: Annotated[datetime, typer.Option(help="First date.", **DateOption)],
    end: Annotated[datetime, typer.Option(help="Last date to land; published as of the later of it and the current as-of.", **DateOption)],
    source: Annotated[FetchSource, typer.Option(help="sample or live.")] = FetchSource.live,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory.")] = None,
) -> None:
    """Land a history year by year (resumable), then publish once; never rewinds the published as-of."""
    from flows.artifacts import print_report

    settings = settings_for(data_dir)
    start_d, end_d, source = day(start), day(end), source.value
    if end_d < start_d:  # before Prefect's start-up, not a minute into it
        raise fail(f"backfill end {end_d} is before its start {start_d}")
    with pipeline_process(settings):
        from flows.backfill import backfill as backfill_flow

        quiet_console_logs(settings)
        from flows.heartbeat import end_heartbeats_promptly

        end_heartbeats_promptly()
        settle_imports()

        try:
            with stage_progress():
                summary = backfill_flow(start=start_d, end=end_d, source=source, data_dir=str(settings.data_dir))
        except Exception as exc:
            end_without_teardown(1)
            raise fail((str(exc).splitlines()[0] if str(exc) else repr(exc)) + " (re-run the same command to resume)") from None
    out.print(
        f"[bold green]backfill {summary.run_id} succeeded[/]: {start_d}..{end_d}, bars landed: {summary.rows_written}; "
        f"published as of {summary.as_of}", highlight=False,
    )
    for w in summary.warnings:
        out.print(f"[yellow]warning:[/] {w}", highlight=False)
    if summary.report is not None:
        print_report(out, summary.report)
    end_without_teardown()


@app.command()
def serve(
    source: Annotated[FetchSource, typer.Option(help="Source of the scheduled runs: sample or live.")] = FetchSource.live,
    cron: Annotated[str | None, typer.Option(help="Cron expression (default: the nightly deployment's).")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone of the cron (default UTC).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory.")] = None,
) -> None:
    """Run the nightly schedule until interrupted (no work pool needed).

    Uses the Prefect server at PREFECT_API_URL; when it is unset, starts a
    local one (state under <data dir>/.prefect) and stops it on exit.
    """
    from flows.serve import (
        NIGHTLY_CRON, NIGHTLY_TIMEZONE, ServerStartError, check_timezone, owned_api_server,
    )

    settings = settings_for(data_dir)
    source = source.value
    cron, timezone = cron or NIGHTLY_CRON, timezone or NIGHTLY_TIMEZONE
    try:
        check_timezone(timezone)
    except ValueError as exc:
        raise fail(str(exc)) from None
    check_writable(settings)
    # Before anything imports Prefect: it reads PREFECT_HOME and PREFECT_API_URL at import.
    prepare_prefect(settings)
    with ExitStack() as owned:
        # Not another serve's server: it stops when that serve does.
        api = check_configured_server(reuse_served=False)
        if api:
            err.print(f"[dim]using the Prefect server at {api}[/]", highlight=False)
        else:
            set_aside_corrupt_prefect_db(settings)
            try:
                api = owned.enter_context(owned_api_server(
                    Path(os.environ["PREFECT_HOME"]), settings.prefect_server_startup_timeout_seconds,
                    say=lambda line: err.print(f"[dim]{line}[/]", highlight=False),
                ))
            except ServerStartError as exc:
                raise fail(str(exc)) from None
            os.environ["PREFECT_API_URL"] = api
        from flows.serve import nightly_schedule, serve_nightly

        try:
            nightly_schedule(cron, timezone)
        except ValueError as exc:
            raise fail(str(exc)) from None
        err.print(f"[dim]serving nightly ({cron}, {timezone}, source {source}) into {settings.data_dir}; "
                  "Ctrl-C stops[/]", highlight=False)
        serve_nightly({"source": source, "data_dir": str(settings.data_dir.resolve())}, cron, timezone)
    err.print("[dim]xasset serve stopped[/]")


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


def main() -> None:
    """The command line as a program: a finished pipeline command may end without teardown."""
    global _AS_PROGRAM
    _AS_PROGRAM = True
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
