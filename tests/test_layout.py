"""Where code lives: tests never import ``bench``.

``bench/`` measures; it may change or go without a test noticing. Reference
code the tests check against lives under ``tests/`` (``tests/oracles/``), and
panels the tests need come from ``tests/panels.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def bench_imports(source: str) -> list[int]:
    """Line numbers where ``source`` imports ``bench`` or loads a file of it by path."""
    tree = ast.parse(source)
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(a.name == "bench" or a.name.startswith("bench.") for a in node.names):
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and (node.module == "bench" or node.module.startswith("bench.")):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            texts = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if name in ("import_module", "__import__") and any(t.split(".")[0] == "bench" for t in texts):
                lines.append(node.lineno)
            if name == "spec_from_file_location" and "bench" in ast.unparse(node):
                lines.append(node.lineno)
    if "spec_from_file_location" in source:
        # A module loaded from a path built elsewhere: ROOT / "bench" / "x.py".
        lines += [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value == "bench"]
    return sorted(set(lines))


def test_the_check_finds_each_way_of_importing_bench():
    assert bench_imports("import bench") == [1]
    assert bench_imports("import os\nimport bench.panel as p") == [2]
    assert bench_imports("def f():\n    from bench.panel import generate") == [2]
    assert bench_imports("from bench import baseline") == [1]
    assert bench_imports("import importlib\nm = importlib.import_module('bench.panel')") == [2]
    path_load = "P = ROOT / 'bench' / 'legacy.py'\nspec = importlib.util.spec_from_file_location('x', P)"
    assert bench_imports(path_load) == [1]
    assert bench_imports("from benchmarks import x\nfrom .bench import y\nbench = 1\nimport tests.panels") == []


def test_no_test_imports_bench():
    files = sorted(TESTS.rglob("*.py"))
    assert len(files) > 50
    found = {
        str(f.relative_to(TESTS.parent)): lines
        for f in files
        if f != Path(__file__).resolve() and (lines := bench_imports(f.read_text()))
    }
    assert found == {}, f"tests import bench (move what they need under tests/): {found}"
