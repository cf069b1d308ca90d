"""tests/conftest.py's harness: what a test session starts ends with it, also when pytest gets SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]

# A session like a real one: the in-process Prefect API (prefect_harness) and a process in a
# session of its own (tests.flows.test_deployments.Proc, as `xasset serve` is started), stopped
# in a `finally`. It says when both are up, then waits to be killed.
INNER = '''
import os
import sys
import time
from pathlib import Path

from tests.flows.test_deployments import Proc


def test_holds_a_server_and_a_process(prefect_harness, tmp_path):
    from prefect.settings import PREFECT_API_URL

    child = Proc([sys.executable, "-c", "import time; time.sleep(900)"], dict(os.environ), tmp_path / "child.log")
    try:
        Path(os.environ["INNER_READY"]).write_text(PREFECT_API_URL.value())
        time.sleep(900)
    finally:
        child.stop()
'''


@pytest.mark.process
def test_sigterm_to_pytest_stops_the_prefect_harness_and_the_processes_its_tests_started(tmp_path):
    ready = tmp_path / "ready"
    (tmp_path / "test_inner.py").write_text(INNER)
    # A PREFECT_API_URL in the environment (a developer's server) must not keep the harness's own
    # server from dying with pytest; nothing answers on port 9.
    env = {**os.environ, "INNER_READY": str(ready), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    log = tmp_path / "inner.log"
    inner = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
        cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    started: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 300  # the harness migrates a fresh database on a loaded machine
        while not ready.exists():
            assert inner.poll() is None, f"the inner session ended early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the inner session never got ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        started = psutil.Process(inner.pid).children(recursive=True)
        commands = [" ".join(p.cmdline()) for p in started]
        assert any("--factory prefect.server" in c for c in commands), commands  # the harness's API server
        assert any("time.sleep(900)" in c for c in commands), commands  # the test's own process
        inner.send_signal(signal.SIGTERM)
        inner.wait(timeout=120)
        _, alive = psutil.wait_procs(started, timeout=30)
        assert not alive, f"left running after SIGTERM to pytest: {alive}\n{log.read_text()[-3000:]}"
        out = log.read_text()
        assert "KeyboardInterrupt" in out and "left processes running" not in out, out[-3000:]
    finally:
        for p in started:  # whatever the assertions found, nothing of the inner session outlives this test
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        if inner.poll() is None:
            os.killpg(inner.pid, signal.SIGKILL)
            inner.wait(timeout=30)


@pytest.mark.process
def test_sigterm_answered_by_prefect_inside_a_flow_run_stops_the_session_too(tmp_path):
    """Prefect's SIGTERM bridge raises TerminationSignal out of the test: no further test runs."""
    (tmp_path / "test_inner.py").write_text(
        "import signal\n"
        "from prefect.exceptions import TerminationSignal\n\n"
        "def test_in_a_flow_run():\n    raise TerminationSignal(signal.SIGTERM)\n\n"
        "def test_never_run():\n    pass\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "tests.conftest", "-rA",
         "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert "1 failed" in done.stdout and "test_never_run" not in done.stdout, done.stdout[-3000:]
    assert "Interrupted: pytest got SIGTERM" in done.stdout, done.stdout[-3000:]
