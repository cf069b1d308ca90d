"""mart_lead_lag: does crypto follow the benchmark a session later, or lead it?

For each crypto asset (and crypto index) a, benchmark b, window of ``w``
sessions and publish date t (``transforms.spillover.publish_dates``):

- ``measure = 'session'``, ``lag_sessions = k`` in (-1, 0, +1): the Pearson
  correlation of the benchmark's log return on session s with the asset's log
  return on session s + k, over the ``w`` pairs whose *later* session is one of
  the ``w`` sessions ending at t (so every pair is known at t). k = +1: crypto
  follows the benchmark by a session; k = -1: the benchmark follows crypto.
  Returns are the aligned frame of the rolling correlations (fact_returns on
  exchange sessions: a Monday crypto return runs from Friday's UTC candle
  close to Monday's, i.e. Sat 00:00 UTC to Tue 00:00 UTC).
- ``measure = 'weekend'``, ``lag_sessions = -1``: the asset's *closed-market*
  return, ln(close of the UTC candle dated the day before session s / close
  of the candle dated the previous session), i.e. from 00:00 UTC after the
  previous session's day to 00:00 UTC of s (Sat 00:00 -> Mon 00:00 UTC for a
  Monday; holidays included), against the benchmark's log return on s (its
  close before the gap to its close on s). Only sessions preceded by at least
  one non-session day count; both closes come from the asset's native daily
  bars (``adj_close``), never forward-filled. The crypto move happens wholly
  before the benchmark's session opens, so it is a lead of crypto over the
  benchmark (hence lag -1).

Correlation is null below ``min_observations`` pairs or for a flat side;
``observations`` counts the pairs. Values come from each window alone, so a
build of dates on/after ``since`` equals the full build's rows bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

import numpy as np
import polars as pl

from contracts.tables import MART_LEAD_LAG
from transforms.spillover import (
    Cadence,
    _since_idx,
    batches_by_ends,
    pair_arrays,
    pair_column,
    pair_grid,
    pair_rows,
    publish_dates,
    stack_on_calendar,
    window_span,
    window_stats_rows,
)

LAGS = (-1, 0, 1)


def _shift(v: np.ndarray, k: int) -> np.ndarray:
    """v moved k rows later (row i holds v[i - k]); NaN where there is none."""
    if k == 0:
        return v
    out = np.full(v.size, np.nan)
    out[k:] = v[:-k]
    return out


def weekend_returns(prices: pl.DataFrame, sessions: pl.Series, assets: Iterable[str]) -> pl.DataFrame:
    """(symbol, session_date, weekend_return) for every session preceded by a
    non-session day: ln(adj_close on the day before the session / adj_close on
    the previous session's date), from native daily bars; rows only where both exist."""
    s = sessions.cast(pl.Date).unique().sort()
    gaps = pl.DataFrame({"session_date": s, "prev_session": s.shift(1)}).filter(
        pl.col("prev_session").is_not_null() & ((pl.col("session_date") - pl.col("prev_session")).dt.total_days() > 1)
    ).with_columns((pl.col("session_date") - pl.duration(days=1)).alias("eve"))
    closes = prices.filter(pl.col("symbol").is_in(list(assets)) & pl.col("adj_close").is_not_null()).select(
        "symbol", pl.col("date").cast(pl.Date), pl.col("adj_close").cast(pl.Float64)
    )
    start = closes.rename({"date": "prev_session", "adj_close": "c0"})
    end = closes.rename({"date": "eve", "adj_close": "c1"})
    return (
        gaps.join(start, on="prev_session", how="inner")
        .join(end, on=["symbol", "eve"], how="inner")
        .select("symbol", "session_date", (pl.col("c1") / pl.col("c0")).log().alias("weekend_return"))
        .sort("symbol", "session_date")
    )


def mart_lead_lag(
    returns: pl.DataFrame,
    prices: pl.DataFrame,
    sessions: pl.Series,
    assets: Iterable[str],
    benchmarks: Iterable[str],
    windows: Sequence[int] = (90, 365),
    min_observations: int = 10,
    cadence: Cadence = "session",
    since: date | None = None,
) -> pl.DataFrame:
    """mart_lead_lag (see the module docstring): per asset, benchmark, window,
    measure, lag and publish date whose window lies inside the pair's common
    span of session returns; ``since``: only dates on/after it."""
    sessions = sessions.cast(pl.Date).unique().sort()
    assets = list(assets)
    since_idx = _since_idx(sessions, since)
    # One session more than the longest window: lag -1 reads the session before a window.
    grid, firsts = pair_grid(returns, sessions, assets, list(benchmarks), since_idx, max(windows, default=0) + 2)
    if grid.is_empty():
        return pl.DataFrame(schema=MART_LEAD_LAG.polars_schema)
    weekend = weekend_returns(prices, sessions, assets)
    grid = grid.join(
        weekend.rename({"symbol": "asset"}), on=["asset", "session_date"], how="left"
    ).sort("asset", "benchmark", "session_idx")
    all_dates = sessions.to_numpy()
    publish = np.isin(all_dates, publish_dates(sessions, cadence).to_numpy())
    weekends = pair_column(grid, pair_rows(grid)[1], "weekend_return")
    measures = [("session", k) for k in LAGS] + [("weekend", -1)]
    parts: list[tuple[int, int, int, int, np.ndarray, np.ndarray, np.ndarray]] = []
    pairs = pair_arrays(grid)
    # Per pair, the four (a, b) series of ``measures``.
    series = []
    for (_, _, _, x, y), wk in zip(pairs, weekends, strict=True):
        # k < 0: row i pairs y[i] with x[i-1]; k > 0: row i pairs y[i-1] with x[i] (row = later session).
        series.append([(_shift(x, -k) if k < 0 else x, _shift(y, k) if k > 0 else y) for k in LAGS] + [(wk, y)])
    origins = [int(sidx[0]) for _, _, sidx, _, _ in pairs]
    # The pairs whose windows end at the same sessions (the next day: all of them) in one call each.
    for w, ends, members in batches_by_ends(pairs, firsts, publish, windows, since_idx):
        start, stop = window_span(ends, w)
        at = [origins[p] for p in members]
        ones = np.ones((len(members), stop - start), dtype=bool)
        for j in range(len(measures)):
            a = stack_on_calendar([series[p][j][0] for p in members], at, start, stop, np.nan)
            b = stack_on_calendar([series[p][j][1] for p in members], at, start, stop, np.nan)
            corr, _, n = window_stats_rows(a, b, ones, ends - start, w, min_observations, origin=start)
            for i, p in enumerate(members):
                parts.append((p, w, j, ends.size, all_dates[ends], corr[i], n[i]))
    if not parts:
        return pl.DataFrame(schema=MART_LEAD_LAG.polars_schema)
    # In key order (asset, benchmark, window_days, measure, lag_sessions; dates
    # ascend within a part), so the frame needs no sort.
    parts.sort(key=lambda q: (pairs[q[0]][0], pairs[q[0]][1], q[1], *measures[q[2]]))
    sizes = [q[3] for q in parts]
    pair = np.repeat([q[0] for q in parts], sizes)
    measure = np.repeat([q[2] for q in parts], sizes)
    out = pl.DataFrame(
        {
            "date": np.concatenate([q[4] for q in parts]),
            "asset": pl.Series([a for a, *_ in pairs]).gather(pair),
            "benchmark": pl.Series([b for _, b, *_ in pairs]).gather(pair),
            "window_days": np.repeat([q[1] for q in parts], sizes),
            "measure": pl.Series([m for m, _ in measures]).gather(measure),
            "lag_sessions": np.array([k for _, k in measures])[measure],
            "correlation": np.concatenate([q[5] for q in parts]),
            "observations": np.concatenate([q[6] for q in parts]),
        }
    ).with_columns(pl.col("correlation").fill_nan(None))
    return MART_LEAD_LAG.conform(out)
