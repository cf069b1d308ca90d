"""A flow run's heartbeats stay on and their thread ends with the run (flows/heartbeat.py).

Not timed: Prefect's own loop is made to sleep until the test lets it go, so
a loop that sleeps instead of waiting on its stop event is still alive after
the flow returns, whatever the machine's speed.
"""

from __future__ import annotations

import threading

import pytest
from prefect import flow
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from flows.heartbeat import end_heartbeats_promptly


@pytest.fixture
def held_sleep(monkeypatch):
    """``time.sleep`` inside Prefect's flow engine blocks until the test ends (bounded)."""
    from prefect import flow_engine

    release = threading.Event()

    class Clock:
        def __getattr__(self, name):
            import time

            return getattr(time, name)

        @staticmethod
        def sleep(seconds):
            release.wait(60)

    monkeypatch.setattr(flow_engine, "time", Clock())
    yield
    release.set()


@pytest.fixture
def beats(monkeypatch):
    """Every heartbeat the engine emits, with the thread that emitted it."""
    from prefect import flow_engine

    seen: list[threading.Thread] = []
    original = flow_engine.BaseFlowRunEngine._emit_flow_run_heartbeat

    def emit(self, *args, **kwargs):
        seen.append(threading.current_thread())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(flow_engine.BaseFlowRunEngine, "_emit_flow_run_heartbeat", emit)
    return seen


@pytest.fixture
def prompt(monkeypatch):
    from prefect import flow_engine

    monkeypatch.setattr(flow_engine, "_send_heartbeats", flow_engine._send_heartbeats)  # undone after the test
    assert end_heartbeats_promptly()


@flow
def short_run() -> int:
    return 1


def test_the_heartbeat_thread_ends_with_the_flow_run(prefect_harness, held_sleep, beats, prompt):
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        assert short_run() == 1
    assert beats, "the run emitted no heartbeat: heartbeats must stay on for the server's crashed-run detection"
    # Prefect's own loop is still in its (held) one-second sleep here; ours waited on the stop event.
    assert not any(t.is_alive() for t in beats)


def test_installed_once_and_prefect_kept_underneath(prompt):
    from prefect import flow_engine

    installed = flow_engine._send_heartbeats
    assert end_heartbeats_promptly() and flow_engine._send_heartbeats is installed
    assert installed.__wrapped__.__module__ == "prefect.flow_engine"


def test_a_prefect_that_changed_keeps_its_own_heartbeats(monkeypatch):
    from prefect import flow_engine

    def other(engine, join_on_exit=True, interval=None):  # a signature this module does not know
        yield

    monkeypatch.setattr(flow_engine, "_send_heartbeats", other)
    assert not end_heartbeats_promptly()
    assert flow_engine._send_heartbeats is other
