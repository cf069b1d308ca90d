"""Institutional allocation policy: sleeves, bands and named mixes.

A policy is plain frozen data, validated when it is built, so an allocation
never starts from bands that cannot hold 100% or from a mix that names an
unknown method. ``flows.policy`` reads the YAML form; ``docs/allocation.md``
describes every field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# The reserve's zero-return leg, shown under this symbol in the outputs. It is
# reserved so that no real asset can shadow the cash leg.
CASH = "CASH"

METHODS = ("policy_mid", "inverse_vol", "regime_tilt", "fixed")
WITHIN_SLEEVE = ("equal", "inverse_vol")
REBALANCE_FREQUENCIES = ("weekly", "monthly", "quarterly")
# What makes a mix trade back to its targets (docs/allocation.md, section 6):
# the calendar only; a sleeve out of its band at a close (traded at the next
# close); or both, the institutional default.
REBALANCE_TRIGGERS = ("calendar", "bands", "bands_and_calendar")


class PolicyError(ValueError):
    """A policy that cannot be used; ``key`` locates the offending field."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def _check_fraction(key: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
        raise PolicyError(key, f"must be a number between 0 and 1, got {value!r}")


@dataclass(frozen=True)
class Sleeve:
    """A group of assets whose combined weight must stay in [band_min, band_max].

    The reserve sleeve with no members is cash; with members (stablecoins) it
    holds them like any other sleeve.
    """

    name: str
    members: tuple[str, ...]
    band_min: float
    band_max: float
    reserve: bool = False

    def __post_init__(self) -> None:
        key = f"sleeves.{self.name}"
        if not self.name:
            raise PolicyError("sleeves", "a sleeve needs a non-empty name")
        _check_fraction(f"{key}.band_min", self.band_min)
        _check_fraction(f"{key}.band_max", self.band_max)
        if self.band_min > self.band_max:
            raise PolicyError(
                f"{key}.band_min",
                f"band_min {self.band_min} is above band_max {self.band_max}",
            )
        if not self.members and not self.reserve:
            raise PolicyError(f"{key}.members", "a non-reserve sleeve needs at least one member")
        if len(set(self.members)) != len(self.members):
            raise PolicyError(f"{key}.members", "a member is listed twice")
        if CASH in self.members:
            raise PolicyError(
                f"{key}.members",
                f"{CASH!r} is the implicit cash leg; leave the reserve's members empty for cash",
            )

    @property
    def midpoint(self) -> float:
        return (self.band_min + self.band_max) / 2.0

    @property
    def is_cash(self) -> bool:
        return self.reserve and not self.members


@dataclass(frozen=True)
class RegimeRule:
    """Where ``regime_tilt`` reads its signal and how it reacts."""

    sleeve: str
    benchmark: str = "^RUT"
    asset: str = "ALTS"
    window_days: int = 90
    correlation_level: float = 0.3
    momentum_sessions: int = 63

    def __post_init__(self) -> None:
        if self.window_days < 2:
            raise PolicyError("regime.window_days", "must be at least 2")
        if self.momentum_sessions < 1:
            raise PolicyError("regime.momentum_sessions", "must be at least 1")
        if not (math.isfinite(self.correlation_level) and -1.0 <= self.correlation_level <= 1.0):
            raise PolicyError("regime.correlation_level", "must be between -1 and 1")


@dataclass(frozen=True)
class Mix:
    """One named way of turning the policy (or fixed weights) into targets."""

    name: str
    method: str
    # Only for method "fixed": (symbol, weight) pairs summing to 1.
    weights: tuple[tuple[str, float], ...] = ()
    # Overrides the policy's rebalance_trigger for this mix; None: the policy's.
    rebalance_trigger: str | None = None

    def __post_init__(self) -> None:
        key = f"mixes.{self.name}"
        if not self.name:
            raise PolicyError("mixes", "a mix needs a non-empty name")
        if self.method not in METHODS:
            raise PolicyError(f"{key}.method", f"unknown method {self.method!r}; use one of {METHODS}")
        if self.rebalance_trigger is not None and self.rebalance_trigger not in REBALANCE_TRIGGERS:
            raise PolicyError(
                f"{key}.rebalance_trigger",
                f"unknown {self.rebalance_trigger!r}; use one of {REBALANCE_TRIGGERS}",
            )
        if self.method == "fixed":
            if not self.weights:
                raise PolicyError(f"{key}.weights", "a fixed mix needs weights")
            symbols = [s for s, _ in self.weights]
            if len(set(symbols)) != len(symbols):
                raise PolicyError(f"{key}.weights", "a symbol is listed twice")
            for s, w in self.weights:
                _check_fraction(f"{key}.weights.{s}", w)
            total = sum(w for _, w in self.weights)
            if abs(total - 1.0) > 1e-9:
                raise PolicyError(f"{key}.weights", f"weights sum to {total:.6g}, not 1")
        elif self.weights:
            raise PolicyError(f"{key}.weights", f"only fixed mixes take weights, not {self.method!r}")


@dataclass(frozen=True)
class Policy:
    name: str
    sleeves: tuple[Sleeve, ...]
    mixes: tuple[Mix, ...]
    within_sleeve: str = "equal"
    rebalance: str = "monthly"
    # Institutional policies trade a sleeve back when it leaves its band, and
    # also on the calendar: the default of every mix without its own trigger.
    rebalance_trigger: str = "bands_and_calendar"
    # Volatility lookback in crypto (UTC) days: mixes are valued on that calendar.
    vol_window: int = 90
    min_vol_observations: int = 20
    cost_bps: float = 0.0
    risk_free: float = 0.0
    regime: RegimeRule | None = None
    sleeve_index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_policy(self)
        object.__setattr__(self, "sleeve_index", {s.name: i for i, s in enumerate(self.sleeves)})

    def sleeve(self, name: str) -> Sleeve:
        return self.sleeves[self.sleeve_index[name]]

    def trigger(self, mix: Mix) -> str:
        """The mix's rebalance trigger: its own, else the policy's."""
        return mix.rebalance_trigger or self.rebalance_trigger

    @property
    def symbols(self) -> tuple[str, ...]:
        """Every asset the policy can hold, sleeves first, then fixed mixes."""
        seen: dict[str, None] = {}
        for s in self.sleeves:
            seen.update(dict.fromkeys(s.members))
        for m in self.mixes:
            seen.update(dict.fromkeys(sym for sym, _ in m.weights))
        return tuple(seen)


def validate_policy(policy: Policy) -> None:
    """Raise ``PolicyError`` naming the field of the first problem found."""
    if not policy.sleeves:
        raise PolicyError("sleeves", "a policy needs at least one sleeve")
    names = [s.name for s in policy.sleeves]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PolicyError("sleeves", f"sleeve names must be unique: {dupes}")
    owner: dict[str, str] = {}
    for s in policy.sleeves:
        for m in s.members:
            if m in owner:
                raise PolicyError(
                    f"sleeves.{s.name}.members",
                    f"{m!r} is already a member of sleeve {owner[m]!r}",
                )
            owner[m] = s.name
    reserves = [s.name for s in policy.sleeves if s.reserve]
    if len(reserves) > 1:
        raise PolicyError("sleeves", f"at most one reserve sleeve, got {reserves}")

    lo = sum(s.band_min for s in policy.sleeves)
    hi = sum(s.band_max for s in policy.sleeves)
    # The tolerance only absorbs decimal-to-binary rounding of bands like 0.1.
    if lo > 1.0 + 1e-9:
        parts = " + ".join(f"{s.name} {s.band_min:g}" for s in policy.sleeves)
        raise PolicyError("sleeves", f"bands cannot sum to 100%: band_min total {lo:.6g} > 1 ({parts})")
    if hi < 1.0 - 1e-9:
        parts = " + ".join(f"{s.name} {s.band_max:g}" for s in policy.sleeves)
        raise PolicyError("sleeves", f"bands cannot sum to 100%: band_max total {hi:.6g} < 1 ({parts})")

    if policy.within_sleeve not in WITHIN_SLEEVE:
        raise PolicyError("within_sleeve", f"unknown {policy.within_sleeve!r}; use one of {WITHIN_SLEEVE}")
    if policy.rebalance not in REBALANCE_FREQUENCIES:
        raise PolicyError("rebalance", f"unknown {policy.rebalance!r}; use one of {REBALANCE_FREQUENCIES}")
    if policy.rebalance_trigger not in REBALANCE_TRIGGERS:
        raise PolicyError(
            "rebalance_trigger", f"unknown {policy.rebalance_trigger!r}; use one of {REBALANCE_TRIGGERS}"
        )
    if policy.vol_window < 2:
        raise PolicyError("vol_window", "must be at least 2 days")
    if not 2 <= policy.min_vol_observations <= policy.vol_window:
        raise PolicyError("min_vol_observations", "must be between 2 and vol_window")
    if not (math.isfinite(policy.cost_bps) and policy.cost_bps >= 0):
        raise PolicyError("cost_bps", f"must be a non-negative number, got {policy.cost_bps!r}")
    if not math.isfinite(policy.risk_free):
        raise PolicyError("risk_free", "must be a finite number")

    if not policy.mixes:
        raise PolicyError("mixes", "a policy needs at least one mix")
    mix_names = [m.name for m in policy.mixes]
    dupes = sorted({n for n in mix_names if mix_names.count(n) > 1})
    if dupes:
        raise PolicyError("mixes", f"mix names must be unique: {dupes}")
    if policy.regime is None and any(m.method == "regime_tilt" for m in policy.mixes):
        raise PolicyError("regime", "a regime_tilt mix needs a regime section")
    if policy.regime is not None:
        if policy.regime.sleeve not in names:
            raise PolicyError("regime.sleeve", f"unknown sleeve {policy.regime.sleeve!r}; sleeves are {names}")
        if any(s.reserve for s in policy.sleeves if s.name == policy.regime.sleeve):
            raise PolicyError("regime.sleeve", "the reserve cannot be the tilted sleeve")
    for m in policy.mixes:
        for sym, _ in m.weights:
            if sym == CASH:
                raise PolicyError(f"mixes.{m.name}.weights", f"{CASH!r} is reserved for the cash leg")
