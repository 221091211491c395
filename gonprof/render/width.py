"""Tables that fit the terminal: every number whole, descriptive columns dropped first, else one block per row."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console, Group
from rich.table import Column, Table
from rich.text import Text

_NUMBER = re.compile(r"^[-+]?[\d,.]+(e[-+]?\d+)?( ?[a-zA-Z%/]+)?( / [\d,.]+)?( \(.*\))?$|^-$")


def whole_numbers(table: Table) -> Table:
    """Keep every number of ``table`` whole on a narrow terminal: a column whose cells are all numbers
    (with or without a unit) gets a minimum width of its widest cell, so rich wraps headers and narrows
    the prose columns instead.  Returns the table."""
    for col in table.columns:
        cells = [Text.from_markup(c).plain if isinstance(c, str) else getattr(c, "plain", str(c)) for c in col._cells]
        cells = [c for c in cells if c.strip()]
        if cells and all(_NUMBER.match(c.strip()) for c in cells):
            # as wide as its widest number: the numbers never wrap, the header may
            col.min_width = max(max(len(c) for c in cells), col.min_width or 0)
        if not col.no_wrap:
            col.overflow = "fold"
    return table


def fit_width(renderable: Any, console: Console) -> Any:
    """``renderable`` for ``console``'s width, every number whole.

    A table is tried as it is; if at this width it would cut a number or run past the edge, then without
    its descriptive columns (:data:`DESCRIPTIVE`); if that still does not fit, it becomes one block per
    row, each cell beside its column's header (:func:`stacked`).  Groups are walked.  Rendering only:
    nothing is measured but text.
    """
    if isinstance(renderable, Group):
        return Group(*(fit_width(r, console) for r in renderable.renderables))
    if not isinstance(renderable, Table):
        return renderable
    whole_numbers(renderable)
    width = console.width
    if _fits(renderable, width):
        return renderable
    narrower = _without(renderable, [c for c in renderable.columns if _plain(c.header) in DESCRIPTIVE])
    if narrower is not None and _fits(narrower, width):
        return narrower
    return stacked(renderable)


_NUMBERS_IN = re.compile(r"\d[\d,]*(?:\.\d+)?")


def _as_text(table: Table, width: int) -> str:
    import io

    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, highlight=False).print(table)
    return buf.getvalue()


def _fits(table: Table, width: int) -> bool:
    """Whether ``table`` at ``width`` stays within it and shows every number its unconstrained rendering
    shows (none cut, none wrapped across lines)."""
    narrow = _as_text(table, width)
    if max((len(line.rstrip()) for line in narrow.splitlines()), default=0) > width:
        return False
    words = set(narrow.split())
    if any(w not in words for c in table.columns for w in _plain(c.header).split()):
        return False  # a header cut short
    return set(_NUMBERS_IN.findall(_as_text(table, 1000))) <= set(_NUMBERS_IN.findall(narrow))


#: Columns that describe rather than measure: the first dropped when a table does not fit.
DESCRIPTIVE = ("source repository", "family", "input (C,H,W)", "default mode", "what it counts", "summary")


def _without(table: Table, drop: list[Column]) -> Table | None:
    """A copy of ``table`` without the columns in ``drop`` (None when there is nothing to drop)."""
    if not drop:
        return None
    keep = [c for c in table.columns if c not in drop]
    caption = _plain(table.caption) if table.caption else ""
    dropped = ", ".join(_plain(c.header) for c in drop)
    out = Table(title=table.title, title_justify=table.title_justify, box=table.box,
                caption=(caption + "\n" if caption else "") + f"(narrow terminal: {dropped} not shown)",
                caption_justify="left", show_header=table.show_header)
    for c in keep:
        out.add_column(c.header, justify=c.justify, no_wrap=c.no_wrap, min_width=c.min_width, style=c.style,
                       overflow=c.overflow)
    for i in range(table.row_count):
        out.add_row(*[c._cells[i] if i < len(c._cells) else "" for c in keep])
    return out


def _plain(c: Any) -> str:
    return Text.from_markup(c).plain if isinstance(c, str) else getattr(c, "plain", str(c))


def stacked(table: Table) -> Group:
    """``table`` as one small two-column block per row, titled by the row's first cell."""
    plain = _plain
    headers = [plain(c.header).replace("\n", " ") for c in table.columns]
    columns = [list(c._cells) for c in table.columns]
    parts: list[Any] = [Text(plain(table.title), style="bold")] if table.title else []
    for i in range(table.row_count):
        block = Table(show_header=False, box=None, padding=(0, 1), title=plain(columns[0][i]) if columns else None,
                      title_justify="left", title_style="bold")
        block.add_column("figure", style="dim", no_wrap=True, min_width=max((len(h) for h in headers[1:]), default=0))
        block.add_column("value", overflow="fold")
        for h, col in zip(headers[1:], columns[1:]):
            cell = col[i] if i < len(col) else ""
            if plain(cell).strip():
                block.add_row(h, cell)
        parts.append(block)
    if table.caption:
        parts.append(Text(plain(table.caption), style="dim"))
    return Group(*parts)
