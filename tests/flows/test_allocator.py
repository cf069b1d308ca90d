"""Polars' allocator gets the run's delay before Polars starts (flows/allocator.py).

The real seam is checked in fresh interpreters: jemalloc itself prints the options
it runs with (``stats_print``) when the process exits.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flows import allocator
from flows.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def polars_not_loaded(monkeypatch):
    # configure() does nothing once Polars is loaded (as it is in this process).
    monkeypatch.delitem(sys.modules, "polars")


def test_the_default_delay_goes_into_polars_allocator_variable(polars_not_loaded):
    env: dict[str, str] = {}
    assert allocator.configure(env) == "dirty_decay_ms:3000,muzzy_decay_ms:3000"
    assert env == {allocator.JEMALLOC_ENV: "dirty_decay_ms:3000,muzzy_decay_ms:3000"}


def test_the_setting_goes_last_so_it_wins_and_other_options_are_kept(polars_not_loaded):
    env = {allocator.SETTING_ENV: "-1", allocator.JEMALLOC_ENV: "narenas:2,dirty_decay_ms:10"}
    allocator.configure(env)
    assert env[allocator.JEMALLOC_ENV] == "narenas:2,dirty_decay_ms:10,dirty_decay_ms:-1,muzzy_decay_ms:-1"


def test_a_child_process_inheriting_the_variable_adds_nothing(polars_not_loaded):
    # As Polars leaves it in the parent: its defaults first, then ours.
    inherited = "dirty_decay_ms:500,muzzy_decay_ms:1000,dirty_decay_ms:3000,muzzy_decay_ms:3000"
    env = {allocator.JEMALLOC_ENV: inherited}
    allocator.configure(env)
    assert env[allocator.JEMALLOC_ENV] == inherited


@pytest.mark.parametrize("value", ["abc", "-2", "1.5"])
def test_a_bad_value_changes_nothing_here_and_the_settings_name_it(polars_not_loaded, monkeypatch, value):
    env = {allocator.SETTING_ENV: value}
    assert allocator.configure(env) is None
    assert allocator.JEMALLOC_ENV not in env
    monkeypatch.setenv(allocator.SETTING_ENV, value)
    with pytest.raises(ValueError, match="allocator_decay_ms"):
        Settings()


def test_nothing_changes_once_polars_is_loaded():
    import polars  # noqa: F401

    env: dict[str, str] = {}
    assert allocator.configure(env) is None
    assert env == {}


def _jemalloc_decay(code: str, **env: str) -> tuple[str, str]:
    """The dirty and muzzy delays jemalloc reports at the exit of a fresh interpreter running ``code``."""
    environ = {k: v for k, v in os.environ.items() if k not in (allocator.JEMALLOC_ENV, allocator.SETTING_ENV)}
    environ |= {allocator.JEMALLOC_ENV: "stats_print:true", **env}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environ, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    dirty = re.search(r"opt\.dirty_decay_ms: (-?\d+)", done.stdout + done.stderr)
    muzzy = re.search(r"opt\.muzzy_decay_ms: (-?\d+)", done.stdout + done.stderr)
    assert dirty and muzzy, (done.stdout + done.stderr)[-2000:]
    return dirty.group(1), muzzy.group(1)


def test_polars_runs_with_the_setting_when_prefect_loads_the_flow_as_a_script():
    # As a deployment's flow run loads it: flows/nightly.py executed as a script, whose first import is
    # the flows package; without it Polars (imported a few lines later) keeps its own 500/1000 ms.
    code = (
        "from prefect.flows import load_flow_from_entrypoint\n"
        "load_flow_from_entrypoint('flows/nightly.py:nightly')\n"
        "import polars as pl\n"
        "pl.DataFrame({'a': range(1000)}).sum()\n"
    )
    assert _jemalloc_decay(code, **{allocator.SETTING_ENV: "1234"}) == ("1234", "1234")
    assert _jemalloc_decay(code) == ("3000", "3000")


def test_polars_runs_with_its_own_defaults_without_the_flows_package():
    # The probe above can tell: this is what the setting replaces.
    assert _jemalloc_decay("import polars as pl\npl.DataFrame({'a': [1]}).sum()\n") == ("500", "1000")
