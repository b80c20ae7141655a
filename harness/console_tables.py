"""Report sections as rich tables that fit the console: text left-aligned, figures
right-aligned, and nothing ever cut short. Where a table is wider than the console, its text
(names included) wraps inside its column, and where even that does not fit, the figure
columns are split over several tables, each repeating the first column; a number is never
broken across lines."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.figures import MISSING, Section, is_numeric_cell

_COLUMN_OVERHEAD = 3
"""Characters a column costs beside its text: a border and a space either side."""
_TEXT_MIN_WIDTH = 12
"""A text column is not narrowed below this (or its longest word, if shorter)."""
_LABEL_MIN_WIDTH = 22
"""The first column (the row labels) is not narrowed below this (or its widest cell)."""
_BREAK_AFTER = re.compile(r"(?<=[-_/.:,+])")
"""Where a name without spaces may break: after a hyphen, underscore, slash, dot, colon,
comma or plus."""


def _words(cell: str) -> list[str]:
    return cell.split() or [""]


def _is_numeric_column(cells: Sequence[str]) -> bool:
    """A column of figures: every cell that holds something is a number (n/a allowed)."""
    filled = [c for c in cells if c.strip() and c.strip() != MISSING]
    return bool(filled) and all(is_numeric_cell(c) for c in filled)


def break_name(text: str, width: int) -> str:
    """`text` with line breaks so no line is wider than `width`: a long word is broken after
    a hyphen, underscore, slash or dot where it can be, else folded; nothing is dropped."""
    if width <= 0:
        return text
    lines: list[str] = []
    for line in text.splitlines() or [""]:
        current = ""
        for word in line.split(" "):
            pieces = [p for p in _BREAK_AFTER.split(word) if p] or [""]
            for i, piece in enumerate(pieces):
                sep = " " if current and i == 0 else ""
                if len(current) + len(sep) + len(piece) <= width:
                    current += sep + piece
                    continue
                if current:
                    lines.append(current)
                while len(piece) > width:
                    lines.append(piece[:width])
                    piece = piece[width:]
                current = piece
        lines.append(current)
    return "\n".join(lines)


class _Column:
    """What one column needs: its cells, whether it holds figures, its natural and least
    widths."""

    def __init__(self, header: str, cells: Sequence[str], first: bool) -> None:
        self.header = header
        self.cells = list(cells)
        self.numeric = not first and _is_numeric_column(self.cells)
        texts = [header, *self.cells]
        self.natural = max(len(line) for t in texts for line in (t.splitlines() or [""]))
        if self.numeric:
            # a number is one word and is never broken; a unit in brackets may wrap
            number_words = [w for c in self.cells for w in _words(c)[:1]]
            # the header breaks only where a name may (after a hyphen, ...)
            pieces = [p for w in _words(header) for p in _BREAK_AFTER.split(w)]
            header_least = min(max(len(p) for p in pieces), _TEXT_MIN_WIDTH)
            self.least = max(max(len(w) for w in number_words), header_least)
        elif first:
            self.least = min(self.natural, _LABEL_MIN_WIDTH)
        else:
            longest = max(len(w) for t in texts for w in _words(t))
            self.least = min(longest, _TEXT_MIN_WIDTH)
        self.least = max(self.least, 3)


def _widths(columns: Sequence[_Column], available: int) -> list[int] | None:
    """Column widths that fit `available` characters of text, or None where even the least
    widths do not; natural widths where they fit, else the spare room shared out."""
    natural = sum(c.natural for c in columns)
    if natural <= available:
        return [c.natural for c in columns]
    least = sum(c.least for c in columns)
    if least > available:
        return None
    spare = available - least
    wants = [c.natural - c.least for c in columns]
    total_want = sum(wants) or 1
    widths = [c.least + spare * w // total_want for c, w in zip(columns, wants, strict=True)]
    return widths


def _chunks(columns: Sequence[_Column], width: int) -> list[list[int]]:
    """Groups of figure-column indices (1-based) that fit beside the first column."""
    first = columns[0]
    groups: list[list[int]] = []
    current: list[int] = []
    for i in range(1, len(columns)):
        trial = [first, *(columns[j] for j in current), columns[i]]
        room = width - _COLUMN_OVERHEAD * len(trial) - 1
        if current and sum(c.least for c in trial) > room:
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    # the same number of tables, the columns shared out evenly where they fit that way
    size = -(-(len(columns) - 1) // len(groups))
    even = [list(range(i, min(i + size, len(columns)))) for i in range(1, len(columns), size)]
    fits = all(
        sum(c.least for c in (first, *(columns[j] for j in g)))
        <= width - _COLUMN_OVERHEAD * (len(g) + 1) - 1
        for g in even
    )
    return even if fits and len(even) == len(groups) else groups


def _table(title: str, columns: Sequence[_Column], widths: Sequence[int] | None) -> Table:
    """One rich table of `columns`, at `widths` (None: rich's natural widths)."""
    table = Table(title=Text(title), title_justify="left")
    for i, col in enumerate(columns):
        width = None if widths is None else widths[i]
        header = col.header if width is None else break_name(col.header, width)
        table.add_column(
            Text(header, justify="right" if col.numeric else "left"),
            justify="right" if col.numeric else "left",
            overflow="fold",
            no_wrap=False,
            width=width,
        )
    for r in range(len(columns[0].cells)):
        cells = []
        for i, col in enumerate(columns):
            cell = col.cells[r]
            numeric = i > 0 and is_numeric_cell(cell)
            if widths is not None and not numeric:
                cell = break_name(cell, widths[i])
            # a figure is right-aligned even in a column that also holds text
            cells.append(Text(cell, justify="right") if numeric else Text(cell))
        table.add_row(*cells)
    return table


def section_tables(section: Section, width: int) -> list[Table]:
    """A section as one or more rich tables no wider than `width`; empty where the section
    has no rows (its note says why)."""
    if not section.rows:
        return []
    columns = [
        _Column(header, [row[i] if i < len(row) else "" for row in section.rows], i == 0)
        for i, header in enumerate(section.headers)
    ]
    available = width - _COLUMN_OVERHEAD * len(columns) - 1
    widths = _widths(columns, available)
    if widths is not None:
        natural = widths == [c.natural for c in columns]
        return [_table(section.title, columns, None if natural else widths)]
    groups = _chunks(columns, width)
    tables = []
    for n, group in enumerate(groups, 1):
        part = [columns[0], *(columns[i] for i in group)]
        room = width - _COLUMN_OVERHEAD * len(part) - 1
        title = f"{section.title} (part {n} of {len(groups)})"
        tables.append(_table(title, part, _widths(part, room)))
    return tables


def print_sections(sections: Sequence[Section], console: Console) -> None:
    """Print sections as tables that fit the console (every title, header and cell literal
    text, never rich markup: names and paths are user data); a section's note follows its
    table, or stands in its place as one line where the section has no rows."""
    for section in sections:
        for table in section_tables(section, console.width):
            console.print(table)
        if section.note:
            line = section.note if section.rows else f"{section.title}: {section.note}"
            console.print(Text(line))
