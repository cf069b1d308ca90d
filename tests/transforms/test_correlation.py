"""Rolling correlation and beta versus a straightforward numpy computation."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from transforms.correlation import rolling_correlation
from transforms.returns import log_returns


def reference(x: dict, y: dict, sessions: list[date], w: int) -> dict[date, tuple]:
    """Window by window: the w sessions ending at each session, paired returns only."""
    out = {}
    span = [s for s in sessions if s >= max(min(x), min(y)) and s <= min(max(x), max(y))]
    for i, s in enumerate(span):
        window = span[max(0, i - w + 1) : i + 1]
        pairs = [(x[d], y[d]) for d in window if x.get(d) is not None and y.get(d) is not None]
        n = len(pairs)
        corr = beta = None
        if n == w:
            a, b = np.array(pairs).T
            if a.std() > 0 and b.std() > 0:
                corr = float(np.corrcoef(a, b)[0, 1])
            if b.std() > 0:
                beta = float(np.cov(a, b, ddof=1)[0, 1] / np.var(b, ddof=1))
        out[s] = (corr, beta, n)
    return out


def returns_frame(series: dict[str, dict[date, float | None]]) -> pl.DataFrame:
    rows = [(sym, d, v) for sym, s in series.items() for d, v in s.items()]
    return pl.DataFrame(rows, schema={"symbol": pl.String, "session_date": pl.Date, "log_return": pl.Float64}, orient="row")


def compare(got: pl.DataFrame, ref: dict, asset: str, bench: str, w: int) -> None:
    g = got.filter((pl.col("asset") == asset) & (pl.col("benchmark") == bench) & (pl.col("window_days") == w))
    assert set(g["date"].to_list()) == set(ref)
    for d, corr, beta, n in g.select("date", "correlation", "beta", "observations").iter_rows():
        rc, rb, rn = ref[d]
        assert n == rn, d
        if rc is None:
            assert corr is None, d
        else:
            assert corr == pytest.approx(rc, abs=1e-9), d
        if rb is None:
            assert beta is None, d
        else:
            assert beta == pytest.approx(rb, rel=1e-7, abs=1e-9), d


@pytest.fixture
def sessions() -> list[date]:
    d0 = date(2020, 1, 1)
    return [d0 + timedelta(days=i) for i in range(200) if (d0 + timedelta(days=i)).weekday() < 5]


def test_matches_reference_with_gaps_and_a_listing_inside_the_window(sessions):
    rng = np.random.default_rng(7)
    bench = {d: float(v) for d, v in zip(sessions, rng.normal(0, 0.01, len(sessions)))}
    # Lists on the 40th session; two gaps later.
    coin = {d: float(0.8 * bench[d] + rng.normal(0, 0.02)) for d in sessions[40:]}
    coin[sessions[90]] = None
    del bench[sessions[120]]
    got = rolling_correlation(returns_frame({"SOL": coin, "^RUT": bench}), pl.Series(sessions), ["SOL"], ["^RUT"], [5, 30])
    for w in (5, 30):
        compare(got, reference(coin, bench, sessions, w), "SOL", "^RUT", w)
    g = got.filter(pl.col("window_days") == 30)
    assert g["date"].min() == sessions[40], "rows start where both series exist"
    assert g.filter(pl.col("date") == sessions[40 + 28])["correlation"][0] is None, "29 returns is not a 30-window"
    assert g.filter(pl.col("date") == sessions[40 + 29])["correlation"][0] is not None


def test_zero_variance_gives_null_not_nan(sessions):
    bench = {d: 0.01 * ((i % 3) - 1) for i, d in enumerate(sessions)}
    flat = {d: 0.0 for d in sessions}
    got = rolling_correlation(returns_frame({"USDT": flat, "^RUT": bench}), pl.Series(sessions), ["USDT"], ["^RUT"], [10])
    full = got.filter(pl.col("observations") == 10)
    assert full.height > 0
    assert full["correlation"].null_count() == full.height
    assert full["beta"].to_list() == pytest.approx([0.0] * full.height), "a flat asset has beta 0 to a moving benchmark"
    flat_bench = rolling_correlation(returns_frame({"BTC": bench, "^RUT": flat}), pl.Series(sessions), ["BTC"], ["^RUT"], [10])
    assert flat_bench["beta"].null_count() == flat_bench.height


def test_weekend_and_holiday_alignment_end_to_end():
    """Prices in, correlations out: crypto trades on a holiday and weekends, equities do not."""
    days = [date(2024, 11, 1) + timedelta(days=i) for i in range(60)]
    holiday = date(2024, 11, 28)
    sessions = [d for d in days if d.weekday() < 5 and d != holiday]
    rng = np.random.default_rng(11)
    btc = 100 * np.exp(np.cumsum(rng.normal(0, 0.03, len(days))))
    rut = {d: float(v) for d, v in zip(sessions, 2000 * np.exp(np.cumsum(rng.normal(0, 0.01, len(sessions)))))}
    prices = pl.concat(
        [
            pl.DataFrame({"symbol": "BTC", "date": days, "adj_close": btc}),
            pl.DataFrame({"symbol": "^RUT", "date": list(rut), "adj_close": list(rut.values())}),
        ]
    )
    s = pl.Series(sessions, dtype=pl.Date)
    got = rolling_correlation(log_returns(prices, s), s, ["BTC"], ["^RUT"], [20])
    close = dict(zip(days, btc))
    x = {b: float(np.log(close[b] / close[a])) for a, b in zip(sessions, sessions[1:])}
    y = {b: float(np.log(rut[b] / rut[a])) for a, b in zip(sessions, sessions[1:])}
    compare(got, reference(x, y, sessions[1:], 20), "BTC", "^RUT", 20)


def test_real_crypto_versus_russell(real_data):
    """pratham093 crypto + alitalbi ^RUT, against pandas' own rolling correlation."""
    import pandas as pd

    rut = pd.read_csv(real_data / "alitalbi-storage_data_fy" / "^RUT.csv", index_col="Date", parse_dates=True)["Close"]
    sol = pd.read_csv(real_data / "pratham093-AEGIS" / "SOL-USD.csv", skiprows=[1], index_col="Date", parse_dates=True)["Close"]
    sessions = rut.index[(rut.index >= "2021-01-04") & (rut.index <= "2025-06-13")]
    x = np.log(sol.reindex(sessions)).diff()
    y = np.log(rut.reindex(sessions)).diff()
    expected = x.rolling(90, min_periods=90).corr(y)
    s = pl.Series([d.date() for d in sessions], dtype=pl.Date)
    prices = pl.concat(
        [
            pl.DataFrame({"symbol": "SOL", "date": [d.date() for d in sol.index], "adj_close": sol.to_numpy()}),
            pl.DataFrame({"symbol": "^RUT", "date": [d.date() for d in rut.index], "adj_close": rut.to_numpy()}),
        ]
    ).filter(pl.col("date").is_between(s.min(), s.max()))
    got = rolling_correlation(log_returns(prices, s), s, ["SOL"], ["^RUT"], [90])
    got_by_date = dict(got.select("date", "correlation").iter_rows())
    checked = 0
    for d, v in expected.dropna().items():
        assert got_by_date[d.date()] == pytest.approx(v, abs=1e-9)
        checked += 1
    assert checked > 900


# --------------------------------------------------------------------------- epochs


def test_matches_reference_across_epoch_boundaries(sessions):
    """Small epochs: windows cross boundaries everywhere, one equals the epoch,
    and the coin lists mid-epoch (the same data as the test above)."""
    rng = np.random.default_rng(7)
    bench = {d: float(v) for d, v in zip(sessions, rng.normal(0, 0.01, len(sessions)))}
    coin = {d: float(0.8 * bench[d] + rng.normal(0, 0.02)) for d in sessions[41:]}
    coin[sessions[90]] = None
    del bench[sessions[120]]
    frame = returns_frame({"SOL": coin, "^RUT": bench})
    for epoch in (5, 7, 30):
        windows = [w for w in (3, 5, 7, 30) if w <= epoch]
        got = rolling_correlation(frame, pl.Series(sessions), ["SOL"], ["^RUT"], windows, epoch=epoch)
        for w in windows:
            compare(got, reference(coin, bench, sessions, w), "SOL", "^RUT", w)


def test_a_window_longer_than_the_epoch_is_refused(sessions):
    frame = returns_frame({"SOL": dict.fromkeys(sessions, 0.01), "^RUT": dict.fromkeys(sessions, 0.02)})
    with pytest.raises(ValueError, match="longer than the epoch"):
        rolling_correlation(frame, pl.Series(sessions), ["SOL"], ["^RUT"], [10, 30], epoch=20)


def test_values_depend_only_on_the_pair_and_the_epochs(sessions):
    """Bit for bit: a pair alone or among others, and a run whose sessions start
    on an epoch boundary, give the whole run's values (its window permitting)."""
    rng = np.random.default_rng(3)
    series = {s: {d: float(v) for d, v in zip(sessions, rng.normal(0, 0.02, len(sessions)))} for s in ("A", "B", "C", "^RUT")}
    frame = returns_frame(series)
    sess = pl.Series(sessions)
    whole = rolling_correlation(frame, sess, ["A", "B", "C"], ["^RUT"], [5, 20], epoch=32)
    alone = rolling_correlation(frame, sess, ["B"], ["^RUT"], [5, 20], epoch=32)
    assert alone.equals(whole.filter(pl.col("asset") == "B"))
    # From session 64 (two epochs in): rows whose 20-session window lies inside.
    start = sess[64]
    tail = rolling_correlation(
        frame.filter(pl.col("session_date") >= start), sess.slice(64), ["A", "B", "C"], ["^RUT"], [5, 20], epoch=32
    )
    since = sess[64 + 20]
    assert tail.filter(pl.col("date") >= since).equals(whole.filter(pl.col("date") >= since))


# --------------------------------------------------------------------------- oracle, bit for bit


def _exact(rows) -> list[tuple]:
    # float.hex tells 0.0 from -0.0 and every last bit.
    return [tuple(v.hex() if isinstance(v, float) else v for v in row) for row in rows]


@pytest.fixture
def awkward(sessions) -> dict[str, dict[date, float | None]]:
    """Series built to hit every branch: gaps (null and missing) in both roles,
    constant stretches in each, exact zeros (-0.0 products), a listing inside
    a window, a pair shorter than its window, a pair with no common session,
    and a symbol that is both an asset and a benchmark."""
    rng = np.random.default_rng(17)
    n = len(sessions)

    def series(values, first=0, last=None):
        return {d: (None if v is None else float(v)) for d, v in zip(sessions[first:last], values[first:last])}

    rut = list(rng.normal(0, 0.01, n))
    rut[50] = None
    gspc = list(rng.normal(0, 0.01, n))
    gspc[60:80] = [0.0] * 20  # flat benchmark
    gspc[40] = -0.015
    a = list(0.5 * np.array([0.0 if v is None else v for v in rut]) + rng.normal(0, 0.02, n))
    a[30] = a[31] = None
    a[40] = 0.0  # 0.0 * -0.015 = -0.0
    a[85:100] = [0.02] * 15  # flat asset
    out = {
        "^RUT": series(rut),
        "^GSPC": series(gspc, 10, 110),
        "A": series(a),
        "B": series(rng.normal(0, 0.03, n), n - 10),  # 10 sessions: short of the 16-session window
        "C": series(rng.normal(0, 0.03, n), 0, 6),  # ends before ^GSPC starts
    }
    del out["^RUT"][sessions[51]]
    return out


def test_bit_equal_to_the_row_by_row_oracle(sessions, awkward):
    from tests.oracles.correlation import rolling_correlation as oracle

    assets, benchmarks, windows = ["A", "B", "C", "^RUT"], ["^GSPC", "^RUT"], [3, 5, 16]
    got = rolling_correlation(returns_frame(awkward), pl.Series(sessions), assets, benchmarks, windows, epoch=16)
    want = oracle(awkward, sessions, assets, benchmarks, windows, epoch=16)
    assert _exact(got.rows()) == _exact(want)
    pairs = set(got.select("asset", "benchmark").unique().iter_rows())
    assert ("C", "^GSPC") not in pairs and ("^RUT", "^RUT") not in pairs and ("^RUT", "^GSPC") in pairs
    short = got.filter((pl.col("asset") == "B") & (pl.col("window_days") == 16))
    assert short.height == 10 and short["observations"].max() == 10 and short["correlation"].null_count() == 10
    flat = got.filter((pl.col("benchmark") == "^GSPC") & (pl.col("window_days") == 5) & (pl.col("date") == sessions[75]))
    assert flat["beta"].null_count() == flat.height == 2, "a flat benchmark has no beta"
    assert got.filter(pl.col("observations") > 0)["correlation"].is_nan().sum() == 0


def test_bit_equal_to_the_oracle_with_given_spans_and_since(sessions, awkward):
    """The incremental shape: a tail of sessions from an epoch boundary, spans
    from the previous run (one starting before the tail, one of a pair with no
    return in it), rows from ``since`` on."""
    from tests.oracles.correlation import rolling_correlation as oracle

    tail = sessions[32:]
    frame = returns_frame(awkward).filter(pl.col("session_date") >= tail[0])
    spans = {("A", "^RUT"): (sessions[0], sessions[-1]), ("B", "^GSPC"): (sessions[20], sessions[100])}
    given = pl.DataFrame(
        [(a, b, f, la) for (a, b), (f, la) in spans.items()],
        schema={"asset": pl.String, "benchmark": pl.String, "first": pl.Date, "last": pl.Date}, orient="row",
    )
    since = sessions[60]
    got = rolling_correlation(frame, pl.Series(tail), ["A", "B"], ["^GSPC", "^RUT"], [3, 16], spans=given, since=since, epoch=16)
    tail_series = {s: {d: v for d, v in v_.items() if d >= tail[0]} for s, v_ in awkward.items()}
    want = [r for r in oracle(tail_series, tail, ["A", "B"], ["^GSPC", "^RUT"], [3, 16], epoch=16, spans=spans) if r[0] >= since]
    assert got.height > 0
    assert _exact(got.rows()) == _exact(want)


def test_ill_conditioned_windows_match_the_reference(sessions):
    """A series whose mean dwarfs its spread (a steady drift with tiny noise):
    the moment formulas alone lose ~all precision there (correlations off by
    0.9, NaN where the variance product rounded negative); such windows are
    summed again around their means."""
    rng = np.random.default_rng(5)
    bench = rng.normal(0, 0.01, len(sessions))
    drift = 0.01 + 1e-10 * rng.normal(0, 1, len(sessions)) + 5e-9 * bench
    x = {d: float(v) for d, v in zip(sessions, drift)}
    y = {d: float(v) for d, v in zip(sessions, bench)}
    frame = returns_frame({"STEADY": x, "^RUT": y})
    for asset, bench_sym, a, b in (("STEADY", "^RUT", x, y), ("^RUT", "STEADY", y, x)):
        got = rolling_correlation(frame, pl.Series(sessions), [asset], [bench_sym], [5, 30], epoch=64)
        assert got["correlation"].is_nan().sum() == 0
        for w in (5, 30):
            compare(got, reference(a, b, sessions, w), asset, bench_sym, w)
        # Only the rows from ``since`` computed (an incremental tail): those rows, bit for bit.
        since = sessions[40]
        part = rolling_correlation(frame, pl.Series(sessions), [asset], [bench_sym], [5, 30], since=since, epoch=64)
        assert part.height and _exact(part.rows()) == _exact(got.filter(pl.col("date") >= since).rows())
