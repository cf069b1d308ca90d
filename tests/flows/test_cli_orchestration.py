"""The operator commands added for orchestration: progress display, serve, backfill arguments."""

from __future__ import annotations

import os

from typer.testing import CliRunner

from flows import cli, progress


def test_stage_progress_reports_each_finished_stage_off_a_terminal(capsys):
    with cli.stage_progress():
        progress.emit("extract", 0, 3)
        progress.emit("extract", 2, 3)
        progress.emit("extract", 3, 3)
        progress.emit("land", 1, 1)
    err = capsys.readouterr().err
    assert "extract done (3/3) in " in err and "land done (1/1) in " in err
    assert "(2/3)" not in err, "unfinished stages print nothing off a terminal"
    progress.emit("load", 1, 1)  # nobody listening any more
    assert capsys.readouterr().err == ""


def test_each_stage_is_timed_from_its_own_start(capsys, monkeypatch):
    """Not from the start of the run: a stage's line and bar count from the stage's start event."""
    now = iter([100.0, 101.5, 110.0, 112.25, 112.25, 200.0, 203.0, 203.0])
    monkeypatch.setattr(cli.time, "monotonic", lambda: next(now))
    with cli.stage_progress():
        progress.emit("extract", 0, 2)   # 100.0: extract starts
        progress.emit("extract", 2, 2)   # 101.5: done in 1.5 s
        progress.emit("land", 0, 1)      # 110.0: land starts
        progress.emit("land", 1, 1)      # 112.25: done in 2.25 s
        progress.emit("extract", 0, 1)   # 112.25: a backfill's next chunk restarts extract
        progress.emit("extract", 1, 1)   # 200.0: 87.75 s
        progress.emit("transform", 1, 1)  # 203.0: a stage reported done at once took 0 s, not the run's age
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert lines == [
        "extract done (2/2) in 1.5 s", "land done (1/1) in 2.2 s", "extract done (1/1) in 87.8 s",
        "transform done (1/1) in 0.0 s",
    ]


def test_a_retried_request_is_one_line(capsys):
    with cli.stage_progress():
        progress.retrying("IWM", 1, 2.5, "IWM: attempt 1 of 4 failed (ConnectionError: reset); retrying in 2.5 s")
    assert capsys.readouterr().err.splitlines() == [
        "retry: IWM: attempt 1 of 4 failed (ConnectionError: reset); retrying in 2.5 s"
    ]


def test_a_broken_listener_never_fails_a_run():
    def broken(event):
        raise RuntimeError("display crashed")

    with progress.listening(broken):
        progress.emit("extract", 1, 1)


def test_serve_passes_schedule_and_parameters(monkeypatch, tmp_path):
    import flows.serve

    from contextlib import contextmanager

    seen = {}
    monkeypatch.setattr(cli, "prepare_prefect", lambda settings: None)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("PREFECT_API_URL", "unset below; restored after the test")
    monkeypatch.delenv("PREFECT_API_URL")

    @contextmanager
    def owned(home, timeout, say):  # no PREFECT_API_URL: serve starts and owns a server
        seen["home"] = home
        yield "http://127.0.0.1:1/api"
        seen["stopped"] = True

    def serve_nightly(params, cron, tz):
        seen.update(params=params, cron=cron, tz=tz, api=os.environ.get("PREFECT_API_URL"))

    monkeypatch.setattr(flows.serve, "owned_api_server", owned)
    monkeypatch.setattr(flows.serve, "serve_nightly", serve_nightly)
    result = CliRunner().invoke(
        cli.app, ["serve", "--source", "sample", "--timezone", "America/New_York", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert seen == {
        "home": tmp_path / "prefect",
        "params": {"source": "sample", "data_dir": str(tmp_path.resolve())},
        "cron": flows.serve.NIGHTLY_CRON,
        "tz": "America/New_York",
        "api": "http://127.0.0.1:1/api",
        "stopped": True,
    }


def test_serve_and_backfill_refuse_bad_arguments(tmp_path):
    runner = CliRunner()
    bad_tz = runner.invoke(cli.app, ["serve", "--timezone", "Mars/Olympus", "--data-dir", str(tmp_path)])
    assert bad_tz.exit_code == 1 and "unknown time zone" in bad_tz.output
    bad_date = runner.invoke(cli.app, ["backfill", "--start", "2015-13-01", "--end", "2016-01-01"])
    assert bad_date.exit_code == 2 and len(bad_date.stderr.splitlines()) == 1
    assert bad_date.stderr.startswith("error: Invalid value for '--start'") and "'2015-13-01'" in bad_date.stderr
    files = runner.invoke(cli.app, ["backfill", "--start", "2015-01-01", "--end", "2016-01-01", "--source", "files"])
    assert files.exit_code == 2 and len(files.stderr.splitlines()) == 1
    assert "'files' is not one of 'sample', 'live'" in files.stderr
