"""What a run imports before Prefect starts its flow (issue #13 item 6, docs/performance.md).

Not timed (the machine is shared): the module sets are the regression guard.
The heavy libraries the first stages need are imported when first used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Seconds of import each, none needed before the flow body runs.
NOT_AT_START = ("exchange_calendars", "pandas", "dataframely", "sqlalchemy", "matplotlib", "jinja2", "statsmodels",
                "yfinance", "ccxt")


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300,
                          check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_flow_leaves_the_heavy_libraries_for_later():
    loaded = _loaded_after("import flows.cli, flows.nightly, flows.backfill")
    assert "prefect" in loaded and "polars" in loaded  # the probe sees what it imports
    assert loaded.isdisjoint(NOT_AT_START), sorted(loaded & set(NOT_AT_START))


def test_the_first_stages_still_get_the_calendar_and_the_row_screen():
    # What the lazy imports defer must still work when first used.
    loaded = _loaded_after(
        "from datetime import date\n"
        "from flows.calendar import sessions\n"
        "from warehouse.quality import compile_table\n"
        "from contracts.tables import TABLES\n"
        "assert sessions(date(2024, 12, 23), date(2024, 12, 27)).len() == 4  # Christmas is no session\n"
        "compile_table(TABLES['fact_prices'], date(2024, 12, 27))"
    )
    assert {"exchange_calendars", "dataframely"} <= loaded



def test_a_run_starts_its_flow_with_the_imported_modules_out_of_the_collectors_way(tmp_path):
    # flows.cli.settle_imports: each full collection of a run walked every object of Prefect, pydantic and
    # polars again; frozen, they are skipped. They are given back when the pipeline is done, so the exit frees
    # them: left frozen, DuckDB's nanobind reports every object it still holds as "leaked" on stderr.
    probe = (
        "import gc, sys\n"
        "import duckdb\n"
        "import flows.nightly\n"
        "seen = {}\n"
        "def nightly(**kwargs):\n"
        "    seen['frozen'] = gc.get_freeze_count()\n"
        "    duckdb.connect().sql('select 1').fetchall()\n"
        "    raise RuntimeError('the probe stops here')\n"
        "flows.nightly.nightly = nightly\n"
        f"sys.argv = ['xasset', 'run', '--source', 'sample', '--data-dir', {str(tmp_path / 'data')!r}]\n"
        "from flows.cli import app\n"
        "try:\n"
        "    app()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('FROZEN', seen['frozen'], gc.get_freeze_count())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "XASSET_"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=env)
    assert "the probe stops here" in done.stdout + done.stderr, done.stderr[-2000:]
    frozen, after = map(int, done.stdout.split("FROZEN")[-1].split()[:2])
    assert frozen > 100_000, frozen  # the imported modules' objects (~150,000), not a handful
    assert after == 0
    assert "leaked" not in done.stderr, done.stderr[-2000:]
