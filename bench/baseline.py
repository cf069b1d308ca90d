"""The yardstick: the same rolling correlations as ``transforms.correlation``,
written the obvious vectorised numpy way (dense session x asset matrix,
cumulative sums). Same semantics: a window counts only when all ``w`` sessions
carry a return for both series; otherwise NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from transforms.returns import session_index


def dense_returns(returns: pl.DataFrame, sessions: pl.Series, symbols: Sequence[str]) -> np.ndarray:
    """(n_sessions, n_symbols) log returns, NaN where there is none."""
    idx = session_index(sessions)
    r = returns.join(idx, on="session_date", how="inner").filter(
        pl.col("symbol").is_in(list(symbols)) & pl.col("log_return").is_not_null()
    )
    col = {s: i for i, s in enumerate(symbols)}
    out = np.full((idx.height, len(symbols)), np.nan)
    out[r["session_idx"].to_numpy(), r["symbol"].replace_strict(col, return_dtype=pl.Int64).to_numpy()] = r[
        "log_return"
    ].to_numpy()
    return out


def _rolling_sum(a: np.ndarray, w: int) -> np.ndarray:
    cs = np.cumsum(np.concatenate([np.zeros((1, *a.shape[1:])), a]), axis=0)
    out = np.full(a.shape, np.nan)
    out[w - 1 :] = cs[w:] - cs[:-w]
    return out


def rolling_correlation(x: np.ndarray, y: np.ndarray, windows: Sequence[int]) -> dict[int, np.ndarray]:
    """{window: (n_sessions, n_assets) correlation of each column of x with y}."""
    paired = ~np.isnan(x) & ~np.isnan(y)[:, None]
    px = np.where(paired, x, 0.0)
    py = np.where(paired, y[:, None], 0.0)
    out = {}
    for w in windows:
        n = _rolling_sum(paired.astype(np.float64), w)
        sx, sy = _rolling_sum(px, w), _rolling_sum(py, w)
        cov = _rolling_sum(px * py, w) - sx * sy / w
        vx = _rolling_sum(px * px, w) - sx * sx / w
        vy = _rolling_sum(py * py, w) - sy * sy / w
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.clip(cov / np.sqrt(vx * vy), -1.0, 1.0)
        corr[n != w] = np.nan
        out[w] = corr
    return out


def percentile_ranks(x: np.ndarray) -> np.ndarray:
    """Row-wise 100 * rank / count, NaN-aware: ``x`` is (n_dates, n_symbols).

    Ordinal ranks by a double argsort; equal values (rare in continuous
    metrics) would get distinct ranks here where Polars averages them.
    """
    filled = np.where(np.isnan(x), np.inf, x)
    ranks = np.argsort(np.argsort(filled, axis=1, kind="stable"), axis=1).astype(np.float64) + 1.0
    count = (~np.isnan(x)).sum(axis=1, keepdims=True)
    out = 100.0 * ranks / np.maximum(count, 1)
    out[np.isnan(x)] = np.nan
    return out


def sector_percentile_ranks(x: np.ndarray, sector: np.ndarray, min_size: int) -> np.ndarray:
    """Ranks within each sector where it has ``min_size`` values that day, else across all."""
    out = percentile_ranks(x)
    for code in np.unique(sector):
        cols = sector == code
        sub = x[:, cols]
        big = (~np.isnan(sub)).sum(axis=1) >= min_size
        ranked = percentile_ranks(sub)
        block = out[:, cols]
        block[big] = ranked[big]
        out[:, cols] = block
    return out
