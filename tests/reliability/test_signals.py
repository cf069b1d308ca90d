"""Ctrl-C, SIGTERM and kill -9 of a real ``xasset run``, and runs that overlap.

Every run here is a real process (tests/reliability/pausing_cli.py) frozen at a
known stage, then signalled the way an operator or a service manager does it:
Ctrl-C at a terminal reaches the whole foreground process group, SIGTERM (and
kill -9) the run's process. Claims: the run stops within a bounded wait, says
so in one line without a traceback, is recorded ``cancelled``, leaves the
published warehouse byte for byte as it was, and leaves no process behind,
Prefect's temporary API server included, even after kill -9.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from datetime import date

import polars as pl
import psutil
import pytest

from flows.nightly import nightly
from reliability_harness import REPO, START_TIMEOUT, cli_env, published, start_paused, temp_leftovers, xasset_cmd

pytestmark = pytest.mark.usefixtures("prefect_harness")

D1, D2 = date(2019, 6, 28), date(2019, 7, 31)
# Generous bounds for a loaded machine; the design stops in about
# XASSET_STOP_GRACE_SECONDS (6 s) at worst, measured in docs/operations.md.
STOP_BOUND_S = 30
GONE_BOUND_S = 30


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    data = tmp_path_factory.mktemp("signals")
    nightly(source="sample", as_of=D1, data_dir=str(data))
    return data


def run_args(data, as_of: date = D2) -> tuple[str, ...]:
    # Each test its own as-of: a run that got past extraction cached it, and a
    # later run to the same date would not fetch (nor pause there) at all.
    return ("run", "--source", "sample", "--as-of", str(as_of), "--data-dir", str(data))


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def server_children(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if "flows.ephemeral_server" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    left = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p)
        except psutil.NoSuchProcess:
            pass
    return left


def wait_gone(procs: list[psutil.Process], within: float = GONE_BOUND_S) -> list[psutil.Process]:
    deadline = time.monotonic() + within
    while alive(procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = alive(procs)
    for p in left:  # never leave them running, even when the test fails
        p.kill()
    return left


def newest_run(data) -> dict:
    runs = pl.read_parquet(data / "state" / "pipeline_runs.parquet").sort("started_at")
    return runs.row(-1, named=True)


def stderr_lines(stderr: str) -> list[str]:
    return [
        line for line in stderr.splitlines()
        if line.strip() and not line.startswith("running sample pipeline") and " done (" not in line
    ]


@pytest.mark.parametrize(
    ("point", "how", "as_of"),
    [
        ("extract", "ctrl-c", date(2019, 7, 1)),     # a worker thread blocked in the source: the main thread cannot wait for it
        ("transform", "ctrl-c", date(2019, 7, 2)),   # the main thread itself busy
        ("extract", "sigterm", date(2019, 7, 3)),
        ("stage", "sigterm", date(2019, 7, 5)),      # outputs half staged
        ("load", "sigterm", date(2019, 7, 11)),      # inside a DuckDB query, which turns the stop into its own error
    ],
)
def test_signal_stops_the_run_cleanly(data, prefect_home, tmp_path, point, how, as_of):
    before = published(data)
    paused = start_paused(prefect_home, point, tmp_path / "paused", *run_args(data, as_of), new_session=True)
    proc = paused.proc
    children = descendants(proc.pid)
    assert server_children(children), "the run's Prefect API server should be running"
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # a terminal delivers Ctrl-C to the whole foreground group
        expected = 128 + signal.SIGINT
    else:
        proc.send_signal(signal.SIGTERM)
        expected = 128 + signal.SIGTERM
    try:
        out, err = proc.communicate(timeout=STOP_BOUND_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        wait_gone(children, 5)
        pytest.fail(f"xasset did not stop within {STOP_BOUND_S} s of {how} at {point}")
    assert not wait_gone(children), "a process the run started outlived it"
    assert proc.returncode == expected, err
    assert "Traceback" not in err + out
    lines = stderr_lines(err)
    assert len(lines) == 1, lines
    name = "SIGINT" if how == "ctrl-c" else "SIGTERM"
    assert lines[0].startswith("cancelled: run ") and f"cancelled by {name}; nothing published" in lines[0], lines
    run = newest_run(data)
    assert run["run_id"] in lines[0]
    assert (run["status"], run["error"]) == ("cancelled", f"cancelled by {name}; nothing published")
    assert run["finished_at"] is not None
    assert published(data) == before


def test_sigterm_stops_a_run_whose_output_nobody_reads_any_more(data, prefect_home, tmp_path):
    """The run's reader is gone (a closed terminal, a killed log pipe): stdout and stderr are broken
    pipes. Stopped where only the watchdog can end it (a worker thread blocked in the source), the
    run still ends within the bound, with SIGTERM's code, recorded cancelled. It used to raise
    BrokenPipeError on its one line, in the watchdog's thread, which kept the stop's lock: the run
    then sat idle for good, deaf to a second SIGTERM."""
    before = published(data)
    paused = start_paused(prefect_home, "extract", tmp_path / "paused", *run_args(data, date(2019, 7, 9)))
    proc = paused.proc
    children = descendants(proc.pid)
    proc.stdout.close()
    proc.stderr.close()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=STOP_BOUND_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        wait_gone(children, 5)
        pytest.fail(f"xasset did not stop within {STOP_BOUND_S} s of SIGTERM with nobody reading its output")
    assert not wait_gone(children), "a process the run started outlived it"
    assert code == 128 + signal.SIGTERM
    run = newest_run(data)
    assert (run["status"], run["error"]) == ("cancelled", "cancelled by SIGTERM; nothing published")
    assert published(data) == before


def test_kill_9_leaves_no_process_and_the_next_run_cleans_up(data, prefect_home, tmp_path):
    paused = start_paused(prefect_home, "stage", tmp_path / "paused", *run_args(data, date(2019, 7, 8)))
    children = descendants(paused.proc.pid)
    servers = server_children(children)
    assert servers, "the run's Prefect API server should be running"
    killed_run = newest_run(data)
    assert killed_run["status"] == "running"
    paused.kill()
    assert not wait_gone(children), "Prefect's server outlived a kill -9 of its run"
    assert temp_leftovers(data), "a run killed while staging leaves its staging directory"
    # The next run finds the leftovers of the killed one and deals with them.
    nightly(source="sample", as_of=D1, data_dir=str(data))
    runs = pl.read_parquet(data / "state" / "pipeline_runs.parquet")
    status = dict(zip(runs["run_id"], runs["status"], strict=True))
    assert status[killed_run["run_id"]] == "interrupted"
    assert "running" not in status.values()
    assert temp_leftovers(data) == []


def test_ctrl_c_during_prefect_start_up_stops_promptly(data, tmp_path):
    """A fresh Prefect home migrates its database first (the slowest start-up): Ctrl-C in the middle of it."""
    home = tmp_path / "fresh-prefect-home"
    proc = subprocess.Popen(
        xasset_cmd(*run_args(data, date(2019, 7, 9))), env=cli_env(home), cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    seen: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not server_children(seen) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            seen = descendants(proc.pid) or seen
        assert server_children(seen), "the run never started its Prefect API server"
        time.sleep(1)  # the server is starting: migrating its fresh database
        before_runs = (data / "state" / "pipeline_runs.parquet").read_bytes()
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=STOP_BOUND_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
        left = wait_gone(seen)
    assert not left
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "Traceback" not in err + out
    lines = stderr_lines(err)
    assert len(lines) == 1 and lines[0].startswith("cancelled: "), lines
    if "before the run started" in lines[0]:  # Prefect was still starting: no run was recorded
        assert (data / "state" / "pipeline_runs.parquet").read_bytes() == before_runs


def test_a_second_run_queues_behind_the_first_and_then_runs(data, prefect_home, tmp_path):
    """A real second process holds the run lock; ``xasset run`` waits, says so, and proceeds once it is free."""
    holder = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "python"), "-c",
         "import sys; from pathlib import Path; from warehouse.lock import RunLock\n"
         f"with RunLock(Path({str(data)!r})):\n    print('held', flush=True); sys.stdin.readline()"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    err_path = tmp_path / "stderr"
    try:
        assert holder.stdout.readline().strip() == "held"
        with open(err_path, "w") as err_file:
            run = subprocess.Popen(
                xasset_cmd(*run_args(data, date(2019, 7, 10))), env=cli_env(prefect_home, XASSET_LOCK_WAIT_SECONDS="600"),
                cwd=REPO,
                stdout=subprocess.PIPE, stderr=err_file, text=True,
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while "waiting up to 600 s" not in err_path.read_text() and time.monotonic() < deadline:
                assert run.poll() is None, err_path.read_text()
                time.sleep(0.2)
            assert f"another xasset run (pid {holder.pid}) is using {data}" in err_path.read_text().replace("\n", "")
            holder.stdin.write("\n")  # the first run ends: its lock is released
            holder.stdin.flush()
            out, _ = run.communicate(timeout=START_TIMEOUT + 120)
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=30)
    assert run.returncode == 0, err_path.read_text()
    assert "succeeded" in out
    assert "Traceback" not in err_path.read_text()


def test_lock_wait_gives_up_after_its_bound_with_one_line(tmp_path):
    from warehouse.lock import RunLock, RunLockedError

    said: list[str] = []
    with RunLock(tmp_path):
        holder = os.getpid()
        # flock locks belong to the open file: a second open in this process conflicts like another run.
        with pytest.raises(RunLockedError, match=rf"another xasset run \(pid {holder}\) .*waited 0\.3 s"):
            with RunLock(tmp_path, wait_s=0.3, on_wait=said.append):
                pass
    assert len(said) == 1 and "waiting up to 0.3 s" in said[0]


def test_lock_wait_proceeds_when_the_holder_releases(tmp_path):
    from warehouse.lock import RunLock

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with RunLock(tmp_path):
            held.set()
            release.wait(60)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(30)
        said: list[str] = []

        def on_wait(message: str) -> None:
            said.append(message)
            release.set()  # the holder finishes while we wait

        with RunLock(tmp_path, wait_s=120, on_wait=on_wait):
            assert (tmp_path / ".xasset.lock").read_text() == str(os.getpid())
        assert len(said) == 1
    finally:
        release.set()
        t.join(30)


def test_a_stop_during_the_publish_switch_waits_for_its_end():
    from flows import cancel

    timeouts: list[int] = []
    previous = cancel.install(60, timeouts.append)
    try:
        steps = []
        with pytest.raises(cancel.RunCancelled) as stopped:
            with cancel.shielded():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)  # the handler has run by now, and did not interrupt the block
                steps.append("switched")
            steps.append("after")  # never reached: the stop takes effect right after the block
        assert steps == ["switched"]
        assert stopped.value.signum == signal.SIGTERM and cancel.describe(stopped.value) == "cancelled by SIGTERM"
        os.kill(os.getpid(), signal.SIGINT)  # a second signal: stop at once, no waiting for the grace period
        time.sleep(0.2)
        assert timeouts == [signal.SIGTERM]
    finally:
        cancel.uninstall(previous)
    assert signal.getsignal(signal.SIGINT) is previous[signal.SIGINT]
    # The stop ended with its run: a later error in this process is that error, not a cancellation.
    assert cancel.requested() is None and cancel.swallowed(RuntimeError("Query interrupted")) is None


def test_an_error_after_the_stop_was_raised_is_the_cancellation():
    from flows import cancel

    previous = cancel.install(60, lambda signum: None)
    try:
        assert cancel.swallowed(RuntimeError("boom")) is None  # no stop requested: an error is an error
        with pytest.raises(cancel.RunCancelled):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        stop = cancel.swallowed(RuntimeError("Query interrupted"))
        assert isinstance(stop, cancel.RunCancelled) and stop.signum == signal.SIGTERM
        assert cancel.swallowed(stop) is None  # the cancellation itself is not "swallowed"
    finally:
        cancel.uninstall(previous)
