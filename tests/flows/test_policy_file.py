"""The policy file: the shipped default loads, and every bad file is named with its key."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from flows.policy import DEFAULT_POLICY_PATH, PolicyFileError, load_policy
from transforms.allocation import simulate_mixes


def test_default_policy_loads_as_documented():
    p = load_policy()
    assert [(s.name, s.band_min, s.band_max) for s in p.sleeves] == [
        ("core", 0.40, 0.60),
        ("midcap_alts", 0.25, 0.35),
        ("reserve", 0.05, 0.35),
    ]
    assert p.sleeve("core").members == ("BTC", "ETH")
    assert p.sleeve("midcap_alts").members == ("SOL", "ADA", "XRP", "AVAX", "LINK", "DOT")
    assert p.sleeve("reserve").is_cash
    assert {m.method for m in p.mixes} == {"policy_mid", "inverse_vol", "regime_tilt", "fixed"}
    fixed = {m.name: dict(m.weights) for m in p.mixes if m.method == "fixed"}
    assert fixed == {"btc_only": {"BTC": 1.0}, "btc_eth_60_40": {"BTC": 0.6, "ETH": 0.4}}
    assert p.regime is not None and (p.regime.benchmark, p.regime.asset, p.regime.window_days) == (
        "^RUT",
        "ALTS",
        90,
    )
    assert p.regime.correlation_level == 0.3 and p.rebalance == "monthly"


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    mutate(raw)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _sleeve(raw, name):
    return next(s for s in raw["sleeves"] if s["name"] == name)


@pytest.mark.parametrize(
    ("mutate", "where", "text"),
    [
        (lambda r: _sleeve(r, "core").update(band_mx=0.6), "sleeves.core.band_mx", "Extra inputs"),
        (lambda r: r.update(rebalanse="weekly"), "rebalanse", "Extra inputs"),
        (lambda r: _sleeve(r, "midcap_alts").pop("band_min"), "sleeves.midcap_alts.band_min", "required"),
        (lambda r: _sleeve(r, "midcap_alts").update(band_min="lots"), "sleeves.midcap_alts.band_min", "number"),
        (lambda r: _sleeve(r, "core").update(members=["BTC", "ETH; DROP"]), "sleeves.core.members", "invalid symbol"),
        (lambda r: r.update(rebalance="daily"), "rebalance", "monthly"),
        (lambda r: r["mixes"][0].update(method="momentum"), "mixes.policy_mid.method", "unknown method 'momentum'"),
        (lambda r: r.update(rebalance_trigger="drift"), "rebalance_trigger", "unknown 'drift'"),
        (lambda r: r["mixes"][1].update(rebalance_trigger="bnads"), "mixes.inverse_vol.rebalance_trigger", "unknown 'bnads'"),
        (lambda r: r["regime"].update(sleve="x"), "regime.sleve", "Unexpected keyword"),
        (lambda r: r["regime"].update(window_days=1), "regime", "must be at least 2"),
        # Caught by the transforms' own validation, still named by file and key:
        (lambda r: _sleeve(r, "core").update(band_min=0.7), "sleeves.core.band_min", "above band_max"),
        (lambda r: _sleeve(r, "core").update(band_min=0.75, band_max=0.8), "sleeves", "cannot sum to 100%"),
        (
            lambda r: (_sleeve(r, "core").update(band_max=0.5), _sleeve(r, "reserve").update(band_max=0.1)),
            "sleeves",
            "band_max total 0.95 < 1",
        ),
        (lambda r: r["regime"].update(sleeve="alts"), "regime.sleeve", "unknown sleeve 'alts'"),
        (lambda r: r["mixes"][3].update(weights={"BTC": 0.9}), "mixes.btc_only.weights", "sum to 0.9"),
        (lambda r: _sleeve(r, "midcap_alts")["members"].append("BTC"), "sleeves.midcap_alts.members", "already a member"),
    ],
)
def test_bad_policy_file_names_file_and_key(tmp_path, mutate, where, text):
    path = _write(tmp_path, mutate)
    with pytest.raises(PolicyFileError) as e:
        load_policy(path)
    msg = str(e.value)
    assert msg.startswith(f"policy file {path}: ")
    assert f"{where}: " in msg, msg
    assert text in msg, msg


def test_optional_keys_take_the_policy_defaults(tmp_path):
    def strip(raw):
        for key in ("within_sleeve", "rebalance", "rebalance_trigger", "vol_window", "min_vol_observations",
                    "cost_bps", "risk_free"):
            raw.pop(key)
        for key in ("benchmark", "asset", "window_days", "correlation_level", "momentum_sessions"):
            raw["regime"].pop(key)

    p = load_policy(_write(tmp_path, strip))
    assert (p.within_sleeve, p.rebalance, p.vol_window, p.cost_bps, p.risk_free) == ("equal", "monthly", 90, 0.0, 0.0)
    assert p.rebalance_trigger == "bands_and_calendar"
    assert p.regime == load_policy().regime


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(PolicyFileError, match="policy file not found"):
        load_policy(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sleeves: [unclosed\n")
    with pytest.raises(PolicyFileError, match="is not valid YAML"):
        load_policy(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(PolicyFileError, match="mapping at the top level"):
        load_policy(bad)


def test_default_policy_runs_end_to_end():
    rng = np.random.default_rng(5)
    symbols = ["BTC", "ETH", "SOL", "ADA", "XRP", "AVAX", "LINK"]  # no DOT in this run
    days = pl.date_range(date(2021, 1, 1), date(2022, 2, 4), "1d", eager=True)
    walks = 100 * np.exp(np.cumsum(rng.normal(0, 0.04, (len(symbols), len(days))), axis=1))
    # Only symbol, date and a price are needed.
    prices = pl.DataFrame(
        {
            "symbol": np.repeat(symbols, len(days)),
            "date": pl.concat([days] * len(symbols)),
            "close": walks.ravel(),
        }
    )
    res = simulate_mixes(load_policy(), prices)
    # regime_tilt has no correlation input here: skipped with a warning, like DOT's absence.
    assert any("regime_tilt" in w and "skipped" in w for w in res.warnings)
    assert any("DOT" in w for w in res.warnings)
    assert res.summary["mix"].to_list() == ["policy_mid", "inverse_vol", "btc_only", "btc_eth_60_40"]
