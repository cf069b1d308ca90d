"""``xasset serve`` end to end: a real local Prefect server, the serve process, a run through the API."""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.flows.test_deployments import TERMINAL, Proc, free_port, server_env, wait_for

# Not the default schedule: proves the CLI's --cron/--timezone reach the server.
CRON, TIMEZONE = "0 18 * * 1-5", "America/New_York"


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(900)
def test_serve_registers_its_schedule_and_runs_a_triggered_flow(tmp_path):
    port = free_port()
    # The served deployment polls for runs every 10 s by default.
    api, env = server_env(tmp_path, port, PREFECT_RUNNER_POLL_FREQUENCY="2")
    data = tmp_path / "data"
    server = Proc([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                  env, tmp_path / "server.log")
    serve = None
    try:
        wait_for("the Prefect server to answer", answering(server, f"{api}/health"), timeout=240)
        serve = Proc([sys.executable, "-m", "flows.cli", "serve", "--source", "sample", "--data-dir", str(data),
                      "--cron", CRON, "--timezone", TIMEZONE], env, tmp_path / "serve.log")
        wait_for("xasset serve to register its deployment",
                 answering(serve, f"{api}/deployments/name/nightly/nightly-served"), timeout=240)

        with httpx.Client(base_url=api, timeout=30) as client:
            deployment = client.get("/deployments/name/nightly/nightly-served").raise_for_status().json()
            assert [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"]) for s in deployment["schedules"]] \
                == [(CRON, TIMEZONE, True)]
            assert deployment["parameters"] == {"source": "sample", "data_dir": str(data.resolve())}
            # A short history keeps the run quick; the deployment's source and data_dir still apply.
            run = client.post(
                f"/deployments/{deployment['id']}/create_flow_run",
                json={"parameters": {"start": "2015-06-01", "as_of": "2016-03-31"}},
            ).raise_for_status().json()
            assert run["parameters"]["data_dir"] == str(data.resolve())

            def finished():
                state = client.get(f"/flow_runs/{run['id']}").raise_for_status().json()["state"]
                if serve.p.poll() is not None:
                    raise AssertionError(f"xasset serve exited:\n{serve.tail()}")
                return state if state and state["type"] in TERMINAL else None

            state = wait_for("the served flow run to finish", finished, timeout=420, interval=2)
        assert state["type"] == "COMPLETED", f"{state}\nserve log:\n{serve.tail()}"
    finally:
        if serve is not None:
            serve.stop()
        server.stop()

    # Stopped with its children (flow-run processes, multiprocessing's
    # resource tracker, which exits a moment after its parent): none is left.
    for proc in filter(None, (serve, server)):
        wait_for(f"every process of {proc.log.stem} to exit", lambda: not group_alive(proc.p.pid),
                 timeout=30, interval=0.5)

    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        rows, last = con.sql("SELECT count(*), max(date) FROM fact_prices").fetchall()[0]
        assert rows > 0 and last == date(2016, 3, 31)
        assert con.sql("SELECT list(status) FROM pipeline_runs").fetchall()[0][0] == ["succeeded"]
    finally:
        con.close()
