"""Properties of the returns and correlation transforms over generated inputs.

Example-based tests pin values on hand-made series; these check the rules that
must hold for any input: bounds, independence from row order, and agreement
with a direct window-by-window computation.
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.correlation import rolling_correlation
from transforms.returns import log_returns

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SESSIONS = pl.Series("session_date", [date(2024, 1, 1) + timedelta(days=i) for i in range(40)], dtype=pl.Date)
WINDOWS = (3, 7)

# Daily log returns to 12 decimals (a 1e-257 "return" only tests underflow in
# the reference), plus exact repeats so flat windows happen.
ret = st.one_of(
    st.none(), st.floats(-0.5, 0.5, allow_nan=False).map(lambda v: round(v, 12)), st.sampled_from([0.0, 0.01])
)
series = st.lists(ret, min_size=2, max_size=len(SESSIONS))
price = st.one_of(st.none(), st.floats(1e-6, 1e6, allow_nan=False), st.just(0.0), st.just(-1.0))


def returns_frame(x: list, y: list, offset: int) -> pl.DataFrame:
    rows = [("X", SESSIONS[i + offset], v) for i, v in enumerate(x) if i + offset < len(SESSIONS)]
    rows += [("Y", SESSIONS[i], v) for i, v in enumerate(y)]
    return pl.DataFrame(rows, schema={"symbol": pl.String, "session_date": pl.Date, "log_return": pl.Float64}, orient="row")


def direct(x: np.ndarray, y: np.ndarray) -> float | None:
    """Two-pass Pearson on one window; None when either side is flat."""
    dx, dy = x - x.mean(), y - y.mean()
    sx, sy = float(np.sqrt((dx * dx).sum())), float(np.sqrt((dy * dy).sum()))
    if sx == 0 or sy == 0:
        return None
    return float((dx * dy).sum() / (sx * sy))


@SETTINGS
@given(x=series, y=series, offset=st.integers(0, 10))
def test_correlation_is_bounded_and_explained_by_observations(x, y, offset):
    out = rolling_correlation(returns_frame(x, y, offset), SESSIONS, ["X"], ["Y"], WINDOWS)
    corr = out["correlation"].drop_nulls()
    assert corr.is_between(-1.0, 1.0).all()
    assert out["observations"].is_between(0, max(WINDOWS)).all()
    # A value only where the whole window is paired.
    valued = out.filter(pl.col("correlation").is_not_null())
    assert (valued["observations"] == valued["window_days"]).all()


@SETTINGS
@given(x=series, y=series, offset=st.integers(0, 10), seed=st.integers(0, 2**32 - 1))
def test_correlation_does_not_depend_on_row_order(x, y, offset, seed):
    frame = returns_frame(x, y, offset)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    a = rolling_correlation(frame, SESSIONS, ["X"], ["Y"], WINDOWS)
    b = rolling_correlation(shuffled, SESSIONS.shuffle(seed=seed), ["X"], ["Y"], WINDOWS)
    assert a.equals(b)


@SETTINGS
@given(x=series, y=series, offset=st.integers(0, 10))
def test_correlation_matches_a_direct_computation_of_each_window(x, y, offset):
    frame = returns_frame(x, y, offset)
    out = rolling_correlation(frame, SESSIONS, ["X"], ["Y"], WINDOWS)
    grid = {(s, d): v for s, d, v in frame.iter_rows()}
    for d, w, corr in out.select("date", "window_days", "correlation").iter_rows():
        i = SESSIONS.to_list().index(d)
        days = SESSIONS.to_list()[i - w + 1 : i + 1] if i >= w - 1 else []
        xs = [grid.get(("X", s)) for s in days]
        ys = [grid.get(("Y", s)) for s in days]
        if len(days) < w or any(v is None for v in xs + ys):
            assert corr is None
            continue
        want = direct(np.array(xs), np.array(ys))
        if want is None:
            assert corr is None
            continue
        assert corr is not None, (d, w)
        # The one-pass moment formula loses digits when a window is nearly
        # flat; compare where the signal is well above rounding.
        if min(np.std(xs), np.std(ys)) > 1e-6:
            assert math.isclose(corr, want, abs_tol=1e-7), (d, w, corr, want)


@SETTINGS
@given(
    closes=st.dictionaries(st.sampled_from(["A", "B"]), st.lists(price, min_size=1, max_size=len(SESSIONS)), min_size=1),
    seed=st.integers(0, 2**32 - 1),
)
def test_returns_are_consistent_with_prices(closes, seed):
    rows = [(s, SESSIONS[i], c) for s, cs in closes.items() for i, c in enumerate(cs) if c is not None]
    prices = pl.DataFrame(rows, schema={"symbol": pl.String, "date": pl.Date, "adj_close": pl.Float64}, orient="row")
    got = log_returns(prices.sample(fraction=1.0, shuffle=True, seed=seed), SESSIONS)
    assert got.equals(log_returns(prices, SESSIONS)), "row order does not matter"
    close = {(s, d): c for s, d, c in prices.iter_rows()}
    assert got.height == prices.height
    idx = {d: i for i, d in enumerate(SESSIONS.to_list())}
    for s, d, r in got.iter_rows():
        prev = SESSIONS[idx[d] - 1] if idx[d] > 0 else None
        c0, c1 = close.get((s, prev)), close[(s, d)]
        if c0 is None or c0 <= 0 or c1 <= 0:
            assert r is None, (s, d)
        else:
            assert r is not None and math.isfinite(r)
            # The defining identity, in the form that survives rounding.
            assert math.isclose(c0 * math.exp(r), c1, rel_tol=1e-9), (s, d)
