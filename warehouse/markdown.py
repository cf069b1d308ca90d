"""One Markdown table writer for every generated document and report.

The data dictionary, docs/configuration.md and the run report all print
tables; one function escapes cells the same way everywhere (a ``|`` or a
newline inside a cell would otherwise split or end a row).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """Lines of a GitHub-flavoured Markdown table: header, separator, one line per row."""
    return [
        "| " + " | ".join(cell(c) for c in columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows),
    ]
