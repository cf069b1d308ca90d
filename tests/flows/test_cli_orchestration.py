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
    assert "extract done (3/3)" in err and "land done (1/1)" in err
    assert "(2/3)" not in err, "unfinished stages print nothing off a terminal"
    progress.emit("load", 1, 1)  # nobody listening any more
    assert capsys.readouterr().err == ""


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
    assert bad_date.exit_code == 1 and "bad date" in bad_date.output
    files = runner.invoke(cli.app, ["backfill", "--start", "2015-01-01", "--end", "2016-01-01", "--source", "files"])
    assert files.exit_code == 1 and "not 'files'" in files.output
