"""Marts staged beside a run that fails meanwhile stop before their next table (warehouse.marts.stage_marts)."""

from __future__ import annotations

import threading

import pytest

from contracts.tables import TABLES
from warehouse import marts
from warehouse.marts import StagingStopped, stage_marts


def test_a_set_stop_writes_no_further_table_and_never_returns_complete(tmp_path, monkeypatch, tables):
    stop = threading.Event()
    written: list[str] = []
    write_table = marts.write_table

    def write_then_stop(table, *args, **kwargs):
        written.append(table.name)
        out = write_table(table, *args, **kwargs)
        stop.set()  # the run failed while this table was being written
        return out

    monkeypatch.setattr(marts, "write_table", write_then_stop)
    with pytest.raises(StagingStopped):
        stage_marts(tables, tmp_path / "marts", "r1", {}, stop=stop)
    assert len(written) == 1
    assert sorted(p.name for p in (tmp_path / "marts").glob("*.manifest.json")) == [f"{written[0]}.manifest.json"]


def test_an_unset_stop_writes_every_published_table(tmp_path, tables):
    out = stage_marts(tables, tmp_path / "marts", "r1", {}, stop=threading.Event())
    assert sorted(out) == sorted(n for n, t in TABLES.items() if t.publish)
