"""The run log and ingest log, kept beside the warehouse so failed runs are recorded too.

A failed run never publishes a warehouse, so its record cannot live only in
the published database: ``<data dir>/state/*.parquet`` holds every run, and each
published warehouse carries a copy.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from warehouse.files import atomic_write_parquet
from warehouse.tables import INGEST_LOG, PIPELINE_RUNS


class RunLog:
    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir) / "state"

    def _read(self, name: str, table) -> pl.DataFrame:
        path = self.dir / f"{name}.parquet"
        return table.conform(pl.read_parquet(path)) if path.exists() else pl.DataFrame(schema=table.polars_schema)

    def runs(self) -> pl.DataFrame:
        return self._read("pipeline_runs", PIPELINE_RUNS)

    def ingest_log(self) -> pl.DataFrame:
        return self._read("ingest_log", INGEST_LOG)

    def record_run(self, row: dict) -> None:
        runs = self.runs()
        new = PIPELINE_RUNS.conform(pl.DataFrame([row], schema=PIPELINE_RUNS.polars_schema))
        merged = pl.concat([runs.filter(pl.col("run_id") != row["run_id"]), new]).sort("started_at")
        atomic_write_parquet(merged, self.dir / "pipeline_runs.parquet")

    def record_ingest(self, rows: pl.DataFrame) -> None:
        if rows.is_empty():
            return
        old = self.ingest_log()
        run_ids = rows["run_id"].unique().implode()
        merged = pl.concat([old.filter(~pl.col("run_id").is_in(run_ids)), INGEST_LOG.conform(rows)])
        atomic_write_parquet(merged, self.dir / "ingest_log.parquet")
