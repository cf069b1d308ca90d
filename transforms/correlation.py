"""Rolling Pearson correlation and beta of assets versus benchmarks.

A window of ``w`` sessions yields a value only when all ``w`` sessions carry a
return for both series ("paired"): a partial window would mix regimes and make
figures from different windows incomparable. ``observations`` always reports how
many paired returns the window holds, so a null is explainable. Zero variance in
either series gives a null correlation (and a null beta when the benchmark is
flat), never a division artefact.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
    """(asset, benchmark, session_idx, session_date, x, y) on a dense session grid.

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
    idx = session_index(sessions)
    assets, benchmarks = list(assets), list(benchmarks)
    # Only the pairs' own series: the returns frame also holds every stock (millions of rows).
    r = (
        returns.filter(pl.col("symbol").is_in(assets + benchmarks) & pl.col("log_return").is_not_null())
        .join(idx, on="session_date", how="inner")
    )
    x = r.filter(pl.col("symbol").is_in(assets)).select(
        pl.col("symbol").alias("asset"), "session_idx", pl.col("log_return").alias("x")
    )
    y = r.filter(pl.col("symbol").is_in(benchmarks)).select(
        pl.col("symbol").alias("benchmark"), "session_idx", pl.col("log_return").alias("y")
    )
    span_x = x.group_by("asset").agg(pl.col("session_idx").min().alias("x0"), pl.col("session_idx").max().alias("x1"))
    span_y = y.group_by("benchmark").agg(pl.col("session_idx").min().alias("y0"), pl.col("session_idx").max().alias("y1"))
    derived = (
        span_x.join(span_y, how="cross")
        .filter(pl.col("asset") != pl.col("benchmark"))
        .select(
            "asset",
            "benchmark",
            pl.int_ranges(pl.max_horizontal("x0", "y0"), pl.min_horizontal("x1", "y1") + 1, dtype=pl.Int32).alias(
                "session_idx"
            ),
        )
    )
    if spans is not None:
        # Span bounds (dates) to positions in ``sessions``: first session on/after ``first``
        # up to the last on/before ``last``.
        dates = idx["session_date"]
        lo = pl.Series(dates.search_sorted(spans["first"].cast(pl.Date), side="left"), dtype=pl.Int32)
        hi = pl.Series(dates.search_sorted(spans["last"].cast(pl.Date), side="right"), dtype=pl.Int32)
        given = spans.select("asset", "benchmark").with_columns(
            pl.int_ranges(lo, hi, dtype=pl.Int32).alias("session_idx")
        )
        derived = pl.concat([derived.join(given, on=["asset", "benchmark"], how="anti"), given])
    spans = derived.explode("session_idx").drop_nulls("session_idx")
    return (
        spans.join(x, on=["asset", "session_idx"], how="left")
        .join(y, on=["benchmark", "session_idx"], how="left")
        .join(idx, on="session_idx", how="left")
        .sort("asset", "benchmark", "session_idx")
    )


# Window sums are differences of cumulative sums that restart at every epoch of
# this many sessions, counted from the calendar's first session. A row's value
# then depends only on its own pair's returns since the start of the previous
# epoch (or the pair's start): not on the other pairs of the grid, nor on where
# the grid starts, so a partitioned build and an incremental rebuild whose
# sessions start on an epoch boundary reproduce the full build bit for bit.
# A window must fit in one epoch (it then spans at most two).
EPOCH_SESSIONS = 512

# Sums the moment formulas need, over paired rows (unpaired rows add zeros).
_SUMS = ("x", "y", "xy", "xx", "yy")


def _with_positions(grid: pl.DataFrame, epoch: int) -> pl.DataFrame:
    """Adds ``_pair`` (pair number), ``_pos`` (row number within its pair), the running
    paired count, and per sum its cumulative sum within the (pair, epoch)
    segment (``_c_<sum>``) and the pair's last one of the previous epoch
    (``_p_<sum>``), so window statistics can be computed over the whole sorted
    grid at once instead of per pair."""
    i = pl.int_range(pl.len())
    first = (pl.col("asset") != pl.col("asset").shift(1)) | (pl.col("benchmark") != pl.col("benchmark").shift(1))
    first = first.fill_null(True)
    ep = pl.col("session_idx") // epoch
    seg_first = first | (ep != ep.shift(1)).fill_null(True)
    paired = (pl.col("x").is_not_null() & pl.col("y").is_not_null()).cast(pl.Int32)
    start = pl.when(first).then(i).forward_fill()
    seg_start = pl.when(seg_first).then(i).forward_fill()
    # Unpaired sessions contribute zeros to the sums; they are only ever used
    # when the window is fully paired, so the zeros never reach a result.
    px = pl.when(paired == 1).then(pl.col("x")).otherwise(0.0)
    py = pl.when(paired == 1).then(pl.col("y")).otherwise(0.0)
    terms = {"x": px, "y": py, "xy": px * py, "xx": px * px, "yy": py * py}
    grid = grid.with_columns(
        start.alias("_start"),
        seg_start.alias("_seg_start"),
        paired.cum_sum().alias("_cum"),
        first.cum_sum().alias("_pair"),
        seg_first.cum_sum().alias("_seg"),
    )
    # A cumulative sum that truly restarts per segment (a global one minus an
    # offset would keep the rounding of every earlier row).
    grid = grid.with_columns(terms[k].cum_sum().over("_seg").alias(f"_c_{k}") for k in _SUMS)
    # The previous epoch's last cumulative value, when the pair has one (0 when
    # the segment opens the pair).
    has_prev = pl.col("_seg_start") > pl.col("_start")
    before = (pl.col("_seg_start") - 1).clip(lower_bound=0)
    return grid.with_columns(
        (i - pl.col("_start")).alias("_pos"),
        (i - pl.col("_seg_start")).alias("_seg_pos"),
        # Paired rows of all earlier pairs, to turn the running count into the pair's own.
        (pl.col("_cum").gather(pl.col("_start")) - paired.gather(pl.col("_start"))).alias("_paired_before"),
        *(
            pl.when(has_prev).then(pl.col(f"_c_{k}").gather(before)).otherwise(0.0).alias(f"_p_{k}")
            for k in _SUMS
        ),
    )


def _window_stats(w: int) -> list[pl.Expr]:
    # The grid is sorted by pair and session and dense within a pair, so a
    # window of w rows ending at a row whose position in its pair is >= w - 1
    # lies inside that pair; rows closer to the pair's start are never full.
    inside = pl.col("_pos") >= w - 1
    paired = pl.col("x").is_not_null() & pl.col("y").is_not_null()

    def wsum(k: str) -> pl.Expr:
        # Sum over rows (t-w, t]: within the segment a difference of its
        # cumulative sums; when t-w lies in the previous epoch, the rest of
        # that epoch is its last cumulative value minus C(t-w). The row just
        # before the pair (position w - 1) counts as 0. Only the pair's own
        # rows from the previous epoch on enter, in a fixed order.
        c = pl.col(f"_c_{k}")
        back = pl.when(pl.col("_pos") >= w).then(c.shift(w)).otherwise(0.0)
        return pl.when(pl.col("_seg_pos") >= w).then(c - back).otherwise(c + (pl.col(f"_p_{k}") - back))

    # ... so the paired count of a short window is a difference of cumulative counts.
    n = pl.when(inside).then(paired.cast(pl.Int32).rolling_sum(w, min_samples=w)).otherwise(
        pl.col("_cum") - pl.col("_paired_before")
    )
    # Exact flatness test: a constant series has max == min, whereas the
    # moment formula below would leave rounding noise instead of zero.
    flat_x = pl.col("x").rolling_max(w, min_samples=w) == pl.col("x").rolling_min(w, min_samples=w)
    flat_y = pl.col("y").rolling_max(w, min_samples=w) == pl.col("y").rolling_min(w, min_samples=w)
    sx, sy = wsum("x"), wsum("y")
    cov = wsum("xy") - sx * sy / w
    vx = wsum("xx") - sx * sx / w
    vy = wsum("yy") - sy * sy / w
    full = inside & (n == w)
    corr = (cov / (vx * vy).sqrt()).clip(-1.0, 1.0)
    beta = cov / vy
    return [
        n.alias("observations"),
        pl.when(full & ~flat_x & ~flat_y).then(corr).otherwise(None).alias("correlation"),
        pl.when(full & ~flat_y).then(beta).otherwise(None).alias("beta"),
    ]


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
    grid = paired_returns(returns, sessions, assets, benchmarks, spans)
    if grid.is_empty():
        return pl.DataFrame(schema=MART_ROLLING_CORRELATION.polars_schema)
    grid = _with_positions(grid, epoch)
    frames = [
        grid.with_columns(_window_stats(w)).select(
            pl.col("session_date").alias("date"),
            "asset",
            "benchmark",
            pl.lit(w, dtype=pl.Int32).alias("window_days"),
            "correlation",
            "beta",
            "observations",
        )
        for w in windows
    ]
    if since is not None:
        keys = ["asset", "benchmark", "window_days", "date"]
        return pl.concat([f.filter(pl.col("date") >= since) for f in frames]).sort(keys).pipe(MART_ROLLING_CORRELATION.conform)
    # Each frame is in grid order (pair, date). The output wants (pair,
    # window, date): take each pair's slice of each window's frame in turn,
    # by position, rather than sorting millions of rows on string keys.
    pairs = grid.group_by("_pair").agg(pl.col("_start").first(), pl.len()).sort("_pair")
    n = grid.height
    order = np.concatenate(
        [np.arange(start, start + length) + k * n for start, length in pairs.select("_start", "len").iter_rows() for k in range(len(windows))]
    )
    return pl.concat(frames)[order].pipe(MART_ROLLING_CORRELATION.conform)
