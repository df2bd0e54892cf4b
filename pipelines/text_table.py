"""Plain-text tables for terminals and logs (the CLI, `verify`): one way to print them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def text_table(headers: Sequence[Any], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Left-aligned columns under a dashed rule, trailing spaces stripped."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def print_table(headers: Sequence[Any], rows: Sequence[Sequence[Any]]) -> None:
    """`text_table` on standard output."""
    print("\n".join(text_table(headers, rows)))
