"""Bench stage of the full run's load (issue #16): ``load_full``.

Needs the ``transform`` stage's tables in the work dir (``W/tables/*.parquet``). Builds the
warehouse from them as a full run does (``warehouse.build.build_database``, a new file in the
default storage format) once per variant, alternating, twice each, in one process, and prints
per table (the tables over 100,000 rows) its rows, wall and CPU seconds and the threads it kept
busy (CPU / wall), then each variant's total with its ratio to ``now``, the file's size, and
whether every table holds the same rows as ``now``'s file (``EXCEPT ALL`` both ways) in the
same catalog.

Variants (``--load-variants``, comma-separated; ``now`` is always first):
- ``now``: the Polars frame handed to DuckDB as Arrow, as the load does;
- ``large_string``: Arrow in its oldest layout (``large_string`` instead of ``string_view``);
- ``one_chunk``: the frame rechunked first (one Arrow chunk per column);
- ``memory_limit_1gb``: as ``now`` with DuckDB's ``memory_limit`` at 1 GB.
"""

from __future__ import annotations

import time
from pathlib import Path

VARIANTS = ("now", "large_string", "one_chunk", "memory_limit_1gb")


def _arrow(variant: str):
    import polars as pl

    def convert(frame: pl.DataFrame):
        if variant == "large_string":
            return frame.to_arrow(compat_level=pl.CompatLevel.oldest())
        if variant == "one_chunk":
            return frame.rechunk().to_arrow()
        return frame.to_arrow()

    return convert


def _same_rows(a: Path, b: Path) -> bool:
    import duckdb

    from warehouse.build import catalog_shape

    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
        con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'a' AND schema_name = 'main'").fetchall()]
        for t in tables:
            for x, y in (("a", "b"), ("b", "a")):
                if con.execute(f'SELECT count(*) FROM (FROM {x}.main."{t}" EXCEPT ALL FROM {y}.main."{t}")').fetchone()[0]:
                    return False
    finally:
        con.close()
    shapes = []
    for path in (a, b):
        con = duckdb.connect(str(path), read_only=True)
        try:
            shapes.append(catalog_shape(con))
        finally:
            con.close()
    return shapes[0] == shapes[1]


def stage_load_full(work: Path, args) -> None:
    import polars as pl

    from bench.__main__ import emit, rss_now
    from warehouse import build

    variants = ["now"] + [v for v in (getattr(args, "load_variants", "") or "").split(",") if v and v != "now"]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"load_full: unknown variant(s) {', '.join(sorted(unknown))}; known: {', '.join(VARIANTS)}")
    tables = {p.stem: pl.read_parquet(p) for p in sorted((work / "tables").glob("*.parquet"))}
    rows = sum(f.height for f in tables.values())
    before = rss_now()
    insert = build.insert_frame
    best: dict[str, tuple[float, float, dict]] = {}
    for variant in variants * 2:
        per_table: dict[str, tuple[int, float, float]] = {}
        convert = _arrow(variant)

        def timed_insert(con, table, frame, convert=convert, per_table=per_table, variant=variant):
            t, c = time.perf_counter(), time.process_time()
            if variant == "memory_limit_1gb":
                con.execute("SET memory_limit = '1GB'")
            con.register("incoming", convert(frame))
            try:
                con.execute(build.insert_statement(table, "incoming"))
            finally:
                con.unregister("incoming")
            per_table[table.name] = (frame.height, time.perf_counter() - t, time.process_time() - c)

        path = work / f"load-{variant}.duckdb"
        build.insert_frame = timed_insert
        try:
            t, c = time.perf_counter(), time.process_time()
            build.build_database(path, tables)
            s, cpu = time.perf_counter() - t, time.process_time() - c
        finally:
            build.insert_frame = insert
        if variant not in best or s < best[variant][0]:
            best[variant] = (s, cpu, per_table, path.stat().st_size)
            path.rename(path.with_suffix(".best.duckdb"))
        path.unlink(missing_ok=True)
    s_now, c_now, _, _ = best["now"]
    for variant in variants:
        s, cpu, per_table, size = best[variant]
        for name, (n, w, c) in sorted(per_table.items(), key=lambda kv: -kv[1][2]):
            if n > 100_000:
                emit(f"load_full_{variant}_{name}", w, n, cpu=c, threads=round(c / w, 2) if w else None)
        same = True if variant == "now" else _same_rows(work / "load-now.best.duckdb", work / f"load-{variant}.best.duckdb")
        emit(f"load_full_{variant}", s, rows, rss_before=before, cpu=cpu, ratio_to_now=round(s / s_now, 3),
             cpu_ratio_to_now=round(cpu / c_now, 3), file_mib=round(size / 2**20), same_rows_as_now=same)
    for variant in variants:
        (work / f"load-{variant}.best.duckdb").unlink(missing_ok=True)


STAGES = {"load_full": stage_load_full}
