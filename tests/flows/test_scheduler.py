"""The Prefect server's *scheduler* creates runs of the project's deployments, and a worker runs them.

Not the stored cron: the flow runs the scheduler service creates on its own
(``auto_scheduled``). A dependency set under which the scheduler fails (Prefect
3.8 with SQLAlchemy 2.1 raised "Can't evaluate bulk DML statement" on every
loop and created nothing) fails these tests, whatever the lock resolves to.
"""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path

import duckdb
import httpx
import pytest
import yaml

from tests.flows.test_deployments import api_client, REPO, TERMINAL, Proc, cli, local_server, wait_for

# The scheduler's main loop runs every 60 s; a deployment just created or
# updated is scheduled by its 5 s "recent deployments" loop. Generous for a busy machine.
SCHEDULER_WAIT_S = 300


def scheduler_env(tmp_path: Path) -> dict[str, str]:
    return {
        # server_env turns the scheduler off for the other server tests; these test it.
        "PREFECT_API_SERVICES_SCHEDULER_ENABLED": "true",
        "XASSET_REPO_DIR": str(REPO),
        # The process worker starts flow runs with the `python` on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def auto_scheduled_runs(client: httpx.Client, deployment_id: str) -> list[dict]:
    runs = client.post("/flow_runs/filter", json={
        "deployments": {"id": {"any_": [deployment_id]}},
        "sort": "EXPECTED_START_TIME_ASC",
    }).raise_for_status().json()
    return [r for r in runs if r["auto_scheduled"]]


def server_errors(log: str) -> str:
    return "\n".join(line for line in log.splitlines() if "Error" in line)[-2000:]


@pytest.mark.timeout(900)
def test_scheduler_creates_nightly_runs_from_prefect_yaml(tmp_path):
    with local_server(tmp_path, **scheduler_env(tmp_path)) as (api, env, server):
        # The documented way (prefect.yaml's header, docs/operations.md).
        cli(["work-pool", "create", "xasset-process", "--type", "process"], env)
        cli(["--no-prompt", "deploy", "--all"], env)

        with api_client(api) as client:
            nightly = client.get("/deployments/name/nightly/nightly").raise_for_status().json()
            backfill = client.get("/deployments/name/backfill/backfill").raise_for_status().json()

            def scheduled():
                runs = auto_scheduled_runs(client, nightly["id"])
                return runs if len(runs) >= 3 else None

            try:
                runs = wait_for("the scheduler to create nightly runs", scheduled, timeout=SCHEDULER_WAIT_S, interval=3)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; server errors:\n{server_errors(server.tail())}") from None

            assert {r["state"]["type"] for r in runs} == {"SCHEDULED"}
            # Nightly at 01:30 UTC, one run per day, with the deployment's parameters.
            starts = [r["expected_start_time"] for r in runs]
            assert all(s.endswith("T01:30:00Z") for s in starts), starts
            assert len(set(s[:10] for s in starts)) == len(starts)
            assert all(r["parameters"] == {"source": "live"} for r in runs)
            # The unscheduled backfill gets none.
            assert auto_scheduled_runs(client, backfill["id"]) == []


def every_minute_prefect_yaml(tmp_path: Path, data: Path) -> Path:
    """The project's prefect.yaml (pull step, pool, entrypoint, concurrency) with its
    nightly deployment on a one-minute cron over the offline sample source."""
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    [nightly] = [d for d in spec["deployments"] if d["name"] == "nightly"]
    nightly |= {
        "name": "every-minute",
        "schedules": [{"cron": "* * * * *", "timezone": "UTC", "active": True}],
        "parameters": {"source": "sample", "start": "2015-06-01", "as_of": "2016-03-31", "data_dir": str(data)},
    }
    spec["deployments"] = [nightly]
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.timeout(900)
def test_worker_completes_a_scheduler_created_run(tmp_path):
    data = tmp_path / "data"
    worker = None
    with local_server(tmp_path, **scheduler_env(tmp_path)) as (api, env, server):
        try:
            cli(["work-pool", "create", "xasset-process", "--type", "process"], env)
            cli(["--no-prompt", "deploy", "--all", "--prefect-file", str(every_minute_prefect_yaml(tmp_path, data))], env)
            worker = Proc([sys.executable, "-m", "prefect", "worker", "start", "--pool", "xasset-process"],
                          env, tmp_path / "worker.log")

            with api_client(api) as client:
                deployment = client.get("/deployments/name/nightly/every-minute").raise_for_status().json()

                def first_finished():
                    if worker.p.poll() is not None:
                        raise AssertionError(f"worker exited:\n{worker.tail()}")
                    runs = auto_scheduled_runs(client, deployment["id"])
                    done = [r for r in runs if r["state"] and r["state"]["type"] in TERMINAL]
                    return done[0] if done else None

                try:
                    run = wait_for("a scheduler-created run to finish on the worker", first_finished,
                                   timeout=600, interval=3)
                except AssertionError as exc:
                    raise AssertionError(f"{exc}; server errors:\n{server_errors(server.tail())}\n"
                                         f"worker log:\n{worker.tail()}") from None
                # Stop further minutes from starting while the worker is shut down.
                client.patch(f"/deployments/{deployment['id']}", json={"paused": True}).raise_for_status()
            assert run["auto_scheduled"] and run["state"]["type"] == "COMPLETED", \
                f"{run['state']}\nworker log:\n{worker.tail()}"
        finally:
            if worker is not None:
                worker.stop()

    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        assert con.sql("SELECT max(date) FROM fact_prices").fetchall()[0][0] == date(2016, 3, 31)
        statuses = con.sql("SELECT list(status) FROM pipeline_runs").fetchall()[0][0]
        assert "succeeded" in statuses
    finally:
        con.close()
