"""The Alpha Score checked against an oracle written from docs/alpha_score.md.

``tests/oracles/alpha.py`` re-derives every score from the documentation with
plain loops and exact fractions; it shares no code with ``transforms/factors.py``.
The two must agree on a generated panel with every awkward case (late listings,
price gaps, a zero and a negative price, tied paths, stocks without sector, a
thin sector, fundamentals with missing values and snapshots dated after the
last session, shuffled inputs), on the sample market, and on the real price
histories in ../shared/data/real: same rows, same values (ranks and sub-scores
to 1e-9, everything else exactly).

The ``from_date`` tests below compare incremental builds with the full one.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flows.sources.sample_fundamentals import sample_fundamentals
from tests.oracles import alpha as oracle
from transforms.factor_eval import evaluate_factors
from transforms.factors import METRICS, LabelThresholds, Metric, build_factor_marts

def weekdays(start: date, n: int) -> list[date]:
    out, d = [], start
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return out


SESSIONS = weekdays(date(2017, 1, 2), 560)


def make_panel(seed: int = 21):
    rng = np.random.default_rng(seed)
    sectors = (
        ["Financials"] * 9 + ["Information Technology"] * 8 + ["Energy"] * 6 + ["Utilities"] * 5
        + ["Health Care"] * 4 + ["Materials"] * 3 + [None, None]
    )  # fmt: skip
    symbols = [f"S{i:02d}" for i in range(len(sectors))]
    assets = pl.DataFrame(
        {"symbol": symbols, "name": [f"Company {s}" for s in symbols], "asset_class": "equity",
         "sector": sectors, "industry": "Misc"},
        schema_overrides={"sector": pl.String},
    )  # fmt: skip
    # Not equities: must be ignored by the scores but present in prices.
    assets = pl.concat(
        [assets, pl.DataFrame({"symbol": ["SPY", "BTC"], "name": ["SPY", "Bitcoin"], "asset_class": ["etf", "crypto"],
                               "sector": [None, None], "industry": [None, None]}, schema=assets.schema)]
    )  # fmt: skip
    listing = {"S03": 150, "S10": 90, "S21": 300, "S30": 400, "S36": 20}
    delisting = {"S05": 480, "S12": 530}
    frames = []
    for sym in symbols + ["SPY"]:
        ds = SESSIONS[listing.get(sym, 0) : delisting.get(sym, len(SESSIONS))]
        closes = 30 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, len(ds))))
        frames.append(pl.DataFrame({"symbol": sym, "date": ds, "adj_close": closes}))
    prices = pl.concat(frames)
    # S07 copies S06's path: tied momentum. Gaps in S08 and S15, a zero and a
    # negative price in S09, an off-calendar bar in S01, a crypto series.
    s06 = prices.filter(pl.col("symbol") == "S06").with_columns(symbol=pl.lit("S07"))
    prices = pl.concat([prices.filter(pl.col("symbol") != "S07"), s06])
    prices = prices.filter(
        ~((pl.col("symbol") == "S08") & pl.col("date").is_between(SESSIONS[200], SESSIONS[230]))
        & ~((pl.col("symbol") == "S15") & pl.col("date").is_in([SESSIONS[300], SESSIONS[427]]))
    )
    prices = prices.with_columns(
        pl.when((pl.col("symbol") == "S09") & (pl.col("date") == SESSIONS[250])).then(0.0)
        .when((pl.col("symbol") == "S09") & (pl.col("date") == SESSIONS[380])).then(-1.0)
        .otherwise(pl.col("adj_close")).alias("adj_close")
    )  # fmt: skip
    extra = pl.DataFrame(
        {"symbol": ["S01", *["BTC"] * 40], "date": [date(2017, 1, 7), *[SESSIONS[0] + timedelta(days=i) for i in range(40)]],
         "adj_close": [1e9, *np.linspace(1000, 2000, 40)]}
    )  # fmt: skip
    prices = pl.concat([prices, extra]).with_columns(
        open=pl.col("adj_close"), high=pl.col("adj_close"), low=pl.col("adj_close"), close=pl.col("adj_close"), volume=1e6
    )
    equities = assets.filter(pl.col("asset_class") == "equity")
    fund = sample_fundamentals(equities, prices.filter(pl.col("symbol").is_in(symbols)), seed=3,
                               start=SESSIONS[0], end=SESSIONS[-1])  # fmt: skip
    # A snapshot dated after the last session, a restated one (same as_of, a
    # later row: it wins), a zero P/E, and a stock without any.
    late = fund.filter(pl.col("symbol") == "S02").tail(1).with_columns(
        pl.lit(SESSIONS[-1] + timedelta(days=10)).alias("as_of"), pl.lit(1.0).alias("trailing_pe")
    )
    restated = fund.filter(pl.col("symbol") == "S11").slice(3, 1).with_columns(pl.lit(-7.0).alias("trailing_pe"))
    fund = pl.concat([fund.filter(pl.col("symbol") != "S20"), late, restated]).with_columns(
        pl.when((pl.col("symbol") == "S04") & (pl.col("as_of") > SESSIONS[100]) & (pl.col("as_of") < SESSIONS[200]))
        .then(0.0).otherwise(pl.col("trailing_pe")).alias("trailing_pe")
    )  # fmt: skip
    # Shuffled inputs: nothing may depend on the row order of the inputs.
    prices = prices.sample(fraction=1.0, shuffle=True, seed=seed)
    return prices, assets, pl.Series(SESSIONS, dtype=pl.Date), fund


@pytest.fixture(scope="module")
def panel():
    return make_panel()


@pytest.mark.parametrize("with_fundamentals", [True, False])
def test_marts_equal_oracle(panel, with_fundamentals):
    prices, assets, sessions, fund = panel
    f = fund if with_fundamentals else None
    want = oracle.alpha_score(prices, assets, sessions, f)
    assert want[0].height > 5000 and want[1].height > 5000
    assert set(want[1]["rank_scope"]) == {"sector", "all"}
    oracle.assert_equal(build_factor_marts(prices, assets, sessions, f), want)


# Families left out weigh 0; with momentum alone, the sessions before any
# momentum (126) have sub-scores but no Alpha Score, label, summary or headline.
@pytest.mark.parametrize("weights", [{"momentum": 2.0, "value": 0.5, "sentiment": 1.0}, {"momentum": 1.0}])
def test_marts_equal_oracle_with_options(panel, weights):
    prices, assets, sessions, fund = panel
    tolerance = timedelta(days=40)
    want = oracle.alpha_score(prices, assets, sessions, fund, min_sector_size=7, min_cross_section=20, weights=weights,
                              strong=60, moderate=30, fundamentals_tolerance=tolerance)  # fmt: skip
    got = build_factor_marts(prices, assets, sessions, fund, min_sector_size=7, min_cross_section=20, weights=weights,
                             thresholds=LabelThresholds(strong=60, moderate=30), fundamentals_tolerance=tolerance)  # fmt: skip
    assert (want[0]["alpha_score"].null_count() > 0) == (weights == {"momentum": 1.0})
    oracle.assert_equal(got, want)


def test_custom_metrics_equal_oracle(panel):
    # A caller-declared metric set, including a formula reading the grid with
    # its own window expression, ranks as the oracle ranks the same definitions.
    prices, assets, sessions, fund = panel
    px = pl.col("adj_close")

    def reversal_5(h: oracle.History) -> float | None:
        now, then = h.close(0), h.close(5)
        return None if now is None or then is None or then == 0 else oracle._number(-(now / then - 1.0))

    got = build_factor_marts(prices, assets, sessions, fund, metrics=(
        METRICS[1],
        Metric("reversal_5", "momentum", -(px / px.shift(5).over("symbol") - 1.0), True, "5-session reversal"),
        Metric("pe", "value", pl.col("trailing_pe"), False, "P/E"),
    ))  # fmt: skip
    want = oracle.alpha_score(prices, assets, sessions, fund, metrics=(
        oracle.METRICS[1],
        oracle.OracleMetric("reversal_5", "momentum", reversal_5, True),
        oracle.OracleMetric("pe", "value", oracle.reported("trailing_pe"), False),
    ))  # fmt: skip
    oracle.assert_equal(got, want)


def test_sample_market_equals_oracle():
    from flows.calendar import sessions as xnys_sessions
    from flows.settings import get_settings
    from flows.sources.sample import SampleSource
    from flows.universe import load_universe

    settings = get_settings()
    start, as_of = date(2020, 1, 2), date(2021, 12, 31)
    batch = SampleSource(seed=settings.sample_seed).fetch(load_universe(settings.universe_path), start, as_of, {}, None)
    sessions = xnys_sessions(start, as_of)
    want = oracle.alpha_score(batch.bars, batch.assets, sessions, batch.fundamentals)
    assert want[0]["coverage"].max() == 4 and want[0]["alpha_label"].n_unique() == 3
    oracle.assert_equal(build_factor_marts(batch.bars, batch.assets, sessions, batch.fundamentals), want)


# Every daily price history in ../shared/data/real (see its SOURCES.md), each
# scored as if it were a stock: real listings, ends, holiday and weekend bars,
# and exact ties (mimibotx BTC equals pratham093 BTC on every shared day).
REAL_FILES = {  # folder: (sector, files)
    "alitalbi-storage_data_fy": ("Financials", ("IWM", "RTY=F", "SPY", "^RUT", "^VIX")),
    "pratham093-AEGIS": ("Information Technology", ("ADA-USD", "AVAX-USD", "BNB-USD", "BTC-USD", "DIA", "DOGE-USD",
                         "DOT-USD", "ETH-USD", "IWM", "LINK-USD", "LTC-USD", "QQQ", "SOL-USD", "SPY", "XRP-USD")),
    "xjcarter-data": ("Energy", ("IWM", "SPY", "^GSPC", "^RUT")),  # four: ranked across all stocks
    "nascimento-fisica-Poeira_Cantor_Bin": ("Utilities", ("ADA-USD", "BTC-USD", "DOGE-USD", "ETH-USD", "SOL-USD",
                                            "XRP-USD")),
    "mimibotx-sketch-clawd": (None, ("BTC-USD", "SOL-USD")),  # no sector
}  # fmt: skip


def real_panel(real_data, start: date, end: date):
    frames, assets = [], []
    for folder, (sector, names) in REAL_FILES.items():
        for name in names:
            path = real_data / folder / f"{name}.csv"
            if not path.exists():
                pytest.skip(f"{path} not found (see ../shared/data/real/SOURCES.md)")
            pdf = pd.read_csv(path, skiprows=[1] if folder == "pratham093-AEGIS" else [])
            symbol = f"{folder.split('-')[0]}:{name}"
            close = pdf["Adj Close"] if "Adj Close" in pdf else pdf["Close"]
            days = pd.to_datetime(pdf["Date"].str[:10]).dt.date
            frames.append(pl.DataFrame({"symbol": symbol, "date": days, "adj_close": close.astype(float)}))
            assets.append({"symbol": symbol, "name": f"{name} ({folder})", "asset_class": "equity", "sector": sector,
                           "industry": None})  # fmt: skip
    prices = pl.concat(frames).filter(pl.col("date").is_between(start, end))
    assets = pl.DataFrame(assets, schema={c: pl.String for c in ("symbol", "name", "asset_class", "sector", "industry")})
    return prices, assets


def test_real_prices_equal_oracle(real_data):
    from flows.calendar import sessions as xnys_sessions

    start, end = date(2019, 1, 1), date(2026, 2, 23)
    prices, assets = real_panel(real_data, start, end)
    sessions = xnys_sessions(start, end)
    fund = sample_fundamentals(assets, prices, 5, start, end)  # synthetic snapshots on the real paths
    want = oracle.alpha_score(prices, assets, sessions, fund)
    scored = set(want[0]["symbol"])
    assert len(scored) == assets.height and want[0].height > 20000
    momentum = want[1].filter(pl.col("metric") == "momentum_12_1")
    assert momentum.height > 10000 and set(momentum["rank_scope"]) == {"sector", "all"}
    oracle.assert_equal(build_factor_marts(prices, assets, sessions, fund), want)


def test_oracle_follows_the_doc_by_hand():
    # The oracle's own rules on numbers worked out by hand from docs/alpha_score.md.
    assert oracle.percentile(3.0, [1.0, 2.0, 3.0, 3.0]) == 100 * 3.5 / 4  # ties share their average rank
    assert oracle.percentile(1.0, [1.0, 2.0]) == 50
    assert oracle.half_up(oracle.Fraction(149, 2)) == 75 and oracle.half_up(oracle.Fraction(147, 2)) == 74
    assert [oracle.label(s, 75, 40) for s in (75, 74, 40, 39)] == ["Strong", "Moderate", "Moderate", "Weak"]
    h = oracle.History(closes=[50.0, None, *[100.0] * 250, 80.0, *[90.0] * 21], pos=273, snapshot={"trailing_pe": 0.0,
                       "price_to_book": -2.0, "return_on_equity": float("nan")})  # fmt: skip
    assert oracle.momentum(21, 252)(h) == 80.0 / 100.0 - 1  # t-21 is position 252 (80), t-252 position 21 (100)
    assert oracle.momentum(21, 273)(h) == 80.0 / 50.0 - 1
    assert oracle.momentum(21, 272)(h) is None  # a gap 272 sessions back
    assert oracle.momentum(21, 274)(h) is None  # before the stock's own history
    assert oracle.reciprocal("trailing_pe")(h) is None and oracle.reciprocal("price_to_book")(h) == -0.5
    assert oracle.reported("return_on_equity")(h) is None
    # Weights 30/25/25/20 rescaled over what the stock has: without quality, momentum weighs 30/75.
    d = date(2024, 1, 2)
    ten = [f"S{i}" for i in range(10)]
    assets = pl.DataFrame({"symbol": ten, "name": ten, "asset_class": "equity", "sector": None})
    prices = pl.DataFrame({"symbol": ten, "date": d, "adj_close": 1.0})
    fund = pl.DataFrame({"symbol": ten, "as_of": d, "trailing_pe": [float(i + 1) for i in range(10)],
                         "recommendation_mean": [float(10 - i) for i in range(10)]})  # fmt: skip
    scores, _ = oracle.alpha_score(prices, assets, [d], fund)
    s0 = scores.row(0, named=True)  # S0: P/E 1 is the best value (100), rating 10 the worst sentiment (10)
    assert (s0["value_score"], s0["sentiment_score"], s0["alpha_score"]) == (100.0, 10.0, 60)  # (25*100+20*10)/45
    assert s0["summary"] == "Alpha Score of 60 reflects moderate overall profile with strong value, weak sentiment."


# ---------------------------------------------------------------- from_date


@pytest.fixture(scope="module")
def full_marts(panel):
    prices, assets, sessions, fund = panel
    return build_factor_marts(prices, assets, sessions, fund)


@pytest.mark.parametrize(
    "from_date",
    [
        SESSIONS[0],
        SESSIONS[126],  # first 6-1 momentum
        SESSIONS[215 + 252],  # its 252-session look-back starts inside S08's price gap
        SESSIONS[479],  # S05's last session
        SESSIONS[500] - timedelta(days=2),  # not a session (a weekend)
        SESSIONS[-1],  # the nightly case: one new session
        SESSIONS[-1] + timedelta(days=1),  # nothing to do
    ],
)
def test_marts_from_date_equal_full_filtered(panel, full_marts, from_date):
    prices, assets, sessions, fund = panel
    scores, metrics = build_factor_marts(prices, assets, sessions, fund, from_date=from_date)
    full_scores, full_metrics = full_marts
    assert_frame_equal(scores, full_scores.filter(pl.col("date") >= from_date), check_exact=True)
    assert_frame_equal(metrics, full_metrics.filter(pl.col("date") >= from_date), check_exact=True)
    if from_date <= SESSIONS[-1]:
        assert scores.height > 0


def test_marts_from_date_with_options(panel):
    prices, assets, sessions, fund = panel
    kw = {"min_sector_size": 7, "weights": {"momentum": 2.0, "quality": 1.0}, "fundamentals_tolerance": timedelta(days=40)}
    full = build_factor_marts(prices, assets, sessions, fund, **kw)
    d = SESSIONS[400]
    part = build_factor_marts(prices, assets, sessions, fund, from_date=d, **kw)
    for p, f in zip(part, full, strict=True):
        assert_frame_equal(p, f.filter(pl.col("date") >= d), check_exact=True)


@pytest.mark.parametrize("from_idx", [0, 40, 300, 500, len(SESSIONS) - 1])
def test_evaluation_from_date_equal_full_filtered(panel, full_marts, from_idx):
    prices, _, sessions, _ = panel
    scores, _ = full_marts
    horizons = (5, 21, 63)
    full_ic, _ = evaluate_factors(scores, prices, sessions, horizons=horizons)
    ic, _ = evaluate_factors(scores, prices, sessions, horizons=horizons, from_date=SESSIONS[from_idx])
    since = SESSIONS[max(from_idx - max(horizons), 0)]
    want = full_ic.filter(pl.col("date") >= since)
    assert ic.height == want.height > 0
    assert_frame_equal(ic, want, check_exact=True)


def test_evaluation_from_date_uses_only_recent_rows(panel, full_marts):
    # The incremental call needs only scores and prices from max(horizon)
    # sessions before from_date: older rows may be absent.
    prices, _, sessions, _ = panel
    scores, _ = full_marts
    since = SESSIONS[-1 - 63]
    full_ic, _ = evaluate_factors(scores, prices, sessions)
    ic, _ = evaluate_factors(
        scores.filter(pl.col("date") >= since), prices.filter(pl.col("date") >= since), sessions, from_date=SESSIONS[-1]
    )
    assert_frame_equal(ic, full_ic.filter(pl.col("date") >= since), check_exact=True)
