from datetime import date
from types import SimpleNamespace

import duckdb

from flows.rebuild_plan import published_first_date
from warehouse.price_history import EarlierPrices


def test_the_first_date_counts_derived_bars_for_the_figures_and_not_for_the_rebuild_plan(tmp_path):
    """One query (reads/published_bars_first_date.sql) serves both: the price figures' calendar starts
    at fact_prices' first bar, derived or not; the rebuild plan's at the first published (own) bar."""
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE fact_prices (date DATE, source VARCHAR)")
    con.execute("INSERT INTO fact_prices VALUES ('2024-01-02', 'derived'), ('2024-01-03', 'files'), "
                "('2024-01-10', 'derived'), ('2024-02-01', 'files')")
    con.close()
    with EarlierPrices(path, date(2024, 3, 1)) as earlier:
        assert earlier.first_date(date(2024, 6, 1)) == date(2024, 1, 2)
        assert earlier.first_date(date(2024, 1, 3)) == date(2024, 1, 2)
        assert earlier.first_date(date(2024, 1, 2)) is None
    settings = SimpleNamespace(warehouse_path=path)
    assert published_first_date(settings, SimpleNamespace(changed_from=date(2024, 3, 1))) == date(2024, 1, 3)
    assert published_first_date(settings, SimpleNamespace(changed_from=date(2024, 1, 3))) is None
