"""Pairwise correlation matrix at month-end sessions and the latest session.

The full-window rule is the one of ``transforms.correlation``: a pair's
correlation over ``w`` sessions exists only when both series have a return on
every one of the ``w`` sessions ending at the as-of session, and neither is
flat. Every ordered pair is emitted, (a, b) and (b, a), plus the diagonal, so
a heatmap can be drawn from the frame without reshaping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

import numpy as np
import polars as pl

from contracts.tables import MART_CORRELATION_MATRIX
from transforms.returns import session_index


def as_of_sessions(sessions: pl.Series) -> pl.Series:
    """The last session of every calendar month, plus the latest session."""
    s = sessions.cast(pl.Date).unique().sort()
    frame = pl.DataFrame({"date": s})
    month_ends = frame.group_by(pl.col("date").dt.truncate("1mo").alias("month")).agg(pl.col("date").max())["date"]
    return pl.concat([month_ends, s.tail(1)]).unique().sort()


def _window_matrix(x: np.ndarray, observations: np.ndarray) -> np.ndarray:
    """The correlations (NaN for null) of a T x N block whose paired observation counts are ``observations``."""
    # A column is full when it has a value on each of the T rows.
    full = np.diagonal(observations) == x.shape[0]
    # Exact flatness test (max == min); the moment formula leaves rounding noise.
    flat = np.zeros(x.shape[1], dtype=bool)
    flat[full] = np.ptp(x[:, full], axis=0) == 0
    ok = full & ~flat
    corr = np.full((x.shape[1], x.shape[1]), np.nan)
    if ok.any():
        xc = x[:, ok] - x[:, ok].mean(axis=0)
        cov = xc.T @ xc
        sd = np.sqrt(np.diag(cov))
        c = np.clip(cov / np.outer(sd, sd), -1.0, 1.0)
        np.fill_diagonal(c, 1.0)
        corr[np.ix_(ok, ok)] = c
    return corr


def _window_counts(valid: np.ndarray, spans: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """``valid[lo:hi].T @ valid[lo:hi]`` (as int64) for each ``(lo, hi)`` of ``spans``: how many
    rows of the span have both columns valid. Taken as differences of running counts at the
    spans' ends, so each row is multiplied once, not once per window that holds it. The
    products of 0/1 rows are float matrix products (BLAS; numpy has none for integers),
    exact far beyond any row count, summed in int64: the same counts as the direct product."""
    ones = valid.astype(np.float64)
    running = np.zeros((valid.shape[1], valid.shape[1]), dtype=np.int64)
    at: dict[int, np.ndarray] = {}
    prev = 0
    for k in sorted({k for span in spans for k in span}):
        if k > prev:
            seg = ones[prev:k]
            running = running + (seg.T @ seg).astype(np.int64)
        at[k], prev = running, k
    return [at[hi] - at[lo] for lo, hi in spans]


def mart_correlation_matrix(
    returns: pl.DataFrame,
    sessions: pl.Series,
    symbols: Iterable[str],
    windows: Sequence[int] = (30, 90, 180, 365),
    since: date | None = None,
) -> pl.DataFrame:
    """mart_correlation_matrix(date, window_days, asset_a, asset_b, correlation, observations).

    ``returns`` is the session-aligned log returns frame (symbol,
    session_date, log_return). The as-of dates are month-end sessions and the
    latest session of ``sessions`` for which a ``w``-session window fits in the
    calendar. ``observations`` is the number of sessions in the window where
    both have a return (for the diagonal: where the symbol has one).
    Symbols without any return are kept, with null correlations throughout.

    ``since``: only the as-of dates on/after it (an incremental run); the
    returns then need to cover the ``max(windows)`` sessions before it.
    """
    names = sorted(set(symbols))
    idx = session_index(sessions)
    if not names or idx.is_empty():
        return pl.DataFrame(schema=MART_CORRELATION_MATRIX.polars_schema)
    wide = idx.join(
        returns.filter(pl.col("symbol").is_in(names))
        .pivot(on="symbol", index="session_date", values="log_return", aggregate_function="first"),
        on="session_date",
        how="left",
    ).sort("session_idx")
    for name in names:
        if name not in wide.columns:
            wide = wide.with_columns(pl.lit(None, dtype=pl.Float64).alias(name))
    x = wide.select(pl.col(names).cast(pl.Float64)).to_numpy().astype(np.float64)  # null -> NaN
    dates = wide.get_column("session_date")
    position = {d: i for i, d in enumerate(dates.to_list())}
    targets = [position[d] for d in as_of_sessions(dates).to_list()]

    n = len(names)
    # One block per (as-of date, window) in output order, assembled once at the
    # end: building a frame per block from Python lists dominated the run time.
    if since is not None:
        targets = [t for t in targets if dates[t] >= since]
    blocks = [(t, w) for t in targets for w in sorted(set(windows)) if t + 1 >= w]
    if not blocks:
        return pl.DataFrame(schema=MART_CORRELATION_MATRIX.polars_schema)
    corr = np.empty((len(blocks), n * n))
    obs = np.empty((len(blocks), n * n), dtype=np.int64)
    spans = [(t + 1 - w, t + 1) for t, w in blocks]
    for i, ((lo, hi), o) in enumerate(zip(spans, _window_counts(~np.isnan(x), spans), strict=True)):
        corr[i], obs[i] = _window_matrix(x[lo:hi], o).ravel(), o.ravel()
    block_t = np.array([t for t, _ in blocks])
    pair = np.arange(n * n)
    name_s = pl.Series(names, dtype=pl.String)
    frame = pl.DataFrame(
        {
            "date": dates.gather(np.repeat(block_t, n * n)),
            "window_days": np.repeat(np.array([w for _, w in blocks], dtype=np.int32), n * n),
            "asset_a": name_s.gather(np.tile(pair // n, len(blocks))),
            "asset_b": name_s.gather(np.tile(pair % n, len(blocks))),
            "correlation": corr.ravel(),
            "observations": obs.ravel(),
        }
    ).with_columns(pl.col("correlation").fill_nan(None))
    # Already in key order (date, window_days, asset_a, asset_b), without a sort: the blocks are
    # built in (date, window) order (targets ascending, windows sorted) and each block's pairs
    # in the order of the sorted names (Python's str order is Polars' byte order in UTF-8).
    return frame.pipe(MART_CORRELATION_MATRIX.conform)
