"""The allocation policy file: strict YAML into ``transforms.policy`` objects.

Loaded from ``flows/policy.yaml`` by default. Unknown keys are errors, so a
typo (``band_mx``) cannot silently fall back to a default band; every error
names the file and the key, with sleeves and mixes named rather than numbered.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flows.universe import check_symbol
from flows.yamlfile import read_yaml_mapping
from transforms.policy import Mix, Policy, PolicyError, RegimeRule, Sleeve

DEFAULT_POLICY_PATH = Path(__file__).with_name("policy.yaml")


class PolicyFileError(ValueError):
    """A policy file that cannot be used; the message names file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SleeveSpec(_Strict):
    name: str = Field(min_length=1)
    members: list[str] = []
    band_min: float
    band_max: float
    reserve: bool = False

    @field_validator("members")
    @classmethod
    def _symbols(cls, v: list[str]) -> list[str]:
        return [check_symbol(s) for s in v]


class MixSpec(_Strict):
    name: str = Field(min_length=1)
    method: str  # checked by transforms.policy.Mix, the one list of methods
    weights: dict[str, float] | None = None
    # checked by transforms.policy.Mix; None: the policy's rebalance_trigger
    rebalance_trigger: str | None = None

    @field_validator("weights")
    @classmethod
    def _symbols(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None:
            for s in v:
                check_symbol(s)
        return v


# Defaults live on the transforms dataclass only, so the file and the code cannot disagree.
_DEFAULT = {f.name: f.default for f in dataclasses.fields(Policy) if f.init}


class PolicySpec(_Strict):
    name: str = Field(min_length=1)
    within_sleeve: str = _DEFAULT["within_sleeve"]
    rebalance: str = _DEFAULT["rebalance"]
    rebalance_trigger: str = _DEFAULT["rebalance_trigger"]
    vol_window: int = _DEFAULT["vol_window"]
    min_vol_observations: int = _DEFAULT["min_vol_observations"]
    cost_bps: float = _DEFAULT["cost_bps"]
    risk_free: float = _DEFAULT["risk_free"]
    sleeves: list[SleeveSpec]
    # The transforms dataclass itself: its defaults and checks are the only copy.
    regime: RegimeRule | None = None
    mixes: list[MixSpec]

    def to_policy(self) -> Policy:
        return Policy(
            name=self.name,
            sleeves=tuple(
                Sleeve(s.name, tuple(s.members), s.band_min, s.band_max, s.reserve)
                for s in self.sleeves
            ),
            mixes=tuple(
                Mix(m.name, m.method, tuple((m.weights or {}).items()), m.rebalance_trigger)
                for m in self.mixes
            ),
            within_sleeve=self.within_sleeve,
            rebalance=self.rebalance,
            rebalance_trigger=self.rebalance_trigger,
            vol_window=self.vol_window,
            min_vol_observations=self.min_vol_observations,
            cost_bps=self.cost_bps,
            risk_free=self.risk_free,
            regime=self.regime,
        )


def _where(loc: tuple[Any, ...], raw: Any) -> str:
    """``sleeves.1.band_min`` -> ``sleeves.midcap_alts.band_min`` when the item has a name."""
    parts: list[str] = []
    node = raw
    for p in loc:
        name = None
        if isinstance(p, int) and isinstance(node, list) and 0 <= p < len(node):
            node = node[p]
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                name = node["name"]
        elif isinstance(node, dict):
            node = node.get(p)
        else:
            node = None
        parts.append(name if name is not None else str(p))
    return ".".join(parts)


def load_policy(path: Path | str | None = None) -> Policy:
    path = Path(path) if path else DEFAULT_POLICY_PATH
    raw = read_yaml_mapping(path, "policy", PolicyFileError)
    try:
        spec = PolicySpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_where(e['loc'], raw)}: {e['msg']}" for e in exc.errors())
        raise PolicyFileError(f"policy file {path}: {problems}") from exc
    try:
        return spec.to_policy()
    except PolicyError as exc:
        raise PolicyFileError(f"policy file {path}: {exc}") from exc
