"""One home for defaults: Settings become mart parameters only in flows.params.mart_params,
and MartParams()' defaults are production's (tests and the benchmark build MartParams directly)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from contracts.vocabulary import DEFAULT_STABLECOINS
from flows.params import mart_params, spillover_params
from flows.policy import load_policy
from flows.settings import Settings
from transforms.marts import MartParams
from transforms.spillover import SpilloverParams

REPO = Path(__file__).resolve().parents[2]
# MartParams fields that are not production's by default, on purpose:
# - policy: MartParams() builds no allocation marts; production reads flows/policy.yaml (checked below);
# - correlation_block_size: how the correlations are partitioned over the task runner, an execution setting
#   (tests/transforms/test_marts.py proves no block size changes a bit).
NOT_DEFAULTS = {"policy", "correlation_block_size"}


@pytest.fixture
def default_settings(monkeypatch) -> Settings:
    import os

    for name in [n for n in os.environ if n.upper().startswith("XASSET_")]:
        monkeypatch.delenv(name)
    return Settings(_env_file=None)


def differences(got: MartParams, want: MartParams) -> list[str]:
    return [
        f"{f.name}: {getattr(got, f.name)!r} != {getattr(want, f.name)!r}"
        for f in dataclasses.fields(MartParams)
        if f.name not in NOT_DEFAULTS and getattr(got, f.name) != getattr(want, f.name)
    ]


def test_martparams_defaults_are_the_settings_defaults(default_settings):
    got = mart_params(default_settings)
    assert differences(got, MartParams()) == []
    assert spillover_params(default_settings) == SpilloverParams()
    # The fields left out differ as documented, not by accident.
    assert got.policy == load_policy() and MartParams().policy is None
    assert got.correlation_block_size == default_settings.transform_block_size


def test_production_tests_and_bench_share_one_stablecoin_set(default_settings):
    assert tuple(default_settings.stablecoins) == MartParams().stablecoins == DEFAULT_STABLECOINS
    assert {"USDT", "USDC", "DAI", "USDE", "FRAX", "EURC"} <= set(DEFAULT_STABLECOINS)


def test_a_setting_that_drifts_from_the_transform_default_is_caught(default_settings):
    drifted = default_settings.model_copy(update={"stablecoins": ["USDT"], "factor_min_sector_size": 7})
    assert differences(mart_params(drifted), MartParams()) == [
        f"stablecoins: ('USDT',) != {DEFAULT_STABLECOINS!r}",
        "factor_min_sector_size: 7 != 5",
    ]


def test_benchmarks_are_the_settings_or_else_the_universes(default_settings):
    from flows.universe import load_universe

    universe = load_universe().model_copy(update={"benchmarks": ("^GSPC",)})
    assert mart_params(default_settings, universe).benchmarks == ("^GSPC",)
    chosen = default_settings.model_copy(update={"benchmarks": ["^RUT"]})
    assert mart_params(chosen, universe).benchmarks == ("^RUT",)


def _calls_martparams(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) == "MartParams" or getattr(node.func, "attr", None) == "MartParams")
    ]


def test_only_flows_params_turns_settings_into_mart_parameters():
    found = {
        str(path.relative_to(REPO)): lines
        for package in ("flows", "bench")
        for path in sorted((REPO / package).rglob("*.py"))
        if (lines := _calls_martparams(path))
    }
    assert found == {"flows/params.py": _calls_martparams(REPO / "flows/params.py")}
    assert found["flows/params.py"]  # the check sees a call where there is one
