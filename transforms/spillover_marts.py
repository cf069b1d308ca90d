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
    pairs_since: date | None = None,
) -> dict[str, pl.DataFrame]:
    """mart_spillover, mart_lead_lag and mart_spillover_index (rows dated on/after ``since``;
    those of the two pair marts on/after ``pairs_since`` when given)."""
    focus = sorted(set(assets) | set(benchmarks) | set(params.index_series))
    returns = returns.filter(pl.col("symbol").is_in(focus))
    windows = tuple(params.windows)
    pairs_since = since if pairs_since is None else pairs_since
    return {
        "mart_spillover": mart_spillover(
            returns, sessions, assets, benchmarks, windows, params.regime_lookback, params.min_observations,
            params.cadence, pairs_since,
        ),
        "mart_lead_lag": mart_lead_lag(
            returns, prices.filter(pl.col("symbol").is_in(assets)), sessions, assets, benchmarks, windows,
            params.min_observations, params.cadence, pairs_since,
        ),
        "mart_spillover_index": mart_spillover_index(
            returns, sessions, tuple(params.index_series), params.index_window, params.index_horizon,
            params.index_max_lags, params.index_ic, params.index_step, since,
        ),
    }  # fmt: skip


def pairs_changed_from(
    previous: Mapping[str, pl.DataFrame],
    returns: pl.DataFrame,
    sessions: pl.Series,
    assets: list[str],
    benchmarks: list[str],
    from_session: date,
) -> date:
    """The first session whose mart_spillover/mart_lead_lag rows may differ from the previous
    run's: ``from_session``, or earlier for a pair with a gap at the seam.

    A pair's rows are published up to the end of its span, the earlier of its two series' last
    returns (``pair_grid``). Returns before ``from_session`` are the previous run's, so the rows
    of a pair whose series both have a return on the session before it are too. When one
    series' last return before ``from_session`` is earlier (a coin without clean bars in the
    last days before the previous as-of), the pair's span ends at the gap (``L``) or reaches
    past it, in this run (the series resumed) or in the previous one (its returns on/after
    ``from_session``, ``previous["fact_returns"]``, since withdrawn or revised): the rows of the
    gap's sessions exist only then. Where the two runs' spans differ past ``L`` the pair's rows
    are rebuilt from the session after it; a pair that stayed ended there (a delisted coin) is
    not. The next day: one group_by of the returns, no gapped series."""
    sess = sessions.cast(pl.Date).unique().sort()
    from_idx = int(sess.search_sorted(from_session, side="left"))
    if from_idx == 0:
        return from_session
    last_before = sess[from_idx - 1]
    # By date, not session number: returns are dated on sessions, and no join is needed.
    ends = returns.filter(pl.col("log_return").is_not_null()).group_by("symbol").agg(
        pl.col("session_date").filter(pl.col("session_date") < from_session).max().alias("g"),
        pl.col("session_date").max().alias("n"),
    ).filter(pl.col("g").is_not_null())
    if ends.filter(pl.col("g") < last_before).is_empty():
        return from_session
    # Each series' last return in the previous run: on/after from_session (its rows from it
    # on are read), else the last one before it, which this run has too.
    old = previous.get("fact_returns")
    later = (
        old.filter((pl.col("session_date") >= from_session) & pl.col("log_return").is_not_null())
        .group_by("symbol").agg(pl.col("session_date").max().alias("p"))
        if old is not None else pl.DataFrame(schema={"symbol": pl.String, "p": pl.Date})
    )
    ends = ends.join(later, on="symbol", how="left").with_columns(pl.coalesce("p", "g").alias("p"))
    x = ends.filter(pl.col("symbol").is_in(assets)).rename({"symbol": "asset", "g": "gx", "n": "nx", "p": "px"})
    y = ends.filter(pl.col("symbol").is_in(benchmarks)).rename({"symbol": "benchmark", "g": "gy", "n": "ny", "p": "py"})
    span_end = {"L": ("gx", "gy"), "now": ("nx", "ny"), "before": ("px", "py")}
    changed = (
        x.join(y, how="cross")
        .filter(pl.col("asset") != pl.col("benchmark"))
        .select(pl.min_horizontal(*cols).alias(name) for name, cols in span_end.items())
        .filter((pl.col("L") < last_before) & ((pl.col("now") > pl.col("L")) | (pl.col("before") > pl.col("L"))))
    )
    if changed.is_empty():
        return from_session
    return min(sess[int(sess.search_sorted(changed["L"].min(), side="right"))], from_session)


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
    pairs_from: date | None = None,
) -> dict[str, pl.DataFrame]:
    """The three marts from the previous run's rows before ``from_session`` (the
    first changed session; None: no new session, the previous rows stand) and
    rows recomputed on/after it; whole when ``previous`` lacks one of them.
    mart_spillover and mart_lead_lag from ``pairs_from`` instead
    (``pairs_changed_from``, computed when not given)."""
    if any(t not in previous for t in SPILLOVER_TABLES):
        return spillover_marts(returns, prices, sessions, assets, benchmarks, params)
    if from_session is None:
        return {t: previous[t] for t in SPILLOVER_TABLES}
    if pairs_from is None:
        pairs_from = pairs_changed_from(previous, returns, sessions, assets, benchmarks, from_session)
    new = spillover_marts(returns, prices, sessions, assets, benchmarks, params, since=from_session, pairs_since=pairs_from)
    starts = {"mart_spillover": pairs_from, "mart_lead_lag": pairs_from, "mart_spillover_index": from_session}
    # A previous row stays if its date is still a publish date (the previous
    # latest session drops out unless it is a month-end or on the index's step).
    dates = {
        "mart_spillover": publish_dates(sessions, params.cadence),
        "mart_lead_lag": publish_dates(sessions, params.cadence),
        "mart_spillover_index": index_dates(sessions, params.index_step),
    }
    out = {}
    for t in SPILLOVER_TABLES:
        kept = previous[t].filter((pl.col("date") < starts[t]) & pl.col("date").is_in(dates[t].implode()))
        out[t] = pl.concat([TABLES[t].conform(kept), new[t]])
    return out
