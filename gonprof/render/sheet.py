"""One structure per table, drawn three ways: a :class:`Sheet` (title, column headers, cells as text, caption)
becomes a rich Table for the terminal (:meth:`Sheet.to_rich`), a GitHub-flavoured Markdown table for
documents (:meth:`Sheet.to_markdown`) or an HTML table for a report page (:meth:`Sheet.to_html`), so they
never differ in their columns or their rounding.

The table builders of this package (profile, compare, budget, distributed) each fill a Sheet once; the
prose beside a table (notes, warnings, a fit's answer) is a :class:`Note`.  A cell is plain text (never rich
markup) or a :class:`rich.text.Text` where it is styled: the Markdown output takes its plain text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rich.console import Group
from rich.table import Table
from rich.text import Text

Cell = str | Text


@dataclass
class Column:
    """One column: its header (with its unit), alignment and terminal-only hints."""

    header: str
    justify: Literal["left", "right"] = "left"
    no_wrap: bool = False
    max_width: int | None = None
    style: str | None = None


@dataclass
class Row:
    cells: list[Cell]
    style: str | None = None  # terminal only (the floor row is dim)
    section: bool = False  # a rule above this row in the terminal


@dataclass
class Sheet:
    """A table as text: what both renderings draw."""

    columns: list[Column] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    title: str | None = None
    caption: str | None = None
    show_header: bool = True
    header_style: str | None = None
    title_justify: Literal["left", "center", "right"] = "center"
    caption_justify: Literal["left", "center", "right"] = "center"
    caption_style: str | None = None
    _section_next: bool = False

    def add_column(self, header: str, justify: Literal["left", "right"] = "left", **hints: Any) -> None:
        self.columns.append(Column(header, justify, **hints))

    def add_row(self, *cells: Cell, style: str | None = None) -> None:
        self.rows.append(Row(list(cells), style, self._section_next))
        self._section_next = False

    def add_section(self) -> None:
        self._section_next = True

    @property
    def headers(self) -> list[str]:
        return [c.header for c in self.columns]

    def plain_rows(self) -> list[list[str]]:
        """Every row's cells as plain text, one per column."""
        n = len(self.columns)
        return [[plain(c) for c in row.cells] + [""] * (n - len(row.cells)) for row in self.rows]

    def to_rich(self) -> Table:
        t = Table(title=self.title, caption=self.caption, show_header=self.show_header,
                  header_style=self.header_style or "table.header", title_justify=self.title_justify,
                  caption_justify=self.caption_justify)
        if self.caption_style:
            t.caption_style = self.caption_style
        for c in self.columns:
            t.add_column(c.header, justify=c.justify, no_wrap=c.no_wrap, max_width=c.max_width,
                         style=c.style or "")
        for row in self.rows:
            if row.section:
                t.add_section()
            t.add_row(*(c if isinstance(c, Text) else Text(c) for c in row.cells), style=row.style)
        return t

    def to_markdown(self) -> str:
        """The title in bold, the table (numbers right-aligned), the caption below it."""
        lines = [f"**{md_escape(self.title)}**", ""] if self.title else []
        lines.append("| " + " | ".join(md_escape(h) for h in self.headers) + " |")
        lines.append("|" + "|".join("---:" if c.justify == "right" else "---" for c in self.columns) + "|")
        for cells in self.plain_rows():
            lines.append("| " + " | ".join(md_escape(c) for c in cells) + " |")
        if self.caption:
            lines += ["", md_escape(self.caption)]
        return "\n".join(lines)

    def to_html(self) -> str:
        """An HTML ``<table>`` (the title as its caption, numbers right-aligned), the caption below it."""
        out = ['<table class="sheet">']
        if self.title:
            out.append(f"<caption>{html_text(self.title)}</caption>")
        if self.show_header:
            out.append("<thead><tr>" + "".join(f'<th{_align(c)}>{html_text(c.header)}</th>' for c in self.columns)
                       + "</tr></thead>")
        out.append("<tbody>")
        for row, cells in zip(self.rows, self.plain_rows()):
            classes = " ".join(k for k, on in (("section", row.section), (row.style or "", bool(row.style))) if on)
            out.append(f'<tr class="{classes}">' if classes else "<tr>")
            out.append("".join(f"<td{_align(c)}>{html_text(cell)}</td>" for c, cell in zip(self.columns, cells)))
            out.append("</tr>")
        out.append("</tbody></table>")
        if self.caption:
            out.append(f'<p class="caption">{html_text(self.caption)}</p>')
        return "".join(out)


@dataclass
class Note:
    """Prose beside the tables: one or more lines (a line starting ``- `` is a list item)."""

    text: str | Text
    style: str | None = None

    def to_rich(self) -> Text:
        return self.text if isinstance(self.text, Text) else Text(self.text, style=self.style or "")

    def to_markdown(self) -> str:
        out: list[str] = []
        for line in plain(self.text).splitlines():
            if not line.strip():
                continue
            stripped = line.strip()
            if stripped.startswith("- "):
                out.append("- " + md_escape(stripped[2:]))
            else:
                if out:
                    out.append("")
                out.append(md_escape(line))
        return "\n".join(out)


    def to_html(self) -> str:
        """Paragraphs, and a list for the lines starting ``- ``; a styled note (warnings) gets its style as
        a class."""
        out: list[str] = []
        items: list[str] = []
        for line in plain(self.text).splitlines():
            stripped = line.strip()
            if stripped.startswith("- "):
                items.append(f"<li>{html_text(stripped[2:])}</li>")
                continue
            if items:
                out.append("<ul>" + "".join(items) + "</ul>")
                items = []
            if stripped:
                out.append(f"<p>{html_text(line)}</p>")
        if items:
            out.append("<ul>" + "".join(items) + "</ul>")
        style = self.style or (self.text.style if isinstance(self.text, Text) and isinstance(self.text.style, str)
                               else "")
        return f'<div class="{"note " + style if style else "note"}">' + "".join(out) + "</div>"


def html_text(text: str) -> str:
    """``text`` escaped for HTML, leading spaces (a nested module's indent) kept, line breaks as ``<br>``."""
    import html

    return "<br>".join("&nbsp;" * (len(part) - len(part.lstrip(" "))) + html.escape(part.lstrip(" "))
                       for part in str(text).splitlines() or [""])


def _align(column: Column) -> str:
    return ' class="num"' if column.justify == "right" else ""


def plain(cell: Any) -> str:
    """A cell's text without styles."""
    return cell.plain if isinstance(cell, Text) else str(cell)


_MD_SPECIAL = str.maketrans({"\\": "\\\\", "|": "\\|", "*": "\\*", "_": "\\_", "`": "\\`", "<": "&lt;",
                             "[": "\\[", "]": "\\]"})


def md_escape(text: str) -> str:
    """``text`` as literal Markdown: characters that would format or split a table cell escaped, leading spaces
    as ``&nbsp;``, line breaks as ``<br>``."""
    return "<br>".join(_indent(part) + part.lstrip(" ").translate(_MD_SPECIAL)
                       for part in str(text).splitlines() or [""])


def _indent(line: str) -> str:
    """Leading spaces (a nested module's, a split figure's indent) kept: Markdown would drop them."""
    return "&nbsp;" * (len(line) - len(line.lstrip(" ")))


def to_rich(blocks: Iterable[Sheet | Note]) -> Group:
    """Blocks as one rich renderable, in order."""
    return Group(*(b.to_rich() for b in blocks))


def to_html(blocks: Sequence[Sheet | Note]) -> str:
    """Blocks as HTML fragments, in order."""
    return "\n".join(b.to_html() for b in blocks)


def to_markdown(blocks: Sequence[Sheet | Note]) -> str:
    """Blocks as one Markdown document, separated by blank lines."""
    return "\n\n".join(b.to_markdown() for b in blocks) + "\n"
