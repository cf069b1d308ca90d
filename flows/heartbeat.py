"""Prefect's flow-run heartbeats, kept on and stopped as soon as the run ends.

The server's crashed-run detection needs a flow run's heartbeat events
(``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``, 180 s by default), so they stay on.
Prefect 3.8's heartbeat thread (``prefect.flow_engine._send_heartbeats``) sleeps
between beats in one-second ``time.sleep`` steps and the engine joins it when
the run ends: every flow run waited out the step in progress, 0-1 s of wall
time after its last stage (docs/performance.md). ``end_heartbeats_promptly``
puts in the same heartbeat loop (same events, same interval, same check for a
finished run, same 2 s bound on the join) waiting on the stop event instead,
so the join returns at once.

It replaces a private function of Prefect, so it does so only while Prefect's
engine still has the parts the loop uses and the signature it calls; otherwise
Prefect's own heartbeats run unchanged.
"""

from __future__ import annotations

import contextvars
import inspect
import threading
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

# What the loop below uses of Prefect's engine.
ENGINE_PARTS = ("heartbeat_seconds", "_build_heartbeat_event_template", "_emit_flow_run_heartbeat")


def _fits(flow_engine: Any) -> bool:
    original = getattr(flow_engine, "_send_heartbeats", None)
    engine = getattr(flow_engine, "BaseFlowRunEngine", None)
    if original is None or engine is None or not hasattr(flow_engine, "MINIMUM_HEARTBEAT_INTERVAL"):
        return False
    if not all(hasattr(engine, part) for part in ENGINE_PARTS):
        return False
    return list(inspect.signature(original).parameters) == ["engine", "join_on_exit"]


def end_heartbeats_promptly() -> bool:
    """Let flow runs of this process stop their heartbeat thread at once; whether it is in place."""
    from prefect import flow_engine

    if getattr(flow_engine._send_heartbeats, "prompt_stop", False):
        return True
    if not _fits(flow_engine):
        return False

    @contextmanager
    def send_heartbeats(engine: Any, join_on_exit: bool = True) -> Generator[None, None, None]:
        every = engine.heartbeat_seconds
        if every is None:
            yield
            return
        every = max(every, flow_engine.MINIMUM_HEARTBEAT_INTERVAL)
        resource, related = engine._build_heartbeat_event_template()
        stop = threading.Event()

        def beat() -> None:
            while not stop.is_set():
                run = engine.flow_run
                if run and run.state and run.state.is_final():
                    return
                try:
                    engine._emit_flow_run_heartbeat(resource, related)
                except Exception:
                    engine.logger.debug("Failed to emit heartbeat", exc_info=True)
                stop.wait(every)  # Prefect's loop: time.sleep(1) `every` times, the join waiting out the last

        # The caller's context (its settings, hence its API URL), as Prefect's thread has.
        thread = threading.Thread(target=contextvars.copy_context().run, args=(beat,), daemon=True,
                                  name="flow-run-heartbeat")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            if join_on_exit:
                thread.join(timeout=2)

    send_heartbeats.prompt_stop = True  # type: ignore[attr-defined]
    send_heartbeats.__wrapped__ = flow_engine._send_heartbeats  # type: ignore[attr-defined]
    flow_engine._send_heartbeats = send_heartbeats
    return True
