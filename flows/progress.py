"""Stage progress of a run, for whoever is watching (the CLI's progress bars).

The flow calls ``emit``; listeners subscribed in the same process get every
event. Events are emitted from the flow's own thread as tasks complete, so a
run on Dask reports progress the same way as one on the thread pool.
``retrying`` is emitted by the live source where a request is retried: in
this process on the thread pool; a Dask worker's retries reach only its log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

STAGES = ("extract", "land", "transform", "load", "audit", "publish")


@dataclass(frozen=True)
class Progress:
    stage: str
    done: int
    total: int
    note: str = ""


@dataclass(frozen=True)
class Retry:
    """A source request failed and is retried after ``wait_s``: the operator sees why a stage stalls."""

    what: str
    attempt: int
    wait_s: float
    note: str


Listener = Callable[[Progress | Retry], None]
_listeners: list[Listener] = []


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def emit(stage: str, done: int, total: int, note: str = "") -> None:
    _send(Progress(stage, done, total, note))


def retrying(what: str, attempt: int, wait_s: float, note: str) -> None:
    _send(Retry(what, attempt, wait_s, note))


def _send(event: Progress | Retry) -> None:
    for listener in list(_listeners):
        try:
            listener(event)
        except Exception:  # a broken display must never fail a run
            pass
