"""Word (``.docx``, python-docx) and PowerPoint (``.pptx``, python-pptx) files as blocks.

Word: paragraphs and tables in body order; ``Title`` and ``Heading n`` styles (or styles based on
them) open sections; a table becomes one Markdown table block whose merged cells keep their text
once, captioned by the "Table n…" or Caption-style paragraph next to it. PowerPoint: one ``slide``
block per slide (page = slide number, section = slide title) with its text frames in reading order
and its speaker notes, and one table block per table on the slide.

Both formats are ZIP packages; an OLE file under their suffix is a password-protected package or a
legacy binary Office file, which :func:`check_package` names before any parser sees it.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from domainrag.data.blocks import Block, ReadResult, markdown_table
from domainrag.data.readers.registry import register
from domainrag.errors import DatasetError

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_SAVE_AS = {".docx": "Word Document (.docx)", ".pptx": "PowerPoint Presentation (.pptx)",
            ".xlsx": "Excel Workbook (.xlsx)", ".xlsm": "Excel Workbook (.xlsx)"}
_CAPTION = re.compile(r"^(table|tab\.)\s*\d+", re.IGNORECASE)
_HEADING = re.compile(r"^heading\s*(\d+)$", re.IGNORECASE)
# What a parsing library raises for a package it cannot read (a damaged ZIP, a missing part, bad XML).
PACKAGE_ERRORS: tuple[type[BaseException], ...] = (zipfile.BadZipFile, KeyError, ValueError, SyntaxError, EOFError)


def check_package(path: Path) -> None:
    """Refuse, naming the cause, a file that cannot be an Office Open XML package: empty, OLE (encrypted
    or legacy binary), or not a ZIP at all."""
    suffix = path.suffix.lower()
    save_as = _SAVE_AS.get(suffix, suffix)
    with path.open("rb") as fh:
        head = fh.read(8)
    if not head:
        raise DatasetError(str(path), "file is empty (0 bytes)", hint="re-export or re-download it")
    if head == OLE_MAGIC:
        if "EncryptionInfo".encode("utf-16-le") in path.read_bytes():
            raise DatasetError(str(path), "password-protected (encrypted) Office file",
                               hint=f"open it, remove the password and save it again as {save_as}")
        raise DatasetError(str(path), f"legacy binary Office file (97-2003 format) named {suffix}",
                           hint=f"open it and save it as {save_as}")
    if not zipfile.is_zipfile(path):
        raise DatasetError(str(path), f"not a {suffix} file (not a ZIP package): corrupt or truncated",
                           hint=f"re-export it as {save_as}, or re-download it")


def corrupt(path: Path, exc: BaseException) -> DatasetError:
    """The error for a ZIP package the parsing library could not read."""
    save_as = _SAVE_AS.get(path.suffix.lower(), path.suffix)
    return DatasetError(str(path), f"corrupt {path.suffix.lower()} file ({type(exc).__name__}: {exc})"[:300],
                        hint=f"open and re-save it as {save_as}, or re-download it")


# --------------------------------------------------------------------------------------------- Word


@register(".docx")
def read_docx(path: Path) -> ReadResult:
    """Blocks of a Word document in body order, with heading sections and Markdown tables."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    check_package(path)
    try:
        doc = docx.Document(str(path))
        items = list(doc.iter_inner_content())
        title = (doc.core_properties.title or "").strip()
        levels = _DocxLevels(doc)
        result = _docx_blocks(items, levels, Table)
    except (PackageNotFoundError, *PACKAGE_ERRORS) as exc:
        raise corrupt(path, exc) from exc
    result.title = title or levels.title
    return result


class _DocxLevels:
    """Heading level of a paragraph from its style (0 = Title, n = Heading n, None = body); a style based
    on a heading style is a heading of that level.

    Styles are resolved once per document: python-docx's ``Paragraph.style`` searches the style part on
    every call (for an unstyled paragraph, a scan of all styles), which made it most of the reading time.
    """

    def __init__(self, doc: Any) -> None:
        from docx.enum.style import WD_STYLE_TYPE

        self._styles = {style.style_id: style for style in doc.styles}
        self._default = doc.styles.default(WD_STYLE_TYPE.PARAGRAPH)
        self._names: dict[str | None, str] = {}
        self._levels: dict[str | None, int | None] = {}
        self.title = ""  # the first Title-style paragraph, the document's title when core properties have none

    def _key(self, paragraph: Any) -> str | None:
        key = paragraph._p.style  # private: the w:pStyle id (None = the default style), read without a search
        if key not in self._levels:
            style = self._styles.get(key, self._default) if key is not None else self._default
            self._names[key] = (style.name or "").strip().lower() if style is not None else ""
            self._levels[key] = self._level_of(style)
        return key

    def level(self, paragraph: Any) -> int | None:
        return self._levels[self._key(paragraph)]

    def style_name(self, paragraph: Any) -> str:
        return self._names[self._key(paragraph)]

    @staticmethod
    def _level_of(style: Any) -> int | None:
        seen = 0
        while style is not None and seen < 10:  # base-style chains are short; a cycle must not hang
            name = (style.name or "").strip()
            if name.lower() == "title":
                return 0
            match = _HEADING.match(name)
            if match:
                return int(match.group(1))
            style, seen = style.base_style, seen + 1
        return None


def _is_caption(paragraph: Any, levels: _DocxLevels) -> bool:
    text = paragraph.text.strip()
    if not text or len(text) > 300:
        return False
    return bool(_CAPTION.match(text)) or levels.style_name(paragraph) == "caption"


def _captions(items: list[Any], levels: _DocxLevels, table_type: type) -> dict[int, int]:
    """Table index → index of its caption paragraph: the "Table n…" or Caption-style paragraph just above
    the table (the usual place) or else just below it."""
    out: dict[int, int] = {}
    tables = [i for i, item in enumerate(items) if isinstance(item, table_type)]
    for offset in (-1, 1):  # every table's caption above first, so one between two tables goes to the lower
        for i in tables:
            j = i + offset
            if i not in out and 0 <= j < len(items) and j not in out.values() \
                    and not isinstance(items[j], table_type) and levels.level(items[j]) is None \
                    and _is_caption(items[j], levels):
                out[i] = j
    return out


def _docx_blocks(items: list[Any], levels: _DocxLevels, table_type: type) -> ReadResult:
    result = ReadResult()
    path: list[tuple[int, str]] = []  # open headings, (level, text), outermost first
    pending = ""  # a heading not yet followed by text: prefixed to the next paragraph, dropped otherwise
    captions = _captions(items, levels, table_type)
    used = set(captions.values())
    for i, item in enumerate(items):
        if i in used:
            continue
        section = tuple(text for _, text in path)
        if isinstance(item, table_type):
            text = markdown_table(_docx_rows(item))
            if text:
                caption = items[captions[i]].text.strip() if i in captions else ""
                result.blocks.append(Block("table", text, section, caption=caption))
            pending = ""
            continue
        text = item.text.strip()
        if not text:
            continue
        level = levels.level(item)
        if level is None:
            result.blocks.append(Block("text", f"{pending}\n\n{text}" if pending else text, section))
            pending = ""
            continue
        if level == 0 and not levels.title:
            levels.title = text
        path = [(lv, t) for lv, t in path if lv < level] + [(level, text)]
        pending = text
    return result


def _cell_text(cell: Any) -> str:
    """A cell's paragraphs and any nested tables' cells, as one line."""
    parts: list[str] = []
    for inner in cell.iter_inner_content():
        if hasattr(inner, "rows"):
            parts.extend(t for row in _docx_rows(inner) for t in row if t)
        else:
            parts.append(inner.text)
    return " ".join(" ".join(parts).split())


def _docx_rows(table: Any) -> list[list[str]]:
    """The table on its layout grid; a merged cell's text appears once (top-left), its other grid
    positions stay empty."""
    seen: list[Any] = []  # the cells' w:tc elements; held so that lxml keeps returning the same proxies
    seen_ids: set[int] = set()
    rows: list[list[str]] = []
    for row in table.rows:
        cells = [""] * row.grid_cols_before
        for cell in row.cells:
            tc = cell._tc  # private: a vertical merge repeats the top cell's element, nothing public says so
            if id(tc) in seen_ids:
                cells.append("")
                continue
            seen.append(tc)
            seen_ids.add(id(tc))
            cells.append(_cell_text(cell))
        rows.append(cells)
    return rows


# --------------------------------------------------------------------------------------- PowerPoint


@register(".pptx")
def read_pptx(path: Path) -> ReadResult:
    """One slide block per slide (text frames top-to-bottom then left-to-right, then the speaker notes)
    and one table block per table on it."""
    import pptx
    from pptx.exc import PackageNotFoundError
    from pptx.shapes.picture import Picture

    check_package(path)
    result = ReadResult()
    try:
        prs = pptx.Presentation(str(path))
        result.title = (prs.core_properties.title or "").strip()
        silent: list[int] = []
        for number, slide in enumerate(prs.slides, start=1):
            blocks = _slide_blocks(slide, number)
            if not blocks and any(isinstance(s, Picture) for s in slide.shapes):
                silent.append(number)
            result.blocks.extend(blocks)
    except (PackageNotFoundError, *PACKAGE_ERRORS) as exc:
        raise corrupt(path, exc) from exc
    if silent:
        result.warnings.append(f"slide(s) {', '.join(map(str, silent))}: pictures only, no text (images on slides "
                               "are not OCR'd; export the deck to PDF to OCR it)")
    return result


def _reading_order(shapes: Iterable[Any]) -> Iterator[Any]:
    """Shapes top-to-bottom, then left-to-right; a group's members in their own reading order."""
    for shape in sorted(shapes, key=lambda s: (s.top or 0, s.left or 0)):
        if hasattr(shape, "shapes"):  # a group shape
            yield from _reading_order(shape.shapes)
        else:
            yield shape


def _slide_blocks(slide: Any, number: int) -> list[Block]:
    title_shape = slide.shapes.title
    title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
    section = (title,) if title else ()
    texts = [title] if title else []
    tables: list[Block] = []
    for shape in _reading_order(slide.shapes):
        if title_shape is not None and shape.shape_id == title_shape.shape_id:
            continue
        if shape.has_text_frame:
            text = shape.text_frame.text.strip()
            if text:
                texts.append(text)
        elif getattr(shape, "has_table", False):
            text = markdown_table(_pptx_rows(shape.table))
            if text:
                tables.append(Block("table", text, section, page=number, caption=title))
        elif getattr(shape, "has_chart", False) and shape.chart.has_title:
            text = shape.chart.chart_title.text_frame.text.strip()
            if text:
                texts.append(f"Chart: {text}")
    if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
        notes = slide.notes_slide.notes_text_frame.text.strip()
        if notes:
            texts.append(f"Notes: {notes}")
    if tables and texts == [title]:
        return tables  # a title over a table: the title is the table's caption already
    blocks = [Block("slide", "\n\n".join(texts), section, page=number)] if texts else []
    return blocks + tables


def _pptx_rows(table: Any) -> list[list[str]]:
    """Rows of a slide table; cells covered by a merge stay empty so the merged text appears once."""
    return [["" if cell.is_spanned else " ".join(cell.text.split()) for cell in row.cells] for row in table.rows]
