"""warehouse.query: read-only connections to the published warehouse."""

from __future__ import annotations

import duckdb
import pytest

from warehouse.query import WarehouseUnavailable, connect_read_only, kept_open, read_sql


def _warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE fact_prices AS SELECT DATE '2026-01-02' AS date, 'derived' AS source")
    con.close()
    return path


def _limit_after_an_earlier_connection_set_it(path) -> str:
    """The memory limit a connection sees after an earlier, closed one set it for its database:
    the one set only if both were connections to the same DuckDB instance."""
    first = connect_read_only(path)
    first.execute("SET GLOBAL memory_limit = '123MB'")
    first.close()
    second = connect_read_only(path)
    try:
        return second.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
    finally:
        second.close()


def test_reads_within_kept_open_share_one_instance_and_not_after(tmp_path):
    path = _warehouse(tmp_path)
    with kept_open(path):
        shared = _limit_after_an_earlier_connection_set_it(path)
        assert read_sql(path, "reads/published_bars_first_date.sql", {"before": "2027-01-01", "own_only": False}) is not None
    alone = _limit_after_an_earlier_connection_set_it(path)
    # Each read opens the file anew once nothing holds it: the limit set before is gone.
    assert shared != alone


@pytest.mark.parametrize("damage", ["missing", "not duckdb"])
def test_kept_open_of_a_file_it_cannot_open_holds_nothing_and_reads_fail_as_before(tmp_path, damage):
    path = tmp_path / "warehouse.duckdb"
    if damage == "not duckdb":
        path.write_bytes(b"this is not a DuckDB file\n" * 100)
    with kept_open(path):
        with pytest.raises(WarehouseUnavailable):
            connect_read_only(path)
