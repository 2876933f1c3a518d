"""Markdown and HTML pages with tables as blocks: headings open sections, each table is one table block.

Markdown is parsed by markdown-it-py (CommonMark with GFM tables; it also comes with rich), HTML by
BeautifulSoup. Text keeps its source form (Markdown lines as written, HTML as its visible text); a
table becomes a Markdown table with its header row, captioned by the HTML ``<caption>`` or by a
"Table N…" paragraph right above (else right below) it, which moves into the table block.

Only pages that hold a table are read into blocks: a page without one keeps the plain-text path, so the
chunks (and ids) of table-free pages, the shipped sample domain among them, do not change.
"""

from __future__ import annotations

import re
from typing import Any

from domainrag.data.blocks import Block, ReadResult, markdown_table

_CAPTION = re.compile(r"^(table|tab\.)\s*[0-9ivx]+\b", re.I)
_MARK = re.compile(r"\x00(\d+)\x00")


def _caption_of(blocks: list[Block | str], i: int) -> str:
    """Take the "Table N…" text block right above (else right below) table ``i`` as its caption."""
    for j in (i - 1, i + 1):
        item = blocks[j] if 0 <= j < len(blocks) else None
        if isinstance(item, Block) and item.kind == "text" and _CAPTION.match(item.text) and len(item.text) <= 300:
            blocks[j] = ""
            return item.text
    return ""


def _finish(items: list[Block | str], captions: dict[int, str]) -> list[Block]:
    """Blocks with captions moved into their tables (``captions``: table index → HTML caption)."""
    for i, item in enumerate(items):
        if isinstance(item, Block) and item.kind == "table":
            caption = captions.get(i) or _caption_of(items, i)
            items[i] = Block("table", item.text, item.section, caption=caption)
    return [b for b in items if isinstance(b, Block) and b.text.strip()]


# ------------------------------------------------------------------------------------------ Markdown


def markdown_blocks(raw: str) -> ReadResult | None:
    """Blocks of a Markdown page, or None when it has no table."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(raw)
    if not any(t.type == "table_open" for t in tokens):
        return None
    lines = raw.splitlines()
    result = ReadResult()
    items: list[Block | str] = []
    path: list[tuple[int, str]] = []
    text: list[str] = []

    def flush() -> None:
        if text:
            items.append(Block("text", "\n\n".join(text), tuple(t for _, t in path)))
            text.clear()

    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.level != 0 or tok.map is None:
            i += 1
            continue
        close = _close(tokens, i)
        if tok.type == "heading_open":
            flush()
            level, title = int(tok.tag[1]), tokens[i + 1].content.strip()
            result.title = result.title or (title if level == 1 else "")
            path = [(lv, t) for lv, t in path if lv < level] + [(level, title)]
        elif tok.type == "table_open":
            flush()
            items.append(Block("table", markdown_table(_md_rows(tokens[i:close + 1])), tuple(t for _, t in path)))
        else:
            source = "\n".join(lines[tok.map[0]:tok.map[1]]).strip()
            if tok.type == "paragraph_open" and _CAPTION.match(source):
                flush()  # its own block, so that a table next to it can take it as its caption
                items.append(Block("text", _plain(tokens[i + 1]), tuple(t for _, t in path)))
            elif source:
                text.append(source)
        i = close + 1
    flush()
    result.blocks = _finish(items, {})
    return result


def _close(tokens: list[Any], i: int) -> int:
    """Index of the token closing the block opened at ``i`` (``i`` itself for a self-contained token)."""
    if tokens[i].nesting != 1:
        return i
    depth = 0
    for j in range(i, len(tokens)):
        depth += tokens[j].nesting
        if depth == 0:
            return j
    return len(tokens) - 1


def _md_rows(tokens: list[Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    for tok in tokens:
        if tok.type == "tr_open":
            rows.append([])
        elif tok.type == "inline" and rows:
            rows[-1].append(_plain(tok))
    return rows


def _plain(inline: Any) -> str:
    """An inline token's text without Markdown emphasis or link syntax (code spans keep their text)."""
    return "".join(c.content for c in inline.children or [] if c.type in ("text", "code_inline")) or inline.content


# ---------------------------------------------------------------------------------------------- HTML


def html_blocks(raw: str) -> ReadResult | None:
    """Blocks of an HTML page, or None when it has no table (a layout table of one column or one row is
    text, not a table)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(raw, "html.parser")
    for tag in soup(["script", "style", "noscript"]):
        tag.decompose()
    found = [t for t in soup.find_all("table") if t.find_parent("table") is None]
    tables = [(t, rows) for t in found if len(rows := _html_rows(t)) >= 2 and max(map(len, rows)) >= 2]
    if not tables:
        return None
    result = ReadResult(title=soup.title.get_text(strip=True) if soup.title else "")
    if soup.title:
        soup.title.decompose()
    marks: list[tuple[str, Any]] = []  # what each "\x00n\x00" marker in the text stands for
    for table, rows in tables:
        caption = table.find("caption")
        marks.append(("table", (rows, caption.get_text(" ", strip=True) if caption else "")))
        table.replace_with(f"\n\x00{len(marks) - 1}\x00\n")
    for heading in soup.find_all(re.compile(r"^h[1-6]$")):
        marks.append(("heading", (int(heading.name[1]), heading.get_text(" ", strip=True))))
        heading.replace_with(f"\n\x00{len(marks) - 1}\x00\n")
    items: list[Block | str] = []
    captions: dict[int, str] = {}
    path: list[tuple[int, str]] = []
    parts = _MARK.split(soup.get_text("\n"))
    for n, part in enumerate(parts):
        if n % 2 == 0:  # text between markers: paragraphs, blank lines collapsed
            for para in (p.strip() for p in re.split(r"\n\s*\n", re.sub(r"[ \t]*\n[ \t]*", "\n", part))):
                if para:
                    items.append(Block("text", " ".join(para.split()), tuple(t for _, t in path)))
            continue
        kind, value = marks[int(part)]
        if kind == "heading":
            level, title = value
            path = [(lv, t) for lv, t in path if lv < level] + [(level, title)] if title else path
        else:
            rows, caption = value
            if caption:
                captions[len(items)] = caption
            items.append(Block("table", markdown_table(rows), tuple(t for _, t in path)))
    result.blocks = _merge_text(_finish(items, captions))
    return result


def _html_rows(table: Any) -> list[list[str]]:
    """Cells of a table's own rows (not those of a nested table), header rows first; a cell spanning
    columns keeps its text once and leaves the columns it covers empty."""
    rows: list[list[str]] = []
    for tr in table.find_all("tr"):
        if tr.find_parent("table") is not table:
            continue
        row: list[str] = []
        for cell in tr.find_all(["th", "td"], recursive=False):
            row.append(" ".join(cell.get_text(" ").split()))
            span = cell.get("colspan")
            row += [""] * (int(span) - 1 if str(span).isdigit() and 1 < int(span) <= 50 else 0)
        if any(row):
            rows.append(row)
    return rows


def _merge_text(blocks: list[Block]) -> list[Block]:
    """Consecutive text blocks of one section as one block (paragraphs kept apart by blank lines)."""
    out: list[Block] = []
    for b in blocks:
        if out and b.kind == out[-1].kind == "text" and b.section == out[-1].section:
            out[-1] = Block("text", f"{out[-1].text}\n\n{b.text}", b.section)
        else:
            out.append(b)
    return out
