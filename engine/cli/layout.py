"""Tables that fit the terminal: a rich table when every cell fits at its natural width, else one
block per row — the row's ids on a line of their own, the numbers as `name value` pairs, and a
long text (an audit detail, a verdict) on its own indented line.

Ids are never cut to a prefix (two playbooks both shown as `supp…` cannot be told apart): a table
cell folds rather than truncates, and a block wraps between words, folding only a word longer
than the whole line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from engine.output import Layout

INDENT = 2
"""Columns the lines under a block's heading are indented by."""


def as_table(layout: Layout, rows: Sequence[Mapping[str, str]], title: str | None = None) -> Table:
    """The rows as a rich table; every cell folds instead of ending in `…`."""
    table = Table(title=title)
    for col in layout.columns:
        table.add_column(col, justify="right" if col in layout.numeric else "left", overflow="fold")
    for row in rows:
        # As Text: a cell is data (a title, a detail), never rich markup: `[/x]` must not raise.
        table.add_row(*(Text(row.get(col, "")) for col in layout.columns))
    return table


def fits(console: Console, table: Table) -> bool:
    """Whether `table` fits `console` without squeezing any column."""
    # Measured as if the terminal were unbounded: a measurement is otherwise capped at its width.
    unbounded = console.options.update_width(1_000_000)
    return Measurement.get(console, unbounded, table).maximum <= console.width


def _packed(pieces: Sequence[str], width: int) -> list[str]:
    """`pieces` joined by two spaces into lines of at most `width` (a piece is never split
    unless it is wider than a line by itself)."""
    lines: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current}  {piece}" if current else piece
        if current and cell_len(candidate) > width:
            lines.append(current)
            current = piece
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def print_wrapped(console: Console, text: Text, indent: int = 0) -> None:
    """`text` wrapped to the console's width less `indent` (between words; a word longer than a
    line folded), each line indented, none ending in the spaces rich leaves after a wrapped word
    or pads a block with: a pager, a diff or a copy shows them."""
    for line in text.wrap(console, max(console.width - indent, 10), overflow="fold"):
        line.rstrip()
        console.print(Text(" " * indent) + line, soft_wrap=True)


def print_blocks(console: Console, layout: Layout, rows: Sequence[Mapping[str, str]]) -> None:
    """One block per row: heading values, then `label value` pairs, then the detail."""
    inner = max(console.width - INDENT, 10)
    for row in rows:
        head = "  ".join(row[c] for c in layout.heading if row.get(c))
        print_wrapped(console, Text(head, style="bold"))
        pairs = [
            f"{layout.labels.get(c, c)} {row[c]}"
            for c in layout.columns
            if c not in layout.heading and c != layout.detail and row.get(c)
        ]
        for line in _packed(pairs, inner):
            print_wrapped(console, Text(line), INDENT)
        if layout.detail and row.get(layout.detail):
            label = layout.labels.get(layout.detail)
            detail = f"{label}: {row[layout.detail]}" if label else row[layout.detail]
            print_wrapped(console, Text(detail), INDENT)


def print_rows(console: Console, layout: Layout, rows: Sequence[Mapping[str, str]], title: str | None = None) -> None:
    """The rows as a table when it fits `console`'s width, else as blocks under the title."""
    table = as_table(layout, rows)
    if fits(console, table):
        if title:
            # Centred over the table as rich would, but without the spaces rich pads it with.
            width = Measurement.get(console, console.options, table).maximum
            print_wrapped(console, Text(" " * max((width - cell_len(title)) // 2, 0) + title, style="italic"))
        console.print(table)
        return
    if title:
        print_wrapped(console, Text(title, style="italic"))
    print_blocks(console, layout, rows)
