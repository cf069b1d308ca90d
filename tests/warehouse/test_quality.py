"""Data-quality rules: what quarantines a row, what fails the audit, what only flags."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import duckdb
import polars as pl
import pytest

from tests.warehouse.conftest import AS_OF
from warehouse.audit import audit, audit_warnings
from warehouse.build import build_database
from warehouse.quality import (
    MAX_LISTED, key_is_unique, screen, session_gaps, split_like_moves,
)
from warehouse.runs import RunLog
from contracts.schema import strictly_increasing
from contracts.tables import FACT_PRICES, QUARANTINE


def bar(symbol="BTC", day=date(2024, 1, 2), **values):
    row = {"symbol": symbol, "date": day, "open": 10.0, "high": 12.0, "low": 9.0, "close": 11.0,
           "adj_close": 11.0, "volume": 5.0, "source": "files", "ingested_at": datetime(2024, 1, 3, tzinfo=UTC)}
    row.update(values)
    return row


def bars(*rows) -> pl.DataFrame:
    return FACT_PRICES.conform(pl.DataFrame(list(rows), schema=FACT_PRICES.polars_schema))


def test_sample_run_passes_every_rule(tables):
    assert audit(tables, AS_OF) == []


@pytest.mark.parametrize(
    ("values", "rule"),
    [
        ({"close": 0.0}, "close|min_exclusive"),
        ({"adj_close": -3.0}, "adj_close|min_exclusive"),
        ({"close": float("nan")}, "close|nan"),
        ({"adj_close": float("inf")}, "adj_close|inf"),
        ({"high": 8.0}, "high_ge_low"),
        ({"day": AS_OF + timedelta(days=1)}, "not_after_as_of"),
        ({"volume": -1.0}, "volume|min"),
    ],
)
def test_bad_bar_is_quarantined_and_clean_bars_kept(values, rule):
    good_rows = [bar(day=date(2024, 1, d)) for d in (2, 3)]
    bad = bar(symbol="ETH", **({"day": date(2024, 1, 4)} | values))
    clean, quarantined = screen("fact_prices", bars(*good_rows, bad), AS_OF, run_id="r1")
    assert clean.equals(bars(*good_rows))
    assert quarantined.columns == QUARANTINE.column_names
    # The rule named, and only for the bad row (a value out of range may break a range rule too).
    assert rule in quarantined["rule"].to_list()
    assert quarantined["key"].unique().to_list() == [json.dumps({"symbol": "ETH", "date": str(bad["date"])})]
    row = quarantined.row(0, named=True)
    assert row["run_id"] == "r1" and row["table_name"] == "fact_prices"
    assert json.loads(row["key"]) == {"symbol": "ETH", "date": str(bad["date"])}
    assert '"source": "files"' in row["detail"]  # where the row came from


def test_duplicate_bars_are_both_quarantined_under_one_key(tmp_path):
    clean, quarantined = screen("fact_prices", bars(bar(), bar(close=11.5), bar(day=date(2024, 1, 3))), AS_OF, "r1")
    assert clean["date"].to_list() == [date(2024, 1, 3)]
    (row,) = quarantined.rows(named=True)
    assert row["rule"] == "primary_key" and '"close": 11.0' in row["detail"] and '"close": 11.5' in row["detail"]
    build_database(tmp_path / "w.duckdb", {"quarantine": quarantined})  # its own key holds


def test_row_breaking_two_rules_gets_two_quarantine_rows():
    _, quarantined = screen("fact_prices", bars(bar(close=-1.0, high=1.0, low=2.0)), AS_OF)
    assert sorted(quarantined["rule"]) == ["close_in_range", "close|min_exclusive", "high_ge_low", "open_in_range"]
    assert quarantined["key"].n_unique() == 1


def test_quarantine_detail_names_where_the_row_came_from():
    frame = bars(bar(), bar(day=date(2024, 1, 3), close=-1.0)).with_columns(
        pl.Series("origin", ["prices/BTC-USD.csv line 2", "prices/BTC-USD.csv line 3"])
    )
    clean, quarantined = screen("fact_prices", frame, AS_OF)
    assert clean.columns == FACT_PRICES.column_names, "origin stays out of fact_prices"
    (row,) = quarantined.filter(pl.col("rule") == "close|min_exclusive").rows(named=True)
    assert set(quarantined["key"]) == {json.dumps({"symbol": "BTC", "date": "2024-01-03"})}
    assert row["detail"].startswith("close > 0; from prices/BTC-USD.csv line 3; row: {")
    assert '"close": -1.0' in row["detail"]


def test_quarantine_detail_says_when_the_origin_is_unknown():
    frame = bars(bar(close=-1.0)).with_columns(pl.lit(None, pl.String).alias("origin"))
    _, quarantined = screen("fact_prices", frame, AS_OF)
    assert "from unknown origin (landed before the lake kept origins)" in quarantined["detail"][0]


SAT, NEW_YEAR, FRI = date(2024, 1, 6), date(2024, 1, 1), date(2024, 1, 5)
ASSET_CLASSES = pl.DataFrame({"symbol": ["^RUT", "SPY", "A", "BTC", "ALTS"],
                              "asset_class": ["index", "etf", "equity", "crypto", "index_crypto"]})


def test_equity_bar_off_the_exchange_calendar_is_quarantined_and_crypto_is_exempt():
    from flows.calendar import sessions

    cal = sessions(date(2023, 12, 1), AS_OF)
    frame = bars(
        bar("^RUT", FRI), bar("^RUT", SAT), bar("SPY", NEW_YEAR), bar("A", SAT),  # equities: weekend, holiday
        bar("BTC", SAT), bar("ALTS", SAT), bar("UNLISTED", SAT),  # crypto trades every day; unknown class: no rule
    )
    clean, quarantined = screen("fact_prices", frame, AS_OF, sessions=cal, assets=ASSET_CLASSES)
    assert sorted(map(tuple, clean.select("symbol", "date").rows())) == [
        ("ALTS", SAT), ("BTC", SAT), ("UNLISTED", SAT), ("^RUT", FRI)]
    assert set(quarantined["rule"]) == {"not_a_session"}
    assert sorted(json.loads(k)["symbol"] + " " + json.loads(k)["date"] for k in quarantined["key"]) == [
        "A 2024-01-06", "SPY 2024-01-01", "^RUT 2024-01-06"]
    assert quarantined["detail"][0].startswith("equity, ETF and index bars are dated on an exchange session")


def test_without_a_calendar_the_session_rule_holds():
    clean, quarantined = screen("fact_prices", bars(bar("^RUT", SAT)), AS_OF, assets=ASSET_CLASSES)
    assert clean.height == 1 and quarantined.is_empty()


def test_derived_tables_cannot_be_screened():
    with pytest.raises(ValueError, match="audited as a whole"):
        screen("mart_rolling_correlation", pl.DataFrame(), AS_OF)


def broken(frame: pl.DataFrame, **exprs) -> pl.DataFrame:
    """The frame with its first row's columns replaced."""
    first = pl.int_range(pl.len()) == 0
    return frame.with_columns(pl.when(first).then(v).otherwise(pl.col(c)).alias(c) for c, v in exprs.items())


@pytest.mark.parametrize(
    ("table", "change", "expected"),
    [
        ("mart_rolling_correlation", {"correlation": pl.lit(1.2)}, "correlation <= 1"),
        ("mart_correlation_matrix", {"correlation": pl.lit(-1.01)}, "correlation >= -1"),
        ("fact_returns", {"log_return": pl.lit(float("inf"))}, "log_return is finite"),
        ("fact_prices", {"close": pl.lit(-1.0)}, "close > 0"),
        ("mart_market_milestones", {"date": pl.lit(AS_OF + timedelta(days=3))}, f"date <= as_of ({AS_OF})"),
        ("mart_allocation_weights", {"weight": pl.col("weight") * 0.5}, "weight sums to 1"),
        ("mart_mix_performance", {"nav": pl.lit(0.0)}, "nav > 0"),
        ("mart_spillover", {"regime": pl.lit("bull")}, "regime is risk_on, risk_off or all"),
        ("mart_lead_lag", {"lag_sessions": pl.lit(2, dtype=pl.Int32)}, "measure is session"),
        ("mart_spillover_index", {"from_others": pl.col("from_others") + 1.0}, "own_share + from_others = 100"),
    ],
)
def test_broken_derived_table_fails_the_audit(tables, table, change, expected):
    tables[table] = broken(tables[table], **change)
    failures = audit(tables, AS_OF)
    assert failures, "the audit must fail"
    assert {f.table for f in failures} == {table}
    assert any(f.rule.startswith(expected) for f in failures), failures


def test_falling_ath_fails_the_audit(tables):
    m = tables["mart_market_milestones"].sort("symbol", "date")
    sym = m["symbol"][0]
    # Lower one mid-history ath_close (and its close, so only monotonicity breaks).
    idx = m.with_row_index().filter(pl.col("symbol") == sym)["index"][100]
    m = m.with_columns(
        pl.when(pl.int_range(pl.len()) == idx).then(pl.col("ath_close") * 0.5).otherwise(pl.col("ath_close")).alias("ath_close"),
        pl.when(pl.int_range(pl.len()) == idx).then(pl.col("ath_close") * 0.4).otherwise(pl.col("close")).alias("close"),
    )
    tables["mart_market_milestones"] = m
    assert [f.rule for f in audit(tables, AS_OF)] == ["ath_close never falls from one date to the next, per symbol"]


def test_duplicate_key_fails_the_audit(tables):
    corr = tables["mart_rolling_correlation"]
    tables["mart_rolling_correlation"] = pl.concat([corr, corr.head(1)])
    (failure,) = audit(tables, AS_OF)
    assert failure.rule == "(asset, benchmark, window_days, date) is unique"
    assert failure.detail.startswith("2 row(s)")


@pytest.mark.parametrize("order", ["key order", "shuffled"])
@pytest.mark.parametrize("where", ["adjacent", "apart"])
def test_a_duplicate_key_fails_the_audit_whatever_the_row_order(tables, order, where):
    corr = tables["mart_rolling_correlation"].sort("asset", "benchmark", "window_days", "date")
    copy = corr.slice(3, 1)
    corr = pl.concat([corr.head(4), copy, corr.slice(4)] if where == "adjacent" else [corr, copy])
    tables["mart_rolling_correlation"] = corr if order == "key order" else corr.sample(fraction=1.0, shuffle=True, seed=3)
    (failure,) = audit(tables, AS_OF)
    assert failure.rule == "(asset, benchmark, window_days, date) is unique"
    assert failure.detail.startswith("2 row(s)")


def test_a_null_in_a_key_fails_the_audit_as_a_null_not_a_duplicate(tables):
    corr = tables["mart_rolling_correlation"].sort("asset", "benchmark", "window_days", "date")
    tables["mart_rolling_correlation"] = corr.with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(None).otherwise(pl.col("asset")).alias("asset"))
    assert [f.rule for f in audit(tables, AS_OF)] == ["asset is not null"]


def test_key_is_unique_is_proven_by_order_or_distinct_hashes_and_never_wrongly():
    frame = pl.DataFrame({"s": ["a", "a", "b", "b"], "d": [1, 2, 1, 2]})
    assert strictly_increasing(frame, ["s", "d"]) and key_is_unique(frame, ["s", "d"])
    assert not strictly_increasing(frame, ["d", "s"]) and key_is_unique(frame, ["d", "s"])  # by hashes
    assert not strictly_increasing(frame.reverse(), ["s", "d"]) and key_is_unique(frame.reverse(), ["s", "d"])
    for dup in (pl.concat([frame.head(2), frame.slice(1)]), pl.concat([frame, frame.head(1)])):
        assert not strictly_increasing(dup, ["s", "d"]) and not key_is_unique(dup, ["s", "d"])
    with_null = frame.with_columns(pl.Series("d", [1, None, 1, 2]))
    assert not strictly_increasing(with_null, ["s", "d"]) and not key_is_unique(with_null, ["s", "d"])
    assert not key_is_unique(frame.with_columns(pl.lit(1).alias("d")), ["d"])
    # Strings compare as Polars sorts them (by bytes): a sorted frame is ascending, whatever the text.
    text = pl.DataFrame({"s": ["b", "a", "ä", "B", "", "ab", "a b", "Z", "é", "e"]})
    assert strictly_increasing(text.sort("s"), ["s"]) and not strictly_increasing(text, ["s"])


def test_the_audit_skips_dataframelys_key_hash_only_where_the_key_is_proven(tables, monkeypatch):
    """The cut of the full run's audit (docs/performance.md): dataframely's primary-key rule
    (a hash of every key) runs only where ``key_is_unique`` cannot prove the key."""
    import warehouse.quality as quality

    compiled = {}
    real = quality.compile_table

    def spy(table, *args, **kwargs):
        out = real(table, *args, **kwargs)
        if not kwargs.get("neighbours"):
            compiled[table.name] = out.schema.primary_key()
        return out

    monkeypatch.setattr(quality, "compile_table", spy)
    corr = tables["mart_rolling_correlation"].sort("asset", "benchmark", "window_days", "date")
    tables["mart_rolling_correlation"] = corr
    assert audit(tables, AS_OF) == []
    assert compiled["mart_rolling_correlation"] == []
    tables["mart_rolling_correlation"] = pl.concat([corr, corr.head(1)])
    assert [f.rule for f in audit(tables, AS_OF)] == ["(asset, benchmark, window_days, date) is unique"]
    assert sorted(compiled["mart_rolling_correlation"]) == ["asset", "benchmark", "date", "window_days"]


def test_scores_checked_by_column_name_even_without_a_contract(tables):
    scores = pl.DataFrame({"date": [AS_OF] * 2, "symbol": ["A", "B"], "alpha_score": [55.0, 100.5],
                           "momentum_score": [0.0, 100.0]})
    assert [str(f) for f in audit({**tables, "mart_new_scores": scores}, AS_OF)] == [
        "mart_new_scores: alpha_score <= 100: 1 row(s), first {'date': datetime.date(2024, 6, 28), 'symbol': 'B'}"
    ]


def test_declared_score_columns_get_the_score_range():
    from warehouse.quality import compile_table
    from contracts.tables import TABLES

    rules = compile_table(TABLES["mart_factor_scores"], AS_OF).descriptions
    for col in ("alpha_score", "momentum_score", "value_score", "quality_score", "sentiment_score"):
        assert rules[f"{col}|min"] == f"{col} >= 0" and rules[f"{col}|max"] == f"{col} <= 100"


def test_gaps_are_flagged_not_failed(tables):
    from flows.calendar import sessions

    prices, assets = tables["fact_prices"], tables["dim_asset"]
    assert session_gaps(prices, assets, AS_OF, sessions) == []
    holed = prices.filter(~((pl.col("symbol") == "^RUT") & (pl.col("date") == date(2024, 3, 5)))
                          & ~((pl.col("symbol") == "BTC") & (pl.col("date") == date(2024, 3, 9))))  # a Saturday
    (warning,) = session_gaps(holed, assets, AS_OF, sessions)
    assert "2 symbol(s)" in warning and "^RUT (1, first 2024-03-05)" in warning and "BTC (1, first 2024-03-09)" in warning


def test_split_like_move_is_flagged_and_kept(tables):
    prices, assets = tables["fact_prices"], tables["dim_asset"]
    stock = assets.filter(pl.col("asset_class") == "equity")["symbol"][0]
    split = prices.with_columns(
        pl.when((pl.col("symbol") == stock) & (pl.col("date") >= date(2024, 3, 1)))
        .then(pl.col("adj_close") / 10).otherwise(pl.col("adj_close")).alias("adj_close")
    )
    (warning,) = split_like_moves(split, assets)
    assert stock in warning and "unadjusted split" in warning
    assert audit({**tables, "fact_prices": split}, AS_OF) == []  # a flag, not a failure


def test_split_like_moves_follow_each_symbols_dates_in_any_row_order(tables):
    # The previous bar is the same symbol's previous date whatever the frame's row order, a
    # symbol's first bar is never compared with another symbol's last, and the moves are listed
    # by symbol and date.
    prices, assets = tables["fact_prices"], tables["dim_asset"]
    day = date(2024, 3, 1)
    equity = assets.filter(pl.col("asset_class") == "equity")["symbol"].implode()
    traded = [set(prices.filter(pl.col("symbol").is_in(equity) & side)["symbol"])
              for side in (pl.col("date") < day, pl.col("date") > day)]
    stocks = sorted(traded[0] & traded[1])[:2]
    assert len(stocks) == 2
    scaled = prices.with_columns(  # the second stock's whole history 100x: no move of its own
        pl.when(pl.col("symbol") == stocks[1]).then(pl.col("adj_close") * 100).otherwise(pl.col("adj_close"))
    )
    assert split_like_moves(scaled, assets) == []
    split = scaled.with_columns(
        pl.when(pl.col("symbol").is_in(stocks) & (pl.col("date") >= day))
        .then(pl.col("adj_close") / 50).otherwise(pl.col("adj_close"))
    )
    (warning,) = split_like_moves(split.sample(fraction=1.0, shuffle=True, seed=7), assets)
    first = split.filter((pl.col("symbol") == stocks[0]) & (pl.col("date") >= day))["date"].min()
    second = split.filter((pl.col("symbol") == stocks[1]) & (pl.col("date") >= day))["date"].min()
    assert warning.endswith(f": {stocks[0]} {first} (-98%), {stocks[1]} {second} (-98%)")


def test_quarantine_is_persisted_stamped_and_published(tmp_path):
    log = RunLog(tmp_path)
    log.record_run({"run_id": "r1", "started_at": datetime(2024, 7, 1, tzinfo=UTC), "source": "files",
                    "as_of": AS_OF, "status": "running"})
    _, quarantined = screen("fact_prices", bars(bar(volume=-1.0)), AS_OF)
    history = log.record_quarantine("r1", quarantined)
    assert history["run_id"].to_list() == ["r1"]
    assert RunLog(tmp_path).quarantine().equals(history)
    warnings = audit_warnings({"quarantine": history}, AS_OF, run_id="r1")
    assert warnings[0].startswith("quarantined 1 input row(s), published the clean rows (fact_prices.volume|min: 1)")
    db = tmp_path / "w.duckdb"
    build_database(db, {"quarantine": history})
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.sql("SELECT table_name, rule FROM quarantine").fetchall() == [("fact_prices", "volume|min")]
    finally:
        con.close()


# Plausibility: jump bounds per asset class, confirmed by the next bar (issue 19, items 6 and 8).
JUMPS = {"index": 1.5, "etf": 2.0, "equity": 3.0, "crypto": 5.0, "index_crypto": 5.0}
CLASSES = pl.DataFrame({"symbol": ["BTC", "A"], "asset_class": ["crypto", "equity"]})


def path(symbol: str, closes: list[float]) -> pl.DataFrame:
    rows = [
        bar(symbol, date(2024, 1, 1) + timedelta(days=i), open=c, high=c, low=c, close=c, adj_close=c)
        for i, c in enumerate(closes)
    ]
    return bars(*rows)


def jump_screen(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    return screen("fact_prices", frame, AS_OF, assets=CLASSES, jump_bounds=JUMPS)


def test_a_fat_finger_crypto_close_that_the_next_bar_reverts_is_quarantined():
    clean, quarantined = jump_screen(path("BTC", [100.0, 101.0, 101.0 * 1e5, 102.0, 103.0]))
    assert clean["close"].to_list() == [100.0, 101.0, 102.0, 103.0]
    assert set(quarantined["key"]) == {json.dumps({"symbol": "BTC", "date": "2024-01-03"})}
    assert {"close_jump_confirmed", "adj_close_jump_confirmed"} <= set(quarantined["rule"])


def test_a_jump_the_next_bar_confirms_is_a_real_move():
    closes = [100.0, 101.0, 101.0 * 1e5, 101.0 * 1e5 * 1.01, 101.0 * 1e5 * 1.02]
    clean, quarantined = jump_screen(path("BTC", closes))
    assert quarantined.is_empty() and clean["close"].to_list() == closes


def test_a_jump_on_the_last_bar_waits_for_the_next_bar():
    clean, quarantined = jump_screen(path("BTC", [100.0, 101.0, 101.0 * 1e5]))
    assert clean["close"].to_list() == [100.0, 101.0]
    assert set(quarantined["key"]) == {json.dumps({"symbol": "BTC", "date": "2024-01-03"})}


def test_the_bound_is_per_asset_class():
    # x4 and back: within crypto's x5, beyond equity's x3.
    spike = [100.0, 100.0, 400.0, 100.0, 100.0]
    _, crypto = jump_screen(path("BTC", spike))
    _, equity = jump_screen(path("A", spike))
    assert crypto.is_empty()
    assert set(equity["key"]) == {json.dumps({"symbol": "A", "date": "2024-01-03"})}


def test_every_asset_class_needs_a_jump_bound():
    with pytest.raises(ValueError, match="no jump bound for asset class\\(es\\) crypto: add them to XASSET_JUMP_BOUNDS"):
        screen("fact_prices", path("BTC", [1.0, 2.0]), AS_OF, assets=CLASSES, jump_bounds={"equity": 3.0})


@pytest.mark.parametrize("column", ["open", "high", "low", "close", "adj_close", "volume"])
def test_a_finite_extreme_value_is_quarantined_at_the_input(column):
    extreme = bar(day=date(2024, 1, 3), **{column: 1.7e308})
    clean, quarantined = screen("fact_prices", bars(bar(), extreme), AS_OF)
    assert clean["date"].to_list() == [date(2024, 1, 2)]
    assert f"{column}|max" in quarantined["rule"].to_list()


def test_real_files_pass_the_plausibility_rules(real_data):
    """The OHLC and jump rules against real Yahoo and exchange files: only genuinely inconsistent bars."""
    from flows.calendar import sessions
    from flows.settings import Settings
    from flows.sources.files import FilesSource
    from flows.universe import load_universe

    universe, settings = load_universe(None), Settings()
    held: dict[str, set[str]] = {}
    for folder in ("alitalbi-storage_data_fy", "Harthor-marketlab", "djienne-3EMA_SRSI_ATR"):
        batch = FilesSource([real_data / folder]).fetch(universe, date(1990, 1, 2), date(2026, 2, 24), {}, pl.DataFrame())
        raw = batch.bars.with_columns(pl.lit("files").alias("source"), pl.lit(datetime(2026, 2, 25, tzinfo=UTC)).alias("ingested_at"))
        calendar = sessions(raw["date"].min(), date(2026, 2, 24))
        clean, quarantined = screen("fact_prices", raw, date(2026, 2, 24), sessions=calendar, assets=batch.assets,
                                    jump_bounds=settings.jump_bounds)
        assert clean.height + quarantined["key"].n_unique() == raw.height
        for r in quarantined.filter(pl.col("rule") != "not_a_session").iter_rows(named=True):
            held.setdefault(r["key"], set()).add(r["rule"])
    # RTY=F (a futures continuation) has two bars whose close is above their own high.
    assert held == {
        json.dumps({"symbol": "RTY=F", "date": "2025-07-13"}): {"close_in_range"},
        json.dumps({"symbol": "RTY=F", "date": "2025-09-15"}): {"close_in_range", "open_in_range"},
    }


def test_the_default_jump_bounds_cover_every_asset_class():
    """A class added to the vocabulary without a bound would stop every run that holds one."""
    from typing import get_args

    from flows.settings import Settings
    from contracts.vocabulary import AssetClass

    assert set(get_args(AssetClass)) <= set(Settings().jump_bounds)


def _gaps_listing_every_date(prices, assets, as_of, sessions):
    """The oracle: every expected date of every symbol, anti-joined with its bars (what
    ``session_gaps`` did for every symbol before it counted first)."""
    from contracts.vocabulary import CRYPTO_CLASSES, EQUITY_CLASSES

    spans = (prices.filter(pl.col("date") <= as_of).group_by("symbol")
             .agg(pl.col("date").min().alias("first"), pl.col("date").max().alias("last"))
             .join(assets.select("symbol", "asset_class"), on="symbol"))
    crypto = spans.filter(pl.col("asset_class").is_in(CRYPTO_CLASSES))
    equity = spans.filter(pl.col("asset_class").is_in(EQUITY_CLASSES))
    cal = sessions(equity["first"].min(), equity["last"].max()).alias("date").to_frame()
    expected = pl.concat([
        crypto.select("symbol", pl.date_ranges("first", "last").alias("date")).explode("date"),
        equity.join(cal, how="cross").filter(pl.col("date").is_between(pl.col("first"), pl.col("last")))
        .select("symbol", "date"),
    ])
    missing = expected.join(prices.select("symbol", "date"), on=["symbol", "date"], how="anti")
    return missing.group_by("symbol").agg(pl.len().alias("n"), pl.col("date").min().alias("first")).sort("symbol")


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_gaps_counted_first_are_the_gaps_of_every_date_listed(tables, seed):
    """Random holes, bars off the calendar (a holiday, a weekend) and whole symbols reduced to
    off-calendar bars: the symbols flagged, their counts and first missing dates are the oracle's."""
    import random

    from flows.calendar import sessions

    rng = random.Random(seed)
    prices, assets = tables["fact_prices"], tables["dim_asset"]
    keep = pl.Series([rng.random() > 0.002 for _ in range(prices.height)])
    holed = prices.filter(keep)
    symbols = sorted(holed["symbol"].unique().to_list())
    off = holed.filter(pl.col("symbol") == rng.choice(symbols)).head(1).with_columns(
        pl.lit(date(2024, 12, 25)).alias("date"))  # Christmas: no session
    lonely = holed.filter(pl.col("symbol") == "^RUT").head(2).with_columns(
        pl.Series("date", [date(2023, 12, 25), date(2024, 1, 1)]), pl.lit("^OFF").alias("symbol"))
    holed = pl.concat([holed.filter(pl.col("date") != date(2024, 12, 25)), off, lonely])
    assets = pl.concat([assets, assets.filter(pl.col("symbol") == "^RUT").with_columns(pl.lit("^OFF").alias("symbol"))])
    want = _gaps_listing_every_date(holed, assets, AS_OF, sessions)
    got = session_gaps(holed, assets, AS_OF, sessions)
    assert want.height, "the holes are meant to leave gaps"
    assert "^OFF" in want["symbol"].to_list()  # only off-calendar bars: every session between them missing
    listed = ", ".join(f"{r['symbol']} ({r['n']}, first {r['first']})" for r in want.head(MAX_LISTED).iter_rows(named=True))
    more = f" and {want.height - MAX_LISTED} more" if want.height > MAX_LISTED else ""
    assert got == [f"gaps: {want.height} symbol(s) miss expected dates: {listed}{more}"]
