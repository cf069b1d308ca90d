"""Configuration YAML read with libyaml's parser: the same values as PyYAML's own safe loader.

``flows.yamlfile.read_yaml_mapping`` reads the universe (twice a run: 2,000
symbols at the benchmark size) and the policy file. libyaml's parser costs
about a seventh of the pure-Python one's CPU (docs/performance.md); these tests
hold it to the pure-Python ``yaml.safe_load``'s values, and to its errors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from flows import yamlfile
from flows.universe import UniverseError, load_universe

REPO = Path(__file__).resolve().parents[2]
TRICKY = """\
defaults: &base
  window: 30
  enabled: yes
  ratio: 1.5e-3
  big: 0x1F
  octal: 0o17
  legacy_octal: 017
  when: 2024-12-24
  stamp: 2024-12-24 13:00:00
  none: ~
  inf: .inf
named:
  <<: *base
  window: 60
  note: |
    two lines,
    kept
  folded: >
    one
    line
  quoted: "tab\\there \\u00e9"
  single: 'it''s'
  plain: E0001 # a comment
  list: [a, 'b', 3, 4.0, true, off, null]
  empty: {}
"""


def pure(text: str):
    return yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 - PyYAML's pure-Python safe loader


def _equal(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def test_libyaml_is_used_where_pyyaml_has_it():
    if not yaml.__with_libyaml__:
        pytest.skip("this PyYAML has no libyaml: its own parser is used")
    assert yamlfile._SafeLoader is yaml.CSafeLoader


def test_the_project_files_and_a_tricky_document_read_as_pyyaml_reads_them(tmp_path):
    docs = {p.name: p.read_text() for p in (REPO / "flows" / "universe.yaml", REPO / "flows" / "policy.yaml")}
    docs["tricky.yaml"] = TRICKY
    for name, text in docs.items():
        path = tmp_path / name
        path.write_text(text)
        got = yamlfile.read_yaml_mapping(path, "test", ValueError)
        want = pure(text)
        assert got == want, name
        flat = json.dumps(got, default=repr, sort_keys=True)
        assert flat == json.dumps(want, default=repr, sort_keys=True), name  # the same types, e.g. dates
    got = yamlfile.read_yaml_mapping(tmp_path / "tricky.yaml", "test", ValueError)
    assert got["named"]["window"] == 60 and got["named"]["enabled"] is True and got["named"]["legacy_octal"] == 15
    assert all(_equal(got["defaults"][k], pure(TRICKY)["defaults"][k]) for k in got["defaults"])


def test_a_benchmark_sized_universe_reads_the_same(tmp_path):
    # As bench/e2e.py writes it: JSON is YAML, 2,104 symbols.
    rows = [{"symbol": f"E{i:04d}", "name": f"Equity {i}", "asset_class": "equity", "sector": "Utilities"}
            for i in range(2000)]
    rows += [{"symbol": s, "name": s, "asset_class": "index"} for s in ("^RUT", "^GSPC")]
    rows += [{"symbol": f"C{i:03d}-USD", "name": f"Coin {i}", "asset_class": "crypto", "quote_currency": "USD"}
             for i in range(102)]
    text = json.dumps({"benchmarks": ["^RUT", "^GSPC"], "assets": rows}, indent=0)
    path = tmp_path / "universe.yaml"
    path.write_text(text)
    assert yamlfile.read_yaml_mapping(path, "universe", UniverseError) == pure(text)
    assert len(load_universe(path).assets) == 2104


def test_invalid_yaml_is_still_one_error_naming_the_file(tmp_path):
    path = tmp_path / "universe.yaml"
    path.write_text("assets: [E0001, E0002\nbenchmarks: {")
    with pytest.raises(UniverseError, match=r"universe file .*universe\.yaml is not valid YAML"):
        yamlfile.read_yaml_mapping(path, "universe", UniverseError)
    path.write_text("- just\n- a list\n")
    with pytest.raises(UniverseError, match="expected a mapping at the top level"):
        yamlfile.read_yaml_mapping(path, "universe", UniverseError)
