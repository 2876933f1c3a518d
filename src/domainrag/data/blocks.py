"""Document structure that retrieval needs: blocks of text or tables, with their section path and page.

Readers of structured formats (PDF, Word, PowerPoint, spreadsheets, scans) turn a file into blocks;
chunking keeps each table whole (one chunk, or row groups that repeat the header) and packs text
blocks within their section and page, so every chunk can say where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

BlockKind = Literal["text", "table", "slide", "sheet"]


@dataclass(frozen=True)
class Block:
    """One piece of a document in reading order.

    ``text`` is plain text (paragraphs separated by blank lines), or for a table its Markdown
    rendering (header row, separator, body rows). ``section`` is the heading path above the block,
    outermost first; ``page`` is the 1-based page (PDF) or slide number (PowerPoint), ``None`` where
    the format has none; ``caption`` is a table's caption or a sheet's name.
    """

    kind: BlockKind
    text: str
    section: tuple[str, ...] = ()
    page: int | None = None
    caption: str = ""


@dataclass
class ReadResult:
    """What a reader found in one file: its blocks, a title (may be empty) and per-file warnings
    (e.g. "page 3 has no text layer and no OCR engine is installed")."""

    blocks: list[Block] = field(default_factory=list)
    title: str = ""
    warnings: list[str] = field(default_factory=list)


def markdown_table(rows: list[list[str]], header: list[str] | None = None) -> str:
    """A Markdown table; the first row is the header unless ``header`` is given. Cells are one line each,
    and pipes inside cells are escaped. A table without any text (a layout grid, a form's empty boxes) is
    ``""``: nothing to retrieve."""

    def cell(value: object) -> str:
        return " ".join(str(value if value is not None else "").split()).replace("|", "\\|")

    rows = [[cell(c) for c in r] for r in rows]
    head = [cell(c) for c in header] if header is not None else (rows.pop(0) if rows else [])
    width = max([len(head), *(len(r) for r in rows)])
    if width == 0 or not any([*head, *(c for r in rows for c in r)]):
        return ""
    head = head + [""] * (width - len(head))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(r + [""] * (width - len(r))) + " |" for r in rows]
    return "\n".join(lines)
