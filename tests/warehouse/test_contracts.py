"""Each contract is the single source of truth: transforms' outputs and the DDL agree with it."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from transforms.allocation import (
    BREACHES_SCHEMA,
    COMPLIANCE_SCHEMA,
    PERFORMANCE_SCHEMA,
    SUMMARY_SCHEMA,
    WEIGHTS_SCHEMA,
)
from transforms.correlation import ROLLING_CORRELATION_SCHEMA
from transforms.events import CORRELATION_EVENTS_SCHEMA
from transforms.factor_eval import IC_SCHEMA
from transforms.factor_eval import SUMMARY_SCHEMA as IC_SUMMARY_SCHEMA
from transforms.factors import METRICS_SCHEMA, SCORES_SCHEMA
from flows.sources.base import FUNDAMENTALS_SCHEMA
from transforms.indices import INDEX_MEMBER_SCHEMA
from transforms.matrix import CORRELATION_MATRIX_SCHEMA
from transforms.milestones import MARKET_MILESTONES_SCHEMA, PERIOD_RETURNS_SCHEMA
from transforms.returns import RETURNS_SCHEMA
from contracts.tables import TABLES
from warehouse.build import build_database

TRANSFORM_SCHEMAS = {
    "fact_returns": RETURNS_SCHEMA,
    "mart_rolling_correlation": ROLLING_CORRELATION_SCHEMA,
    "mart_correlation_events": CORRELATION_EVENTS_SCHEMA,
    "mart_correlation_matrix": CORRELATION_MATRIX_SCHEMA,
    "mart_market_milestones": MARKET_MILESTONES_SCHEMA,
    "mart_period_returns": PERIOD_RETURNS_SCHEMA,
    "dim_index_member": INDEX_MEMBER_SCHEMA,
    "mart_allocation_weights": WEIGHTS_SCHEMA,
    "mart_mix_performance": PERFORMANCE_SCHEMA,
    "mart_band_breaches": BREACHES_SCHEMA,
    "mart_band_compliance": COMPLIANCE_SCHEMA,
    "mart_mix_summary": SUMMARY_SCHEMA,
    "mart_factor_scores": SCORES_SCHEMA,
    "mart_factor_metrics": METRICS_SCHEMA,
    "mart_factor_ic": IC_SCHEMA,
    "mart_factor_ic_summary": IC_SUMMARY_SCHEMA,
    "fact_fundamentals": FUNDAMENTALS_SCHEMA,
}


@pytest.mark.parametrize("name", sorted(TRANSFORM_SCHEMAS))
def test_transform_output_matches_contract(name):
    produced = {k: pl.DataType.from_python(v) if isinstance(v, type) and not issubclass(v, pl.DataType) else v
                for k, v in TRANSFORM_SCHEMAS[name].items()}
    assert list(produced) == TABLES[name].column_names
    for col, dtype in produced.items():
        assert dtype == TABLES[name].polars_schema[col], (name, col)


def test_ddl_types_keys_and_comments(tmp_path):
    db = tmp_path / "w.duckdb"
    build_database(db, {})
    con = duckdb.connect(str(db), read_only=True)
    try:
        for table in TABLES.values():
            cols = con.execute(
                "SELECT column_name, data_type, is_nullable, comment FROM duckdb_columns() WHERE schema_name = 'main' AND table_name = ? ORDER BY column_index",
                [table.name],
            ).fetchall()
            assert [c[0] for c in cols] == table.column_names
            for (name, dtype, nullable, comment), col in zip(cols, table.columns):
                assert dtype == {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}.get(col.duckdb_type, col.duckdb_type)
                assert nullable == (col.nullable and name not in table.primary_key), (table.name, name)
                assert comment.startswith(col.description), (table.name, name)
            table_comment = con.execute("SELECT comment FROM duckdb_tables() WHERE table_name = ?", [table.name]).fetchall()[0][0]
            assert table_comment == table.description
    finally:
        con.close()


def test_primary_key_is_enforced(tmp_path):
    db = tmp_path / "w.duckdb"
    dupe = pl.DataFrame({"index_symbol": ["ALTS", "ALTS"], "member_symbol": ["SOL", "SOL"], "method": ["a", "b"]})
    with pytest.raises(duckdb.ConstraintException):
        build_database(db, {"dim_index_member": dupe})
