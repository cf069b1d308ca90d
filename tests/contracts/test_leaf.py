"""The layers import downwards only: contracts is a leaf, transforms and warehouse never reach up.

contracts (schemas, tables, vocabulary) is imported by sources, transforms and
the warehouse alike, so it may import nothing of theirs; transforms are pure
functions that never see flows or the warehouse; the warehouse never sees flows.
Every import statement counts, also ones inside functions (a lazy import is
still a dependency).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# contracts may use the standard library and these third-party packages only.
CONTRACTS_THIRD_PARTY = {"polars", "pyarrow"}
FORBIDDEN = {
    "contracts": {"flows", "transforms", "warehouse", "bench", "tests"},
    "transforms": {"flows", "warehouse", "bench", "tests"},
    "warehouse": {"flows", "transforms", "bench", "tests"},
}


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in ``path``, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def violations(package: str, allowed) -> list[str]:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"  # the walk sees the package
    return [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in files
        for line, name in imported_packages(path)
        if not allowed(name)
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_never_imports_the_layers_above_it(package):
    assert violations(package, lambda name: name not in FORBIDDEN[package]) == []


def test_contracts_import_only_the_standard_library_polars_and_pyarrow():
    def allowed(name: str) -> bool:
        return name in sys.stdlib_module_names or name in CONTRACTS_THIRD_PARTY or name == "contracts"

    assert violations("contracts", allowed) == []


def test_the_check_sees_a_nested_import(tmp_path):
    # The guard must catch a lazy import inside a function, the way warehouse.quality once reached flows.
    module = tmp_path / "m.py"
    module.write_text("import polars as pl\n\ndef f():\n    from flows.calendar import sessions\n    import warehouse.build\n")
    assert imported_packages(module) == [(1, "polars"), (4, "flows"), (5, "warehouse")]
