"""The Alpha Score marts' full build in session ranges (the factors node's partitions) equals the
one-piece build bit for bit: same rows, same values, same order, on a panel with every awkward case
(tests/transforms/test_alpha_pinned.py: late listings, delistings, price gaps, a zero and a negative
price, fundamentals, shuffled inputs), with range boundaries placed on those cases."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.transforms.test_alpha_pinned import SESSIONS, make_panel
from transforms.graph import GRAPH, assemble
from transforms.marts import (
    FACTOR_TABLES,
    MartParams,
    combine_factor_ranges,
    factor_marts,
    factor_marts_range,
    factor_session_ranges,
)

# Short horizons next to the default ones: more IC rows cross a range boundary.
PARAMS = MartParams(factor_horizons=(5, 21, 63))


@pytest.fixture(scope="module")
def panel():
    return make_panel()


@pytest.fixture(scope="module")
def whole(panel):
    prices, assets, sessions, fund = panel
    return factor_marts(prices, assets, sessions, PARAMS, fund)


def ranges(cuts: list[int]) -> list:
    """Session ranges starting at SESSIONS[i] for each i of ``cuts`` (the first at 0)."""
    bounds = [SESSIONS[i] for i in cuts]
    return list(zip(bounds, bounds[1:] + [None], strict=True))


def assert_tables_equal(got: dict, want: dict) -> None:
    assert set(got) == set(want) == set(FACTOR_TABLES)
    for t in FACTOR_TABLES:
        assert want[t].height > 0, t
        assert_frame_equal(got[t], want[t], check_exact=True)


@pytest.mark.parametrize(
    "cuts",
    [
        [0, 280],
        # a listing (S03 at 150), inside S08's gap (200-230), a momentum look-back reaching back
        # into the gap (215 + 252), S05's delisting (480), within the longest horizon of the end
        [0, 150, 215, 467, 480, 520],
        # ranges shorter than a horizon and than the metrics' look-back
        [0, 3, 60, 61, 300, 555, 559],
    ],
)
def test_session_ranges_combine_to_the_one_piece_build(panel, whole, cuts):
    prices, assets, sessions, fund = panel
    parts = [factor_marts_range(prices, assets, sessions, PARAMS, fund, r) for r in ranges(cuts)]
    assert_tables_equal(combine_factor_ranges(parts), whole)


def test_session_ranges_without_fundamentals(panel):
    prices, assets, sessions, _ = panel
    want = factor_marts(prices, assets, sessions, PARAMS, None)
    parts = [factor_marts_range(prices, assets, sessions, PARAMS, None, r) for r in ranges([0, 200, 400])]
    assert_tables_equal(combine_factor_ranges(parts), want)


def test_a_range_boundary_off_the_calendar(panel, whole):
    prices, assets, sessions, fund = panel
    weekend = SESSIONS[300] - timedelta(days=1)  # a Sunday: the range starts at the next session
    rs = [(SESSIONS[0], weekend), (weekend, None)]
    parts = [factor_marts_range(prices, assets, sessions, PARAMS, fund, r) for r in rs]
    assert_tables_equal(combine_factor_ranges(parts), whole)


@pytest.mark.parametrize("n", [1, 2, 3, 7, len(SESSIONS), len(SESSIONS) + 5])
def test_session_ranges_cover_every_session_once(n):
    rs = factor_session_ranges(pl.Series(SESSIONS[::-1], dtype=pl.Date), n)
    assert len(rs) == min(n, len(SESSIONS))
    assert rs[0][0] == SESSIONS[0] and rs[-1][1] is None
    assert all(a[1] == b[0] for a, b in zip(rs, rs[1:]))
    sizes = [sum(lo <= d and (hi is None or d < hi) for d in SESSIONS) for lo, hi in rs]
    assert sum(sizes) == len(SESSIONS) and max(sizes) - min(sizes) <= 1


def test_the_factors_node_runs_its_ranges_as_named_partitions(panel, whole):
    prices, assets, sessions, fund = panel
    factors = [n for n in GRAPH if n.name == "factors"]
    calls = []

    def runner(fn, arg_list, names=None):
        calls.append(list(names))
        return [fn(*a) for a in arg_list]

    params = dataclasses.replace(PARAMS, factor_partitions=3)
    got = assemble(prices, assets, sessions, params, fund, runner, graph=factors)
    assert calls == [["factors-1of3", "factors-2of3", "factors-3of3"]]
    assert_tables_equal(got.tables, whole)
    # One piece by default (MartParams; production's setting says how many).
    calls.clear()
    assert_tables_equal(assemble(prices, assets, sessions, PARAMS, fund, runner, graph=factors).tables, whole)
    assert calls == [["factors"]]
