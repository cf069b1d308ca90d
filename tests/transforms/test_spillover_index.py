"""The Diebold-Yilmaz spillover index.

- the generalized FEVD against the closed form of a two-series VAR(1) with
  known A and Sigma (horizons 1 and 2, written out by hand);
- statsmodels' own ``fevd`` is the orthogonalised (Cholesky) one: it differs,
  and depends on the order of the series, where ours does not;
- two independent series give an index near zero, a common factor a large one;
- dates from ``since`` on equal the full computation's bit for bit.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flows.calendar import sessions as exchange_sessions
from transforms.spillover_index import (
    fit_var,
    generalized_fevd,
    index_dates,
    ma_matrices,
    mart_spillover_index,
    spillover_table,
)

A = np.array([[0.5, 0.2], [0.1, 0.3]])
SIGMA = np.array([[1.0, 0.4], [0.4, 2.0]])


def test_horizon_one_is_the_squared_correlation():
    # Phi_0 = I: theta_12 = s12^2 / (s22 s11) = rho^2, theta_11 = 1; rows then sum to 1 + rho^2.
    rho2 = 0.4**2 / (1.0 * 2.0)
    theta = generalized_fevd(A[None], SIGMA, 1)
    expected = np.array([[1, rho2], [rho2, 1]]) / (1 + rho2)
    np.testing.assert_allclose(theta, expected, rtol=1e-14)


def test_two_series_var1_horizon_two_by_hand():
    a11, a12, a21, a22 = 0.5, 0.2, 0.1, 0.3
    s11, s12, s22 = 1.0, 0.4, 2.0
    # h = 0: Phi_0 Sigma = Sigma. h = 1: Phi_1 Sigma = A Sigma.
    as11, as12 = a11 * s11 + a12 * s12, a11 * s12 + a12 * s22
    as21, as22 = a21 * s11 + a22 * s12, a21 * s12 + a22 * s22
    # Denominators: sum_h (Phi_h Sigma Phi_h')_ii.
    d1 = s11 + (as11 * a11 + as12 * a12)
    d2 = s22 + (as21 * a21 + as22 * a22)
    t11 = (s11**2 + as11**2) / s11 / d1
    t12 = (s12**2 + as12**2) / s22 / d1
    t21 = (s12**2 + as21**2) / s11 / d2
    t22 = (s22**2 + as22**2) / s22 / d2
    expected = np.array([[t11 / (t11 + t12), t12 / (t11 + t12)], [t21 / (t21 + t22), t22 / (t21 + t22)]])
    theta = generalized_fevd(A[None], SIGMA, 2)
    np.testing.assert_allclose(theta, expected, rtol=1e-13)
    table = spillover_table(theta)
    assert table["from_others"] == pytest.approx(100 * expected[[0, 1], [1, 0]])
    assert table["to_others"] == pytest.approx(100 * expected[[1, 0], [0, 1]])
    assert table["total_spillover"] == pytest.approx(50 * (expected[0, 1] + expected[1, 0]))
    assert table["net"].sum() == pytest.approx(0.0, abs=1e-12)


def test_ma_matrices_of_a_var2():
    a1, a2 = np.array([[0.5, 0.1], [0.0, 0.2]]), np.array([[0.1, 0.0], [0.3, 0.1]])
    phi = ma_matrices(np.stack([a1, a2]), 4)
    np.testing.assert_allclose(phi[1], a1)
    np.testing.assert_allclose(phi[2], a1 @ a1 + a2)
    np.testing.assert_allclose(phi[3], a1 @ phi[2] + a2 @ a1)


def test_generalized_differs_from_statsmodels_cholesky_fevd_and_ignores_order():
    from statsmodels.tsa.api import VAR

    rng = np.random.default_rng(1)
    e = rng.multivariate_normal([0, 0], SIGMA, 3000)
    x = np.zeros_like(e)
    for t in range(1, len(e)):
        x[t] = A @ x[t - 1] + e[t]
    res = VAR(x).fit(1)
    ours = generalized_fevd(res.coefs, res.sigma_u, 10)
    cholesky = res.fevd(10).decomp[:, -1, :]  # (series, shock) at horizon 10
    assert abs(ours[0, 1] - cholesky[0, 1]) > 0.02  # the first series gets no contemporaneous share there
    swapped = VAR(x[:, ::-1]).fit(1)
    np.testing.assert_allclose(generalized_fevd(swapped.coefs, swapped.sigma_u, 10)[::-1, ::-1], ours, rtol=1e-8)
    # The fit recovers the VAR the data came from.
    coefs, sigma = fit_var(x, 5, "bic")
    assert coefs.shape[0] == 1
    np.testing.assert_allclose(coefs[0], A, atol=0.06)
    np.testing.assert_allclose(sigma, SIGMA, atol=0.15)


@pytest.fixture(scope="module")
def sess() -> pl.Series:
    return exchange_sessions(date(2022, 1, 3), date(2024, 12, 31)).sort()


def frame(sess: pl.Series, series: dict[str, np.ndarray]) -> pl.DataFrame:
    return pl.concat(pl.DataFrame({"symbol": k, "session_date": sess, "log_return": v}) for k, v in series.items())


def test_independent_series_give_an_index_near_zero(sess):
    rng = np.random.default_rng(2)
    n = sess.len()
    returns = frame(sess, {"^RUT": rng.normal(0, 0.01, n), "BTC": rng.normal(0, 0.03, n)})
    out = mart_spillover_index(returns, sess, ("^RUT", "BTC"), window=200, step=20)
    assert out.height and set(out["series"]) == {"^RUT", "BTC"}
    assert out["total_spillover"].max() < 5.0
    assert (out["own_share"] + out["from_others"] - 100).abs().max() < 1e-9


def test_a_common_factor_gives_a_large_index_and_a_net_transmitter(sess):
    rng = np.random.default_rng(4)
    n = sess.len()
    rut = rng.normal(0, 0.01, n)
    # BTC loads on today's ^RUT shock and on yesterday's: ^RUT transmits.
    btc = 0.8 * rut + 1.5 * np.concatenate([[0.0], rut[:-1]]) + rng.normal(0, 0.01, n)
    returns = frame(sess, {"^RUT": rut, "BTC": btc, "ETH": rng.normal(0, 0.02, n)})
    out = mart_spillover_index(returns, sess, ("^RUT", "BTC", "ETH", "ALTS"), window=200, step=20)
    assert set(out["series"]) == {"^RUT", "BTC", "ETH"}  # ALTS has no returns
    last = out.filter(pl.col("date") == sess[-1])
    net = dict(zip(last["series"], last["net"], strict=True))
    assert last["total_spillover"][0] > 20
    assert net["^RUT"] > 20 and net["BTC"] < -20
    assert (last["lag_order"] >= 1).all()


def test_step_dates_and_since_reproduce_the_full_rows(sess):
    rng = np.random.default_rng(6)
    n = sess.len()
    returns = frame(sess, {"^RUT": rng.normal(0, 0.01, n), "BTC": rng.normal(0, 0.03, n)})
    dates = index_dates(sess, 20)
    assert dates[-1] == sess[-1] and dates[0] == sess[19] and dates[1] == sess[39]
    full = mart_spillover_index(returns, sess, ("^RUT", "BTC"), window=200, step=20)
    assert set(full["date"]) <= set(dates) and full["date"].min() >= sess[199]
    since = sess[-60]
    part = mart_spillover_index(returns, sess, ("^RUT", "BTC"), window=200, step=20, since=since)
    assert_frame_equal(full.filter(pl.col("date") >= since), part, check_exact=True)


def test_a_flat_or_duplicated_series_gives_no_row_instead_of_failing(sess):
    rng = np.random.default_rng(8)
    n = sess.len()
    rut = rng.normal(0, 0.01, n)
    flat = frame(sess, {"^RUT": rut, "USDT": np.zeros(n)})
    assert mart_spillover_index(flat, sess, ("^RUT", "USDT"), step=50).is_empty()
    copy = frame(sess, {"^RUT": rut, "IWM": rut})
    assert mart_spillover_index(copy, sess, ("^RUT", "IWM"), step=50).is_empty()


@pytest.mark.parametrize("tie", ["numpy_cholesky", "scipy_cholesky"])
@pytest.mark.parametrize("ic", ["aic", "bic", "hqic", "fpe"])
def test_fast_fit_is_statsmodels_bit_for_bit(ic, tie, monkeypatch):
    """fit_var_fast (what the mart runs) against statsmodels' select_order + fit
    (fit_var) on VARs of 2-5 series, 60-220 sessions, max lags 1-6: equal bits,
    so the chosen order and every figure of the index are statsmodels' own;
    also when every order selection is treated as a near-tie (recomputed with
    statsmodels' own Cholesky)."""
    from transforms import spillover_index
    from transforms.spillover_index import fit_var_fast

    if tie == "scipy_cholesky":
        monkeypatch.setattr(spillover_index, "IC_TIE", np.inf)

    rng = np.random.default_rng({"aic": 11, "bic": 12, "hqic": 13, "fpe": 14}[ic])
    orders = set()
    for _ in range(25):
        k, n, max_lags = int(rng.integers(2, 6)), int(rng.integers(60, 221)), int(rng.integers(1, 7))
        # A VAR(2) (own lags 0.2 and 0.5, small cross terms): the criteria pick 1 to 3 lags.
        a1 = 0.2 * np.eye(k) + rng.normal(0, 0.05, (k, k))
        a2 = 0.5 * rng.random() * np.eye(k)
        x = np.zeros((n, k))
        e = rng.normal(0, rng.uniform(0.005, 0.05, k), (n, k))
        for t in range(2, n):
            x[t] = a1 @ x[t - 1] + a2 @ x[t - 2] + e[t]
        want_coefs, want_sigma = fit_var(x, max_lags, ic)
        coefs, sigma = fit_var_fast(x, max_lags, ic)
        np.testing.assert_array_equal(coefs, want_coefs)
        np.testing.assert_array_equal(sigma, want_sigma)
        orders.add(coefs.shape[0])
    assert len(orders) > 1  # the order selection was exercised, not only p = 1


def test_fast_fit_hands_odd_windows_to_statsmodels():
    """A series constant over the lagged rows, or too few rows for the lags, go
    to statsmodels (which refuses them); collinear series fail alike (no row is
    published)."""
    from transforms.spillover_index import fit_var_fast

    rng = np.random.default_rng(15)
    x = rng.normal(0, 0.01, (120, 2))
    x[:-1, 1] = 0.02  # constant but for the last session
    with pytest.raises(ValueError, match="constant"):
        fit_var(x, 3, "aic")
    with pytest.raises(ValueError, match="constant"):
        fit_var_fast(x, 3, "aic")
    short = rng.normal(0, 0.01, (20, 4))  # 5 lags of 4 series need more rows
    with pytest.raises(ValueError, match="maxlags is too large"):
        fit_var(short, 5, "aic")
    with pytest.raises(ValueError, match="maxlags is too large"):
        fit_var_fast(short, 5, "aic")
    y = rng.normal(0, 0.01, (120, 1))
    dup = np.hstack([y, y, rng.normal(0, 0.01, (120, 1))])
    with pytest.raises(np.linalg.LinAlgError):
        fit_var(dup, 3, "aic")
    with pytest.raises(np.linalg.LinAlgError):
        fit_var_fast(dup, 3, "aic")
