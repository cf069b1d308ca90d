"""The incremental build equals the full build.

For generated panels (and real data when present): ``full(as_of=D)`` against
``incremental(previous=full(as_of=D-1 session), since=...)``, table by
table, sorted by every non-float column, compared exactly: the rolling
correlations' sums restart at epoch boundaries of the calendar and the
incremental tail starts on one, so even their floats are the full build's bit
for bit (see transforms/correlation.py).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flows.calendar import sessions as exchange_sessions
from flows.policy import load_policy
from tests.panels import generate
from transforms.incremental import first_changed_session
from transforms.marts import MartParams, build_marts
from transforms.spillover import SpilloverParams
from contracts.tables import TABLES
from tests.transforms.seeding import seeded_build

AS_OF = date(2026, 11, 20)
PARAMS = MartParams(policy=load_policy(), factors=False)


@pytest.fixture(scope="module", params=[7, 11], ids=["seed7", "seed11"])
def panel(request):
    prices, assets, sessions = generate(12, 14, 2, AS_OF, request.param)
    return prices, assets, sessions.sort()


def as_of(prices: pl.DataFrame, sessions: pl.Series, d: date) -> tuple[pl.DataFrame, pl.Series]:
    return prices.filter(pl.col("date") <= d), sessions.filter(sessions <= d)


def assert_same_marts(full: dict[str, pl.DataFrame], inc: dict[str, pl.DataFrame]) -> None:
    assert set(full) == set(inc)
    for name, f in full.items():
        g = inc[name]
        assert g.schema == f.schema, name
        keys = [c for c, t in f.schema.items() if not t.is_float()]
        f, g = f.sort(keys, nulls_last=True), g.sort(keys, nulls_last=True)
        try:
            assert_frame_equal(f, g, check_exact=True)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


def assert_unchanged_before(previous: dict[str, pl.DataFrame], inc, full) -> None:
    """The contract of ``Marts.unchanged_before`` (INTERFACE.md): each named table holds only its
    rows dated on or after the date, and the previous rows dated before it are the full
    build's rows before it, as a multiset of whole rows (nulls equal)."""
    for name, d in inc.unchanged_before.items():
        col = TABLES[name].date_column
        assert col is not None, f"{name} has no date column and cannot be named"
        assert inc.tables[name].filter(pl.col(col) < d).is_empty(), f"{name} holds rows before {d}"
        want = full.tables[name].filter(pl.col(col) < d)
        old = previous[name].filter(pl.col(col) < d).select(want.columns).cast(want.schema)
        keys = list(want.columns)
        try:
            assert_frame_equal(old.sort(keys, nulls_last=True), want.sort(keys, nulls_last=True), check_exact=True)
        except AssertionError as e:
            raise AssertionError(f"{name} before {d}: {e}") from None


def completed(previous: dict[str, pl.DataFrame], inc) -> dict[str, pl.DataFrame]:
    """The tables as the published run holds them after ``inc``: a named table's previous rows
    before its date, then its tail (``Marts.unchanged_before``); the others as built."""
    out = dict(inc.tables)
    for name, d in inc.unchanged_before.items():
        tail = inc.tables[name]
        earlier = previous[name].filter(pl.col(TABLES[name].date_column) < d).select(tail.columns).cast(tail.schema)
        out[name] = pl.concat([earlier, tail])
    return out


def check(prices, assets, sessions, d, prev_prices, prev_assets, prev_sessions, from_date, params=PARAMS, rereads=None):
    previous = build_marts(prev_prices, prev_assets, prev_sessions, params)
    full = build_marts(prices, assets, sessions, params)
    # From the previous tables as the run's seed read gives them: only the rows the nodes declare.
    inc = seeded_build(prices, assets, sessions, params, previous.tables, from_date, rereads)
    assert_same_marts(full.tables, completed(previous.tables, inc))
    assert inc.warnings == full.warnings
    assert full.unchanged_before == {}
    assert_unchanged_before(previous.tables, inc, full)
    return full, inc


def test_one_new_day(panel):
    prices, assets, sessions = panel
    d, prev = sessions[-1], sessions[-2]
    p, s = as_of(prices, sessions, d)
    pp, ps = as_of(prices, sessions, prev)
    rereads = []
    full, inc = check(p, assets, s, d, pp, assets, ps, prev + timedelta(days=1), rereads=rereads)
    assert rereads == []  # every bounded seed was enough
    # A plain new day: every table whose old rows are carried is named, from the new day on
    # (the matrix and spillover marts from the previous latest session, which stops being an as-of date).
    carried = {"fact_prices", "fact_returns", "mart_rolling_correlation", "mart_correlation_events", "mart_correlation_matrix",
               "mart_spillover", "mart_lead_lag", "mart_spillover_index"}  # fmt: skip
    assert set(inc.unchanged_before) == carried
    assert inc.unchanged_before["fact_returns"] == prev + timedelta(days=1)
    assert all(prev <= v <= prev + timedelta(days=1) for v in inc.unchanged_before.values())
    # The new day has rows in the path-dependent marts, so the comparison means something.
    assert full.tables["mart_rolling_correlation"].filter(pl.col("date") == d).height
    assert full.tables["fact_prices"].filter((pl.col("symbol") == "ALTS_DV") & (pl.col("date") > prev)).height


def test_one_new_day_without_any_crypto_asset(panel):
    """A universe of equities and indices only (e.g. one real folder of stock files):
    the correlation node has no crypto asset to pair, and its incremental build
    must still equal the full one (it joined a null-typed empty pair list to the
    previous rows' string keys and raised)."""
    prices, assets, sessions = panel
    assets = assets.filter(pl.col("asset_class") != "crypto")
    prices = prices.join(assets.select("symbol"), on="symbol", how="semi")
    d, prev = sessions[-1], sessions[-2]
    p, s = as_of(prices, sessions, d)
    pp, ps = as_of(prices, sessions, prev)
    full, inc = check(p, assets, s, d, pp, assets, ps, prev + timedelta(days=1))
    assert full.tables["mart_rolling_correlation"].is_empty()


def test_fact_prices_is_unchanged_before_the_new_day_with_the_lakes_ingested_at(panel):
    """As a run reads the lake (source, ingested_at): the derived index bars take the freshness of
    their members' bars up to their own date, not the newest bar of the run, so the published
    rows of fact_prices before the new day stay as they are (the load replaces it only from
    there, not whole) and the incremental build still equals the full one."""
    prices, assets, sessions = panel
    d, prev = sessions[-1], sessions[-2]
    landed, next_night = datetime(2026, 11, 20, 1, tzinfo=UTC), datetime(2026, 11, 21, 1, tzinfo=UTC)
    stamped = prices.with_columns(
        pl.lit("sample").alias("source"),
        pl.when(pl.col("date") <= prev).then(pl.lit(landed)).otherwise(pl.lit(next_night)).alias("ingested_at"),
    )
    p, s = as_of(stamped, sessions, d)
    pp, ps = as_of(stamped, sessions, prev)
    full, inc = check(p, assets, s, d, pp, assets, ps, prev + timedelta(days=1))
    assert inc.unchanged_before["fact_prices"] == prev + timedelta(days=1)
    derived = full.tables["fact_prices"].filter(pl.col("source") == "derived")
    assert derived.filter(pl.col("date") <= prev)["ingested_at"].unique().to_list() == [landed]
    assert derived.filter(pl.col("date") > prev)["ingested_at"].unique().to_list() == [next_night]


def test_new_day_after_a_weekend_and_a_month_end(panel):
    prices, assets, sessions = panel
    # The first session of November 2026 is a Monday: crypto bars of Sat/Sun are new too,
    # the October block of the matrix becomes a month-end, ALTS_DV rebalances.
    d = sessions.filter(sessions >= date(2026, 11, 1))[0]
    prev = sessions.filter(sessions < d)[-1]
    p, s = as_of(prices, sessions, d)
    pp, ps = as_of(prices, sessions, prev)
    check(p, assets, s, d, pp, assets, ps, prev + timedelta(days=1))


def test_weekend_run_with_crypto_bars_only(panel):
    """as_of on a Sunday: no new session, but two new crypto days (indices, milestones, allocation)."""
    prices, assets, sessions = panel
    friday = sessions.filter(sessions.dt.weekday() == 5)[-2]
    sunday = friday + timedelta(days=2)
    p, s = as_of(prices, sessions, sunday)
    pp, ps = as_of(prices, sessions, friday)
    full, _ = check(p, assets, s, sunday, pp, assets, ps, friday + timedelta(days=1))
    assert full.tables["fact_prices"].filter((pl.col("symbol") == "ALTS") & (pl.col("date") == sunday)).height


def test_restated_last_week(panel):
    prices, assets, sessions = panel
    d, prev = sessions[-1], sessions[-2]
    week = sessions[-6]
    # A vendor restates five sessions of two coins and a benchmark.
    restated = prices.with_columns(
        pl.when(pl.col("symbol").is_in(["SOL", "ETH", "^RUT"]) & (pl.col("date") >= week))
        .then(pl.col("adj_close") * 1.01)
        .otherwise(pl.col("adj_close"))
        .alias("adj_close")
    )
    p, s = as_of(restated, sessions, d)
    pp, ps = as_of(prices, sessions, prev)
    from_date = first_changed_session(pp, p)
    assert from_date == week
    check(p, assets, s, d, pp, assets, ps, from_date)


def test_new_symbol_listed_on_the_new_day(panel):
    prices, assets, sessions = panel
    d, prev = sessions[-1], sessions[-2]
    template = prices.filter(pl.col("symbol") == "SOL")
    listing = template.filter(pl.col("date") > prev).with_columns(pl.lit("NEWC").alias("symbol"))
    new_prices = pl.concat([prices, listing])
    new_assets = pl.concat([assets, assets.filter(pl.col("symbol") == "SOL").with_columns(pl.lit("NEWC").alias("symbol"))])
    p, s = as_of(new_prices, sessions, d)
    pp, ps = as_of(prices, sessions, prev)
    rereads = []
    full, _ = check(p, new_assets, s, d, pp, assets, ps, prev + timedelta(days=1), rereads=rereads)
    assert full.tables["mart_correlation_matrix"].filter(pl.col("asset_a") == "NEWC").height
    # Its null rows go into every earlier block: the matrix's window is not enough, it is read whole.
    assert rereads == ["mart_correlation_matrix"]


def test_a_series_new_to_the_spillover_index_rebuilds_the_index_whole(panel):
    """ETH listed on the new day joins the spillover index's series: every earlier row of the
    index changes (the VAR is over all its series), so the index is handed on whole, not as a tail."""
    prices, assets, sessions = panel
    d, prev = sessions[-1], sessions[-2]
    later = prices.filter((pl.col("symbol") != "ETH") | (pl.col("date") > prev))
    p, s = as_of(later, sessions, d)
    pp, ps = as_of(later, sessions, prev)
    full, inc = check(p, assets, s, d, pp, assets, ps, prev + timedelta(days=1))
    assert "mart_spillover_index" not in inc.unchanged_before
    previous = build_marts(pp, assets, ps, PARAMS).tables["mart_spillover_index"]
    assert "ETH" not in previous["series"].to_list() and previous.height
    assert full.tables["mart_spillover_index"].filter(pl.col("date") <= prev).height != previous.height


def _without(prices: pl.DataFrame, symbol: str, days) -> pl.DataFrame:
    return prices.filter((pl.col("symbol") != symbol) | ~pl.col("date").is_in(list(days)))


@pytest.mark.parametrize("missing", [(-4, -3), (-3,), (-40, -3)], ids=["two_sessions", "one_session", "long_gap"])
def test_a_coin_resuming_after_a_gap_at_the_seam(panel, missing):
    """ETH has no bar on some sessions before the previous as-of (e.g. quarantined), so its last
    return before it is days earlier: the previous run's ETH pairs ended there. Its return on the
    new day pairs them again, and the full build publishes the spillover marts' rows of the gap's
    sessions (their windows lie in the pair's span again): the incremental build must give them."""
    prices, assets, sessions = panel
    d, prev = sessions[-1], sessions[-2]
    days = sessions.gather([i for i in range(missing[0], missing[-1] + 1)]) if len(missing) > 1 else sessions.gather(list(missing))
    gapped = _without(prices, "ETH", days)
    p, s = as_of(gapped, sessions, d)
    pp, ps = as_of(gapped, sessions, prev)
    full, inc = check(p, assets, s, d, pp, assets, ps, prev + timedelta(days=1))
    rows = full.tables["mart_spillover"].filter((pl.col("asset") == "ETH") & pl.col("date").is_in(days.implode()))
    assert rows.height, "the gap's rows exist in the full build"
    previous = build_marts(pp, assets, ps, PARAMS).tables["mart_spillover"]
    assert previous.filter((pl.col("asset") == "ETH") & pl.col("date").is_in(days.implode())).is_empty()


@pytest.mark.parametrize("benchmarks_end", [False, True], ids=["benchmarks_go_on", "benchmarks_end_in_between"])
def test_a_coin_whose_bars_after_a_gap_are_withdrawn(benchmarks_end):
    """The other way round: the previous run had ETH's bars after its gap (its pairs' rows of the
    gap's sessions published), a revision withdraws them: the full build has no such row any more.
    With the benchmarks' last bars four sessions before the previous as-of, the previous rows of
    ETH's pairs end before the spillover marts' window read (the previous latest session)."""
    prices, assets, sessions = _random_panel(5, 0.0)
    params = SMALL
    at = 80
    d, prev = sessions[at], sessions[at - 1]
    gap = sessions.slice(at - 6, 2)
    before = _without(prices, "ETH", gap)
    if benchmarks_end:
        for symbol in ("^RUT", "^GSPC"):
            before = _without(before, symbol, sessions.slice(at - 4, 4))
    after = before.filter((pl.col("symbol") != "ETH") | (pl.col("date") < sessions[at - 3]))
    p, s = as_of(after, sessions, d)
    pp, ps = as_of(before, sessions, prev)
    from_date = first_changed_session(pp, p)
    assert from_date is not None and from_date < prev
    full, _ = check(p, assets, s, d, pp, assets, ps, from_date, params)
    assert full.tables["mart_spillover"].filter(pl.col("asset") == "ETH")["date"].max() < gap[0]


def _last_event_day(panel) -> date:
    prices, assets, sessions = panel
    events = build_marts(prices, assets, sessions, PARAMS).tables["mart_correlation_events"]
    signs = events.filter(pl.col("event").is_in(["turned_negative", "turned_positive"]) & pl.col("previous_date").is_not_null())
    return signs["date"].max()


def test_new_day_creates_a_correlation_event(panel):
    prices, assets, sessions = panel
    d = _last_event_day(panel)
    prev = sessions.filter(sessions < d)[-1]
    p, s = as_of(prices, sessions, d)
    pp, ps = as_of(prices, sessions, prev)
    full, inc = check(p, assets, s, d, pp, assets, ps, prev + timedelta(days=1))
    new = inc.tables["mart_correlation_events"].filter(pl.col("date") == d)
    assert new.filter(pl.col("event").is_in(["turned_negative", "turned_positive"])).height
    # "for the first time since <date>" is carried from rows the incremental run did not rescan.
    assert new["previous_date"].drop_nulls().min() < prev


def test_chained_nightly_runs(panel):
    """Each night starts from the previous incremental run's tables (unsorted, partly carried)."""
    prices, assets, sessions = panel
    start = sessions.len() - 5
    p, s = as_of(prices, sessions, sessions[start])
    tables = build_marts(p, assets, s, PARAMS).tables
    for i in range(start + 1, sessions.len()):
        p, s = as_of(prices, sessions, sessions[i])
        since = sessions[i - 1] + timedelta(days=1)
        tables = completed(tables, seeded_build(p, assets, s, PARAMS, tables, since))
    assert_same_marts(build_marts(prices, assets, sessions, PARAMS).tables, tables)


def test_confirm_sessions_above_one_rescans_events(panel):
    prices, assets, sessions = panel
    d, prev = sessions[-1], sessions[-4]
    params = dataclasses.replace(PARAMS, event_confirm_sessions=3)
    p, s = as_of(prices, sessions, d)
    pp, ps = as_of(prices, sessions, prev)
    check(p, assets, s, d, pp, assets, ps, prev + timedelta(days=1), params)


def test_too_little_history_falls_back_to_the_full_build(panel):
    prices, assets, sessions = panel
    d = sessions[300]
    prev = sessions[299]
    p, s = as_of(prices, sessions, d)
    pp, ps = as_of(prices, sessions, prev)
    _, inc = check(p, assets, s, d, pp, assets, ps, prev + timedelta(days=1))
    assert inc.unchanged_before == {}  # built in full: every table is rewritten


def test_alpha_score_marts(panel):
    prices, assets, sessions = panel
    params = dataclasses.replace(PARAMS, factors=True)
    d, prev = sessions[-1], sessions[-2]
    p, s = as_of(prices, sessions, d)
    pp, ps = as_of(prices, sessions, prev)
    full, inc = check(p, assets, s, d, pp, assets, ps, prev + timedelta(days=1), params)
    assert "mart_factor_scores" in inc.tables
    assert {"mart_factor_scores", "mart_factor_metrics", "mart_factor_ic"} <= set(inc.unchanged_before)


@pytest.mark.parametrize("back", [(-4, -3), (-40, -3)], ids=["two_sessions", "long_gap"])
def test_every_mart_with_gaps_at_the_seam(panel, back):
    """Gaps at the seam in a stock, a coin and a benchmark at once, the Alpha Score marts on:
    each series' last bar before the previous as-of is days earlier, the new day resumes it."""
    prices, assets, sessions = panel
    params = dataclasses.replace(PARAMS, factors=True)
    d, prev = sessions[-1], sessions[-2]
    gapped = prices
    for symbol, shift in (("E0003", 0), ("ETH", 0), ("^RUT", 1)):
        gapped = _without(gapped, symbol, sessions.slice(len(sessions) + back[0] + shift, back[1] - back[0] + 1 - shift))
    p, s = as_of(gapped, sessions, d)
    pp, ps = as_of(gapped, sessions, prev)
    full, inc = check(p, assets, s, d, pp, assets, ps, prev + timedelta(days=1), params)
    assert {"mart_factor_scores", "mart_spillover"} <= set(inc.unchanged_before)


@pytest.mark.parametrize("since", [date(2026, 11, 20), date(2026, 11, 1), date(2026, 10, 31), date(2026, 3, 15)])
def test_indices_chained_from_published_levels_are_bit_identical(panel, since):
    from transforms.indices import build_crypto_indices

    prices, assets, _ = panel
    whole = build_crypto_indices(prices, assets)
    previous = build_crypto_indices(prices.filter(pl.col("date") < since), assets)
    chained = build_crypto_indices(prices, assets, previous_bars=previous.bars, since=since)
    assert_frame_equal(chained.bars, whole.bars, check_exact=True)
    assert_frame_equal(chained.assets, whole.assets, check_exact=True)


def test_alpha_score_merge_with_a_stand_in_from_date_api(panel, monkeypatch):
    """The merge of factor rows, checked with stand-ins that honour the agreed
    ``from_date`` contract by filtering a whole computation (the real ones come
    from the alpha branch)."""
    import transforms.incremental as inc
    import transforms.marts as marts

    whole_marts, whole_eval = marts.build_factor_marts, inc.evaluate_factors

    def build_factor_marts(*args, from_date=None, **kwargs):
        scores, metrics = whole_marts(*args, **kwargs)
        if from_date is None:
            return scores, metrics
        return scores.filter(pl.col("date") >= from_date), metrics.filter(pl.col("date") >= from_date)

    def evaluate_factors(scores, prices, sessions, *, horizons=(21, 63), from_date=None, **kwargs):
        ic, summary = whole_eval(scores, prices, sessions, horizons=horizons, **kwargs)
        if from_date is None:
            return ic, summary
        s = sessions.sort()
        i = s.search_sorted(from_date, side="left")
        touched = pl.DataFrame({"horizon_sessions": [int(h) for h in horizons], "_t": [s[max(i - int(h), 0)] for h in horizons]})
        ic = ic.join(touched, on="horizon_sessions").filter(pl.col("date") >= pl.col("_t")).drop("_t")
        return ic, summary

    monkeypatch.setattr(marts, "build_factor_marts", build_factor_marts)
    monkeypatch.setattr(inc, "evaluate_factors", evaluate_factors)
    prices, assets, sessions = panel
    params = dataclasses.replace(PARAMS, factors=True)
    d, prev = sessions[-1], sessions[-4]
    p, s = as_of(prices, sessions, d)
    pp, ps = as_of(prices, sessions, prev)
    full, inc = check(p, assets, s, d, pp, assets, ps, prev + timedelta(days=1), params)
    assert full.tables["mart_factor_ic"].filter(pl.col("date") >= s[-70]).height


# --------------------------------------------------------------------------- first_changed_session


def _bars(rows):
    return pl.DataFrame(
        rows, schema={"symbol": pl.String, "date": pl.Date, "close": pl.Float64, "adj_close": pl.Float64, "volume": pl.Float64},
        orient="row",
    )  # fmt: skip


def test_first_changed_session():
    base = [("A", date(2026, 1, d), 1.0 + d, 1.0 + d, None) for d in range(1, 10)]
    old = _bars(base)
    assert first_changed_session(old, old) is None
    # Row order and ingested_at do not matter.
    assert first_changed_session(old, old.reverse().with_columns(pl.lit(1).alias("ingested_at"))) is None
    assert first_changed_session(old, _bars(base + [("A", date(2026, 1, 10), 1.0, 1.0, None)])) == date(2026, 1, 10)
    assert first_changed_session(old, _bars(base[:3] + base[4:])) == date(2026, 1, 4)
    changed = list(base)
    changed[6] = ("A", date(2026, 1, 7), 8.0, 8.0, 5.0)  # a volume appears
    changed[7] = ("A", date(2026, 1, 8), 9.0, 9.5, None)  # an adjusted close is restated
    assert first_changed_session(old, _bars(changed)) == date(2026, 1, 7)
    assert first_changed_session(old, _bars(base + [("B", date(2025, 12, 31), 1.0, 1.0, 1.0)])) == date(2025, 12, 31)


# --------------------------------------------------------------------------- real data


def _real(real_data: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    import pandas as pd

    frames, assets = [], []
    sources = [("^RUT", real_data / "alitalbi-storage_data_fy" / "^RUT.csv", None, "index")]
    sources.append(("^GSPC", real_data / "alitalbi-storage_data_fy" / "SPY.csv", None, "index"))
    for coin in ("BTC", "ETH", "SOL", "ADA", "XRP", "DOGE", "AVAX", "DOT", "LINK", "LTC", "BNB"):
        sources.append((coin, real_data / "pratham093-AEGIS" / f"{coin}-USD.csv", [1], "crypto"))
    for symbol, path, skip, klass in sources:
        d = pd.read_csv(path, skiprows=skip)
        frames.append(
            pl.DataFrame(
                {
                    "symbol": symbol,
                    "date": list(pd.to_datetime(d["Date"]).dt.date),
                    **{c.lower(): d[c].astype(float).to_numpy() for c in ("Open", "High", "Low", "Close", "Volume")},
                }
            ).with_columns(pl.col("close").alias("adj_close"))
        )
        assets.append({"symbol": symbol, "name": symbol, "asset_class": klass, "sector": None, "industry": None,
                       "quote_currency": "USD", "source": "files", "source_symbol": symbol})  # fmt: skip
    prices = pl.concat(frames).filter(pl.col("date") >= date(2021, 1, 1)).sort("symbol", "date")
    return prices, pl.DataFrame(assets)


def test_real_data_one_new_day_and_a_restated_week(real_data):
    prices, assets = _real(real_data)
    end = min(prices.filter(pl.col("symbol") == s)["date"].max() for s in ("^RUT", "BTC"))
    sessions = exchange_sessions(prices["date"].min(), end).sort()
    d, prev = sessions[-1], sessions[-2]
    p, s = as_of(prices, sessions, d)
    pp, ps = as_of(prices, sessions, prev)
    check(p, assets, s, d, pp, assets, ps, prev + timedelta(days=1))
    week = sessions[-6]
    restated = p.with_columns(
        pl.when((pl.col("symbol") == "BTC") & (pl.col("date") >= week)).then(pl.col("adj_close") * 0.97).otherwise(pl.col("adj_close")).alias("adj_close")
    )  # fmt: skip
    check(restated, assets, s, d, pp, assets, ps, first_changed_session(pp, restated))


# --------------------------------------------------------------------------- properties

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# An epoch of 8 sessions: the tails start on nonzero epoch boundaries and the
# windows cross epochs, which the default (512) never does on 120 days.
SMALL = MartParams(
    windows=(3, 7), event_levels=(0.5, -0.5), factors=False, correlation_epoch_sessions=8,
    # Windows these panels fill, so the spillover marts have rows (gaps at the seam among them).
    spillover=SpilloverParams(windows=(3, 7), regime_lookback=5, min_observations=2),
)


def _random_panel(seed: int, gap: float, n_days: int = 120) -> tuple[pl.DataFrame, pl.DataFrame, pl.Series]:
    """Coins every day, benchmarks on weekdays, with random missing bars, a late
    listing, a delisting and long benchmark gaps (pairs that resume)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(n_days)]
    sessions = pl.Series("session_date", [d for d in days if d.weekday() < 5], dtype=pl.Date)
    rows = []
    names = {"^RUT": "index", "^GSPC": "index", "BTC": "crypto", "ETH": "crypto", "SOL": "crypto", "ADA": "crypto", "XRP": "crypto"}
    market = rng.normal(0, 0.01, n_days)
    for symbol, klass in names.items():
        level = 100.0
        first = int(rng.integers(0, n_days // 2)) if symbol == "XRP" else 0
        last = int(rng.integers(n_days // 2, n_days)) if symbol == "ADA" else n_days
        hole = (int(rng.integers(0, n_days)), int(rng.integers(5, 40))) if symbol == "^GSPC" else (0, 0)
        for i, d in enumerate(days):
            level *= float(np.exp(market[i] * rng.uniform(0, 2) + rng.normal(0, 0.01)))
            if klass == "index" and d.weekday() >= 5:
                continue
            if i < first or i >= last or hole[0] <= i < hole[0] + hole[1] or rng.random() < gap:
                continue
            # Round so exact repeats (flat windows, zero correlations) can happen.
            px = round(level, 2)
            rows.append((symbol, d, px, px, px, px, px, float(rng.integers(1, 1000))))
    prices = pl.DataFrame(
        rows, schema={"symbol": pl.String, "date": pl.Date, **{c: pl.Float64 for c in ("open", "high", "low", "close", "adj_close", "volume")}},
        orient="row",
    )  # fmt: skip
    assets = pl.DataFrame(
        [{"symbol": s, "name": s, "asset_class": k, "sector": None, "industry": None, "quote_currency": "USD",
          "source": "t", "source_symbol": s} for s, k in names.items()]
    )  # fmt: skip
    return prices, assets, sessions


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), gap=st.sampled_from([0.0, 0.05, 0.3]), back=st.integers(1, 6),
       at=st.integers(40, 85), k=st.sampled_from([1, 1, 2]))  # fmt: skip
def test_property_incremental_equals_full(seed, gap, back, at, k):
    prices, assets, sessions = _random_panel(seed, gap)
    d = sessions[at]
    prev = sessions[at - back]
    params = dataclasses.replace(SMALL, event_confirm_sessions=k)
    p, s = as_of(prices, sessions, d)
    pp, ps = as_of(prices, sessions, prev)
    check(p, assets, s, d, pp, assets, ps, prev + timedelta(days=1), params)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), gap=st.sampled_from([0.0, 0.05, 0.3]), back=st.integers(1, 6),
       at=st.integers(40, 85), recent=st.sampled_from([1, 2, 5]))  # fmt: skip
def test_property_events_looked_up_beyond_a_short_window(seed, gap, back, at, recent):
    """The events' held signs and last dates of each state looked up in only the last
    ``recent`` sessions' rows first (``transforms.events.RECENT_SESSIONS``, a year by
    default: longer than these panels): the answers before it are found all the same."""
    import transforms.events

    prices, assets, sessions = _random_panel(seed, gap)
    d, prev = sessions[at], sessions[at - back]
    p, s = as_of(prices, sessions, d)
    pp, ps = as_of(prices, sessions, prev)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(transforms.events, "RECENT_SESSIONS", recent)
        check(p, assets, s, d, pp, assets, ps, prev + timedelta(days=1), SMALL)


def test_a_delisted_coin_keeps_its_rows_and_the_tail_is_handed_on():
    """A coin without returns in the tail (delisted long before it) has no previous row
    from the tail's first session on: its pairs are looked up among all previous rows and,
    found there, kept as they were, so no pair is recomputed whole and the correlations are
    handed on as their tail; a pair absent from them would be new (recomputed whole)."""
    prices, assets, sessions = _random_panel(3, 0.0)
    prices = prices.filter((pl.col("symbol") != "ADA") | (pl.col("date") < sessions[30]))
    d, prev = sessions[-1], sessions[-2]
    p, s = as_of(prices, sessions, d)
    pp, ps = as_of(prices, sessions, prev)
    full, inc = check(p, assets, s, d, pp, assets, ps, prev + timedelta(days=1), SMALL)
    assert full.tables["mart_rolling_correlation"].filter(pl.col("asset") == "ADA")["date"].max() < sessions[30]
    assert inc.unchanged_before["mart_rolling_correlation"] == prev + timedelta(days=1)
