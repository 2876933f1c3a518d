"""PDF → blocks in reading order, with page numbers, section paths and tables (docs/formats.md).

Two libraries, each for what it does best (the comparison is benchmarks/bench_readers_pdf.py):

- pypdfium2 (PDFium) opens the file — so encrypted and damaged files are told apart by its error codes —,
  reads the outline (bookmarks) that gives section paths, and renders pages without a text layer for OCR.
- pdfplumber (on pdfminer.six) groups characters into lines and paragraphs with their font size and
  weight, and finds ruled tables with their cells. PDFium's own text follows the content stream, which
  on a two-column page interleaves the columns; here paragraphs are put in reading order by a recursive
  XY cut (columns are read one after the other, bands spanning the page in between).

Sections come from the outline where the PDF has one, else from font cues (lines in larger or bold type
are headings; their sizes give the levels). Running headers and page numbers in the margins are dropped.
A page without a text layer is OCR'd (Tesseract) or reported in a warning naming what to install.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainrag.data.blocks import Block, ReadResult, markdown_table
from domainrag.data.readers import images
from domainrag.data.readers.pdf_layout import MARGIN, Box, is_margin_noise, paragraph, reading_order, tables, walk
from domainrag.data.readers.registry import register, report_page
from domainrag.errors import DatasetError

OCR_DPI = 300
MAX_OCR_PIXELS = 40_000_000  # caps the render of a huge page (posters, A0 drawings)
_NOT_HEADING = re.compile(r"^(table|tab\.|figure|fig\.)\s*[0-9ivx]+\b", re.I)
_PDFIUM_ERRORS = {  # FPDF_ERR_* codes → (problem, hint)
    2: ("file cannot be opened", "check that it exists and is readable"),
    3: ("not a valid PDF (damaged, truncated or another format)",
        "re-export or re-download it (`qpdf --check FILE` shows what is damaged)"),
    4: ("encrypted PDF: it cannot be read without its password",
        "save a copy without the password (e.g. `qpdf --decrypt --password=PW in.pdf out.pdf`) and ingest that"),
    5: ("PDF protected by an unsupported security handler", "save a copy without protection and ingest that"),
}


@dataclass(frozen=True)
class _Entry:
    """An outline entry: its heading path and where it points (page index, top-down y or None)."""

    path: tuple[str, ...]
    page: int
    top: float | None


def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def _open(path: Path) -> Any:
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        problem, hint = _PDFIUM_ERRORS.get(exc.err_code or 0, (f"PDF cannot be read ({exc})", "re-export it as PDF"))
        raise DatasetError(str(path), problem, hint=hint) from exc


def _outline(pdf: Any) -> dict[int, list[_Entry]]:
    """Outline entries by page, each with its full heading path (outer headings first)."""
    stack: list[str] = []
    by_page: dict[int, list[_Entry]] = {}
    for item in pdf.get_toc():
        title = " ".join((item.get_title() or "").split())
        del stack[item.level:]
        stack += [""] * (item.level - len(stack)) + [title]
        dest = item.get_dest()
        page = dest.get_index() if dest is not None else None
        if not title or page is None or not 0 <= page < len(pdf):
            continue
        _mode, view = dest.get_view()
        height = pdf[page].get_height()
        top = height - view[1] if len(view) >= 2 and view[1] else None
        by_page.setdefault(page, []).append(_Entry(tuple(s for s in stack if s), page, top))
    return by_page


def _needs_ocr(boxes: list[Box], picture: float, page_area: float) -> tuple[bool, bool]:
    """(no usable text layer, mostly a picture): garbled ``(cid:N)`` text counts as none."""
    text = "".join(b.text for b in boxes if b.rows is None) + "".join(c for b in boxes if b.rows for r in b.rows
                                                                    for c in r)
    usable = len(re.sub(r"\(cid:\d+\)|\s", "", text))
    return usable < 10, picture >= 0.5 * page_area and usable < 200


def _ocr_page(pdf: Any, index: int, path: Path) -> str:
    page = pdf[index]
    scale = min(OCR_DPI / 72, (MAX_OCR_PIXELS / max(page.get_width() * page.get_height(), 1)) ** 0.5)
    image = page.render(scale=scale, grayscale=True).to_pil()
    return images.ocr_image(image, f"{path} (page {index + 1})")


def _pages(path: Path, pdf: Any, result: ReadResult, heights: list[float]) -> list[list[Box] | str]:
    """Each page's boxes in reading order, or its OCR'd text (``heights`` gets each page's height);
    warnings for pages read in part."""
    import pdfplumber

    pages: list[list[Box] | str] = []
    blind: list[int] = []
    # Paragraphs are grouped by pdfminer (also inside form XObjects); their order is ours (reading_order).
    try:
        plumber = pdfplumber.open(path, laparams={"boxes_flow": None, "all_texts": True})
        plumbed = plumber.pages
    except Exception as exc:  # pdfminer cannot parse what PDFium opened: keep PDFium's text
        result.warnings.append(f"layout analysis failed ({type(exc).__name__}: {exc}); text taken in content order")
        for index in range(len(pdf)):
            pages.append(_content_order(pdf, index))
            heights.append(pdf[index].get_height())
        return pages
    with plumber:
        for index, page in enumerate(plumbed):
            try:
                found, rules, picture = walk(page.layout)
                paras = [paragraph(o, page.height) for o in found]
                paras = [p for p in paras if p.text and not is_margin_noise(p, page.height)]
                # A ruled table needs rules both ways; other pages skip pdfplumber's per-character objects.
                boxes = reading_order(paras + (tables(page, paras) if min(rules) >= 2 else []))
                empty, pictured = _needs_ocr(boxes, picture, page.width * page.height)
                empty = empty and (picture > 0 or sum(rules) > 0)  # a page with nothing drawn is blank, not lost
            except Exception as exc:  # pdfminer raises many types on a broken page; keep the rest
                result.warnings.append(f"page {index + 1}: layout analysis failed ({type(exc).__name__}: {exc}); "
                                       "text taken in content order")
                boxes = _content_order(pdf, index) if index < len(pdf) else []
                empty, pictured = not boxes, False
            finally:
                page.close()
            if (empty or pictured) and images.tesseract() is not None and index < len(pdf):
                try:
                    boxes = _ocr_page(pdf, index, path) or boxes
                    if not boxes:
                        result.warnings.append(f"page {index + 1}: no text layer, and OCR recognised no text")
                except DatasetError as exc:
                    result.warnings.append(f"page {index + 1}: {exc.message}")
            elif empty:
                blind.append(index + 1)
            pages.append(boxes)
            heights.append(float(page.height))
            report_page(index + 1, len(plumbed))
    for first, last in _ranges(blind):
        where = f"page {first}" if first == last else f"pages {first}-{last}"
        result.warnings.append(f"{where}: no text layer, and no OCR engine is installed to read it: "
                               f"{images.OCR_INSTALL}")
    return pages


def _content_order(pdf: Any, index: int) -> list[Box]:
    """PDFium's text of a page in content-stream order, as one paragraph (none if the page has no text)."""
    text = pdf[index].get_textpage().get_text_range().replace("\r\n", "\n").strip()
    return [Box(0, 0, 0, 0, text, lines=1, chars=len(text))] if text else []


def _ranges(numbers: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


def _drop_running_heads(pages: list[list[Box] | str], heights: list[float]) -> None:
    """Remove lines that repeat in the top or bottom margin of many pages (running headers/footers)."""
    def key(box: Box, height: float) -> str | None:
        if box.rows is None and (box.bottom < height * MARGIN or box.top > height * (1 - MARGIN)):
            return re.sub(r"\d+", "#", _norm(box.text))
        return None

    seen = Counter(k for boxes, h in zip(pages, heights, strict=True) if isinstance(boxes, list)
                   for k in {key(b, h) for b in boxes} if k)
    repeated = {k for k, n in seen.items() if n >= 3}
    for i, boxes in enumerate(pages):
        if isinstance(boxes, list) and repeated:
            pages[i] = [b for b in boxes if key(b, heights[i]) not in repeated]


def _font_headings(pages: list[list[Box] | str]) -> tuple[dict[int, int], Box | None]:
    """Headings from font cues: id(box) → level (0 outermost), and the title box (the one line set in
    the largest type, once, on the first page), which is not a section."""
    paras = [b for boxes in pages if isinstance(boxes, list) for b in boxes if b.rows is None and b.chars]
    if not paras:
        return {}, None
    sizes = Counter()
    for b in paras:
        sizes[b.size] += b.chars
    body = sizes.most_common(1)[0][0]
    candidates = [b for b in paras if b.lines <= 2 and len(b.text.split()) <= 20 and re.search(r"[^\W\d_]", b.text)
                  and not _NOT_HEADING.match(b.text)
                  and (b.size >= body + max(1.0, 0.12 * body) or (b.bold and b.lines == 1 and b.size >= body - 0.5))]
    larger = sorted({b.size for b in candidates if b.size > body + 0.5}, reverse=True)
    title = None
    first = pages[0] if pages and isinstance(pages[0], list) else []
    if larger and sum(b.size == larger[0] for b in candidates) == 1:
        top = next(b for b in candidates if b.size == larger[0])
        if any(top is b for b in first) and top.size >= 1.2 * body:
            title, larger = top, larger[1:]
    levels = {s: i for i, s in enumerate(larger)}
    return {id(b): levels.get(b.size, len(larger)) for b in candidates if b is not title}, title


def _outline_starts(boxes: list[Box], entries: list[_Entry]) -> list[tuple[int, tuple[str, ...]]]:
    """(box index, heading path) where each outline entry of a page takes effect: at the paragraph that
    starts with its title, else the first one below its target point, else the top of the page."""
    starts, at = [], 0
    for entry in entries:
        want = _norm(entry.path[-1])
        hit = next((i for i in range(at, len(boxes)) if boxes[i].rows is None and _titled(boxes[i].text, want)), None)
        if hit is None and entry.top is not None:
            hit = next((i for i in range(at, len(boxes)) if boxes[i].top >= entry.top - 2), len(boxes))
        at = hit if hit is not None else at
        starts.append((at, entry.path))
    return starts


def _titled(text: str, want: str) -> bool:
    """Whether a paragraph starts with an outline title (numbering like "2.1" or "Chapter 2:" may precede it)."""
    have = _norm(text)
    return want in have[: len(want) + 12] or (len(have) >= 4 and want.startswith(have))


def _title(pdf: Any, title_box: Box | None) -> str:
    meta = " ".join((pdf.get_metadata_value("Title") or "").split())
    if meta and not re.search(r"[\\/]|\.(docx?|wpd|tex|dvi|pdf|indd|rtf)\b|^microsoft\b|^untitled", meta, re.I):
        return meta
    return title_box.text if title_box is not None else ""


@register(".pdf")
def read(path: Path) -> ReadResult:
    """Blocks of a PDF in reading order: text per section and page, tables as Markdown with captions."""
    result = ReadResult()
    pdf = _open(path)
    try:
        outline = _outline(pdf)
        heights: list[float] = []
        pages = _pages(path, pdf, result, heights)
        _drop_running_heads(pages, heights)
        headings, title_box = _font_headings(pages)
        result.title = _title(pdf, title_box)
    finally:
        pdf.close()
    section: tuple[str, ...] = ()
    for number, boxes in enumerate(pages, start=1):
        if isinstance(boxes, str):  # OCR'd: the page's outline entries apply from its top
            section = next((e.path for e in reversed(outline.get(number - 1, []))), section)
            result.blocks.append(Block("text", boxes, section, number))
            continue
        starts = _outline_starts(boxes, outline.get(number - 1, [])) if outline else []
        run: list[str] = []
        for i, box in enumerate(boxes):
            new = section
            for at, path_ in starts:
                new = path_ if at == i else new
            if not outline and id(box) in headings:
                level = headings[id(box)]
                new = (*section[:level], box.text)
            if new != section or box.rows is not None:
                _flush(result, run, section, number)
            section = new
            if box.rows is not None:
                result.blocks.append(Block("table", markdown_table(box.rows), section, number, box.caption))
            else:
                run.append(box.text)
        _flush(result, run, section, number)
        for at, path_ in starts:  # entries that point below the last paragraph
            section = path_ if at >= len(boxes) else section
    # pdfminer writes "(cid:N)" for glyphs without a Unicode mapping (mostly bullets): noise, not text.
    result.blocks = [dataclasses.replace(b, text=_drop_cids(b.text), caption=_drop_cids(b.caption))
                     for b in result.blocks]
    return result


_CID_RUN = re.compile(r"( ?)\(cid:\d+\)( ?)")


def _drop_cids(text: str) -> str:
    """``text`` without pdfminer's "(cid:N)" placeholders; one between two words (a "•" separator,
    "Annual Report (cid:127) Appendix") leaves a space, so the words stay apart."""
    return _CID_RUN.sub(lambda m: " " if m.group(1) and m.group(2) else "", text)


def _flush(result: ReadResult, run: list[str], section: tuple[str, ...], page: int) -> None:
    # A run that is only its section's heading (a heading right above a table) is not a block: the heading
    # is already in the section path of what follows, and alone it made a chunk that said nothing.
    if run and not (len(run) == 1 and section and run[0].strip() == section[-1].strip()):
        result.blocks.append(Block("text", "\n\n".join(run), section, page))
    run.clear()
