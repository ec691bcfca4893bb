"""Tables that never cut a number (#26): fitted to the console's width, or printed as "column: value" lines.

A column never narrows below its widest figure (a word holding a digit and no run of three letters: -5.3104,
1.2e-05, N=50, z12, (100%)), nor below its widest cell where it is no_wrap, nor below a word of READABLE
characters; it narrows widest first, as rich narrows, and its text wraps at spaces and folds a longer name,
never with an ellipsis. Where even those least widths do not fit the console, each row becomes lines of
"column: value", which nothing cuts.
"""

from __future__ import annotations

import re

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from entropy_elbo.report.console import out

FIGURE = re.compile(r"(?=\S*\d)(?!\S*[A-Za-z]{3})\S+")  # a number, with its sign, unit or name (N=50, z3, 12%)
READABLE = 10  # a text column keeps room for its words up to this long: narrower, the table reads better as lines


def show(table: Table, console: Console | None = None) -> None:
    """Print `table` on `console` (stdout) with every number whole, at whatever width the console has."""
    console = console or out()
    widths = fitted_widths(table, console.width)
    if widths is None:
        for line in row_lines(table):
            console.print(line, highlight=False)
        return
    for column, width in zip(table.columns, widths, strict=True):
        column.overflow = "fold"  # a name longer than its column wraps onto the next line instead of ending in "…"
        if width is not None:
            column.width = width
    console.print(table)


def plain(cell: object) -> str:
    """A cell's text as it shows (markup applied)."""
    return Text.from_markup(cell).plain if isinstance(cell, str) else getattr(cell, "plain", str(cell))


def least_width(column: object, texts: list[str]) -> int:
    """The narrowest a column may be without cutting a number: its widest figure and its words up to READABLE
    characters, or its widest cell if no_wrap."""
    if column.no_wrap:
        return max([column.min_width or 1, *(cell_len(line) for t in texts for line in t.splitlines())])
    figures = (cell_len(word) for t in texts for word in FIGURE.findall(t))
    words = (min(cell_len(word), READABLE) for t in texts for word in t.split())
    return max([column.min_width or 1, *figures, *words])


def fitted_widths(table: Table, width: int) -> list[int | None] | None:
    """Each column's width (None: as rich makes it) so that the table fits `width`; None where it cannot fit."""
    texts = [[plain(column.header), *map(plain, column._cells)] for column in table.columns]
    pads = [table._get_padding_width(i) for i in range(len(table.columns))]  # rich's own padding rule
    least = [least_width(c, t) for c, t in zip(table.columns, texts, strict=True)]
    most = [max([lo, *(cell_len(line) for t in ts for line in t.splitlines())]) for lo, ts in zip(least, texts,
                                                                                                    strict=True)]
    room = width - table._extra_width - sum(pads)
    if sum(least) > room:
        return None
    if sum(most) <= room:
        return [None] * len(most)  # it fits as it is: rich lays it out unchanged
    widths = list(most)
    while sum(widths) > room:  # narrow the widest column that may still narrow, one cell at a time
        i = max((i for i in range(len(widths)) if widths[i] > least[i]), key=lambda i: widths[i])
        widths[i] -= 1
    return widths


def row_lines(table: Table) -> list[str]:
    """The table as lines: its title, then per row "column: value" (the first column leading, the others
    indented under it), then its caption. A row whose first cell is empty continues the row above."""
    headers = [column.header for column in table.columns]
    lines = [table.title] if table.title else []
    name = ""
    for row in zip(*(column._cells for column in table.columns), strict=True):
        name = row[0] or name
        lines.append(f"{headers[0]}: {name.strip()}")
        lines += [f"  {header}: {cell}" for header, cell in zip(headers[1:], row[1:], strict=True) if plain(cell)]
    if table.caption:
        lines.append(table.caption)
    return lines
