"""``xasset serve`` end to end: a real local Prefect server, the serve process, a run through the API."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.flows.test_deployments import api_client, TERMINAL, Proc, answering, free_port, server_env, wait_for

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

        with api_client(api) as client:
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


def processes_with(needle: str) -> list[int]:
    """Pids whose command line contains ``needle`` (from /proc: no third-party helper)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if needle in cmdline:
                pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="checks for leftover processes through /proc (Linux)")
@pytest.mark.timeout(900)
def test_serve_alone_starts_its_own_server_and_the_schedule_fires_twice(tmp_path):
    """No PREFECT_API_URL, nothing else running: serve starts a server, every-minute runs happen, Ctrl-C stops all."""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "XASSET_"))}
    env |= {"DO_NOT_TRACK": "1", "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    serve = Proc([sys.executable, "-m", "flows.cli", "serve", "--source", "sample", "--data-dir", str(data),
                  "--cron", "* * * * *"], env, tmp_path / "serve.log")
    port = None
    try:
        def serving() -> str | None:
            if serve.p.poll() is not None:
                raise AssertionError(f"xasset serve exited:\n{serve.tail()}")
            found = re.search(r"server ready after \d+ s: UI http://127\.0\.0\.1:(\d+)", serve.tail())
            return found.group(1) if found and "serving nightly" in serve.tail() else None

        port = wait_for("xasset serve to start its Prefect server", serving, timeout=300)
        api = f"http://127.0.0.1:{port}/api"
        with api_client(api) as client:
            seen: list[dict] = []

            def fired_twice():
                if serve.p.poll() is not None:
                    raise AssertionError(f"xasset serve exited:\n{serve.tail()}")
                try:
                    deployment = client.get("/deployments/name/nightly/nightly-served")
                except httpx.HTTPError:
                    return None
                if deployment.status_code != 200:
                    return None
                runs = client.post("/flow_runs/filter", json={
                    "deployments": {"id": {"any_": [deployment.json()["id"]]}},
                }).raise_for_status().json()
                seen[:] = runs
                failed = [r for r in runs if r["state"] and r["state"]["type"] in TERMINAL - {"COMPLETED"}]
                assert not failed, f"{failed[0]['state']}\nserve log:\n{serve.tail()}"
                completed = [r for r in runs if r["auto_scheduled"] and r["state"]["type"] == "COMPLETED"]
                return completed if len(completed) >= 2 else None

            try:
                fired = wait_for("two scheduled runs to complete", fired_twice, timeout=600, interval=3)
            except AssertionError as exc:  # say what the runs did, not only that time ran out
                states = [(r["name"], r["state"] and r["state"]["type"], r["state"] and r["state"]["message"])
                          for r in seen]
                raise AssertionError(f"{exc}\nruns: {states}\nserve log:\n{serve.tail()}") from None
            assert len({r["expected_start_time"] for r in fired}) == len(fired)

            # An ad-hoc `xasset run` on the same data directory meanwhile uses serve's server
            # instead of starting Prefect's temporary one. Pause the schedule so no run holds the lock.
            deployment = client.get("/deployments/name/nightly/nightly-served").raise_for_status().json()
            client.patch(f"/deployments/{deployment['id']}", json={"paused": True}).raise_for_status()

            def idle():
                runs = client.post("/flow_runs/filter", json={
                    "flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING"]}}}}).raise_for_status().json()
                return not runs

            wait_for("the served runs to finish", idle, timeout=300, interval=2)
            adhoc = subprocess.run(
                [sys.executable, "-m", "flows.cli", "run", "--source", "sample", "--start", "2024-01-02",
                 "--as-of", "2024-03-28", "--rewind", "--data-dir", str(data)],
                env=env, capture_output=True, text=True, timeout=600,
            )
            assert adhoc.returncode == 0, adhoc.stderr[-2000:]
            assert f"Prefect server {api}" in adhoc.stderr.replace("\n", "")
            flow_runs = client.post("/flow_runs/filter", json={}).raise_for_status().json()
            assert [r for r in flow_runs if r["deployment_id"] is None and r["state"]["type"] == "COMPLETED"]
        # Ctrl-C in a terminal: SIGINT to the foreground process group.
        os.killpg(serve.p.pid, signal.SIGINT)
        serve.p.wait(timeout=120)
    finally:
        serve.stop()

    assert serve.p.returncode == 0, serve.tail()
    # Nothing left: not the flow-run children (serve's group) nor the server it started (its own group).
    wait_for("every process of xasset serve to exit", lambda: not group_alive(serve.p.pid), timeout=60, interval=0.5)
    wait_for("the server xasset serve started to exit", lambda: not processes_with(f"--port {port}"),
             timeout=60, interval=0.5)
    assert "xasset serve stopped" in serve.tail()

    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        statuses = con.execute("SELECT list(status) FROM pipeline_runs").fetchone()[0]
        assert statuses.count("succeeded") >= 1
    finally:
        con.close()


def test_serve_refuses_a_configured_server_that_does_not_answer(tmp_path):
    """PREFECT_API_URL set but nothing listening: one line and exit 1, not Prefect's retries and traceback."""
    api = f"http://127.0.0.1:{free_port()}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "XASSET_"))} | {"PREFECT_API_URL": api}
    done = subprocess.run([sys.executable, "-m", "flows.cli", "serve", "--source", "sample",
                           "--data-dir", str(tmp_path / "data")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert f"the Prefect server at PREFECT_API_URL={api} does not answer" in done.stderr.replace("\n", "")
    assert "Traceback" not in done.stderr


def test_serve_checks_its_options_without_importing_prefect(tmp_path):
    """Prefect reads PREFECT_HOME and friends at import: nothing before prepare_prefect() may import it."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import flows.cli, flows.serve\n"
        "flows.serve.check_timezone('America/New_York')\n"
        "assert flows.serve.announced_api_server(Path(sys.argv[1])) is None\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
