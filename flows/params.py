"""Settings become mart parameters here, and only here.

The nightly flow, the backfill, the benchmark and the tests that want what
production computes all call ``mart_params``; ``transforms`` never sees
``Settings``. ``MartParams()``'s own defaults equal ``mart_params(Settings())``
field by field (tests/flows/test_params.py), so a test or benchmark that builds
``MartParams`` directly runs the production defaults too (the same stablecoins,
windows, thresholds).
"""

from __future__ import annotations

from flows.policy import load_policy
from flows.settings import Settings
from flows.universe import Universe, load_universe
from transforms.factors import LabelThresholds
from transforms.marts import MartParams
from transforms.policy import Policy
from transforms.spillover import SpilloverParams


def spillover_params(settings: Settings) -> SpilloverParams:
    """The spillover marts' settings (issue 18) as the transform's parameters."""
    return SpilloverParams(
        windows=tuple(settings.spillover_windows),
        cadence=settings.spillover_cadence,
        regime_lookback=settings.spillover_regime_lookback,
        min_observations=settings.spillover_min_observations,
        index_series=tuple(settings.spillover_index_series),
        index_window=settings.spillover_index_window,
        index_horizon=settings.spillover_index_horizon,
        index_max_lags=settings.spillover_index_max_lags,
        index_ic=settings.spillover_index_ic,
        index_step=settings.spillover_index_step,
        enabled=settings.spillover,
    )


def mart_params(settings: Settings, universe: Universe | None = None, policy: Policy | None = None) -> MartParams:
    """The parameters of ``build_marts`` for ``settings``.

    Benchmarks are the settings' or else the universe's (``universe``, or the
    one ``settings.universe_path`` names); the allocation policy is ``policy``
    or the file ``settings.policy_path`` names.
    """
    if not settings.benchmarks and universe is None:
        universe = load_universe(settings.universe_path)
    return MartParams(
        benchmarks=tuple(settings.benchmarks or universe.benchmarks),
        windows=tuple(settings.correlation_windows),
        event_levels=tuple(settings.event_levels),
        event_confirm_sessions=settings.event_confirm_sessions,
        event_dead_band=settings.event_dead_band,
        period_benchmark=settings.period_benchmark,
        stablecoins=tuple(settings.stablecoins),
        policy=policy if policy is not None else load_policy(settings.policy_path),
        factor_weights=settings.factor_weights,
        factor_thresholds=LabelThresholds(strong=settings.factor_strong_at, moderate=settings.factor_moderate_at),
        factor_min_sector_size=settings.factor_min_sector_size,
        factor_min_cross_section=settings.factor_min_cross_section,
        correlation_block_size=settings.transform_block_size,
        spillover=spillover_params(settings),
    )
