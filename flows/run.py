"""What a run is to its caller: the summary it returns, and the error it fails with."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from flows.artifacts import RunReport


class PipelineError(RuntimeError):
    """A run that cannot complete; the message is meant for the operator as is."""


@dataclass
class RunSummary:
    run_id: str
    source: str
    as_of: date
    status: str
    rows_written: int = 0
    table_rows: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    synthetic: bool = False
    warehouse_path: Path | None = None
    marts_dir: Path | None = None
    error: str | None = None
    report: RunReport | None = None
    # First date rebuilt when the run built on the published one; None: full rebuild.
    incremental_from: date | None = None
    # Assets whose last bar is too far before the as-of (artifacts.stale_symbols); None: not judged.
    stale: list[dict] | None = None
