"""The audit of a copy-on-write run: only the rows the run writes itself, and still every rule on them."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from contracts.schema import Column, Table
from contracts.tables import TABLES
from tests.warehouse.conftest import AS_OF
from warehouse import quality
from warehouse.audit import audit, written_from

# The last month is "new": the rows a copy-on-write run writes from its own frames.
SINCE = AS_OF - timedelta(days=30)


def since_for(tables: dict[str, pl.DataFrame]) -> dict[str, date]:
    return {name: SINCE for name in tables if name in TABLES and TABLES[name].date_column}


def set_row(frame: pl.DataFrame, index: int, **exprs) -> pl.DataFrame:
    at = pl.int_range(pl.len()) == index
    return frame.with_columns(pl.when(at).then(v).otherwise(pl.col(c)).alias(c) for c, v in exprs.items())


def row_index(frame: pl.DataFrame, date_column: str, new: bool) -> int:
    """The index of a row dated on/after SINCE (``new``) or before it."""
    idx = frame.with_row_index().filter((pl.col(date_column) >= SINCE) == new)["index"]
    assert len(idx), "the fixture must have rows on both sides of SINCE"
    return idx[len(idx) // 2]


def test_the_sample_run_passes_the_incremental_audit(tables):
    assert audit(tables, AS_OF, since_for(tables)) == []


def test_a_duplicate_key_among_the_new_rows_fails_the_incremental_audit(tables):
    corr = tables["mart_rolling_correlation"]
    new = corr.row(row_index(corr, "date", new=True), named=True)
    tables["mart_rolling_correlation"] = pl.concat([corr, pl.DataFrame([new], schema=corr.schema)])
    (failure,) = audit(tables, AS_OF, since_for(tables))
    assert failure.table == "mart_rolling_correlation"
    assert failure.rule == "(asset, benchmark, window_days, date) is unique"
    assert failure.detail == f"2 row(s), first { {k: new[k] for k in TABLES['mart_rolling_correlation'].key} }"


@pytest.mark.parametrize(
    ("table", "change", "expected"),
    [
        ("mart_rolling_correlation", {"correlation": pl.lit(1.2)}, "correlation <= 1"),
        ("mart_correlation_matrix", {"correlation": pl.lit(-1.01)}, "correlation >= -1"),
        ("fact_returns", {"log_return": pl.lit(float("inf"))}, "log_return is finite"),
        ("fact_prices", {"close": pl.lit(-1.0)}, "close > 0"),
        ("mart_allocation_weights", {"weight": pl.col("weight") * 0.5}, "weight sums to 1"),
        ("mart_spillover", {"regime": pl.lit("bull")}, "regime is risk_on, risk_off or all"),
        ("mart_factor_scores", {"momentum_score": pl.lit(100.5)}, "momentum_score <= 100"),
    ],
)
def test_a_contract_violation_in_a_new_row_fails_the_incremental_audit(tables, table, change, expected):
    frame = tables[table]
    date_column = TABLES[table].date_column
    tables[table] = set_row(frame, row_index(frame, date_column, new=True), **change)
    failures = audit(tables, AS_OF, since_for(tables))
    assert {f.table for f in failures} == {table}
    assert any(f.rule.startswith(expected) for f in failures), failures
    # The same row before SINCE: published (and audited) by the run copied, not written by this one.
    tables[table] = set_row(frame, row_index(frame, date_column, new=False), **change)
    assert audit(tables, AS_OF, since_for(tables)) == []
    assert audit(tables, AS_OF), "the whole-table audit still sees it"


def test_the_first_new_row_is_compared_with_the_last_published_one(tables):
    """ath_close never falls: the rule looks one row back, across SINCE."""
    m = tables["mart_market_milestones"].sort("symbol", "date")
    sym = m["symbol"][0]
    first_new = m.with_row_index().filter((pl.col("symbol") == sym) & (pl.col("date") >= SINCE))["index"][0]
    m = set_row(m, first_new, ath_close=pl.col("ath_close") * 0.5, close=pl.col("ath_close") * 0.4)
    tables["mart_market_milestones"] = m
    assert [f.rule for f in audit(tables, AS_OF, since_for(tables))] == [
        "ath_close never falls from one date to the next, per symbol"]


def test_the_incremental_audit_finds_what_the_whole_audit_finds_among_the_new_rows(tables):
    """Every rule of every dated table, one row broken on each side of SINCE: the incremental
    audit reports exactly the whole audit's failures of the new rows."""
    broken = dict(tables)
    for name, frame in tables.items():
        table = TABLES.get(name)
        if table is None or table.date_column is None or frame.is_empty():
            continue
        floats = [c.name for c in table.columns if c.type == "float" and c.name not in table.key]
        if not floats or frame.filter(pl.col(table.date_column) >= SINCE).is_empty():
            continue
        frame = set_row(frame, row_index(frame, table.date_column, new=True), **{floats[0]: pl.lit(float("nan"))})
        broken[name] = set_row(frame, row_index(frame, table.date_column, new=False),
                               **{floats[0]: pl.lit(float("nan"))})
    whole = quality.violations(broken, AS_OF)
    assert len({v.table for v in whole}) >= 8, whole
    incremental = quality.violations(broken, AS_OF, since_for(broken))
    assert {(v.table, v.rule) for v in incremental} == {(v.table, v.rule) for v in whole}
    for v in incremental:
        (w,) = [w for w in whole if (w.table, w.rule) == (v.table, v.rule)]
        assert v.rows == w.rows - 1, (v, w)  # the new row only, not the published one


def test_a_table_whose_key_lacks_its_date_is_audited_whole():
    keyed_by_id = Table("t", "", (Column("id", "int", "", False), Column("day", "date", "", False)),
                        primary_key=("id",), date_column="day")
    assert quality.audit_from(keyed_by_id, SINCE) is None
    assert quality.audit_from(TABLES["mart_spillover"], SINCE) == SINCE
    assert quality.audit_from(TABLES["mart_spillover"], None) is None
    # A key not containing the date: an old and a new row may share it, so the whole table is checked.
    frame = pl.DataFrame({"id": [1, 1], "day": [SINCE - timedelta(days=1), SINCE]})
    table = quality.contract_for("t", frame)
    assert table.date_column is None  # undeclared tables: no date column, audited whole


def test_a_full_build_is_audited_whole(tables, tmp_path):
    """written_from: nothing after a full build; after a copy, every named table from its day: the
    run hands on only those rows (Marts.unchanged_before), the earlier ones in the warehouse
    and the marts (linked years, the changed year's rows before the day) are the published run's."""
    unchanged = since_for(tables)
    assert written_from(unchanged, copied=False) == {}
    assert written_from(unchanged, copied=True) == unchanged
    assert written_from({**unchanged, "not_a_table": SINCE}, copied=True) == unchanged


def test_rules_that_compare_rows_get_context_and_unknown_operations_count_as_comparing():
    from contracts.schema import Rule

    def table(*checks):
        return Table("t", "", (Column("k", "string", "", False), Column("day", "date", "", False),
                               Column("x", "float", "")), primary_key=("k", "day"), date_column="day",
                     rules=tuple(Rule(f"r{i}", "", c) for i, c in enumerate(checks)))

    assert not quality.compares_rows(table(lambda _: (pl.col("x").abs() <= 1) & pl.col("k").is_in(["a"])), AS_OF)
    assert quality.compares_rows(table(lambda _: pl.col("x") >= pl.col("x").shift(1).over("k", order_by="day")), AS_OF)
    assert quality.compares_rows(table(lambda _: pl.col("x") <= pl.col("x").rolling_mean(5)), AS_OF)
    assert quality.compares_rows(table(lambda _: pl.col("x") <= pl.col("x").mean()), AS_OF)
    assert quality.compares_rows(table(lambda _: pl.col("x").clip(0, 1) == pl.col("x")), AS_OF), (
        "an operation not known to be row-local counts as comparing rows")
    assert {n for n, t in TABLES.items() if quality.compares_rows(t, AS_OF)} >= {
        "mart_market_milestones", "mart_allocation_weights"}
    # A rule looking one row back over a table audited from SINCE: the last earlier row is the context.
    frame = pl.DataFrame({"k": ["a", "a", "a", "b"], "day": [SINCE - timedelta(days=3), SINCE - timedelta(days=1),
                                                           SINCE, SINCE - timedelta(days=9)], "x": [1.0, 2.0, 1.5, 0.0]})
    looks_back = table(lambda _: pl.col("x") >= pl.col("x").shift(1).over("k", order_by="day"))
    assert quality.rows_to_audit(looks_back, frame, SINCE, AS_OF)["x"].to_list() == [2.0, 1.5, 0.0]
    row_local = table(lambda _: pl.col("x").abs() <= 10)
    assert quality.rows_to_audit(row_local, frame, SINCE, AS_OF)["x"].to_list() == [1.5]
