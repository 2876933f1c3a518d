"""Page layout for the PDF reader: pdfminer text boxes as paragraphs, reading order by a recursive XY cut
(columns one after the other, bands spanning the page in between), ruled tables with their captions."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

MIN_COLUMN_GAP = 5.0  # points of white space that separate two columns
MARGIN = 0.08  # top/bottom share of a page where running headers and page numbers live
_PAGE_NUMBER = re.compile(r"^\W*(page\s*)?(\d+|[ivx]{1,5})(\s*(of|/)\s*\d+)?\W*$", re.I)
_CAPTION = re.compile(r"^(table|tab\.)\s*[0-9ivx]+\b", re.I)
_BOLD = re.compile(r"bold|black|heavy|semibold|demi|cmbx", re.I)


@dataclass
class Box:
    """A paragraph (pdfminer text box) or a table, in top-down page coordinates."""

    x0: float
    top: float
    x1: float
    bottom: float
    text: str = ""
    size: float = 0.0  # dominant font size
    bold: bool = False
    lines: int = 0
    chars: int = 0
    rows: list[list[str]] | None = None  # a table's cells
    caption: str = ""


def paragraph(box: Any, height: float) -> Box:
    """A pdfminer text box as a paragraph: lines joined, font size and weight of most of its characters."""
    from pdfminer.layout import LTChar

    lines, sizes, bold = [], Counter(), 0
    for line in box:
        text = line.get_text().strip()
        if text:
            lines.append(text)
        for ch in line:
            if isinstance(ch, LTChar) and not ch.get_text().isspace():
                sizes[round(ch.size * 2) / 2] += 1
                bold += bool(_BOLD.search(ch.fontname))
    text = ""
    for line in lines:  # a hyphen at a line end joins the words without a space
        text += line if not text or (text.endswith("-") and text[-2:-1].isalpha()) else " " + line
    chars = sum(sizes.values())
    return Box(box.x0, height - box.y1, box.x1, height - box.y0, text, sizes.most_common(1)[0][0] if sizes else 0.0,
                chars > 0 and bold >= 0.9 * chars, len(lines), chars)


def walk(layout: Any) -> tuple[list[Any], tuple[int, int], float]:
    """pdfminer text boxes of a page, those inside figures (form XObjects) included; its counts of drawn
    horizontal and vertical rules (a rectangle gives both); and the area its images cover."""
    from pdfminer.layout import LTCurve, LTFigure, LTImage, LTTextBox

    boxes, across, down, area = [], 0, 0, 0.0
    for obj in layout:
        if isinstance(obj, LTTextBox):
            boxes.append(obj)
        elif isinstance(obj, LTCurve):
            across += obj.height < 2 or obj.width >= 2
            down += obj.width < 2 or obj.height >= 2
        elif isinstance(obj, LTImage):
            area += obj.width * obj.height
        elif isinstance(obj, LTFigure):
            inner, (more_across, more_down), covered = walk(obj)
            boxes += inner
            across, down, area = across + more_across, down + more_down, area + covered
    return boxes, (across, down), area


def _gaps(boxes: list[Box], vertical: bool) -> list[tuple[float, float]]:
    """White-space intervals between the boxes along x (``vertical`` cuts) or y."""
    spans = sorted((b.x0, b.x1) if vertical else (b.top, b.bottom) for b in boxes)
    gaps, end = [], spans[0][1]
    for start, stop in spans[1:]:
        if start > end:
            gaps.append((end, start))
        end = max(end, stop)
    return [g for g in gaps if not vertical or g[1] - g[0] >= MIN_COLUMN_GAP]


def reading_order(boxes: list[Box]) -> list[Box]:
    """Recursive XY cut: split at the widest column gap and read left then right; where no column gap
    runs through everything, split into horizontal bands, keeping neighbouring bands whose column gaps
    line up together (a two-column stretch whose paragraphs happen to end level is still two columns)."""
    if len(boxes) <= 1:
        return boxes
    columns = _gaps(boxes, vertical=True)
    if columns:
        lo, _ = max(columns, key=lambda g: g[1] - g[0])
        left = [b for b in boxes if b.x1 <= lo]
        return reading_order(left) + reading_order([b for b in boxes if b.x1 > lo])
    bands: list[list[Box]] = [[]]
    cuts = iter(_gaps(boxes, vertical=False))
    cut = next(cuts, None)
    for box in sorted(boxes, key=lambda b: b.top):
        if cut is not None and box.top >= cut[1]:
            bands.append([])
            cut = next(cuts, None)
        bands[-1].append(box)
    if len(bands) == 1:  # overlapping boxes: no cut exists
        return sorted(boxes, key=lambda b: (round(b.top), b.x0))
    groups: list[tuple[list[Box], list[tuple[float, float]]]] = []
    for band in bands:
        gaps = _gaps(band, vertical=True) if len(band) > 1 else []
        shared = [(max(a, c), min(b, d)) for a, b in (groups[-1][1] if groups else []) for c, d in gaps
                  if min(b, d) - max(a, c) >= MIN_COLUMN_GAP]
        if shared:
            groups[-1] = (groups[-1][0] + band, shared)
        else:
            groups.append((band, gaps))
    return [b for group, _ in groups for b in reading_order(group)]


def tables(page: Any, paragraphs: list[Box]) -> list[Box]:
    """Ruled tables (pdfplumber) with at least two rows and columns; the paragraphs inside a table are
    removed from ``paragraphs``, and a "Table N…" paragraph right above or below becomes its caption."""
    found = []
    for table in page.find_tables():
        rows = [[" ".join((c or "").split()) for c in row] for row in table.extract()]
        rows = [r for r in rows if any(r)]
        if sum(sum(bool(c) for c in r) >= 2 for r in rows) < 2:  # a framed paragraph or a chart, not a table
            continue
        x0, top, x1, bottom = table.bbox
        box = Box(x0, top, x1, bottom, rows=rows)
        paragraphs[:] = [p for p in paragraphs if not (x0 - 1 <= (p.x0 + p.x1) / 2 <= x1 + 1
                                                      and top - 1 <= (p.top + p.bottom) / 2 <= bottom + 1)]
        near = [p for p in paragraphs if _CAPTION.match(p.text) and p.x0 < x1 and p.x1 > x0
                and (0 <= top - p.bottom <= 30 or 0 <= p.top - bottom <= 30)]
        if near:
            caption = min(near, key=lambda p: (p.top > top, abs(p.bottom - top)))  # above first, then nearest
            box.caption = caption.text
            paragraphs.remove(caption)
        found.append(box)
    return found


def is_margin_noise(box: Box, height: float) -> bool:
    return (box.bottom < height * MARGIN or box.top > height * (1 - MARGIN)) and bool(_PAGE_NUMBER.match(box.text))
