"""The three spillover marts of a run, whole or from a changed date on.

``spillover_marts`` is one partition of ``transforms.marts.build_marts``;
``spillover_marts_since`` is its incremental counterpart: every row of the
three marts is computed from its own window of the full returns, so the
previous run's rows before the first changed session (those still on a
publish date) plus the rows recomputed on/after it equal the full build's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import polars as pl

from contracts.tables import TABLES
from transforms.lead_lag import mart_lead_lag
from transforms.spillover import SpilloverParams, mart_spillover, publish_dates
from transforms.spillover_index import index_dates, mart_spillover_index

SPILLOVER_TABLES = ("mart_spillover", "mart_lead_lag", "mart_spillover_index")


def spillover_marts(
    returns: pl.DataFrame,
    prices: pl.DataFrame,
    sessions: pl.Series,
    assets: list[str],
    benchmarks: list[str],
    params: SpilloverParams,
    since: date | None = None,
) -> dict[str, pl.DataFrame]:
    """mart_spillover, mart_lead_lag and mart_spillover_index (rows dated on/after ``since``)."""
    focus = sorted(set(assets) | set(benchmarks) | set(params.index_series))
    returns = returns.filter(pl.col("symbol").is_in(focus))
    windows = tuple(params.windows)
    return {
        "mart_spillover": mart_spillover(
            returns, sessions, assets, benchmarks, windows, params.regime_lookback, params.min_observations,
            params.cadence, since,
        ),
        "mart_lead_lag": mart_lead_lag(
            returns, prices.filter(pl.col("symbol").is_in(assets)), sessions, assets, benchmarks, windows,
            params.min_observations, params.cadence, since,
        ),
        "mart_spillover_index": mart_spillover_index(
            returns, sessions, tuple(params.index_series), params.index_window, params.index_horizon,
            params.index_max_lags, params.index_ic, params.index_step, since,
        ),
    }  # fmt: skip


def spillover_index_whole(returns: pl.DataFrame, sessions: pl.Series, params: SpilloverParams) -> pl.DataFrame:
    """mart_spillover_index over every index date (``spillover_marts``' index alone)."""
    return mart_spillover_index(
        returns.filter(pl.col("symbol").is_in(list(params.index_series))), sessions, tuple(params.index_series),
        params.index_window, params.index_horizon, params.index_max_lags, params.index_ic, params.index_step,
    )


def spillover_marts_since(
    previous: Mapping[str, pl.DataFrame],
    returns: pl.DataFrame,
    prices: pl.DataFrame,
    sessions: pl.Series,
    assets: list[str],
    benchmarks: list[str],
    params: SpilloverParams,
    from_session: date | None,
) -> dict[str, pl.DataFrame]:
    """The three marts from the previous run's rows before ``from_session`` (the
    first changed session; None: no new session, the previous rows stand) and
    rows recomputed on/after it; whole when ``previous`` lacks one of them."""
    if any(t not in previous for t in SPILLOVER_TABLES):
        return spillover_marts(returns, prices, sessions, assets, benchmarks, params)
    if from_session is None:
        return {t: previous[t] for t in SPILLOVER_TABLES}
    new = spillover_marts(returns, prices, sessions, assets, benchmarks, params, since=from_session)
    # A previous row stays if its date is still a publish date (the previous
    # latest session drops out unless it is a month-end or on the index's step).
    dates = {
        "mart_spillover": publish_dates(sessions, params.cadence),
        "mart_lead_lag": publish_dates(sessions, params.cadence),
        "mart_spillover_index": index_dates(sessions, params.index_step),
    }
    out = {}
    for t in SPILLOVER_TABLES:
        kept = previous[t].filter((pl.col("date") < from_session) & pl.col("date").is_in(dates[t].implode()))
        out[t] = pl.concat([TABLES[t].conform(kept), new[t]])
    return out
