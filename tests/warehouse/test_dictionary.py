"""The committed data dictionary is generated from the contracts and must not go stale."""

from __future__ import annotations

from warehouse import dictionary
from contracts.tables import TABLES


def test_committed_dictionary_is_current():
    assert dictionary.DOC.read_text() == dictionary.render(), (
        "docs/data_dictionary.md is stale: run `python -m warehouse.dictionary` and commit it"
    )


def test_dictionary_lists_every_table_column_and_rule():
    text = dictionary.render()
    for table in TABLES.values():
        assert f"## `{table.name}`" in text
        for col in table.columns:
            assert f"| `{col.name}` | {col.duckdb_type} |" in text
        for rule in table.rules:
            assert f"`{rule.name}`" in text


def test_check_mode_fails_on_a_stale_file(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "data_dictionary.md"
    stale.write_text(dictionary.render().replace("Opening price.", "Opening price (old text)."))
    monkeypatch.setattr(dictionary, "DOC", stale)
    assert dictionary.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert dictionary.main([]) == 0 and dictionary.main(["--check"]) == 0
