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


# --------------------------------------------------------------------------- real data


def test_real_crypto_versus_russell_by_regime_and_weekend(real_data):
    """pratham093 crypto + alitalbi ^RUT, against pandas: regime masks from
    pandas' rolling std, correlations from numpy, weekend returns from the CSV."""
    import pandas as pd

    from transforms.spillover_index import mart_spillover_index

    rut = pd.read_csv(real_data / "alitalbi-storage_data_fy" / "^RUT.csv", index_col="Date", parse_dates=True)["Close"]
    coins = {
        c: pd.read_csv(real_data / "pratham093-AEGIS" / f"{c}-USD.csv", skiprows=[1], index_col="Date", parse_dates=True)["Close"]
        for c in ("BTC", "ETH", "SOL")
    }
    sessions = rut.index[(rut.index >= "2021-01-04") & (rut.index <= "2025-06-13")]
    s = pl.Series([d.date() for d in sessions], dtype=pl.Date)
    prices = pl.concat(
        pl.DataFrame({"symbol": k, "date": [d.date() for d in v.index], "adj_close": v.to_numpy()})
        for k, v in {"^RUT": rut, **coins}.items()
    ).filter(pl.col("date").is_between(date(2020, 12, 31), s.max()))
    returns = log_returns(prices, s)

    out = mart_spillover(returns, s, ["SOL", "BTC"], ["^RUT"], windows=(365,), cadence="month_end")
    y = np.log(rut.reindex(sessions)).diff()
    sd = y.rolling(LOOKBACK, min_periods=LOOKBACK).std().shift(1)
    checked = 0
    for d in out.filter(pl.col("regime") == "risk_on")["date"].unique().sort().to_list()[-6:]:
        end = sessions.get_loc(pd.Timestamp(d))
        win = slice(end - 364, end + 1)
        yw, sdw = y.iloc[win].to_numpy(), sd.iloc[win].to_numpy()
        for coin in ("SOL", "BTC"):
            x = np.log(coins[coin].reindex(sessions)).diff().iloc[win].to_numpy()
            for regime, mask in {"risk_on": yw > sdw, "risk_off": yw < -sdw, "all": np.ones(365, bool)}.items():
                row = out.filter((pl.col("date") == d) & (pl.col("asset") == coin) & (pl.col("regime") == regime))
                assert row["observations"].item() == mask.sum()
                assert row["correlation"].item() == pytest.approx(np.corrcoef(x[mask], yw[mask])[0, 1], abs=1e-9)
                checked += 1
    assert checked == 36

    wk = weekend_returns(prices, s, ["BTC"])
    btc = coins["BTC"]
    for row in wk.tail(20).iter_rows(named=True):
        i = s.search_sorted(row["session_date"])
        want = np.log(btc[pd.Timestamp(row["session_date"] - timedelta(days=1))] / btc[pd.Timestamp(s[i - 1])])
        assert row["weekend_return"] == pytest.approx(want, abs=1e-12)
    assert wk.height > 200

    index = mart_spillover_index(returns, s, ("^RUT", "BTC", "ETH", "SOL"), step=21)
    last = index.filter(pl.col("date") == index["date"].max())
    share = dict(zip(last["series"], last["from_others"], strict=True))
    # Coins move together far more than they move with the Russell 2000.
    assert min(share["BTC"], share["ETH"], share["SOL"]) > share["^RUT"]
    assert 0 < last["total_spillover"][0] < 100


# --------------------------------------------------------------------------- incremental


@pytest.mark.parametrize("cadence", ["month_end", "session"])
def test_incremental_build_equals_the_full_build_for_other_cadences(cadence):
    """test_incremental covers the default settings; here month-end dates (the
    previous latest session drops out of mart_spillover/mart_lead_lag unless it
    is a month-end) and an index step of 3 sessions, over a weekend and a
    month-end."""
    import dataclasses

    from tests.panels import generate
    from tests.transforms.test_incremental import as_of, check
    from transforms.marts import MartParams
    from transforms.spillover import SpilloverParams

    end = date(2026, 11, 20)
    prices, assets, sessions = generate(4, 6, 2, end, 7)
    sessions = sessions.sort()
    sp = SpilloverParams(windows=(20, 60), cadence=cadence, regime_lookback=40, index_window=60, index_step=3)
    params = dataclasses.replace(MartParams(factors=False), spillover=sp)
    first_nov = sessions.filter(sessions >= date(2026, 11, 1))[0]
    for d in (sessions[-1], first_nov):
        prev = sessions.filter(sessions < d)[-1]
        p, s = as_of(prices, sessions, d)
        pp, ps = as_of(prices, sessions, prev)
        full, _ = check(p, assets, s, d, pp, assets, ps, prev + timedelta(days=1), params=params)
        for table in ("mart_spillover", "mart_lead_lag", "mart_spillover_index"):
            assert full.tables[table].filter(pl.col("date") == d).height, table


# --------------------------------------------------------------------------- window kernel


def _direct(a, b, m, e, w, min_obs):
    """One window by the definition: the selected pairs, numpy's two-pass moments."""
    sel = m[e - w + 1 : e + 1] & ~np.isnan(a[e - w + 1 : e + 1]) & ~np.isnan(b[e - w + 1 : e + 1])
    x, y = a[e - w + 1 : e + 1][sel], b[e - w + 1 : e + 1][sel]
    n = sel.sum()
    if n < max(min_obs, 2) or x.max() == x.min() or y.max() == y.min():
        corr = np.nan
    else:
        corr = np.corrcoef(x, y)[0, 1]
    beta = np.nan if n < max(min_obs, 2) or y.max() == y.min() else np.cov(x, y)[0, 1] / np.var(y, ddof=1)
    return corr, beta, n


@pytest.mark.parametrize("w,origin", [(5, 0), (7, 3), (90, 0), (90, 89), (365, 200)])
def test_window_kernel_equals_the_definition_per_window(w, origin):
    """window_stats' calendar-aligned window sums against each window computed
    alone: gaps, a regime mask, a flat stretch, and a series whose mean dwarfs
    its spread (ill-conditioned: recomputed around the window's mean)."""
    from transforms.spillover import window_stats

    rng = np.random.default_rng(w + origin)
    size = 3 * w + 17
    b = rng.normal(0, 0.01, size)
    cases = {
        "plain": rng.normal(0, 0.03, size) + 0.8 * b,
        "offset": 5.0 + rng.normal(0, 1e-4, size) + 1e-3 * b,  # mean / sd ~ 5e4
    }
    for name, a in cases.items():
        a = a.copy()
        a[rng.random(size) < 0.05] = np.nan
        a[w : w + w // 2 + 2] = a[w]  # a flat stretch
        mask = rng.random(size) < 0.6
        ends = np.arange(w - 1, size)
        corr, beta, n = window_stats(a, b, mask, ends, w, 3, origin=origin)
        for i, e in enumerate(ends):
            c, bt, k = _direct(a, b, mask, e, w, 3)
            assert n[i] == k, (name, e)
            assert corr[i] == pytest.approx(c, abs=1e-12, nan_ok=True), (name, e)
            assert beta[i] == pytest.approx(bt, rel=1e-12, abs=1e-12, nan_ok=True), (name, e)
        # A later part of the ends alone (an incremental build) gives the same bits.
        tail = ends[ends >= size - w // 2]
        again = window_stats(a, b, mask, tail, w, 3, origin=origin)
        for full, part in zip((corr, beta, n), again, strict=True):
            np.testing.assert_array_equal(full[ends >= size - w // 2], part)


def test_builds_from_any_session_equal_the_full_build_with_gaps_and_late_listings(sess):
    """A build from ``since`` reads only the sessions its windows reach (each pair
    keeping its span from the whole returns): rows equal the full build's bit
    for bit for every ``since``, with a coin listed late, one with gaps, one
    delisted early, and a benchmark with a gap."""
    rng = np.random.default_rng(21)
    n = sess.len()
    y = rng.normal(0, 0.01, n)
    gappy = rng.normal(0, 0.03, n) + y
    gappy[rng.random(n) < 0.08] = np.nan
    gappy[640:650] = np.nan  # where a build from session 700 starts reading
    late = np.where(np.arange(n) < 600, np.nan, rng.normal(0, 0.03, n))
    gone = np.where(np.arange(n) > 700, np.nan, rng.normal(0, 0.03, n) - y)
    spx = rng.normal(0, 0.01, n)
    spx[500:503] = np.nan
    returns = returns_frame(sess, {"^RUT": y, "^GSPC": spx, "GAP": gappy, "LATE": late, "GONE": gone})
    days = pl.date_range(START - timedelta(days=3), END, "1d", eager=True)
    prices = pl.concat(
        pl.DataFrame({"symbol": c, "date": days, "adj_close": np.exp(np.cumsum(rng.normal(0, 0.03, days.len())))})
        for c in ("GAP", "LATE", "GONE")
    )
    args = (["GAP", "LATE", "GONE"], ["^RUT", "^GSPC"])
    full = mart_spillover(returns, sess, *args, windows=(20, 60), regime_lookback=50)
    full_ll = mart_lead_lag(returns, prices, sess, *args, windows=(20, 60))
    for at in (30, 70, 580, 610, 650, 690, 700, 705, n - 1):
        since = sess[at]
        part = mart_spillover(returns, sess, *args, windows=(20, 60), regime_lookback=50, since=since)
        assert_frame_equal(full.filter(pl.col("date") >= since), part, check_exact=True)
        part_ll = mart_lead_lag(returns, prices, sess, *args, windows=(20, 60), since=since)
        assert_frame_equal(full_ll.filter(pl.col("date") >= since), part_ll, check_exact=True)
    assert set(full.filter(pl.col("date") >= sess[650])["asset"]) == {"GAP", "LATE", "GONE"}


@pytest.mark.parametrize("w", [7, 90])
def test_window_stats_of_stacked_series_equal_each_series_alone(w):
    """``window_stats_rows`` (the marts' pairs batched per set of window ends) gives each
    series the bits ``window_stats`` gives it alone: series starting and ending at other
    calendar positions, gaps, a regime mask, a flat stretch, an ill-conditioned series."""
    from transforms.spillover import stack_on_calendar, window_span, window_stats, window_stats_rows

    rng = np.random.default_rng(w)
    origins, series = [], []
    for i in range(6):
        size = 4 * w + 11 * i
        b = rng.normal(0, 0.01, size)
        a = rng.normal(0, 0.03, size) + 0.5 * b + (5.0 if i == 2 else 0.0)  # i == 2: mean / sd ~ 170
        a[rng.random(size) < 0.05] = np.nan
        if i == 3:
            a[w : 2 * w] = a[w]  # flat over whole windows
        origins.append(3 * i)
        series.append((a, b, rng.random(size) < 0.6))
    # Windows ending at the same calendar positions for every series (inside each one's span).
    last = min(o + a.size for o, (a, _, _) in zip(origins, series, strict=True)) - 1
    for ends in (np.arange(max(origins) + w - 1, last + 1), np.array([last]), np.array([last - 1, last])):
        start, stop = window_span(ends, w)
        stacked = [stack_on_calendar([s[k] for s in series], origins, start, stop, np.nan if k < 2 else False) for k in range(3)]
        corr, beta, n = window_stats_rows(*stacked, ends - start, w, 3, origin=start)
        for i, (o, (a, b, m)) in enumerate(zip(origins, series, strict=True)):
            alone = window_stats(a, b, m, ends - o, w, 3, origin=o)
            for got, want in zip((corr[i], beta[i], n[i]), alone, strict=True):
                np.testing.assert_array_equal(got, want)
        if ends.size > 2:  # a flat side or too few rows gives null
            assert np.isfinite(corr).any() and np.isnan(corr).any()


def test_marts_are_the_same_whatever_the_pairs_are_batched_in(sess, monkeypatch):
    """mart_spillover and mart_lead_lag batch the pairs whose windows end on the same
    sessions (``batches_by_ends``); one pair per batch gives the same frames bit for bit,
    in full and from the last session (where every pair is in one batch)."""
    import transforms.spillover as spillover_module

    rng = np.random.default_rng(5)
    n = sess.len()
    y = rng.normal(0, 0.01, n)
    series = {"^RUT": y, "^GSPC": rng.normal(0, 0.01, n)}
    for i in range(5):
        r = rng.normal(0, 0.03, n) + 0.5 * y
        r[: 40 * i] = np.nan  # listed later
        series[f"C{i}"] = r
    returns = returns_frame(sess, series)
    coins = [f"C{i}" for i in range(5)]
    days = pl.date_range(START - timedelta(days=3), END, "1d", eager=True)
    prices = pl.concat(
        pl.DataFrame({"symbol": c, "date": days, "adj_close": np.exp(np.cumsum(rng.normal(0, 0.03, days.len())))})
        for c in coins
    )
    args = (coins, ["^RUT", "^GSPC"])
    for since in (None, sess[-1]):
        batched = mart_spillover(returns, sess, *args, windows=(20, 60), regime_lookback=50, since=since)
        batched_ll = mart_lead_lag(returns, prices, sess, *args, windows=(20, 60), since=since)
        with monkeypatch.context() as m:
            m.setattr(spillover_module, "BATCH_CELLS", 1)
            alone = mart_spillover(returns, sess, *args, windows=(20, 60), regime_lookback=50, since=since)
            alone_ll = mart_lead_lag(returns, prices, sess, *args, windows=(20, 60), since=since)
        assert batched.height and batched_ll.height
        assert_frame_equal(batched, alone, check_exact=True)
        assert_frame_equal(batched_ll, alone_ll, check_exact=True)
