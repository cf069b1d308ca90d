"""The run log and ingest log, kept beside the warehouse so failed runs are recorded too.

A failed run never publishes a warehouse, so its record cannot live only in
the published database: ``<data dir>/state/*.parquet`` holds every run, and each
published warehouse carries a copy.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from warehouse.files import atomic_write_parquet, read_stored_parquet
from contracts.tables import INGEST_LOG, PIPELINE_RUNS, QUARANTINE

# Runs whose quarantine rows are kept: a bad bar that stays in the lake is
# quarantined again by every run, so older records add nothing.
KEEP_QUARANTINE_RUNS = 30


class RunLog:
    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir) / "state"

    def _read(self, name: str, table) -> pl.DataFrame:
        path = self.dir / f"{name}.parquet"
        if not path.exists():
            return pl.DataFrame(schema=table.polars_schema)
        frame = read_stored_parquet(path)
        # A log written before a nullable column was added reads it as null.
        added = [c for c in table.columns if c.name not in frame.columns and c.nullable]
        return table.conform(frame.with_columns([pl.lit(None, c.polars_type).alias(c.name) for c in added]))

    def runs(self) -> pl.DataFrame:
        return self._read("pipeline_runs", PIPELINE_RUNS)

    def ingest_log(self) -> pl.DataFrame:
        return self._read("ingest_log", INGEST_LOG)

    def record_run(self, row: dict) -> None:
        runs = self.runs()
        new = PIPELINE_RUNS.conform(pl.DataFrame([row], schema=PIPELINE_RUNS.polars_schema))
        merged = pl.concat([runs.filter(pl.col("run_id") != row["run_id"]), new]).sort("started_at")
        atomic_write_parquet(merged, self.dir / "pipeline_runs.parquet")

    def mark_interrupted(self, published: str | None = None) -> list[str]:
        """Runs still 'running' were killed: only the holder of the run lock calls this.

        ``published`` is the run the data directory currently publishes: a run
        killed after its publish switch but before it recorded success did
        publish everything, so it is marked succeeded, not interrupted.
        """
        runs = self.runs()
        stuck = runs.filter(pl.col("status") == "running")
        if stuck.is_empty():
            return []
        running = pl.col("status") == "running"
        was_published = running & (pl.col("run_id") == published)
        marked = runs.with_columns(
            pl.when(was_published).then(pl.lit("succeeded"))
            .when(running).then(pl.lit("interrupted"))
            .otherwise(pl.col("status"))
            .alias("status"),
            pl.when(was_published).then(pl.lit(None, pl.String))
            .when(running).then(pl.lit("the process ended before the run finished (killed or crashed)"))
            .otherwise(pl.col("error"))
            .alias("error"),
        )
        atomic_write_parquet(marked, self.dir / "pipeline_runs.parquet")
        return stuck["run_id"].to_list()

    def mark_cancelled(self, run_id: str, reason: str) -> bool:
        """Record ``run_id`` cancelled if it is still 'running' (a stop that could not wait for the run)."""
        runs = self.runs()
        hit = (pl.col("run_id") == run_id) & (pl.col("status") == "running")
        if runs.filter(hit).is_empty():
            return False
        from datetime import UTC, datetime

        marked = runs.with_columns(
            pl.when(hit).then(pl.lit("cancelled")).otherwise(pl.col("status")).alias("status"),
            pl.when(hit).then(pl.lit(reason)).otherwise(pl.col("error")).alias("error"),
            pl.when(hit).then(pl.lit(datetime.now(UTC))).otherwise(pl.col("finished_at")).alias("finished_at"),
        )
        atomic_write_parquet(PIPELINE_RUNS.conform(marked), self.dir / "pipeline_runs.parquet")
        return True

    def status(self, run_id: str) -> str | None:
        hit = self.runs().filter(pl.col("run_id") == run_id)
        return hit["status"][0] if hit.height else None

    def record_ingest(self, rows: pl.DataFrame) -> None:
        if rows.is_empty():
            return
        old = self.ingest_log()
        run_ids = rows["run_id"].unique().implode()
        merged = pl.concat([old.filter(~pl.col("run_id").is_in(run_ids)), INGEST_LOG.conform(rows)])
        atomic_write_parquet(merged, self.dir / "ingest_log.parquet")

    def quarantine(self) -> pl.DataFrame:
        return self._read("quarantine", QUARANTINE)

    def record_quarantine(self, run_id: str, rows: pl.DataFrame | None) -> pl.DataFrame:
        """Stamp this run's quarantine rows with ``run_id``, persist them; returns the kept history.

        Recorded even when the run fails later, so a failed run still tells
        which input rows it held back.
        """
        rows = rows if rows is not None else pl.DataFrame(schema=QUARANTINE.polars_schema)
        new = QUARANTINE.conform(rows.with_columns(pl.lit(run_id).alias("run_id")))
        old = self.quarantine().filter(pl.col("run_id") != run_id)
        recent = self.runs().sort("started_at")["run_id"].tail(KEEP_QUARANTINE_RUNS).implode()
        merged = pl.concat([old.filter(pl.col("run_id").is_in(recent)), new])
        atomic_write_parquet(merged, self.dir / "quarantine.parquet")
        return merged


def summarize_runs(runs: pl.DataFrame, limit: int = 20) -> pl.DataFrame:
    """The newest ``limit`` runs, newest first, with what an operator scans for."""
    return (
        runs.sort("started_at", descending=True)
        .head(limit)
        .select(
            "run_id",
            pl.col("started_at").dt.strftime("%Y-%m-%d %H:%M:%S").alias("started_utc"),
            "status",
            "source",
            # Correlations under the two conventions differ; an operator comparing runs must see which.
            "crypto_close",
            "as_of",
            ((pl.col("finished_at") - pl.col("started_at")).dt.total_milliseconds() / 1000).round(1).alias("seconds"),
            "rows_written",
            "audit",
            "stage_seconds",
            pl.col("error").str.slice(0, 120),
            "code_version",
        )
    )
