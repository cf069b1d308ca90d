"""Rolling Pearson correlation and beta of assets versus benchmarks.

A window of ``w`` sessions yields a value only when all ``w`` sessions carry a
return for both series ("paired"): a partial window would mix regimes and make
figures from different windows incomparable. ``observations`` always reports how
many paired returns the window holds, so a null is explainable. Zero variance in
either series gives a null correlation (and a null beta when the benchmark is
flat), never a division artefact; a window whose mean dwarfs its spread is
summed around its own mean (``MAX_CONDITION``).

The windows are computed on numpy arrays of the pairs' grid (``_Grid``) and
the mart's frame is built once, in its row order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from contracts.tables import MART_ROLLING_CORRELATION
from transforms.returns import session_index


def paired_returns(
    returns: pl.DataFrame,
    sessions: pl.Series,
    assets: Iterable[str],
    benchmarks: Iterable[str],
    spans: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """(asset, benchmark, session_idx, x, y, session_date) on a dense session grid.

    Each (asset, benchmark) pair gets every session from the later of the two
    first returns to the earlier of the two last returns, so row-count windows
    are session windows. x is the asset's return, y the benchmark's; either may
    be null (a gap).

    ``spans`` (asset, benchmark, first, last: dates), when given, replaces the
    spans derived from ``returns`` for the pairs it lists: an incremental run
    passes only recent returns but knows each pair's span from the previous
    run. Its ``first`` may precede ``sessions`` (the grid starts at the first
    session then).
    """
    g, dates = _grid(returns, sessions, assets, benchmarks, spans)
    pair = pl.Series(g.pair_of_row())
    return pl.DataFrame(
        {
            "asset": g.pairs["asset"].gather(pair),
            "benchmark": g.pairs["benchmark"].gather(pair),
            "session_idx": pl.Series(g.session_idx, dtype=pl.Int32),
            "session_date": dates.gather(g.session_idx),
            "x": g.x,
            "_has_x": g.has_x,
            "y": g.y,
            "_has_y": g.has_y,
        }
    ).select(
        "asset", "benchmark", "session_idx",
        pl.when("_has_x").then("x").alias("x"), pl.when("_has_y").then("y").alias("y"), "session_date",
    )  # fmt: skip


# Window sums are differences of cumulative sums that restart at every epoch of
# this many sessions, counted from the calendar's first session. A row's value
# then depends only on its own pair's returns since the start of the previous
# epoch (or the pair's start): not on the other pairs of the grid, nor on where
# the grid starts, so a partitioned build and an incremental rebuild whose
# sessions start on an epoch boundary reproduce the full build bit for bit.
# A window must fit in one epoch (it then spans at most two).
EPOCH_SESSIONS = 512


@dataclass(frozen=True)
class _Grid:
    """The ``paired_returns`` grid as arrays: pair ``p`` (``pairs`` row p, sorted
    by asset then benchmark) holds rows ``start[p]`` .. ``start[p] + length[p] - 1``,
    one per session of its span. ``x``/``y`` are the returns (0.0 where
    ``has_x``/``has_y`` is False: no return)."""

    pairs: pl.DataFrame
    start: np.ndarray
    length: np.ndarray
    session_idx: np.ndarray
    x: np.ndarray
    has_x: np.ndarray
    y: np.ndarray
    has_y: np.ndarray

    @property
    def height(self) -> int:
        return int(self.session_idx.size)

    def pair_of_row(self) -> np.ndarray:
        return np.repeat(np.arange(self.start.size), self.length)

    def pos(self) -> np.ndarray:
        """Each row's position within its pair."""
        return np.arange(self.height) - np.repeat(self.start, self.length)


def _dense(r: pl.DataFrame, symbols: list[str], n_sessions: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(n_sessions, len(symbols) + 1) returns and presence; the last column,
    all absent, stands for a symbol without returns."""
    col = {s: i for i, s in enumerate(dict.fromkeys(symbols))}
    part = r.filter(pl.col("symbol").is_in(list(col)))
    # Typed explicitly: with no symbols both come back as object arrays numpy cannot index with.
    j = part["symbol"].replace_strict(col, return_dtype=pl.Int64).to_numpy().astype(np.int64)
    i = part["session_idx"].cast(pl.Int64).to_numpy()
    values = np.zeros((n_sessions, len(col) + 1))
    have = np.zeros((n_sessions, len(col) + 1), dtype=bool)
    values[i, j] = part["log_return"].to_numpy()
    have[i, j] = True
    return values, have, col


def _grid(
    returns: pl.DataFrame,
    sessions: pl.Series,
    assets: Iterable[str],
    benchmarks: Iterable[str],
    spans: pl.DataFrame | None = None,
) -> tuple[_Grid, pl.Series]:
    """The grid ``paired_returns`` describes, as arrays, gathered from a dense
    session x symbol matrix of the pairs' own series; second: the sorted
    session dates the grid's ``session_idx`` count."""
    idx = session_index(sessions)
    dates = idx["session_date"]
    assets, benchmarks = list(assets), list(benchmarks)
    # Only the pairs' own series: the returns frame also holds every stock (millions of rows).
    r = returns.filter(pl.col("symbol").is_in(assets + benchmarks) & pl.col("log_return").is_not_null()).join(
        idx, on="session_date", how="inner"
    )
    xv, xh, xcol = _dense(r, assets, idx.height)
    yv, yh, ycol = _dense(r, benchmarks, idx.height)

    def extent(have: np.ndarray, col: dict[str, int], name: str) -> pl.DataFrame:
        h = have[:, : len(col)]
        some = h.any(axis=0)
        first = h.argmax(axis=0)
        last = h.shape[0] - 1 - h[::-1].argmax(axis=0)
        return pl.DataFrame(
            {name: [s for s, ok in zip(col, some) if ok], f"{name}0": first[some], f"{name}1": last[some]},
            schema={name: pl.String, f"{name}0": pl.Int64, f"{name}1": pl.Int64},
        )

    derived = (
        extent(xh, xcol, "asset")
        .join(extent(yh, ycol, "benchmark"), how="cross")
        .filter(pl.col("asset") != pl.col("benchmark"))
        .select(
            "asset",
            "benchmark",
            pl.max_horizontal("asset0", "benchmark0").alias("lo"),
            (pl.min_horizontal("asset1", "benchmark1") + 1).alias("hi"),
        )
    )
    if spans is not None:
        # Span bounds (dates) to positions in ``sessions``: first session on/after ``first``
        # up to the last on/before ``last``.
        given = spans.select(
            pl.col("asset").cast(pl.String),
            pl.col("benchmark").cast(pl.String),
            pl.Series("lo", dates.search_sorted(spans["first"].cast(pl.Date), side="left"), dtype=pl.Int64),
            pl.Series("hi", dates.search_sorted(spans["last"].cast(pl.Date), side="right"), dtype=pl.Int64),
        )
        derived = pl.concat([derived.join(given, on=["asset", "benchmark"], how="anti"), given])
    pairs = derived.filter(pl.col("hi") > pl.col("lo")).sort("asset", "benchmark")
    lo = pairs["lo"].to_numpy()
    length = pairs["hi"].to_numpy() - lo
    start = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64) if length.size else np.zeros(0, np.int64)
    n = int(length.sum())
    session_idx = np.arange(n) + np.repeat(lo - start, length)
    xc = np.repeat(pairs["asset"].replace_strict(xcol, default=len(xcol), return_dtype=pl.Int64).to_numpy(), length)
    yc = np.repeat(pairs["benchmark"].replace_strict(ycol, default=len(ycol), return_dtype=pl.Int64).to_numpy(), length)
    grid = _Grid(
        pairs.select("asset", "benchmark"), start, length, session_idx,
        xv[session_idx, xc], xh[session_idx, xc], yv[session_idx, yc], yh[session_idx, yc],
    )  # fmt: skip
    return grid, dates


def _segment_cumsums(px: np.ndarray, py: np.ndarray, seg: np.ndarray, seg_pos: np.ndarray, n_segs: int) -> np.ndarray:
    """(5, rows): per row, the running sums of x, y, xy, xx and yy within the
    row's segment, added left to right from 0.0 as Polars' ``cum_sum().over(segment)``
    adds (so -0.0 sums to 0.0, and no rounding of earlier segments leaks in):
    one cumsum over a (segment, position) block with a leading 0.0 column."""
    width = int(seg_pos.max()) + 2
    at = seg * width + seg_pos + 1
    block = np.zeros((5, n_segs * width))
    for k, term in enumerate((px, py, px * py, px * px, py * py)):
        block[k, at] = term
    cube = block.reshape(5, n_segs, width)
    np.cumsum(cube, axis=2, out=cube)
    return np.take(block, at, axis=1)


# Above this conditioning of a window (its sum of squares over its sum of
# squared deviations, 1 + w mean^2 / variance) the moments are summed again
# around the window's own mean (the rule of transforms.spillover).
MAX_CONDITION = 64.0


def _centred_moments(g: _Grid, ends: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Co-moment and the two sums of squared deviations of the fully paired
    windows of ``w`` grid rows ending at rows ``ends``, each around its own
    window's means (two passes: no cancellation)."""
    out = np.empty((3, ends.size))
    for a in range(0, ends.size, _CHUNK_ROWS // 8):
        e = ends[a : a + _CHUNK_ROWS // 8]
        at = e[:, None] + np.arange(1 - w, 1)
        dx, dy = g.x[at], g.y[at]
        dx -= dx.mean(axis=1, keepdims=True)
        dy -= dy.mean(axis=1, keepdims=True)
        out[:, a : a + e.size] = (dx * dy).sum(axis=1), (dx * dx).sum(axis=1), (dy * dy).sum(axis=1)
    return out[0], out[1], out[2]


# Rows per chunk of the window loop (its float temporaries: 5 x 8 bytes a row).
_CHUNK_ROWS = 16_384


def _rows_back(a: np.ndarray, rows: slice | np.ndarray, k: int) -> np.ndarray:
    """``a[..., t - k]`` for t in ``rows`` (zeros where t - k < 0)."""
    if not isinstance(rows, slice):
        back = rows - k
        out = np.take(a, np.maximum(back, 0), axis=-1)
        out[..., back < 0] = 0
        return out
    lo, hi = rows.start - k, rows.stop - k
    if lo >= 0:
        return a[..., lo:hi]
    out = np.zeros((*a.shape[:-1], rows.stop - rows.start), dtype=a.dtype)
    if hi > 0:
        out[..., -lo:] = a[..., :hi]
    return out


def _window_arrays(g: _Grid, windows: Sequence[int], epoch: int, first: int = 0) -> tuple[np.ndarray, ...]:
    """(observations, correlation, correlation valid, beta, beta valid), each
    (window, grid row); with ``first``, only the rows of sessions from that index
    of the grid's sessions on are set (the others are left undefined): an
    incremental run's few new rows of a tail of many sessions.

    Window sums are differences of cumulative sums that restart at every
    (pair, epoch) segment; a window reaching into the previous epoch adds that
    epoch's last cumulative value. Only the pair's own rows from the previous
    epoch on enter, always in the same order, so a row's value does not depend
    on where the grid starts (see ``EPOCH_SESSIONS``)."""
    n = g.height
    pos = g.pos()
    ep = g.session_idx // epoch
    seg_first = pos == 0
    seg_first[1:] |= ep[1:] != ep[:-1]
    seg = np.cumsum(seg_first) - 1
    seg_start = np.flatnonzero(seg_first)
    row_seg_start = seg_start[seg]
    seg_pos = np.arange(n) - row_seg_start
    paired = g.has_x & g.has_y
    # Unpaired sessions contribute zeros to the sums; they are only ever used
    # when the window is fully paired, so the zeros never reach a result.
    px = np.where(paired, g.x, 0.0)
    py = np.where(paired, g.y, 0.0)
    c = _segment_cumsums(px, py, seg, seg_pos, seg_start.size)
    # The previous epoch's last cumulative value, when the pair has one (0 when
    # the segment opens the pair).
    has_prev = seg_pos != pos
    prev_at = np.maximum(row_seg_start - 1, 0)
    # Paired rows and value changes counted from the grid's start: a window's
    # count is a difference (integers, exact).
    paired_cum = np.cumsum(paired)
    pair_before = (paired_cum - paired)[np.repeat(g.start, g.length)]
    changes = []
    for v, h in ((g.x, g.has_x), (g.y, g.has_y)):
        changed = np.zeros(n, dtype=bool)
        changed[1:] = (v[1:] != v[:-1]) | (h[1:] != h[:-1])
        changed[pos == 0] = False
        changes.append(np.cumsum(changed))
    k_windows = len(windows)
    obs = np.empty((k_windows, n), dtype=np.int64)
    corr, beta = np.empty((k_windows, n)), np.empty((k_windows, n))
    corr_ok, beta_ok = np.empty((k_windows, n), dtype=bool), np.empty((k_windows, n), dtype=bool)
    # Rows in chunks, so the temporaries of a window stay in the cache. Each row's
    # figures are computed from the cumulative sums alone, element by element, so
    # computing some rows only gives them the values all rows would.
    need = np.flatnonzero(g.session_idx >= first) if first > 0 else None
    chunks: Iterable[slice | np.ndarray] = (
        (slice(a, min(n, a + _CHUNK_ROWS)) for a in range(0, n, _CHUNK_ROWS)) if need is None
        else (need[a : a + _CHUNK_ROWS] for a in range(0, need.size, _CHUNK_ROWS))
    )  # fmt: skip
    for rows in chunks:
        c_r, pos_r, seg_pos_r = c[:, rows], pos[rows], seg_pos[rows]
        prev_r = np.where(has_prev[rows], np.take(c, prev_at[rows], axis=1), 0.0)
        for k, w in enumerate(windows):
            # The grid is sorted by pair and session and dense within a pair, so a
            # window of w rows ending at a row whose position in its pair is >= w - 1
            # lies inside that pair; rows closer to the pair's start are never full.
            reach = pos_r >= w
            obs[k, rows] = paired_cum[rows] - np.where(reach, _rows_back(paired_cum, rows, w), pair_before[rows])
            # Sums over rows (t-w, t]: within the segment a difference of its
            # cumulative sums; when t-w lies in the previous epoch, the rest of
            # that epoch is its last cumulative value minus C(t-w). The row just
            # before the pair (position w - 1) counts as 0.
            back = np.where(reach, _rows_back(c, rows, w), 0.0)
            sx, sy, sxy, sxx, syy = np.where(seg_pos_r >= w, c_r - back, c_r + (prev_r - back))
            # Exact flatness test: no value change inside the window (a constant
            # series would leave rounding noise instead of zero in the moments).
            flat_x = changes[0][rows] == _rows_back(changes[0], rows, w - 1)
            flat_y = changes[1][rows] == _rows_back(changes[1], rows, w - 1)
            # Times 1/w, not divided by w: the rounding Polars gives ``expr / w``
            # (it multiplies by the reciprocal), which the published values carry.
            inv = 1.0 / w
            cov = sxy - sx * sy * inv
            vx = sxx - sx * sx * inv
            vy = syy - sy * sy * inv
            full = (pos_r >= w - 1) & (obs[k, rows] == w)
            # Ill-conditioned windows (a series whose mean dwarfs its spread):
            # the formulas above lose about the conditioning's factor of
            # precision, so those windows are summed again around their means.
            ill = np.flatnonzero(
                full & ~flat_y & ((syy > MAX_CONDITION * vy) | (~flat_x & (sxx > MAX_CONDITION * vx)))
            )
            if ill.size:
                ends = rows.start + ill if isinstance(rows, slice) else rows[ill]
                cov[ill], vx[ill], vy[ill] = _centred_moments(g, ends, w)
            with np.errstate(invalid="ignore", divide="ignore"):
                # Assigned, not written with ``out=``: ``rows`` may be an index array (a copy).
                corr[k, rows] = np.clip(cov / np.sqrt(vx * vy), -1.0, 1.0)
                beta[k, rows] = cov / vy
            beta_ok[k, rows] = full & ~flat_y
            corr_ok[k, rows] = beta_ok[k, rows] & ~flat_x
    return obs, corr, corr_ok, beta, beta_ok


def rolling_correlation(
    returns: pl.DataFrame,
    sessions: pl.Series,
    assets: Iterable[str],
    benchmarks: Iterable[str],
    windows: Sequence[int] = (30, 90, 180, 365),
    spans: pl.DataFrame | None = None,
    since: date | None = None,
    epoch: int = EPOCH_SESSIONS,
) -> pl.DataFrame:
    """mart_rolling_correlation: every asset versus every benchmark, per window.

    One row per pair, window and session of the pair's common span; correlation
    and beta are null until the window holds ``w`` paired returns. ``spans``:
    see ``paired_returns`` (rows whose window reaches before ``sessions`` are
    then not meaningful; the caller drops them). ``since``: only rows dated
    on/after it are returned (an incremental run), ordered the same way.

    ``epoch``: see ``EPOCH_SESSIONS``; epochs count from ``sessions[0]``, so
    a run over a later part of the calendar reproduces the values of a run
    over the whole of it only if its first session is a multiple of
    ``epoch`` sessions into the calendar (and the window reaches no further
    back than its start). Raises ValueError for a window longer than ``epoch``.
    """
    windows = sorted(set(windows))
    if windows and windows[-1] > epoch:
        raise ValueError(f"window of {windows[-1]} sessions is longer than the epoch of {epoch} sessions")
    g, dates = _grid(returns, sessions, assets, benchmarks, spans)
    if g.height == 0 or not windows:
        return pl.DataFrame(schema=MART_ROLLING_CORRELATION.polars_schema)
    # Output rows are ordered (pair, window, date): pair p's rows of window k
    # are grid rows start[p] .. start[p] + length[p] - 1 of that window's
    # arrays, so each column is one concatenation of slices (no sort, no
    # string key per row). ``since`` keeps a suffix of each slice, the only rows computed.
    first = 0 if since is None else int(dates.search_sorted(since, side="left"))
    obs, corr, corr_ok, beta, beta_ok = _window_arrays(g, windows, epoch, first)
    lo = g.start + np.clip(first - g.session_idx[g.start], 0, g.length)
    hi = g.start + g.length
    spans = [(k, a, b) for a, b in zip(lo.tolist(), hi.tolist()) for k in range(len(windows))]

    def column(values: np.ndarray) -> np.ndarray:
        """``values`` (window, grid row) or (grid row) in output order."""
        if values.ndim == 1:
            return np.concatenate([values[a:b] for _, a, b in spans]) if spans else values[:0]
        return np.concatenate([values[k, a:b] for k, a, b in spans]) if spans else values[0, :0]

    kept = np.repeat(hi - lo, len(windows))
    pair = np.repeat(np.arange(g.start.size), (hi - lo) * len(windows))
    frame = pl.DataFrame(
        {
            "_pair": pair,
            "date": column(dates.cast(pl.Int32).to_numpy()[g.session_idx]),
            "window_days": np.repeat(np.tile(np.array(windows, dtype=np.int32), g.start.size), kept),
            "correlation": column(corr),
            "_corr_ok": column(corr_ok),
            "beta": column(beta),
            "_beta_ok": column(beta_ok),
            "observations": column(obs),
        }
    )
    return frame.select(
        pl.col("date").cast(pl.Date),
        g.pairs["asset"].gather(frame["_pair"]).alias("asset"),
        g.pairs["benchmark"].gather(frame["_pair"]).alias("benchmark"),
        "window_days",
        pl.when(pl.col("_corr_ok")).then(pl.col("correlation")).alias("correlation"),
        pl.when(pl.col("_beta_ok")).then(pl.col("beta")).alias("beta"),
        "observations",
    ).pipe(MART_ROLLING_CORRELATION.conform)
