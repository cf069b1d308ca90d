"""mart_spillover and mart_lead_lag on generated panels with known structure.

- coins that follow the benchmark only on its risk-on sessions: risk_on
  correlation high, risk_off and all low; one date checked against numpy on
  the sessions the definition selects;
- a copy of the benchmark one session later: the lead-lag peaks at lag +1;
- a benchmark whose session after a weekend or holiday repeats the coin's
  closed-market move: the weekend measure is 1.0;
- rows from ``since`` on equal the full computation's bit for bit.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flows.calendar import sessions as exchange_sessions
from transforms.lead_lag import mart_lead_lag, weekend_returns
from transforms.returns import log_returns
from transforms.spillover import mart_spillover, publish_dates

START, END = date(2021, 1, 4), date(2024, 12, 31)
LOOKBACK = 252


@pytest.fixture(scope="module")
def sess() -> pl.Series:
    return exchange_sessions(START, END).sort()


def returns_frame(sess: pl.Series, series: dict[str, np.ndarray]) -> pl.DataFrame:
    return pl.concat(
        pl.DataFrame({"symbol": name, "session_date": sess, "log_return": values}).with_columns(
            pl.col("log_return").fill_nan(None)
        )
        for name, values in series.items()
    )


def risk_on_panel(sess: pl.Series, seed: int = 3):
    rng = np.random.default_rng(seed)
    n = sess.len()
    y = rng.normal(0, 0.01, n)
    on = y > 0.01  # +1 sd of the benchmark
    coin = np.where(on, 2.0 * y + rng.normal(0, 0.002, n), rng.normal(0, 0.03, n))
    return returns_frame(sess, {"^RUT": y, "ALT": coin}), y, coin


def test_coins_follow_only_risk_on_sessions(sess):
    returns, y, coin = risk_on_panel(sess)
    out = mart_spillover(returns, sess, ["ALT"], ["^RUT"], windows=(365,), regime_lookback=LOOKBACK)
    last = out.filter(pl.col("date") == sess[-1])
    by = {r["regime"]: r for r in last.iter_rows(named=True)}
    assert by["risk_on"]["correlation"] > 0.8
    assert abs(by["risk_on"]["beta"] - 2.0) < 0.3
    assert abs(by["risk_off"]["correlation"]) < 0.3
    assert by["all"]["correlation"] < by["risk_on"]["correlation"] - 0.3
    assert by["all"]["observations"] == 365
    assert 30 < by["risk_on"]["observations"] < 90

    # The definition, computed independently: threshold = sd (ddof 1) of the
    # LOOKBACK benchmark returns before each session.
    t = sess.len() - 1
    window = range(t - 364, t + 1)
    sd = np.array([np.std(y[s - LOOKBACK : s], ddof=1) for s in window])
    yw, xw = y[list(window)], coin[list(window)]
    for regime, mask in {"risk_on": yw > sd, "risk_off": yw < -sd}.items():
        assert by[regime]["observations"] == mask.sum()
        assert by[regime]["correlation"] == pytest.approx(np.corrcoef(xw[mask], yw[mask])[0, 1], abs=1e-12)
        cov = np.cov(xw[mask], yw[mask])
        assert by[regime]["beta"] == pytest.approx(cov[0, 1] / cov[1, 1], abs=1e-12)
    assert by["all"]["correlation"] == pytest.approx(np.corrcoef(xw, yw)[0, 1], abs=1e-12)


def test_thresholds_need_a_full_lookback_and_few_sessions_give_null(sess):
    returns, _, _ = risk_on_panel(sess)
    out = mart_spillover(returns, sess, ["ALT"], ["^RUT"], windows=(90,), regime_lookback=LOOKBACK, min_observations=10)
    # Before LOOKBACK sessions of history no session is classified.
    early = out.filter(pl.col("date") == sess[100])
    assert early.filter(pl.col("regime") != "all")["observations"].to_list() == [0, 0]
    assert early.filter(pl.col("regime") != "all")["correlation"].null_count() == 2
    # The first row is the first full window.
    assert out["date"].min() == sess[89]


def test_month_end_cadence_and_since_reproduce_the_full_rows(sess):
    returns, _, _ = risk_on_panel(sess)
    full = mart_spillover(returns, sess, ["ALT"], ["^RUT"], windows=(90, 365))
    since = sess[-40]
    part = mart_spillover(returns, sess, ["ALT"], ["^RUT"], windows=(90, 365), since=since)
    assert_frame_equal(full.filter(pl.col("date") >= since), part, check_exact=True)
    monthly = mart_spillover(returns, sess, ["ALT"], ["^RUT"], windows=(90, 365), cadence="month_end")
    assert set(monthly["date"]) <= set(publish_dates(sess, "month_end"))
    assert_frame_equal(full.join(monthly.select("date").unique(), on="date", how="semi"), monthly, check_exact=True)


def test_lead_lag_peaks_at_plus_one_for_a_lagged_copy(sess):
    rng = np.random.default_rng(5)
    y = rng.normal(0, 0.01, sess.len())
    follower = np.concatenate([[np.nan], y[:-1]]) + rng.normal(0, 0.002, sess.len())
    leader = np.concatenate([y[1:], [np.nan]]) + rng.normal(0, 0.002, sess.len())
    returns = returns_frame(sess, {"^RUT": y, "FOL": follower, "LEAD": leader})
    out = mart_lead_lag(returns, pl.DataFrame(schema={"symbol": pl.String, "date": pl.Date, "adj_close": pl.Float64}),
                        sess, ["FOL", "LEAD"], ["^RUT"], windows=(90,))  # fmt: skip
    last = out.filter((pl.col("date") == sess[-2]) & (pl.col("measure") == "session"))
    corr = {(r["asset"], r["lag_sessions"]): r["correlation"] for r in last.iter_rows(named=True)}
    assert corr[("FOL", 1)] > 0.95 and abs(corr[("FOL", 0)]) < 0.3 and abs(corr[("FOL", -1)]) < 0.3
    assert corr[("LEAD", -1)] > 0.95 and abs(corr[("LEAD", 0)]) < 0.3 and abs(corr[("LEAD", 1)]) < 0.3
    assert set(last["observations"]) == {90}


def test_weekend_return_against_the_next_session(sess):
    rng = np.random.default_rng(9)
    days = pl.date_range(START - timedelta(days=3), END, "1d", eager=True)
    coin = np.exp(np.cumsum(rng.normal(0, 0.03, days.len())))
    crypto = pl.DataFrame({"symbol": "BTC", "date": days, "adj_close": coin})
    close = dict(zip(days.to_list(), coin.tolist(), strict=True))
    # The benchmark's return on a session after a gap repeats the coin's closed-market move.
    s = sess.to_list()
    bench = [0.0] + [
        np.log(close[d - timedelta(days=1)] / close[p]) if (d - p).days > 1 else rng.normal(0, 0.01)
        for p, d in zip(s[:-1], s[1:], strict=True)
    ]
    returns = pl.concat([
        log_returns(crypto.with_columns(pl.lit(1.0).alias("close")), sess).select("symbol", "session_date", "log_return"),
        returns_frame(sess, {"^RUT": np.array(bench)}).with_columns(
            pl.when(pl.col("session_date") == sess[0]).then(None).otherwise(pl.col("log_return")).alias("log_return")
        ),
    ])  # fmt: skip
    wk = weekend_returns(crypto, sess, ["BTC"])
    monday = next(d for d in s[1:] if d.weekday() == 0 and d - timedelta(days=3) in s)
    row = wk.filter(pl.col("session_date") == monday)
    assert row["weekend_return"].item() == pytest.approx(np.log(close[monday - timedelta(days=1)] / close[monday - timedelta(days=3)]))
    assert wk.filter(pl.col("session_date").dt.weekday() == 3).height <= 2  # Thursdays only after a holiday

    out = mart_lead_lag(returns, crypto, sess, ["BTC"], ["^RUT"], windows=(90,))
    last = out.filter((pl.col("date") == sess[-1]) & (pl.col("measure") == "weekend"))
    assert last["lag_sessions"].item() == -1
    assert last["correlation"].item() == pytest.approx(1.0)
    gaps = sum(1 for p, d in zip(s[-91:-1], s[-90:], strict=True) if (d - p).days > 1)
    assert last["observations"].item() == gaps
