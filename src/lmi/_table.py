"""Aligned plain-text tables, for the cost report and the command line."""

from __future__ import annotations

from collections.abc import Sequence


def render_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Sequence[bool],
    footer: Sequence[str] | None = None,
) -> str:
    """An aligned text table; ``right`` says which columns align right (numbers).

    A ``footer`` row (totals) is set off from the rows by a second rule.
    """
    lines = [header, *rows, *([footer] if footer is not None else [])]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if align_right else cell.ljust(width)
            for cell, width, align_right in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    out = [render(header), rule, *map(render, rows)]
    if footer is not None:
        out += [rule, render(footer)]
    return "\n".join(out)
