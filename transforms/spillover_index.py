"""mart_spillover_index: the Diebold-Yilmaz (2012) total and directional spillover index.

On each published date t, over the ``window`` sessions ending at t on which
every series has a log return (fact_returns on exchange sessions; at least
90 % of the window must be complete, otherwise no row), a VAR(p) with a
constant is fitted by OLS (statsmodels ``VAR``); p is chosen by an
information criterion (``ic``: aic, bic, hqic or fpe; statsmodels'
``select_order`` on a common sample) among 1..``max_lags``. The mart runs
``fit_var_fast``: statsmodels' estimator step for step without its model and
results objects (about 40x faster per window; tests check it bit for bit
against ``fit_var``, which calls statsmodels).

From the fitted lag matrices A_1..A_p the moving-average matrices are
Phi_0 = I, Phi_h = sum_{l=1..min(h,p)} A_l Phi_{h-l}. With Sigma the residual
covariance (statsmodels ``sigma_u``, degrees-of-freedom adjusted) and H the
horizon, the generalized forecast-error variance decomposition (Pesaran and
Shin 1998; invariant to the order of the series, unlike statsmodels' own
Cholesky-based ``fevd``) is

    theta_ij = sigma_jj^-1 sum_{h<H} (e_i' Phi_h Sigma e_j)^2 / sum_{h<H} (e_i' Phi_h Sigma Phi_h' e_i)

normalised by row: theta~_ij = theta_ij / sum_j theta_ij. Published per series
i (percent): ``from_others`` = 100 sum_{j!=i} theta~_ij (share of i's forecast
error variance due to shocks to the others), ``to_others`` = 100 sum_{j!=i}
theta~_ji, ``net`` = to - from, ``own_share`` = 100 theta~_ii, and per date
``total_spillover`` = 100 / N sum_{i!=j} theta~_ij (the mean of from_others).
Diebold and Yilmaz also divide the directional figures by N; we do not, so a
series' from_others reads as a share of its own variance.

No row for a date whose window has a flat series or whose fit is singular
(collinear series). Each date's figures depend only on its window's returns, so a build of the
dates on/after ``since`` equals the full build's rows bit for bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import date

import numpy as np
import polars as pl

from contracts.tables import MART_SPILLOVER_INDEX
from transforms.returns import session_index

# Share of a window's sessions that must carry a return for every series.
MIN_COMPLETE = 0.9


def ma_matrices(coefs: np.ndarray, horizon: int) -> np.ndarray:
    """Phi_0..Phi_{horizon-1} (horizon x k x k) of a VAR with lag matrices ``coefs`` (p x k x k)."""
    p, k = coefs.shape[0], coefs.shape[-1]
    phi = np.zeros((horizon, k, k))
    phi[0] = np.eye(k)
    for h in range(1, horizon):
        for lag in range(1, min(h, p) + 1):
            phi[h] += coefs[lag - 1] @ phi[h - lag]
    return phi


def generalized_fevd(coefs: np.ndarray, sigma: np.ndarray, horizon: int) -> np.ndarray:
    """Row-normalised generalized FEVD theta~ (k x k): row i, column j = share of
    i's ``horizon``-step forecast-error variance due to shocks to j."""
    phi = ma_matrices(coefs, horizon)
    num = np.zeros_like(sigma)
    den = np.zeros(sigma.shape[0])
    for ph in phi:
        ps = ph @ sigma
        num += ps**2
        den += np.einsum("ij,ij->i", ps, ph)  # diag(Phi Sigma Phi')
    theta = num / np.diag(sigma)[None, :] / den[:, None]
    return theta / theta.sum(axis=1, keepdims=True)


def spillover_table(theta: np.ndarray) -> dict[str, np.ndarray | float]:
    """Directional and total figures (percent) of a row-normalised decomposition."""
    off = theta * (1 - np.eye(theta.shape[0]))
    from_others = 100 * off.sum(axis=1)
    to_others = 100 * off.sum(axis=0)
    return {
        "own_share": 100 * np.diag(theta),
        "from_others": from_others,
        "to_others": to_others,
        "net": to_others - from_others,
        "total_spillover": float(from_others.mean()),
    }


def fit_var(data: np.ndarray, max_lags: int, ic: str) -> tuple[np.ndarray, np.ndarray]:
    """(coefs p x k x k, sigma_u) of a VAR with a constant, p chosen by ``ic`` in 1..max_lags,
    fitted by statsmodels (``VAR.select_order``, then ``VAR.fit``)."""
    from statsmodels.tsa.api import VAR

    model = VAR(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = int(model.select_order(max_lags, trend="c").selected_orders[ic]) if max_lags > 1 else 1
        res = model.fit(max(p, 1), trend="c")
    return np.asarray(res.coefs), np.asarray(res.sigma_u)


def _ols_var(endog: np.ndarray, lags: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(params, sse, df_resid) of a VAR(``lags``) with a constant on ``endog``:
    statsmodels' ``VAR._estimate_var`` step for step (the same regressors,
    ``lstsq`` call and residual products), without building its results objects."""
    nobs = endog.shape[0] - lags
    z = np.column_stack(
        [np.ones((nobs, 1))] + [endog[lags - lag : endog.shape[0] - lag] for lag in range(1, lags + 1)]
    )
    y = endog[lags:]
    params = np.linalg.lstsq(z, y, rcond=1e-15)[0]
    resid = y - np.dot(z, params)
    return params, np.dot(resid.T, resid), nobs - (endog.shape[1] * lags + 1)


# Criteria closer than this (relative) are recomputed with statsmodels' own
# Cholesky (scipy's) before the order is picked: numpy's may differ in the last bit.
IC_TIE = 1e-9


def _logdet_numpy(m: np.ndarray) -> float:
    return 2 * np.sum(np.log(np.linalg.cholesky(m).diagonal()))


def _logdet_scipy(m: np.ndarray) -> float:
    """statsmodels' ``logdet_symm``."""
    from scipy.linalg import cho_factor

    c, _ = cho_factor(m, lower=True)
    return 2 * np.sum(np.log(c.diagonal()))


def _info_criterion(endog: np.ndarray, lags: int, offset: int, ic: str, logdet=_logdet_numpy) -> float:
    """statsmodels' ``VARResults.info_criteria[ic]`` of the fit ``select_order`` makes for ``lags``."""
    data = endog[offset:]
    _, sse, df_resid = _ols_var(data, lags)
    k = data.shape[1]
    nobs = data.shape[0] - lags
    free_params = lags * k**2 + k
    if df_resid:
        ld = logdet((sse / df_resid) * df_resid / nobs)
    else:
        ld = -np.inf
    if ic == "aic":
        return ld + (2.0 / nobs) * free_params
    if ic == "bic":
        return ld + (np.log(nobs) / nobs) * free_params
    if ic == "hqic":
        return ld + (2.0 * np.log(np.log(nobs)) / nobs) * free_params
    if ic == "fpe":
        return ((nobs + k * lags + 1) / df_resid) ** k * np.exp(ld) if df_resid else np.inf
    raise ValueError(f"unknown information criterion {ic!r}: expected aic, bic, hqic or fpe")


def fit_var_fast(data: np.ndarray, max_lags: int, ic: str) -> tuple[np.ndarray, np.ndarray]:
    """``fit_var``'s result, bit for bit, at a fraction of its cost: the same
    arithmetic as statsmodels' order selection and fit, minus its model and
    results objects (tests compare it with ``fit_var`` on generated VARs;
    ``python -m bench.spillover --before`` compares a whole run's index). A
    window statsmodels refuses (a constant regressor column, or too few rows
    for ``max_lags``) goes to ``fit_var`` itself, which raises as before."""
    n, k = data.shape
    top = max(max_lags, 1)
    if max_lags > 1 and max_lags > (n - k - 1) // (1 + k):
        return fit_var(data, max_lags, ic)
    # Lag l's column is data[top - l : n - l] in every fit of the order
    # selection, and a superset of it in the final fit.
    if any(np.any(np.ptp(data[top - lag : n - lag], axis=0) == 0) for lag in range(1, top + 1)):
        return fit_var(data, max_lags, ic)
    if max_lags > 1:
        crit = np.array([_info_criterion(data, p, max_lags - p, ic) for p in range(max_lags + 1)])
        best, second = np.sort(crit)[:2]
        if not (np.all(np.isfinite(crit)) and second - best > IC_TIE * max(1.0, abs(best))):
            crit = np.array([_info_criterion(data, p, max_lags - p, ic, _logdet_scipy) for p in range(max_lags + 1)])
        p = max(int(crit.argmin()), 1)
    else:
        p = 1
    params, sse, df_resid = _ols_var(data, p)
    coefs = params[1:].reshape((p, k, k)).swapaxes(1, 2).copy()
    omega = sse / df_resid if df_resid else np.full_like(sse, np.nan)
    return coefs, omega


def index_dates(sessions: pl.Series, step: int) -> pl.Series:
    """Every ``step``-th session counted from the calendar's first (positions
    step-1, 2 step-1, ...) plus the latest session."""
    s = sessions.cast(pl.Date).unique().sort()
    if step < 1:
        raise ValueError(f"spillover index step must be >= 1, got {step}")
    picked = s.gather_every(step, offset=step - 1) if s.len() >= step else s.clear()
    return pl.concat([picked, s.tail(1)]).unique().sort()


def mart_spillover_index(
    returns: pl.DataFrame,
    sessions: pl.Series,
    series: Sequence[str] = ("^RUT", "^GSPC", "BTC", "ETH", "ALTS"),
    window: int = 200,
    horizon: int = 10,
    max_lags: int = 5,
    ic: str = "aic",
    step: int = 5,
    since: date | None = None,
) -> pl.DataFrame:
    """mart_spillover_index (see the module docstring) over the ``series`` that
    have returns (at least two); one row per series and date of ``index_dates``
    (on/after ``since``) whose window is complete enough."""
    sess = sessions.cast(pl.Date).unique().sort()
    idx = session_index(sess)
    names = [s for s in series if returns.filter(pl.col("symbol") == s).height]
    if len(names) < 2 or sess.len() < window:
        return pl.DataFrame(schema=MART_SPILLOVER_INDEX.polars_schema)
    wide = np.full((sess.len(), len(names)), np.nan)
    for j, name in enumerate(names):
        own = returns.filter((pl.col("symbol") == name) & pl.col("log_return").is_not_null()).join(
            idx, on="session_date", how="inner"
        )
        wide[own["session_idx"].to_numpy(), j] = own["log_return"].to_numpy()
    targets = index_dates(sess, step)
    if since is not None:
        targets = targets.filter(targets >= since)
    positions = idx.join(pl.DataFrame({"session_date": targets}), on="session_date", how="semi")["session_idx"]
    need = max(int(np.ceil(MIN_COMPLETE * window)), max_lags * len(names) + 2 * max_lags + 2)
    rows = []
    for t in positions.to_list():
        if t < window - 1:
            continue
        block = wide[t - window + 1 : t + 1]
        block = block[~np.isnan(block).any(axis=1)]
        if block.shape[0] < need or np.any(np.ptp(block, axis=0) == 0):
            continue  # too few complete sessions, or a flat series: nothing to decompose
        try:
            coefs, sigma = fit_var_fast(block, max_lags, ic)
        except np.linalg.LinAlgError:
            continue  # collinear series (e.g. one a copy of another): no decomposition
        if not np.all(np.isfinite(sigma)) or np.any(np.diag(sigma) <= 0):
            continue
        table = spillover_table(generalized_fevd(coefs, sigma, horizon))
        for j, name in enumerate(names):
            rows.append(
                (sess[t], name, window, horizon, coefs.shape[0], block.shape[0],
                 table["own_share"][j], table["from_others"][j], table["to_others"][j], table["net"][j],
                 table["total_spillover"])
            )  # fmt: skip
    return pl.DataFrame(rows, schema=MART_SPILLOVER_INDEX.polars_schema, orient="row").sort("series", "date")
