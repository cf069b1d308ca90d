"""The Parquet marts' key order without Polars' multi-column sort (warehouse.marts.key_codes)."""

from __future__ import annotations

import json
from datetime import date, timedelta

import polars as pl
import pytest

from contracts.tables import TABLES
from warehouse import marts
from warehouse.marts import SORT_CODE, key_codes, write_table


def _frame(n: int, seed: int) -> pl.DataFrame:
    rng = pl.int_range(n, eager=True).shuffle(seed=seed)
    return pl.DataFrame({
        "s": (rng % 7).map_elements(lambda i: ["b", "a", "ä", "B", "", "ab", "a b"][i], return_dtype=pl.String),
        "i": (rng // 7 % 5 - 2).cast(pl.Int32),
        "d": (rng // 35).map_elements(lambda k: date(1999, 12, 30) + timedelta(days=3 * k), return_dtype=pl.Date),
    })


@pytest.mark.parametrize("key", [["s", "i", "d"], ["d", "s", "i"], ["i", "d", "s"], ["s"]])
def test_the_codes_sort_like_the_key(key):
    frame = _frame(700, seed=len(key) + ord(key[0]))
    if key == ["s"]:
        frame = frame.unique("s")
    codes = key_codes(frame, key)
    assert codes.dtype == pl.UInt64
    assert frame[codes.arg_sort()].equals(frame.sort(key, nulls_last=True))


def test_no_codes_for_a_null_another_type_or_more_than_64_bits():
    frame = _frame(50, seed=1)
    assert key_codes(frame.with_columns(pl.lit(None, pl.String).alias("s")), ["s", "d"]) is None
    assert key_codes(frame.with_columns(pl.lit(1.5).alias("x")), ["x"]) is None
    wide = pl.DataFrame({"a": [0, 2**40], "b": [0, 2**30]})
    assert key_codes(wide, ["a", "b"]) is None
    assert key_codes(wide, ["a"]) is not None


@pytest.mark.parametrize("shuffled", [False, True])
def test_a_partitioned_mart_is_written_in_key_order_as_before(tmp_path, monkeypatch, shuffled):
    """The same files as sorting each year on the key columns (the code before 2026-12-05),
    for a frame already in key order (not sorted again) and for one that is not (codes)."""
    table = TABLES["mart_factor_metrics"]
    days = pl.date_range(date(2023, 12, 20), date(2024, 1, 10), eager=True)
    frame = table.conform(pl.DataFrame({
        "date": days.to_list() * 6,
        "symbol": [s for s in ("E2", "E10", "E1") for _ in range(2 * days.len())],
        "metric": [m for _ in range(3) for m in ("momentum_12_1", "value") for _ in range(days.len())],
        "value": [float(i) for i in range(6 * days.len())],
        "rank_pct": [50.0] * (6 * days.len()),
        "rank_scope": ["sector"] * (6 * days.len()),
    }))
    frame = frame.sample(fraction=1.0, shuffle=True, seed=5) if shuffled else frame.sort(list(table.key))
    write_table(table, frame, tmp_path / "new", "r", {})
    monkeypatch.setattr(marts, "strictly_increasing", lambda *_: False)
    monkeypatch.setattr(marts, "key_codes", lambda *_: None)
    write_table(table, frame, tmp_path / "old", "r", {})
    new, old = (json.loads((tmp_path / d / f"{table.name}.manifest.json").read_text()) for d in ("new", "old"))
    assert new["files"] == old["files"] and len(new["files"]) == 2  # content-named: the same bytes
    for name in new["files"]:
        assert (tmp_path / "new" / table.name / name).read_bytes() == (tmp_path / "old" / table.name / name).read_bytes()
        assert SORT_CODE not in pl.read_parquet_schema(tmp_path / "new" / table.name / name)


def test_year_and_code_sort_like_the_pair_and_give_way_on_a_null_year_or_65_bits():
    year = pl.Series([2024, 2023, 2024, 2023, 2030], dtype=pl.Int32)
    code = pl.Series([0, 9, 3, 2, 1], dtype=pl.UInt64)
    packed = marts._year_and_code(year, code)
    assert packed.dtype == pl.UInt64
    pairs = pl.DataFrame({"y": year, "c": code})
    assert pairs[packed.arg_sort()].equals(pairs.sort("y", "c"))
    assert marts._year_and_code(pl.Series([2024, None], dtype=pl.Int32), code[:2]) is None
    assert marts._year_and_code(year[:2], pl.Series([0, 2**63], dtype=pl.UInt64)) is None


@pytest.mark.parametrize("null_date", [False, True])
def test_years_of_a_coded_mart_are_slices_of_one_sort_with_the_files_of_each_year_sorted(tmp_path, monkeypatch, null_date):
    """A frame sorted on its key's codes is sorted once on (year, code) and split into slices: no
    ``partition_by`` (a second gather of every column), and every year's file the same bytes as
    splitting the years first and sorting each (the code before). A null date (no year to pack)
    takes the split."""
    table = TABLES["mart_factor_scores"]
    days = pl.date_range(date(2021, 12, 28), date(2024, 1, 3), eager=True)
    n = days.len()
    frame = pl.DataFrame({"date": days.to_list() * 3, "symbol": [s for s in ("E2", "E10", "E1") for _ in range(n)]})
    frame = table.conform(frame.with_columns(
        pl.lit("Tech").alias("sector"), pl.lit(50.0).alias("momentum_score"), pl.lit(1.0).alias("value_score"),
        pl.lit(2.0).alias("quality_score"), pl.lit(3.0).alias("sentiment_score"),
        (pl.int_range(pl.len()) % 100).alias("alpha_score"), pl.lit("Moderate").alias("alpha_label"),
        pl.lit(1).alias("coverage"), pl.lit("s").alias("summary"),
        pl.format("{} {}", pl.col("symbol"), pl.int_range(pl.len())).alias("headline"),
    )).sample(fraction=1.0, shuffle=True, seed=3)
    if null_date:
        frame = pl.concat([frame, frame.head(1).with_columns(pl.lit(None, pl.Date).alias("date"))])
    calls = []
    split = pl.DataFrame.partition_by

    def spy(self, *a, **k):
        calls.append(a)
        return split(self, *a, **k)

    monkeypatch.setattr(pl.DataFrame, "partition_by", spy)
    write_table(table, frame, tmp_path / "new", "r", {})
    assert bool(calls) == null_date
    monkeypatch.setattr(marts, "_year_and_code", lambda *_: None)
    write_table(table, frame, tmp_path / "old", "r", {})
    new, old = (json.loads((tmp_path / d / f"{table.name}.manifest.json").read_text()) for d in ("new", "old"))
    assert new["files"] == old["files"] and len(new["files"]) == 4 + null_date
    for name in new["files"]:
        assert (tmp_path / "new" / table.name / name).read_bytes() == (tmp_path / "old" / table.name / name).read_bytes()
        assert SORT_CODE not in pl.read_parquet_schema(tmp_path / "new" / table.name / name)
    years = [pl.read_parquet(tmp_path / "new" / table.name / name)["year"].unique().to_list() for name in new["files"]]
    assert all(len(y) == 1 for y in years)
