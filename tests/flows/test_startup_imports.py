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


def test_a_run_against_a_prefect_server_imports_neither_sqlalchemy_nor_fastapi_to_start():
    # SQLAlchemy is for a local Prefect server's database (flows.prefect_db); FastAPI's encoder is what Prefect
    # stores a flow run's parameters with (flows.runners.plain_parameters gives the same for plain values).
    loaded = _loaded_after(
        "import os\n"
        "os.environ['PREFECT_API_URL'] = 'http://127.0.0.1:9/api'\n"
        "from datetime import date\n"
        "from flows.prefect_db import set_aside_if_corrupt\n"
        "assert set_aside_if_corrupt() is None\n"
        "from flows.nightly import nightly\n"
        "got = nightly.serialize_parameters(dict(source='files', paths=['in'], start=None, as_of=date(2024, 1, 2),\n"
        "                                          data_dir='d', rewind=False))\n"
        "assert got == dict(source='files', paths=['in'], start=None, as_of='2024-01-02', data_dir='d', rewind=False)\n"
    )
    assert "prefect" in loaded
    assert loaded.isdisjoint({"sqlalchemy", "fastapi"}), sorted(loaded & {"sqlalchemy", "fastapi"})


def test_plain_parameters_are_stored_as_prefects_encoder_stores_them():
    from datetime import date, datetime

    from fastapi.encoders import jsonable_encoder

    from flows.backfill import backfill
    from flows.nightly import nightly

    for flow_, params in (
        (nightly, dict(source="files", paths=["a", "b"], start=None, as_of=date(2024, 1, 2), data_dir="/x", rewind=True)),
        (backfill, dict(start=date(2020, 1, 1), end=date(2021, 1, 1), source="live", paths=None, data_dir=None)),
        (nightly, dict(source="sample", at=datetime(2024, 1, 2, 3, 4, 5), n=3, x=1.5, other={"a": [1, date(2024, 1, 1)]})),
    ):
        assert flow_.serialize_parameters(params) == {k: jsonable_encoder(v) for k, v in params.items()}


def test_a_finished_command_ends_after_every_exit_handler_without_teardown():
    # flows.cli.end_without_teardown: only in the command line's own process (``main``), after the other exit
    # handlers, in their order; the exit status is the run's.
    probe = (
        "import atexit\n"
        "import flows.cli as cli\n"
        "atexit.register(print, 'registered first, runs last', flush=True)\n"
        "atexit.register(print, 'registered later, runs first', flush=True)\n"
        "n = atexit._ncallbacks()\n"
        "cli.end_without_teardown()  # not the program: nothing changes\n"
        "assert atexit._ncallbacks() == n\n"
        "cli._AS_PROGRAM = True\n"
        "cli.end_without_teardown()\n"
        "print('done', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n") == ["done", "registered later, runs first", "registered first, runs last", ""]
