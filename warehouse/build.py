"""Build a complete warehouse file apart from the published one.

DuckDB lets one process hold a database file open for writing and then no
other process may open it, even read-only. So a run never writes into the
published file: it builds a new file from scratch in its staging directory,
and after the audit passes the whole run is published with one switch
(``warehouse.snapshots``). An analyst who has the old file open keeps reading
their snapshot (the old inode), and the next connection sees the new run whole.

An incremental run (``load_database`` with ``unchanged_before``) does not
rebuild from scratch: it copies the published file into its staging directory
(a new inode: readers of the published one are untouched) and replaces there
only the rows dated on or after the day each table changed from; tables not
named are replaced whole. Whenever the copy could differ from a full build in
anything but row order (tables, columns, types, comments, views, storage
format), or the file has grown past ``compact_above`` times a full build's
size, it builds from scratch instead and says why.

Where it can (``recycle_previous``), a next day does not even copy: the file of
the run before the published one, kept only for readers and built the same
way, is moved into the staging directory and brought up to date there
(``recycle``): the rows either run changed are replaced, those the published
run wrote are read from its file. Any doubt (a reader holding that file, a file
changed since, many rows to carry) and it copies as above.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from warehouse.files import TMP_PREFIX, atomic_write_text
from warehouse.query import read_sql_file, read_tables
from contracts.schema import Table, ident, sql_literal
from contracts.tables import TABLES
from contracts.vocabulary import DEFAULT_WAREHOUSE_COMPACT_ABOVE, DEFAULT_WAREHOUSE_STORAGE_VERSION

SQL_DIR = Path(__file__).with_name("sql")


def insert_statement(table: Table, relation: str) -> str:
    # Generated from the contract, like the DDL: column order is the contract's.
    return f"INSERT INTO {table.name} SELECT {', '.join(map(ident, table.column_names))} FROM {relation}"


def table_frame(table: Table, frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """The run's frame of ``table`` conformed to its contract; empty when the run has none."""
    frame = frames.get(table.name)
    return table.conform(frame if frame is not None else pl.DataFrame(schema=table.polars_schema))


def insert_frame(con: duckdb.DuckDBPyConnection, table: Table, frame: pl.DataFrame) -> None:
    con.register("incoming", frame.to_arrow())
    try:
        con.execute(insert_statement(table, "incoming"))
    finally:
        con.unregister("incoming")


def view_files() -> list[Path]:
    return sorted((SQL_DIR / "views").glob("*.sql"))


def view_requires(sql: str) -> list[str]:
    """Tables named on ``-- requires:`` lines: the view is skipped while one is absent."""
    return [t for line in sql.splitlines() if line.startswith("-- requires:") for t in line.split(":", 1)[1].split()]


def mart_views(tables: dict[str, Table]) -> list[str]:
    # Generated from the contracts, like the DDL: the `marts` schema lists
    # exactly the published tables, commented like the tables themselves.
    out = []
    for t in tables.values():
        if t.publish:
            out.append(f"CREATE VIEW marts.{t.name} AS SELECT * FROM main.{t.name};")
            out.append(f"COMMENT ON VIEW marts.{t.name} IS {sql_literal(t.description)};")
            out.extend(t.comments("marts")[1:])  # its columns' (the first is COMMENT ON TABLE)
    return out


def create_views(con: duckdb.DuckDBPyConnection, tables: dict[str, Table]) -> list[str]:
    """Run every view file whose required tables exist; returns the skipped files."""
    present = {r[0] for r in con.execute(read_sql_file("catalog/main_tables.sql")).fetchall()}
    skipped = []
    for view in view_files():
        sql = view.read_text()
        if not set(view_requires(sql)) <= present:
            skipped.append(view.name)
            continue
        con.execute(sql)
        inherit_column_comments(con, sql, [tables[t] for t in view_requires(sql) if t in tables])
    for stmt in mart_views(tables):
        con.execute(stmt)
    return skipped


def inherit_column_comments(con: duckdb.DuckDBPyConnection, sql: str, sources: list[Table]) -> None:
    """Comment a view's columns that pass a contracted column through with that column's comment.

    Derived columns are commented in the view's own file; a column that merely
    repeats ``mart_x.asset`` takes the contract's words instead of a copy.
    """
    for view in re.findall(r"CREATE VIEW (\w+\.\w+)", sql):
        schema, name = view.split(".")
        rows = con.execute(read_sql_file("catalog/columns.sql"), {"schema": schema, "name": name}).fetchall()
        for column, _type, _nullable, comment in rows:
            if comment:
                continue
            source = next((c for t in sources for c in t.columns if c.name == column), None)
            if source is not None:
                text = source.description + (f" [{source.unit}]" if source.unit else "")
                con.execute(f"COMMENT ON COLUMN {view}.{ident(column)} IS {sql_literal(text)}")


def build_database(
    path: Path, frames: dict[str, pl.DataFrame], tables: dict[str, Table] = TABLES,
    storage_version: str = DEFAULT_WAREHOUSE_STORAGE_VERSION,
) -> dict[str, int]:
    """Create every contracted table in a new file at ``path``; returns row counts.

    The file is written in the storage format of DuckDB ``storage_version``
    (e.g. ``v1.1.0``), so clients of that release and later can open it.
    """
    path.unlink(missing_ok=True)
    counts: dict[str, int] = {}
    con = duckdb.connect(str(path), config={"storage_compatibility_version": storage_version})
    try:
        # Each table in its own transaction, not one for the whole file: one transaction kept
        # every table's rows in memory until its commit, and at 2,000 equities lifted the full
        # run's peak from 6.9 to 8.2 GiB (over the 8 GiB target) for no gain in wall time
        # (load 11.8 s vs 12.3-12.5 s; a smaller file; docs/performance.md).
        for name, table in tables.items():
            con.execute(table.ddl())
            for stmt in table.comments():
                con.execute(stmt)
            frame = table_frame(table, frames)
            insert_frame(con, table, frame)
            counts[name] = frame.height
        create_views(con, tables)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    atomic_write_text(f"{path.stat().st_size}\n", full_size_path(path))
    return counts


@dataclass(frozen=True)
class Loaded:
    """What ``load_database`` wrote: row counts, and how."""

    counts: dict[str, int]
    # None: the published file was copied and only changed rows replaced.
    full_because: str | None = None
    # A full build of a run whose tables were tails (``unchanged_before``): each such table
    # whole, its earlier rows read from the published file (``whole_tables``). The caller
    # hands these on instead of the tails, as after a full build.
    whole: dict[str, pl.DataFrame] = field(default_factory=dict)
    # The run whose file was recycled instead of copying the published one (``recycle``), or None.
    recycled_from: str | None = None
    # Why a copy-on-write load did not recycle (None: it did, or recycling was not asked for).
    not_recycled: str | None = None


def load_database(
    path: Path, frames: dict[str, pl.DataFrame], tables: dict[str, Table] = TABLES,
    storage_version: str = DEFAULT_WAREHOUSE_STORAGE_VERSION,
    published: Path | None = None, unchanged_before: dict[str, date] | None = None,
    compact_above: float = DEFAULT_WAREHOUSE_COMPACT_ABOVE, recycle_previous: bool = False,
) -> Loaded:
    """Write the run's warehouse at ``path``: a copy of ``published`` with the changed rows
    replaced (``unchanged_before``, see ``copy_on_write``), or a full ``build_database``.

    A table named in ``unchanged_before`` holds only its rows from that day on (docs:
    Marts.unchanged_before); the rows before are the published file's. The result holds
    the same rows, comments and views as ``build_database`` of the whole tables either
    way; only the physical row order may differ.

    ``recycle_previous``: instead of copying the published file, rewrite the file of
    the run before it where it can (``recycle_base``, ``recycle``); the copy otherwise.
    """
    reason = copy_refused(published, unchanged_before or {}, tables, compact_above)
    if reason is None:
        not_recycled = None
        if recycle_previous:
            try:
                base = recycle_base(published, unchanged_before or {}, tables, compact_above)
            except (duckdb.Error, OSError, ValueError, TypeError, AttributeError) as exc:
                if isinstance(exc, duckdb.InterruptException):  # a stop (flows.cancel), not a doubt
                    raise
                # Any doubt about the files (an unreadable record, a published file DuckDB cannot
                # attach): the copy, which checks the published file as before.
                base = f"the files could not be compared ({exc})"
            if isinstance(base, Recyclable):
                try:
                    counts = recycle(path, base, published, frames, unchanged_before or {}, tables, storage_version)
                    return Loaded(counts, recycled_from=base.run_id)
                except IncompatibleCopy as exc:
                    not_recycled = str(exc)
            else:
                not_recycled = base
        try:
            return Loaded(copy_on_write(path, published, frames, unchanged_before or {}, tables, storage_version),
                          not_recycled=not_recycled)
        except IncompatibleCopy as exc:
            reason = str(exc)
    whole = whole_tables(published, frames, unchanged_before or {}, tables)
    counts = build_database(path, frames | whole, tables, storage_version)
    # What the next night's copy compares its catalog with (``recorded_shape``): this file's,
    # read back from it as ``expected_shape`` reads an empty build's.
    con = duckdb.connect(str(path), read_only=True)
    try:
        record_shape(path, catalog_key(tables, storage_version), catalog_shape(con), storage_tag(con))
    finally:
        con.close()
    record_lineage(path, None, {})
    return Loaded(counts, reason, whole)


def whole_tables(
    published: Path | None, frames: dict[str, pl.DataFrame], unchanged_before: dict[str, date],
    tables: dict[str, Table] = TABLES,
) -> dict[str, pl.DataFrame]:
    """Each table named in ``unchanged_before`` whole: the published file's rows dated before
    its day, then the run's (its tail). For a full build of a run that handed on tails (the
    copy refused, e.g. compaction): read from the file the run would have copied."""
    named = [n for n in unchanged_before if n in frames]
    if not named:
        return {}
    if published is None or not published.exists():
        raise ValueError(
            f"the run's tables {', '.join(named)} hold only their changed rows, and the published warehouse "
            f"{published} that holds the rest is gone: run again to rebuild in full"
        )
    before = read_tables(Path(os.path.realpath(published)), named,
                         {n: ((tables[n].date_column, "<", unchanged_before[n]),) for n in named})
    out = {}
    for n in named:
        earlier = tables[n].conform(before.get(n, pl.DataFrame(schema=tables[n].polars_schema)))
        out[n] = pl.concat([earlier, tables[n].conform(frames[n])], rechunk=False)
    return out


class IncompatibleCopy(Exception):
    """The published file cannot be the base of this run's file (a full build follows)."""


def copy_refused(
    published: Path | None, unchanged_before: dict[str, date], tables: dict[str, Table], compact_above: float,
) -> str | None:
    """Why the published file cannot be copied (None: it can, pending the catalog check)."""
    if not unchanged_before:
        return "no table is unchanged since the published run"
    if published is None or not published.exists():
        return "no published warehouse"
    bad = sorted(n for n in unchanged_before if n not in tables or tables[n].date_column is None)
    if bad:
        return f"table(s) {', '.join(bad)} have no date column to replace rows from"
    full = full_size_estimate(published)
    if full is None:
        return "the published file has no record of the full build it descends from"
    if published.stat().st_size > compact_above * full:
        return (f"compaction: the published file ({published.stat().st_size / 2**20:.0f} MiB) is over "
                f"{compact_above:g}x the size of the full build it started from ({full / 2**20:.0f} MiB)")
    return None


# Beside the warehouse file in the run directory: the size of the last full build
# this file descends from, so repeated copies know when to compact (``compact_above``).
FULL_SIZE_SUFFIX = ".full-size"


def full_size_path(path: Path) -> Path:
    return path.with_name(path.name + FULL_SIZE_SUFFIX)


def full_size_estimate(path: Path) -> int | None:
    try:
        return int(full_size_path(Path(os.path.realpath(path))).read_text())
    except (FileNotFoundError, ValueError):
        return None


def copy_file(src: Path, dst: Path) -> None:
    """A real copy (a new inode), in the kernel where it can: ``copy_file_range`` reflinks on
    filesystems that share extents (btrfs, XFS) and copies without user-space buffers elsewhere.

    Only "this filesystem cannot" falls back to a plain copy; a full disk or an
    I/O error is raised naming the file (a write error carries no file name)."""
    try:
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            size = os.fstat(fin.fileno()).st_size
            try:
                done = 0
                while done < size:
                    n = os.copy_file_range(fin.fileno(), fout.fileno(), size - done)
                    if n == 0:
                        break
                    done += n
                if done != size:
                    raise OSError(errno.EINVAL, "short copy_file_range")
            except OSError as exc:
                if exc.errno not in _NO_COPY_RANGE:
                    raise
                fin.seek(0)
                fout.seek(0)
                fout.truncate()
                shutil.copyfileobj(fin, fout, 16 * 2**20)
            os.fsync(fout.fileno())
    except OSError as exc:
        if exc.filename:
            raise
        raise OSError(exc.errno, f"copying {src} to {dst}: {exc.strerror or exc}", str(dst)) from exc


# copy_file_range's errors that mean "not here" (another filesystem, not
# supported), not "the copy failed".
_NO_COPY_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF, errno.ETXTBSY}


def catalog_shape(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(read_sql_file("catalog/shape.sql")).fetchall()


# Beside the warehouse file in the run directory: the catalog and storage tag a full build
# writes (``expected_shape``) under the key of everything that decides them (``catalog_key``),
# so the next copy-on-write load compares its copy with it instead of building an empty
# warehouse again (0.5-0.7 s a night).
CATALOG_SUFFIX = ".catalog.json"


def catalog_path(path: Path) -> Path:
    return path.with_name(path.name + CATALOG_SUFFIX)


def catalog_key(tables: dict[str, Table], storage_version: str) -> str:
    """A digest of what decides a full build's catalog: DuckDB's version (it renders the views),
    the storage format, every table's DDL and comments, the view files and the mart views."""
    digest = hashlib.sha256()
    parts = [duckdb.__version__, storage_version, *mart_views(tables)]
    parts += [stmt for t in tables.values() for stmt in (t.ddl(), *t.comments())]
    parts += [f"{v.name}\0{v.read_text()}" for v in view_files()]
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def recorded_shape(published: Path, key: str) -> tuple[list[tuple], str | None] | None:
    """The expected catalog recorded beside ``published`` under ``key``; None when absent or another key's."""
    try:
        saved = json.loads(catalog_path(Path(os.path.realpath(published))).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("key") != key:
        return None
    return [tuple(row) for row in saved["shape"]], saved["storage_tag"]


def record_shape(path: Path, key: str, shape: list[tuple], tag: str | None) -> None:
    atomic_write_text(json.dumps({"key": key, "storage_tag": tag, "shape": shape}) + "\n", catalog_path(path))


def expected_shape(tables: dict[str, Table], storage_version: str) -> tuple[list[tuple], str | None]:
    """The catalog and storage tag of a full build, read back from an empty one.

    Read from a file, not from memory: DuckDB stores a view as its parsed
    statement and renders it back from the file's serialization, which can
    differ in parentheses from the in-memory rendering.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "empty.duckdb"
        build_database(path, {}, tables, storage_version)
        con = duckdb.connect(str(path), read_only=True)
        try:
            return catalog_shape(con), storage_tag(con)
        finally:
            con.close()


def storage_tag(con: duckdb.DuckDBPyConnection) -> str | None:
    """The storage format DuckDB reports for the open file (e.g. ``v1.0.0+``)."""
    row = con.execute(read_sql_file("catalog/storage_tag.sql")).fetchone()
    return (row[0] or {}).get("storage_version") if row else None


def describe_difference(got: list[tuple], want: list[tuple]) -> str:
    """The first difference, naming a whole table or view where one is missing or extra."""
    def objects(rows: list[tuple]) -> set[str]:
        return {f"{r[0]} {r[1]}.{r[2]}" for r in rows if r[0] in ("table", "view")}

    for what, diff in (("has no", objects(want) - objects(got)), ("has an extra", objects(got) - objects(want))):
        if diff:
            return f"the published file {what} {min(diff)} (contracts or views changed)"
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    what, row = ("lacks", missing[0]) if missing else ("has", extra[0])
    return f"the published file {what} {row[0]} {row[1]}.{row[2]} {row[4]!r} {row[5]!r} unlike a full build"


def delete_statement(table: Table, since: date | None) -> tuple[str, list]:
    # Generated from the contract, like the DDL. A null date counts as changed (never "before").
    if since is None:
        return f"DELETE FROM {table.name}", []
    col = ident(table.date_column)
    return f"DELETE FROM {table.name} WHERE {col} >= ? OR {col} IS NULL", [since]


def rows_from(table: Table, frame: pl.DataFrame, since: date | None) -> pl.DataFrame:
    if since is None:
        return frame
    col = pl.col(table.date_column)
    return frame.filter(col.is_null() | (col >= since))


def changed_rows(table: Table, frames: dict[str, pl.DataFrame], since: date | None) -> tuple[pl.DataFrame, int]:
    """The run's rows of ``table`` dated from ``since`` (all of them without), conformed to the
    contract, and the number of rows the run has in all.

    Filtered before they are conformed (where the date column already has the
    contract's type): a next-day run writes a few rows of tables of millions,
    and conforming them all cost more than inserting the few."""
    frame = frames.get(table.name)
    if frame is None:
        return table_frame(table, frames), 0
    col = table.date_column
    if since is not None and frame.schema.get(col) == table.polars_schema[col]:
        return table.conform(rows_from(table, frame, since)), frame.height
    return rows_from(table, table.conform(frame), since), frame.height


def check_catalog(
    con: duckdb.DuckDBPyConnection, published: Path, tables: dict[str, Table], storage_version: str,
) -> tuple[str, list[tuple], str | None]:
    """Raise ``IncompatibleCopy`` unless ``con``'s file has a full build's catalog and storage format;
    returns the catalog key, that catalog and that format."""
    key = catalog_key(tables, storage_version)
    want, fresh = recorded_shape(published, key) or expected_shape(tables, storage_version)
    got = catalog_shape(con)
    if got != want:
        raise IncompatibleCopy(describe_difference(got, want))
    tag = storage_tag(con)
    if tag != fresh:
        raise IncompatibleCopy(f"storage format {tag} of the published file is not {fresh} ({storage_version})")
    return key, want, fresh


def copy_on_write(
    path: Path, published: Path, frames: dict[str, pl.DataFrame], unchanged_before: dict[str, date],
    tables: dict[str, Table] = TABLES,
    storage_version: str = DEFAULT_WAREHOUSE_STORAGE_VERSION,
) -> dict[str, int]:
    """Copy ``published`` to ``path`` and bring every table to ``frames``; returns row counts.

    A table named in ``unchanged_before`` with day ``d`` keeps its rows dated before
    ``d`` (the caller vouches they equal the frame's, docs: INTERFACE of Marts.unchanged_before)
    and gets the frame's rows dated on or after ``d``; any other table is replaced
    whole. Raises ``IncompatibleCopy`` (and removes the copy) when the published
    file's catalog or storage format is not what a full build would write.
    """
    path.unlink(missing_ok=True)
    Path(str(path) + ".wal").unlink(missing_ok=True)
    copy_file(Path(os.path.realpath(published)), path)
    full_size = full_size_estimate(published)
    counts: dict[str, int] = {}
    con = duckdb.connect(str(path), config={"storage_compatibility_version": storage_version})
    with removed_on_failure(con, path):
        key, want, fresh = check_catalog(con, published, tables, storage_version)
        con.execute("BEGIN TRANSACTION")
        for name, table in tables.items():
            since = unchanged_before.get(name)
            sql, params = delete_statement(table, since)
            con.execute(sql, params)
            replace_tail(con, table, frames, since, counts)
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    con.close()
    finish_copy(path, published, full_size, key, want, fresh, unchanged_before)
    return counts


@contextmanager
def removed_on_failure(con: duckdb.DuckDBPyConnection, path: Path) -> Iterator[None]:
    """A load that fails half-way leaves no file behind (nor its write-ahead log)."""
    try:
        yield
    except BaseException:
        con.close()
        path.unlink(missing_ok=True)
        Path(str(path) + ".wal").unlink(missing_ok=True)
        raise


def replace_tail(
    con: duckdb.DuckDBPyConnection, table: Table, frames: dict[str, pl.DataFrame], since: date | None,
    counts: dict[str, int],
) -> None:
    """Insert the frame's rows from ``since`` (all without) and count the table's rows."""
    frame, counts[table.name] = changed_rows(table, frames, since)
    insert_frame(con, table, frame)
    if since is not None:
        # The run's frame is the table's tail: its rows are those kept plus those inserted.
        counts[table.name] = con.execute(f"SELECT count(*) FROM {ident(table.name)}").fetchone()[0]


def finish_copy(
    path: Path, published: Path, full_size: int | None, key: str, shape: list[tuple], tag: str | None,
    unchanged_before: dict[str, date],
) -> None:
    if full_size is not None:
        atomic_write_text(f"{full_size}\n", full_size_path(path))
    record_shape(path, key, shape, tag)
    record_lineage(path, Path(os.path.realpath(published)).parent.name, unchanged_before)


# Beside the warehouse file in the run directory: what the file holds relative to the run before
# (``base_run``: the published run it was built from, None after a full build; ``unchanged_before``:
# each table's rows from that day were replaced, the other tables whole) and the file's identity
# once written (inode, size, mtime_ns), so the run after next can tell the file is untouched and
# recycle it (``recycle_base``) instead of copying the newer one.
LINEAGE_SUFFIX = ".lineage.json"


def lineage_path(path: Path) -> Path:
    return path.with_name(path.name + LINEAGE_SUFFIX)


def file_stamp(path: Path) -> list[int]:
    # lstat: a symbolic link put in the file's place is not the file.
    st = os.lstat(path)
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def record_lineage(path: Path, base_run: str | None, unchanged_before: dict[str, date]) -> None:
    state = {"stamp": file_stamp(path), "base_run": base_run,
             "unchanged_before": {n: d.isoformat() for n, d in sorted(unchanged_before.items())}}
    atomic_write_text(json.dumps(state) + "\n", lineage_path(path))


def read_lineage(path: Path) -> dict | None:
    try:
        state = json.loads(lineage_path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state if isinstance(state, dict) else None


# A recycle that would carry more than this share of the published file's rows over from it
# (e.g. a big table the published run replaced whole, handed as a tail now) copies instead:
# a full load of every row takes ~12 s at 2,000 equities and the copy ~1 s, so past ~8% of the
# rows the inserts cost more than the copy they save.
RECYCLE_MAX_CARRIED = 0.05


@dataclass(frozen=True)
class Recyclable:
    """The file of the run before the published one, and what the published file changed of it."""

    path: Path
    run_id: str
    # The published run's ``unchanged_before`` over this file (a table not named: replaced whole).
    replaced_from: dict[str, date]


def recycle_base(
    published: Path, unchanged_before: dict[str, date], tables: dict[str, Table], compact_above: float,
) -> Recyclable | str:
    """The run before the published one, if its file can be recycled; else why not.

    It can when the published file was built from it (its lineage) and it is as that
    run left it (inode, size and mtime as recorded after its checkpoint: DuckDB writes
    nothing to a file opened read-only, nor to one attached read-only), no bigger than
    compaction allows, and the rows to carry over from the published file are few.
    """
    current = Path(os.path.realpath(published))
    mine = read_lineage(current)
    if mine is None or not mine.get("base_run"):
        return "the published file was not built from the run before it"
    if file_stamp(current) != mine.get("stamp"):
        # Its rows are carried as they are now; the other file's were matched to them as written.
        return "the published file changed since it was written"
    run_id = str(mine["base_run"])
    base = current.parent.parent / run_id / current.name
    if run_id.startswith(TMP_PREFIX) or base.parent == current.parent:
        return f"the published file's base {run_id} is not a run"
    theirs = read_lineage(base)
    if theirs is None or not os.path.lexists(base):
        return f"run {run_id}'s file is gone"
    if os.path.lexists(str(base) + ".wal") or file_stamp(base) != theirs.get("stamp"):
        return f"run {run_id}'s file changed since it was written"
    full = full_size_estimate(published)
    if full is None or base.stat().st_size > compact_above * full:
        return f"run {run_id}'s file is due for compaction"
    replaced = {n: date.fromisoformat(d) for n, d in (mine.get("unchanged_before") or {}).items()}
    carried, total = carried_rows(current, unchanged_before, replaced, tables)
    if carried > RECYCLE_MAX_CARRIED * total:
        return f"{carried:,} of the published file's {total:,} rows would be carried over"
    return Recyclable(base, run_id, replaced)


def carried_from(since: date | None, replaced: date | None) -> date | None:
    """From which day the recycled file's rows of a table go (None: all of them): the earlier of this
    run's day and the published run's; the published file's rows between it and ``since`` are carried."""
    if since is None or replaced is None:
        return None
    return min(since, replaced)


def carry_statement(table: Table, start: date | None, since: date, count: bool = False) -> tuple[str, list]:
    # Generated from the contract, like the DDL. Rows dated null are the run's (delete_statement).
    col = ident(table.date_column)
    where, params = f"{col} < ?", [since]
    if start is not None:
        where, params = f"{col} >= ? AND {where}", [start, since]
    source = f"previous.{ident(table.name)} WHERE {where}"
    if count:
        return f"SELECT count(*) FROM {source}", params
    return f"INSERT INTO {table.name} SELECT {', '.join(map(ident, table.column_names))} FROM {source}", params


def attach_statement(published: Path) -> str:
    return read_sql_file("recycle/attach.sql").format(path=sql_literal(str(published)))


def carried_rows(
    published: Path, unchanged_before: dict[str, date], replaced: dict[str, date], tables: dict[str, Table],
) -> tuple[int, int]:
    """Rows a recycle would carry over from the published file, and all its rows."""
    con = duckdb.connect()
    try:
        con.execute(attach_statement(published))
        total = con.execute(read_sql_file("recycle/total_rows.sql")).fetchone()[0]
        carried = 0
        for name, since in unchanged_before.items():
            start = carried_from(since, replaced.get(name))
            if name in tables and (start is None or start < since):
                sql, params = carry_statement(tables[name], start, since, count=True)
                carried += con.execute(sql, params).fetchone()[0]
    finally:
        con.close()
    return carried, total


def recycle(
    path: Path, base: Recyclable, published: Path, frames: dict[str, pl.DataFrame],
    unchanged_before: dict[str, date], tables: dict[str, Table] = TABLES,
    storage_version: str = DEFAULT_WAREHOUSE_STORAGE_VERSION,
) -> dict[str, int]:
    """``copy_on_write`` without the copy: bring the file of the run before the published one
    (``recycle_base``) to ``frames`` at ``path``; returns row counts.

    The file is moved to ``path`` (its run's name is gone from then on) and opened for
    writing there. A reader still holding it (DuckDB's shared lock) makes that fail:
    the moved name is removed, the reader keeps its inode, and ``IncompatibleCopy``
    says why (the caller copies instead). Per table, with ``d`` this run's day and
    ``e`` the published run's over the recycled file (None: whole): rows dated from
    the earlier of the two go (all if either is None), the published file's rows
    dated from there to ``d`` come from it, then the frame's from ``d`` as in a copy.
    """
    path.unlink(missing_ok=True)
    Path(str(path) + ".wal").unlink(missing_ok=True)
    current = Path(os.path.realpath(published))
    full_size = full_size_estimate(published)
    os.rename(base.path, path)
    try:
        con = duckdb.connect(str(path), config={"storage_compatibility_version": storage_version})
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, duckdb.IOException):
            raise IncompatibleCopy(f"run {base.run_id}'s file is open in another process ({exc})") from exc
        raise
    counts: dict[str, int] = {}
    with removed_on_failure(con, path):
        key, want, fresh = check_catalog(con, published, tables, storage_version)
        con.execute(attach_statement(current))
        con.execute("BEGIN TRANSACTION")
        for name, table in tables.items():
            since = unchanged_before.get(name)
            start = carried_from(since, base.replaced_from.get(name))
            sql, params = delete_statement(table, start)
            con.execute(sql, params)
            if since is not None and (start is None or start < since):
                sql, params = carry_statement(table, start, since)
                con.execute(sql, params)
            replace_tail(con, table, frames, since, counts)
        con.execute("COMMIT")
        con.execute(read_sql_file("recycle/detach.sql"))
        con.execute("CHECKPOINT")
    con.close()
    finish_copy(path, published, full_size, key, want, fresh, unchanged_before)
    return counts
