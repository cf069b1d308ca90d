"""prefect.yaml against a real local Prefect server, a process worker and the API."""

from __future__ import annotations

import inspect
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb
import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def deployments() -> dict[str, dict]:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return {d["name"]: d for d in spec["deployments"]}


def test_prefect_yaml_deployments_share_their_definitions():
    from flows.serve import NIGHTLY_CRON, NIGHTLY_TIMEZONE

    deps = deployments()
    assert set(deps) == {"nightly", "backfill"}
    for d in deps.values():
        assert d["work_pool"]["name"] == "xasset-process"
        assert d["concurrency_limit"]["limit"] == 1
        path, name = d["entrypoint"].split(":")
        assert (REPO / path).is_file() and not Path(path).is_absolute()
    assert deps["nightly"]["parameters"]["source"] == "live"
    [schedule] = deps["nightly"]["schedules"]
    assert (schedule["cron"], schedule["timezone"]) == (NIGHTLY_CRON, NIGHTLY_TIMEZONE)
    assert deps["backfill"]["schedules"] == []


def test_backfill_flow_requires_its_range():
    from flows.backfill import backfill

    params = inspect.signature(backfill.fn).parameters
    assert params["start"].default is inspect.Parameter.empty
    assert params["end"].default is inspect.Parameter.empty


def test_serve_schedule_has_a_time_zone():
    from flows.serve import nightly_schedule

    schedule = nightly_schedule("0 18 * * 1-5", "America/New_York")
    assert (schedule.cron, schedule.timezone) == ("0 18 * * 1-5", "America/New_York")
    with pytest.raises(ValueError, match="unknown time zone"):
        nightly_schedule(timezone="Mars/Olympus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _RetryBusy(httpx.HTTPTransport):
    """What Prefect's own client does (prefect.client.base): a busy server answers
    429/502/503 (SQLite locked under load) and the request is tried again, with
    a bounded backoff; anything else is returned as is."""

    CODES = (429, 502, 503)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(8):
            response = super().handle_request(request)
            if response.status_code not in self.CODES:
                return response
            response.close()
            time.sleep(min(0.5 * 2**attempt, 10))
        return super().handle_request(request)


def api_client(api: str) -> httpx.Client:
    """A client of a test's Prefect server that rides out its busy answers like Prefect's client."""
    return httpx.Client(base_url=api, timeout=30, transport=_RetryBusy())


def wait_for(what: str, check, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")


class Proc:
    """A background process in its own group, stopped (with its children) on exit; on Linux it also
    gets SIGTERM when pytest dies (kill -9 included: no ``stop`` runs then)."""

    def __init__(self, args: list[str], env: dict, log: Path) -> None:
        from flows.serve import _die_with_parent

        self.log = log
        self.p = subprocess.Popen(
            args, env=env, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(timeout=30)

    def tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""


def cli(args: list[str], env: dict, timeout: float = 180) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "prefect", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def server_env(tmp_path: Path, port: int, **extra: str) -> tuple[str, dict[str, str]]:
    """The API address and an environment for a local server on ``port`` and the processes talking to it."""
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "XASSET_"))}
    env |= {
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        # Only the runs a test triggers: never a scheduled nightly against live data.
        "PREFECT_API_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        **extra,
    }
    return api, env


def answering(proc: Proc, url: str):
    """A check for ``wait_for``: ``url`` answers 200; fails at once if ``proc`` died."""
    def check() -> bool:
        if proc.p.poll() is not None:
            raise AssertionError(f"{proc.log.name} exited:\n{proc.tail()}")
        try:
            return httpx.get(url, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    return check


@contextmanager
def local_server(tmp_path: Path, **extra: str):
    """A real ``prefect server start`` on a free 127.0.0.1 port, stopped on exit (also when the test fails).

    Yields the API address, the environment for processes talking to it, and the server process.
    """
    port = free_port()
    api, env = server_env(tmp_path, port, **extra)
    server = Proc([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                  env, tmp_path / "server.log")
    try:
        wait_for("the Prefect server to answer", answering(server, f"{api}/health"), timeout=240)
        yield api, env, server
    finally:
        server.stop()


@pytest.mark.timeout(900)
def test_deploy_and_run_nightly_through_a_server_and_worker(tmp_path):
    port = free_port()
    api, env = server_env(
        tmp_path, port,
        XASSET_REPO_DIR=str(REPO),
        # The process worker starts flow runs with the `python` on PATH.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    data = tmp_path / "data"
    server = Proc([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                  env, tmp_path / "server.log")
    worker = None
    try:
        def healthy():
            if server.p.poll() is not None:
                raise AssertionError(f"server exited:\n{server.tail()}")
            try:
                return httpx.get(f"{api}/health", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("the Prefect server to answer", healthy, timeout=240)
        cli(["work-pool", "create", "xasset-process", "--type", "process"], env)
        cli(["--no-prompt", "deploy", "--all"], env)

        with api_client(api) as client:
            nightly = client.get("/deployments/name/nightly/nightly").raise_for_status().json()
            assert nightly["entrypoint"] == "flows/nightly.py:nightly"
            assert [s["schedule"]["timezone"] for s in nightly["schedules"]] == ["UTC"]
            assert client.get("/deployments/name/backfill/backfill").raise_for_status().json()["schedules"] == []
            run = client.post(
                f"/deployments/{nightly['id']}/create_flow_run",
                json={"parameters": {"source": "sample", "start": "2015-06-01", "as_of": "2016-03-31",
                                     "data_dir": str(data)}},
            ).raise_for_status().json()

            worker = Proc([sys.executable, "-m", "prefect", "worker", "start", "--pool", "xasset-process"],
                          env, tmp_path / "worker.log")

            def finished():
                state = client.get(f"/flow_runs/{run['id']}").raise_for_status().json()["state"]
                if worker.p.poll() is not None:
                    raise AssertionError(f"worker exited:\n{worker.tail()}")
                return state if state and state["type"] in TERMINAL else None

            state = wait_for("the flow run to finish", finished, timeout=420, interval=2)
        assert state["type"] == "COMPLETED", f"{state}\nworker log:\n{worker.tail()}"
    finally:
        if worker is not None:
            worker.stop()
        server.stop()

    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        assert con.sql("SELECT max(date) FROM fact_prices").fetchall()[0][0] == date(2016, 3, 31)
        assert con.sql("SELECT count(*) FROM mart_rolling_correlation WHERE correlation IS NOT NULL").fetchall()[0][0] > 0
        assert con.sql("SELECT list(status) FROM pipeline_runs").fetchall()[0][0] == ["succeeded"]
    finally:
        con.close()
