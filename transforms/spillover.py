"""mart_spillover: regime-conditional correlation and beta of crypto versus a benchmark.

"When the Russell 2000 rallies, do altcoins follow?" For each crypto asset
(and crypto index), benchmark, window of ``w`` sessions and published date
``t``, the window's sessions are split by the benchmark's own move that
session:

- ``risk_on``:  benchmark log return r_b(s) >  +1 x sd_b(s)
- ``risk_off``: r_b(s) < -1 x sd_b(s)
- ``all``:      every session of the window

where sd_b(s) is the sample standard deviation (ddof 1) of the benchmark's
log returns over the ``regime_lookback`` sessions *before* s (all of them
present; otherwise s is neither risk_on nor risk_off). Within each subset,
over the sessions with returns for both series, the Pearson correlation and
beta = cov(asset, benchmark) / var(benchmark) are published with the number
of sessions they rest on.

Returns are the aligned frame the rolling correlations use
(``transforms.correlation.paired_returns``: fact_returns on exchange
sessions, so a Monday crypto return compounds the weekend). Every window
statistic is computed from that window's values alone (scans within rows of
``w`` sessions fixed by the calendar, see ``window_stats``; no running sums
over the history), so a build that computes only dates on/after ``since``
from the same returns gives the full build's values bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

from contracts.tables import MART_SPILLOVER
from transforms.correlation import paired_returns
from transforms.matrix import as_of_sessions
from transforms.returns import session_index

Cadence = Literal["session", "month_end"]
REGIMES = ("risk_on", "risk_off", "all")


@dataclass(frozen=True)
class SpilloverParams:
    """Settings of mart_spillover, mart_lead_lag and mart_spillover_index (flows.settings documents them)."""

    windows: Sequence[int] = (90, 365)
    cadence: Cadence = "session"
    regime_lookback: int = 252
    min_observations: int = 10
    index_series: Sequence[str] = ("^RUT", "^GSPC", "BTC", "ETH", "ALTS")
    index_window: int = 200
    index_horizon: int = 10
    index_max_lags: int = 5
    index_ic: Literal["aic", "bic", "hqic", "fpe"] = "aic"
    index_step: int = 5
    # False leaves the three marts out.
    enabled: bool = True


def publish_dates(sessions: pl.Series, cadence: Cadence) -> pl.Series:
    """The dates mart_spillover and mart_lead_lag publish: every session, or the
    last session of each month plus the latest (as the correlation matrix)."""
    s = sessions.cast(pl.Date).unique().sort()
    if cadence == "session":
        return s
    if cadence == "month_end":
        return as_of_sessions(s)
    raise ValueError(f"unknown cadence {cadence!r}: expected 'session' or 'month_end'")


def pair_rows(grid: pl.DataFrame) -> tuple[pl.DataFrame, list[np.ndarray]]:
    """The (asset, benchmark) pairs of a ``paired_returns`` grid in the order they first
    appear, and each pair's row numbers in the grid (in grid order): one ``group_by``,
    not one frame per pair."""
    groups = grid.with_row_index("_row").group_by("asset", "benchmark", maintain_order=True).agg("_row")
    ends = np.cumsum(groups["_row"].list.len().to_numpy())[:-1]
    return groups.select("asset", "benchmark"), np.split(groups["_row"].explode().to_numpy(), ends)


def pair_column(grid: pl.DataFrame, rows: list[np.ndarray], column: str) -> list[np.ndarray]:
    """``column`` of a grid as float per pair (``pair_rows``' rows); nulls as NaN."""
    values = grid[column].cast(pl.Float64).fill_null(np.nan).to_numpy()
    return [values[r] for r in rows]


def pair_arrays(grid: pl.DataFrame) -> list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]]:
    """(asset, benchmark, session_idx, x, y) per pair of a ``paired_returns`` grid; nulls as NaN."""
    keys, rows = pair_rows(grid)
    sidx = grid["session_idx"].to_numpy()
    return list(zip(
        keys["asset"].to_list(), keys["benchmark"].to_list(), [sidx[r] for r in rows],
        pair_column(grid, rows, "x"), pair_column(grid, rows, "y"), strict=True,
    ))  # fmt: skip


# Above this conditioning (sum of squares over the sum of squared deviations of a
# window, i.e. 1 + n mean^2 / variance) a window's moments are recomputed
# around its own mean: the streaming form loses about that factor of precision.
MAX_CONDITION = 64.0


def _blocked(v: np.ndarray, w: int, origin: int, fill) -> np.ndarray:
    """``v`` (series x positions) in rows of ``w`` aligned on the session calendar:
    row k of a series holds the global positions k w .. k w + w - 1 (``origin``:
    the global position of column 0); positions outside v hold ``fill``."""
    lead = origin % w
    rows = -(-(lead + v.shape[1]) // w)
    out = np.full((v.shape[0], rows * w), fill, dtype=v.dtype)
    out[:, lead : lead + v.shape[1]] = v
    return out.reshape(v.shape[0], rows, w)


def _window_reduce(v: np.ndarray, w: int, origin: int, fill, scan, combine, ends: np.ndarray) -> np.ndarray:
    """Each series of ``v`` (series x positions) reduced over the ``w`` positions
    ending at each of ``ends``, each result from that window's values alone: a
    window of ``w`` covers the tail of one calendar-aligned row of ``w`` and the
    head of the next (or one whole row), so it is ``combine(suffix scan at its
    start, prefix scan at its end)`` (van Herk / Gil-Werman). The rows are fixed
    by the calendar, not by the span computed, and each row is scanned on its
    own (a sequential scan along the last axis), so a build of the later ends
    alone, or of one series alone, gives the same bits."""
    blk = _blocked(v, w, origin, fill)
    prefix = scan(blk, axis=2).reshape(v.shape[0], -1)
    suffix = scan(blk[:, :, ::-1], axis=2)[:, :, ::-1].reshape(v.shape[0], -1)
    e = ends + origin % w
    s = e - (w - 1)
    at_end = np.take(prefix, e, axis=1)
    return np.where(s % w == 0, at_end, combine(np.take(suffix, s, axis=1), at_end))


def _two_pass_moments(
    a: np.ndarray, b: np.ndarray, m: np.ndarray, ends: np.ndarray, w: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cov, var a, var b) of one series as sums of products of deviations from
    each window's own means (materialises the windows: for the few ill-conditioned ones)."""
    take = sliding_window_view(np.arange(a.size), w)[ends - (w - 1)]
    mw = m[take]
    aw = np.where(mw, a[take], 0.0)
    bw = np.where(mw, b[take], 0.0)
    n = mw.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        da = np.where(mw, aw - (aw.sum(axis=1) / n)[:, None], 0.0)
        db = np.where(mw, bw - (bw.sum(axis=1) / n)[:, None], 0.0)
    return (da * db).sum(axis=1), (da * da).sum(axis=1), (db * db).sum(axis=1)


def window_stats(
    a: np.ndarray, b: np.ndarray, mask: np.ndarray, ends: np.ndarray, w: int, min_obs: int, origin: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(correlation, beta of a on b, observations) over the ``w`` rows ending at each
    position in ``ends`` (each >= w - 1), counting only rows where ``mask`` holds
    (and a and b are present). Null (NaN) below ``min_obs`` rows or for a flat
    side (exact: max == min), beta only for a flat b. ``origin``: the calendar
    position of row 0 (see ``_window_reduce``).

    The window sums of a, b, a^2, b^2 and ab come from ``_window_reduce`` in
    O(rows) per series; the moments are sums minus the mean correction, or,
    for a window whose conditioning exceeds ``MAX_CONDITION``, recomputed as
    sums of deviations from the window's means. One series of ``window_stats_rows``."""
    corr, beta, n = window_stats_rows(a[None], b[None], mask[None], ends, w, min_obs, origin)
    return corr[0], beta[0], n[0]


def window_stats_rows(
    a: np.ndarray, b: np.ndarray, mask: np.ndarray, ends: np.ndarray, w: int, min_obs: int, origin: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``window_stats`` of many series at once: ``a``, ``b`` and ``mask`` are
    (series x positions) arrays on the same calendar positions (column 0 at
    ``origin``), the windows end at the same ``ends`` for every series; results
    are (series x ends). Each series' values are bit for bit those of
    ``window_stats`` on that series alone (every scan runs within one row of
    one series; the ill-conditioned windows are recomputed per series), so the
    marts batch their pairs without changing a bit (one call instead of one per
    pair, window and regime: the next day's few windows cost ~1 ms each)."""
    m = mask & ~np.isnan(a) & ~np.isnan(b)
    ends = np.asarray(ends, dtype=np.int64)
    if not ends.size:
        empty = np.empty((a.shape[0], 0))
        return empty, empty, np.empty((a.shape[0], 0), dtype=np.int64)
    if ends.min() < w - 1 or ends.max() >= a.shape[1]:
        raise ValueError(
            f"window_stats: windows of {w} ending at {ends.min()}..{ends.max()} exceed the {a.shape[1]} rows given"
        )
    # Only the calendar rows the windows touch (an incremental build: the last
    # one or two); the rows start where they did, so the scans give the same bits.
    lo = max((int(ends.min()) - (w - 1) + origin) // w * w - origin, 0)
    hi = int(ends.max()) + 1
    if lo or hi < a.shape[1]:
        a, b, m, ends, origin = a[:, lo:hi], b[:, lo:hi], m[:, lo:hi], ends - lo, origin + lo
    a0 = np.where(m, a, 0.0)
    b0 = np.where(m, b, 0.0)

    def total(v: np.ndarray) -> np.ndarray:
        return _window_reduce(v, w, origin, 0.0, np.cumsum, np.add, ends)

    def extreme(v: np.ndarray, fill: float, ufunc) -> np.ndarray:
        return _window_reduce(np.where(m, v, fill), w, origin, fill, ufunc.accumulate, ufunc, ends)

    n = _window_reduce(m.astype(np.int64), w, origin, 0, np.cumsum, np.add, ends)
    sa, sb = total(a0), total(b0)
    saa, sbb, sab = total(a0 * a0), total(b0 * b0), total(a0 * b0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sab - sa * sb / n
        va = saa - sa * sa / n
        vb = sbb - sb * sb / n
        enough = n >= max(min_obs, 2)
        ill = enough & ~((saa <= MAX_CONDITION * va) & (sbb <= MAX_CONDITION * vb))
        for p in np.flatnonzero(ill.any(axis=1)):
            at = np.flatnonzero(ill[p])
            cov[p, at], va[p, at], vb[p, at] = _two_pass_moments(a[p], b[p], m[p], ends[at], w)
        flat_a = extreme(a, -np.inf, np.maximum) == extreme(a, np.inf, np.minimum)
        flat_b = extreme(b, -np.inf, np.maximum) == extreme(b, np.inf, np.minimum)
        corr = np.where(enough & ~flat_a & ~flat_b, np.clip(cov / np.sqrt(va * vb), -1.0, 1.0), np.nan)
        beta = np.where(enough & ~flat_b, cov / vb, np.nan)
    return corr, beta, n


def stack_on_calendar(series: Sequence[np.ndarray], origins: Sequence[int], start: int, stop: int, fill) -> np.ndarray:
    """(len(series) x (stop - start)): each series (its element 0 at calendar
    position ``origins[i]``) placed over the calendar positions start .. stop - 1,
    ``fill`` where it has none (``window_stats_rows``' layout)."""
    out = np.full((len(series), stop - start), fill, dtype=series[0].dtype if len(series) else float)
    for i, (v, o) in enumerate(zip(series, origins, strict=True)):
        lo, hi = max(start, o), min(stop, o + v.size)
        if lo < hi:
            out[i, lo - start : hi - start] = v[lo - o : hi - o]
    return out


# At most this many (series x calendar position) cells per ``window_stats_rows`` call:
# its dozen temporaries then stay in the CPU's cache (batches of 4-8 full-history pairs
# took ~1.2x the CPU of one pair at a time). A full build's pairs span the whole history
# and go one at a time; the next day's windows span one or two calendar rows of ``w``,
# so a batch holds ~11 (w = 365) to ~45 (w = 90) pairs.
BATCH_CELLS = 1 << 13


def batches_by_ends(
    pairs: Sequence[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]], firsts: dict[tuple[str, str], int],
    publish: np.ndarray, windows: Sequence[int], since_idx: int,
) -> list[tuple[int, np.ndarray, list[int]]]:
    """(window, calendar positions of the windows' ends, pair numbers) for sets of
    ``pair_arrays``' pairs whose windows (``_targets``) end at the same sessions:
    what ``window_stats_rows`` computes in one call (the next day: every pair, in
    batches of ``BATCH_CELLS``)."""
    groups: dict[tuple[int, bytes], list[int]] = {}
    for p, (asset, bench, sidx, _, _) in enumerate(pairs):
        for w in sorted(set(windows)):
            ends = _targets(sidx, firsts[asset, bench], publish, w, since_idx)
            if ends.size:
                groups.setdefault((w, (ends + int(sidx[0])).astype(np.int64).tobytes()), []).append(p)
    out = []
    for (w, key), members in groups.items():
        ends = np.frombuffer(key, dtype=np.int64)
        start, stop = window_span(ends, w)
        size = max(BATCH_CELLS // (stop - start), 1)
        out += [(w, ends, members[i : i + size]) for i in range(0, len(members), size)]
    return out


def window_span(ends: np.ndarray, w: int) -> tuple[int, int]:
    """The calendar positions (start, stop) ``window_stats_rows`` reads for windows of ``w``
    ending at ``ends``: from the start of the calendar row of ``w`` the first window starts in."""
    return (int(ends.min()) - (w - 1)) // w * w, int(ends.max()) + 1


def trailing_sd(returns: pl.DataFrame, sessions: pl.Series, symbol: str, lookback: int) -> np.ndarray:
    """Per session index: sd (ddof 1) of ``symbol``'s log returns over the ``lookback``
    sessions before it, NaN unless all of them carry a return."""
    idx = session_index(sessions)
    r = np.full(idx.height, np.nan)
    own = returns.filter((pl.col("symbol") == symbol) & pl.col("log_return").is_not_null()).join(
        idx, on="session_date", how="inner"
    )
    r[own["session_idx"].to_numpy()] = own["log_return"].to_numpy()
    sd = np.full(idx.height, np.nan)
    if idx.height > lookback:
        win = sliding_window_view(r, lookback)[:-1]  # window k covers sessions k .. k+lookback-1
        full = ~np.isnan(win).any(axis=1)
        vals = np.full(win.shape[0], np.nan)
        if full.any():
            vals[full] = win[full].std(axis=1, ddof=1)
        sd[lookback:] = vals
    return sd


def _targets(sess_idx: np.ndarray, first: int, publish: np.ndarray, w: int, since_idx: int) -> np.ndarray:
    """Positions in a pair's dense grid (``sess_idx``: calendar positions; ``first``:
    the calendar position of the pair's first session) whose window lies in the
    pair's span, on a publish date (``publish``: per calendar position), on/after ``since``."""
    keep = (sess_idx - first >= w - 1) & publish[sess_idx] & (sess_idx >= since_idx)
    return np.flatnonzero(keep)


def pair_grid(
    returns: pl.DataFrame, sessions: pl.Series, assets: list[str], benchmarks: list[str], since_idx: int, reach: int
) -> tuple[pl.DataFrame, dict[tuple[str, str], int]]:
    """``paired_returns`` over the sessions a build of the positions from
    ``since_idx`` on reads, and each pair's first calendar position. A full
    build (or one reaching back to the first session) reads every session; a
    later one only those from ``reach`` sessions before ``since_idx``, each pair
    keeping the span of the whole returns. ``session_idx`` counts from the
    calendar's first session either way, so windows and publish dates are
    placed as in the full build."""
    cut = since_idx - reach
    if cut <= 0:
        grid = paired_returns(returns, sessions, assets, benchmarks)
        firsts = grid.group_by("asset", "benchmark").agg(pl.col("session_idx").min().alias("first"))
        return grid, {(a, b): f for a, b, f in firsts.iter_rows()}
    idx = session_index(sessions)
    have = returns.filter(pl.col("log_return").is_not_null()).join(idx, on="session_date", how="inner")
    extent = have.group_by("symbol").agg(
        pl.col("session_idx").min().alias("i0"), pl.col("session_idx").max().alias("i1")
    )
    x = extent.filter(pl.col("symbol").is_in(assets)).rename({"symbol": "asset", "i0": "x0", "i1": "x1"})
    y = extent.filter(pl.col("symbol").is_in(benchmarks)).rename({"symbol": "benchmark", "i0": "y0", "i1": "y1"})
    spans = (
        x.join(y, how="cross")
        .filter(pl.col("asset") != pl.col("benchmark"))
        .with_columns(pl.max_horizontal("x0", "y0").alias("i0"), pl.min_horizontal("x1", "y1").alias("i1"))
        .filter(pl.col("i0") <= pl.col("i1"))
    )
    tail = sessions.slice(cut)
    dates = sessions.to_numpy()
    given = spans.select(
        "asset", "benchmark",
        pl.Series(dates[spans["i0"].to_numpy()]).alias("first"), pl.Series(dates[spans["i1"].to_numpy()]).alias("last"),
    )  # fmt: skip
    grid = paired_returns(returns.filter(pl.col("session_date") >= tail[0]), tail, assets, benchmarks, spans=given)
    grid = grid.with_columns((pl.col("session_idx") + cut).cast(grid.schema["session_idx"]))
    return grid, {(a, b): f for a, b, f in spans.select("asset", "benchmark", "i0").iter_rows()}


def _since_idx(sessions: pl.Series, since: date | None) -> int:
    if since is None:
        return 0
    return int(sessions.cast(pl.Date).unique().sort().search_sorted(since, side="left"))


def mart_spillover(
    returns: pl.DataFrame,
    sessions: pl.Series,
    assets: Iterable[str],
    benchmarks: Iterable[str],
    windows: Sequence[int] = (90, 365),
    regime_lookback: int = 252,
    min_observations: int = 10,
    cadence: Cadence = "session",
    since: date | None = None,
) -> pl.DataFrame:
    """mart_spillover (see the module docstring): one row per asset, benchmark,
    window, regime and publish date whose window lies inside the pair's common
    span; ``since``: only dates on/after it."""
    sessions = sessions.cast(pl.Date).unique().sort()
    benchmarks = list(benchmarks)
    since_idx = _since_idx(sessions, since)
    grid, firsts = pair_grid(returns, sessions, list(assets), benchmarks, since_idx, max(windows, default=0) + 1)
    if grid.is_empty():
        return pl.DataFrame(schema=MART_SPILLOVER.polars_schema)
    all_dates = sessions.to_numpy()
    publish = np.isin(all_dates, publish_dates(sessions, cadence).to_numpy())
    sds = {b: trailing_sd(returns, sessions, b, regime_lookback) for b in benchmarks}
    parts: list[tuple[int, int, int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    pairs = pair_arrays(grid)
    masks: dict[str, list[np.ndarray]] = {regime: [] for regime in REGIMES}
    for _, bench, sidx, _, y in pairs:
        sd = sds[bench][sidx]
        with np.errstate(invalid="ignore"):
            masks["risk_on"].append(y > sd)
            masks["risk_off"].append(y < -sd)
        masks["all"].append(np.ones(y.size, dtype=bool))
    origins = [int(sidx[0]) for _, _, sidx, _, _ in pairs]
    # The pairs whose windows end at the same sessions (the next day: all of them) in one call each.
    for w, ends, members in batches_by_ends(pairs, firsts, publish, windows, since_idx):
        start, stop = window_span(ends, w)
        at = [origins[p] for p in members]
        x = stack_on_calendar([pairs[p][3] for p in members], at, start, stop, np.nan)
        y = stack_on_calendar([pairs[p][4] for p in members], at, start, stop, np.nan)
        for r, regime in enumerate(REGIMES):
            mask = stack_on_calendar([masks[regime][p] for p in members], at, start, stop, False)
            corr, beta, n = window_stats_rows(x, y, mask, ends - start, w, min_observations, origin=start)
            for i, p in enumerate(members):
                parts.append((p, w, r, ends.size, all_dates[ends], corr[i], beta[i], n[i]))
    if not parts:
        return pl.DataFrame(schema=MART_SPILLOVER.polars_schema)
    # In key order (asset, benchmark, window_days, regime; dates ascend within a
    # part), so the frame needs no sort.
    parts.sort(key=lambda q: (pairs[q[0]][0], pairs[q[0]][1], q[1], REGIMES[q[2]]))
    pair = np.repeat([p[0] for p in parts], [p[3] for p in parts])
    out = pl.DataFrame(
        {
            "date": np.concatenate([p[4] for p in parts]),
            "asset": pl.Series([a for a, *_ in pairs]).gather(pair),
            "benchmark": pl.Series([b for _, b, *_ in pairs]).gather(pair),
            "window_days": np.repeat([p[1] for p in parts], [p[3] for p in parts]),
            "regime": pl.Series(REGIMES).gather(np.repeat([p[2] for p in parts], [p[3] for p in parts])),
            "correlation": np.concatenate([p[5] for p in parts]),
            "beta": np.concatenate([p[6] for p in parts]),
            "observations": np.concatenate([p[7] for p in parts]),
        }
    ).with_columns(pl.col("correlation", "beta").fill_nan(None))
    return MART_SPILLOVER.conform(out)
