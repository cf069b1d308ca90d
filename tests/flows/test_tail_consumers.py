"""Consumers after the transform state the whole tables' figures when the run hands on tails
(Marts.unchanged_before: a named table holds only its rows from its date).

Each test builds whole tables, hands the consumer the tail a run hands on, and compares its
figure with the one of the whole tables; each also checks that the tail alone gives another
figure, so the test fails if the consumer took its tail for the whole table.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl

from contracts.tables import TABLES
from flows.artifacts import ALPHA_TABLE, alpha_moves, freshness, stale_symbols, with_alpha_context
from flows.settings import Settings
from flows.stages.transform import price_figures, whole_prices
from transforms.marts import Marts
from warehouse.audit import price_warnings
from warehouse.marts import stage_marts

AS_OF = date(2026, 3, 20)
SINCE = date(2026, 3, 19)


def _bars(symbol: str, first: date, last: date, source: str = "files", jump_on: date | None = None) -> pl.DataFrame:
    days = pl.date_range(first, last, eager=True)
    close = [100.0 if jump_on is None or d < jump_on else 5.0 for d in days]
    return pl.DataFrame({
        "symbol": symbol, "date": days, "adj_close": close, "close": close, "source": source,
        "ingested_at": [datetime(d.year, d.month, d.day, 22, tzinfo=UTC) for d in days],
    })


def _assets() -> pl.DataFrame:
    return pl.DataFrame({"symbol": ["BTC", "DEAD", "ALTS"], "asset_class": ["crypto", "crypto", "index_crypto"]})


def test_stale_freshness_and_price_warnings_are_judged_on_the_whole_fact_prices(tmp_path):
    # DEAD stopped before the tail and jumped -95% long before it; ALTS is a derived index.
    prices = pl.concat([_bars("BTC", date(2026, 1, 1), AS_OF),
                        _bars("DEAD", date(2026, 1, 1), date(2026, 2, 1), jump_on=date(2026, 1, 15))])
    derived = _bars("ALTS", date(2026, 1, 1), AS_OF, "derived")
    whole_table = pl.concat([prices, derived])
    tail = whole_table.filter(pl.col("date") >= SINCE)
    marts = Marts({"fact_prices": tail, "dim_asset": _assets()}, unchanged_before={"fact_prices": SINCE})
    previous = {"fact_prices": derived}  # the seed: every published derived bar (transforms.graph.DERIVED_BARS)
    settings = Settings(data_dir=tmp_path)
    whole = whole_prices(marts, prices, previous, settings)
    key = ["symbol", "date"]
    assert whole.sort(key).equals(whole_table.sort(key))
    got = price_figures(whole, _assets(), AS_OF, settings)
    sessions = pl.date_range(date(2026, 1, 1), AS_OF, eager=True)
    want = (
        stale_symbols(whole_table, _assets(), AS_OF, sessions, settings.stale_after_sessions),
        price_warnings(whole_table, _assets(), AS_OF, lambda a, b: pl.date_range(a, b, eager=True)),
        freshness(whole_table, _assets()),
    )
    assert got == want
    assert [s["symbol"] for s in got[0]] == ["DEAD"]
    # The tail alone would state other figures: DEAD neither stale nor seen at all.
    on_tail = price_figures(tail, _assets(), AS_OF, settings)
    assert on_tail[0] == [] and on_tail[2] != got[2]


def test_alpha_moves_of_a_tail_read_the_last_published_sessions(tmp_path):
    table = TABLES[ALPHA_TABLE]
    days = [date(2025, 12, 30), date(2025, 12, 31), date(2026, 1, 2), date(2026, 1, 5)]
    rows = [{"symbol": s, "date": d, "alpha_score": float(i * (j + 1))} for i, d in enumerate(days)
            for j, s in enumerate(["AAA", "BBB"])]
    whole = table.conform(pl.DataFrame(rows, infer_schema_length=None).with_columns(
        *[pl.lit(None, dtype=t).alias(c) for c, t in table.polars_schema.items() if c not in ("symbol", "date", "alpha_score")]
    ))
    published = tmp_path / "run" / "marts"
    stage_marts({ALPHA_TABLE: whole}, published, "r1", {})
    since, previous_as_of = date(2026, 1, 5), date(2026, 1, 2)
    tail = whole.filter(pl.col("date") >= since)
    completed = with_alpha_context({ALPHA_TABLE: tail}, {ALPHA_TABLE: since}, published)
    assert completed[ALPHA_TABLE]["date"].unique().sort().to_list() == days[1:]
    assert alpha_moves(completed, previous_as_of) == alpha_moves({ALPHA_TABLE: whole}, previous_as_of)
    assert alpha_moves({ALPHA_TABLE: tail}, previous_as_of) != alpha_moves({ALPHA_TABLE: whole}, previous_as_of)
    # Not named: handed back as it is.
    assert with_alpha_context({ALPHA_TABLE: whole}, {}, published)[ALPHA_TABLE] is whole


def test_price_figures_from_the_tail_and_the_published_rows_are_the_whole_fact_prices_figures(tmp_path):
    # flows.stages.transform.price_figures_from (INTERFACE.md): the run's fact_prices as handed on
    # from ``since`` and the published rows before it give the figures of the whole table.
    import duckdb

    from flows.stages.transform import price_figures_from

    prices = pl.concat([_bars("BTC", date(2026, 1, 1), AS_OF),
                        _bars("DEAD", date(2026, 1, 1), date(2026, 2, 1), jump_on=date(2026, 1, 15))])
    table = TABLES["fact_prices"]
    whole_table = pl.concat([prices, _bars("ALTS", date(2026, 1, 1), AS_OF, "derived")]).with_columns(
        *[pl.lit(None, dtype=t).alias(c) for c, t in table.polars_schema.items() if c not in prices.columns]
    ).pipe(table.conform)
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.register("published", whole_table.filter(pl.col("date") < SINCE).to_arrow())
    con.execute("CREATE TABLE fact_prices AS SELECT * FROM published")
    con.close()
    settings = Settings(data_dir=tmp_path)
    tail = whole_table.filter(pl.col("date") >= SINCE)
    got = price_figures_from(tail, SINCE, _assets(), AS_OF, settings)
    assert got == price_figures(whole_table, _assets(), AS_OF, settings)
    assert [s["symbol"] for s in got[0]] == ["DEAD"]
    assert got != price_figures(tail, _assets(), AS_OF, settings)
    assert price_figures_from(whole_table, None, _assets(), AS_OF, settings) == got
