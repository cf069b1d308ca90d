"""Policy validation: every unusable policy is rejected naming what is wrong."""

from __future__ import annotations

import dataclasses

import pytest

from transforms.policy import CASH, Mix, Policy, PolicyError, RegimeRule, Sleeve

CORE = Sleeve("core", ("BTC", "ETH"), 0.40, 0.60)
ALTS = Sleeve("midcap_alts", ("SOL", "ADA", "XRP", "AVAX", "LINK", "DOT"), 0.25, 0.35)
RESERVE = Sleeve("reserve", (), 0.05, 0.35, reserve=True)
MIXES = (
    Mix("policy_mid", "policy_mid"),
    Mix("regime_tilt", "regime_tilt"),
    Mix("btc_eth", "fixed", (("BTC", 0.6), ("ETH", 0.4))),
)


def policy(**changes) -> Policy:
    base = dict(
        name="t",
        sleeves=(CORE, ALTS, RESERVE),
        mixes=MIXES,
        regime=RegimeRule("midcap_alts"),
    )
    base.update(changes)
    return Policy(**base)


def test_valid_policy_builds_and_lists_symbols():
    p = policy()
    assert p.symbols == ("BTC", "ETH", "SOL", "ADA", "XRP", "AVAX", "LINK", "DOT")
    assert p.sleeve("reserve").is_cash
    assert p.sleeve("core").midpoint == pytest.approx(0.5)


def test_sum_of_band_minimums_above_one_is_rejected_naming_sleeves():
    with pytest.raises(PolicyError, match=r"cannot sum to 100%.*band_min total 1\.05") as e:
        policy(
            sleeves=(
                dataclasses.replace(CORE, band_min=0.6, band_max=0.7),
                ALTS,
                dataclasses.replace(RESERVE, band_min=0.2),
            )
        )
    assert "core 0.6" in str(e.value) and e.value.key == "sleeves"


def test_sum_of_band_maximums_below_one_is_rejected():
    with pytest.raises(PolicyError, match=r"band_max total 0\.95 < 1 \(core 0\.5 \+ midcap_alts 0\.3"):
        policy(
            sleeves=(
                dataclasses.replace(CORE, band_max=0.5),
                dataclasses.replace(ALTS, band_max=0.3),
                dataclasses.replace(RESERVE, band_max=0.15),
            )
        )


def test_bands_summing_to_exactly_one_are_accepted():
    p = policy(
        sleeves=(
            dataclasses.replace(CORE, band_min=0.6, band_max=0.6),
            dataclasses.replace(ALTS, band_min=0.3, band_max=0.3),
            dataclasses.replace(RESERVE, band_min=0.1, band_max=0.1),
        )
    )
    assert len(p.sleeves) == 3


@pytest.mark.parametrize(
    ("kwargs", "key", "text"),
    [
        (dict(band_min=0.7, band_max=0.6), "sleeves.core.band_min", "above band_max"),
        (dict(band_min=-0.1), "sleeves.core.band_min", "between 0 and 1"),
        (dict(band_max=1.5), "sleeves.core.band_max", "between 0 and 1"),
        (dict(band_max=float("nan")), "sleeves.core.band_max", "between 0 and 1"),
        (dict(members=()), "sleeves.core.members", "at least one member"),
        (dict(members=("BTC", "BTC")), "sleeves.core.members", "listed twice"),
        (dict(members=("BTC", CASH)), "sleeves.core.members", "implicit cash"),
    ],
)
def test_bad_sleeve_is_rejected_naming_the_sleeve_and_key(kwargs, key, text):
    with pytest.raises(PolicyError, match=text) as e:
        dataclasses.replace(CORE, **kwargs)
    assert e.value.key == key
    assert str(e.value).startswith(key)


def test_member_in_two_sleeves_is_rejected():
    with pytest.raises(PolicyError, match="'ETH' is already a member of sleeve 'core'") as e:
        policy(sleeves=(CORE, dataclasses.replace(ALTS, members=("SOL", "ETH")), RESERVE))
    assert e.value.key == "sleeves.midcap_alts.members"


def test_duplicate_sleeve_names_and_two_reserves_are_rejected():
    with pytest.raises(PolicyError, match="unique"):
        policy(sleeves=(CORE, dataclasses.replace(ALTS, name="core"), RESERVE))
    with pytest.raises(PolicyError, match="at most one reserve"):
        policy(sleeves=(CORE, dataclasses.replace(ALTS, reserve=True), RESERVE))


@pytest.mark.parametrize(
    ("make", "key", "text"),
    [
        (lambda: Mix("m", "momentum"), "mixes.m.method", "unknown method"),
        (lambda: Mix("m", "fixed"), "mixes.m.weights", "needs weights"),
        (lambda: Mix("m", "fixed", (("BTC", 0.5), ("ETH", 0.4))), "mixes.m.weights", "sum to 0.9"),
        (lambda: Mix("m", "fixed", (("BTC", 1.2), ("ETH", -0.2))), "mixes.m.weights.BTC", "between 0 and 1"),
        (lambda: Mix("m", "fixed", (("BTC", 0.5), ("BTC", 0.5))), "mixes.m.weights", "twice"),
        (lambda: Mix("m", "policy_mid", (("BTC", 1.0),)), "mixes.m.weights", "only fixed"),
        (lambda: Mix("m", "policy_mid", rebalance_trigger="drift"), "mixes.m.rebalance_trigger", "unknown 'drift'"),
    ],
)
def test_bad_mix_is_rejected_naming_the_mix(make, key, text):
    with pytest.raises(PolicyError, match=text) as e:
        make()
    assert e.value.key == key


def test_policy_level_fields_are_checked():
    with pytest.raises(PolicyError, match="regime_tilt mix needs a regime"):
        policy(regime=None)
    with pytest.raises(PolicyError, match="unknown sleeve 'alts'") as e:
        policy(regime=RegimeRule("alts"))
    assert e.value.key == "regime.sleeve"
    with pytest.raises(PolicyError, match="reserve cannot be the tilted"):
        policy(regime=RegimeRule("reserve"))
    with pytest.raises(PolicyError, match="within_sleeve"):
        policy(within_sleeve="risk_parity")
    with pytest.raises(PolicyError, match="rebalance"):
        policy(rebalance="daily")
    with pytest.raises(PolicyError, match="unknown 'band'") as e:
        policy(rebalance_trigger="band")
    assert e.value.key == "rebalance_trigger"
    with pytest.raises(PolicyError, match="min_vol_observations"):
        policy(min_vol_observations=500)
    with pytest.raises(PolicyError, match="cost_bps"):
        policy(cost_bps=-1.0)
    with pytest.raises(PolicyError, match="mix names must be unique"):
        policy(mixes=(Mix("a", "policy_mid"), Mix("a", "inverse_vol")))
    with pytest.raises(PolicyError, match="at least one mix"):
        policy(mixes=())
    with pytest.raises(PolicyError, match="reserved for the cash leg"):
        policy(mixes=(Mix("c", "fixed", ((CASH, 1.0),)),))
    with pytest.raises(PolicyError, match="correlation_level"):
        RegimeRule("midcap_alts", correlation_level=1.5)


def test_rebalance_trigger_defaults_to_bands_and_calendar_and_a_mix_may_override():
    p = policy(mixes=(Mix("a", "policy_mid"), Mix("b", "policy_mid", rebalance_trigger="calendar")))
    assert p.rebalance_trigger == "bands_and_calendar"
    assert [p.trigger(m) for m in p.mixes] == ["bands_and_calendar", "calendar"]
