"""The live source's retry policy (tenacity underneath): attempts, waits, the deadline, the retry lines."""

from __future__ import annotations

import random

import pytest

from flows import progress
from flows.sources.live_config import DeadlineExceeded, Deadline, RetryPolicy, _DEADLINE

from .conftest import Sleeps


def flaky(failures: int, exc: type[Exception] = ConnectionError):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= failures:
            raise exc(f"failure {len(calls)}")
        return "ok"

    return fn, calls


def policy(sleeps, attempts=4, jitter=0.25, seed=7):
    return RetryPolicy(attempts, 1.0, 5.0, jitter, sleeps, random.Random(seed))


def test_retries_until_success_with_jittered_doubling_waits_and_announces_each():
    sleeps, seen = Sleeps(), []
    fn, calls = flaky(3)
    with progress.listening(seen.append):
        result, attempts = policy(sleeps).call(fn, lambda e: True, "IWM")
    assert (result, attempts, len(calls)) == ("ok", 4, 4)
    # base 1 s doubling (1, 2, 4), capped at 5, each scaled by a factor in [0.75, 1.25]
    for wait, nominal in zip(sleeps, (1, 2, 4), strict=True):
        assert 0.75 * nominal <= wait <= 1.25 * nominal
    assert [(r.what, r.attempt, r.wait_s) for r in seen] == [("IWM", n, w) for n, w in zip((1, 2, 3), sleeps)]
    assert all(isinstance(r, progress.Retry) for r in seen)
    assert seen[0].note.startswith("IWM: attempt 1 of 4 failed (ConnectionError: failure 1); retrying in ")


def test_the_same_seed_gives_the_same_waits():
    a, b = Sleeps(), Sleeps()
    policy(a).call(flaky(3)[0], lambda e: True)
    policy(b).call(flaky(3)[0], lambda e: True)
    assert a == b and len(a) == 3


def test_out_of_attempts_raises_the_last_error_with_its_attempt_count():
    sleeps = Sleeps()
    fn, calls = flaky(10)
    with pytest.raises(ConnectionError, match="failure 3") as info:
        policy(sleeps, attempts=3).call(fn, lambda e: True)
    assert info.value.attempts == 3 and len(sleeps) == 2 and len(calls) == 3


def test_a_non_retryable_error_is_not_retried():
    sleeps = Sleeps()
    fn, calls = flaky(10, ValueError)
    with pytest.raises(ValueError) as info:
        policy(sleeps).call(fn, lambda e: not isinstance(e, ValueError))
    assert info.value.attempts == 1 and sleeps == [] and len(calls) == 1


def test_no_retry_sleeps_past_the_deadline():
    """A wait longer than the time left ends the request with the deadline, naming its last error."""
    clock = [0.0]
    sleeps = Sleeps()

    def sleep(s):
        sleeps(s)
        clock[0] += s

    token = _DEADLINE.set(Deadline(2.5, clock=lambda: clock[0]))
    try:
        fn, calls = flaky(10)
        with pytest.raises(DeadlineExceeded, match="last attempt: ConnectionError: failure 2") as info:
            RetryPolicy(5, 1.0, 5.0, 0.0, sleep).call(fn, lambda e: True)
    finally:
        _DEADLINE.reset(token)
    # waits 1 s (1 s spent, 1.5 left), then 2 s would pass the deadline: stop after the 2nd attempt
    assert sleeps == [1.0] and len(calls) == 2 and info.value.attempts == 2


def test_nothing_starts_after_the_deadline():
    token = _DEADLINE.set(Deadline(0.0, clock=lambda: 5.0))
    try:
        fn, calls = flaky(0)
        with pytest.raises(DeadlineExceeded):
            policy(Sleeps()).call(fn, lambda e: True)
    finally:
        _DEADLINE.reset(token)
    assert calls == []
