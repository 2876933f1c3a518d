"""Real files for the PDF and image readers, rendered once per session: PDFs by ReportLab (a report with a
title, numbered headings in larger bold type, a captioned ruled table, a two-column page whose content
stream interleaves the columns line by line, page-number footers; with and without an outline), an
encrypted PDF, a damaged one, and scans (text drawn into a PNG by Pillow, also placed in a PDF page)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

TITLE = "Pump Maintenance Report"
INTRO = ["The pumps in hall seven were inspected in March.", "Every seal was checked against the maintenance",
         "schedule and the findings are listed below."]
SCOPE = ["This report covers centrifugal pumps only.", "Piston pumps are described in a separate manual."]
CAPTION = "Table 1: Pressure limits per pump model"
TABLE = [["Model", "Max pressure (bar)", "Flow (l/min)"], ["P-100", "12", "40"], ["P-200", "16", "55"],
         ["P-300", "20", "72"]]
AFTER_TABLE = ["The limits above apply at twenty degrees Celsius."]
# Two columns, two paragraphs each; reading order is left column top to bottom, then the right one.
LEFT = [["Alpha: the left column starts here and", "talks about corrosion found on impellers", "in the older pumps."],
        ["Bravo: a second left paragraph notes", "that bearings were replaced in April."]]
RIGHT = [["Charlie: the right column begins with", "vibration readings taken at full load", "on every pump."],
         ["Delta: the last paragraph recommends", "a quarterly check of all couplings."]]
CONCLUSION = ["Overall the pumps are in good condition and", "no unit needs to be taken out of service."]
SECTIONS = ["1 Introduction", "1.1 Scope", "2 Field findings", "3 Conclusions"]
SCAN_WORDS = ["Invoice", "Hydraulic", "Pumps", "amount", "euros"]


def _lines(c, x: float, y: float, lines: list[str], font: str = "Helvetica", size: float = 10) -> float:
    c.setFont(font, size)
    for line in lines:
        c.drawString(x, y, line)
        y -= size * 1.25
    return y - size * 1.4  # paragraph gap


def _heading(c, y: float, text: str, size: float, outline: bool, level: int) -> float:
    if outline:
        key = text.replace(" ", "_")
        c.bookmarkHorizontal(key, 0, y + size)
        c.addOutlineEntry(text, key, level=level)
    c.setFont("Helvetica-Bold", size)
    c.drawString(72, y, text)
    return y - size * 1.8


def render_report(path: Path, outline: bool) -> Path:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import letter
    from reportlab.pdfgen import canvas
    from reportlab.platypus import Table, TableStyle

    c = canvas.Canvas(str(path), pagesize=letter)
    c.setFont("Helvetica-Bold", 22)
    c.drawString(72, 720, TITLE)
    y = _heading(c, 680, SECTIONS[0], 16, outline, 0)
    y = _lines(c, 72, y, INTRO)
    y = _heading(c, y, SECTIONS[1], 13, outline, 1)
    y = _lines(c, 72, y, SCOPE)
    y = _lines(c, 72, y, [CAPTION])
    table = Table(TABLE)
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black), ("FONT", (0, 0), (-1, -1), "Helvetica")]))
    _, height = table.wrapOn(c, 400, 200)
    table.drawOn(c, 72, y - height + 10)
    _lines(c, 72, y - height - 14, AFTER_TABLE)
    _footer(c, 1)
    c.showPage()

    y = _heading(c, 720, SECTIONS[2], 16, outline, 0)
    c.setFont("Helvetica", 10)
    for left, right in zip(LEFT, RIGHT, strict=True):  # row by row: the stream order is not the reading order
        for i in range(max(len(left), len(right))):
            if i < len(left):
                c.drawString(72, y - i * 12.5, left[i])
            if i < len(right):
                c.drawString(320, y - i * 12.5, right[i])
        y -= max(len(left), len(right)) * 12.5 + 14
    _footer(c, 2)
    c.showPage()

    y = _heading(c, 720, SECTIONS[3], 16, outline, 0)
    _lines(c, 72, y, CONCLUSION)
    _footer(c, 3)
    c.showPage()
    c.save()
    return path


def _footer(c, number: int) -> None:
    c.setFont("Helvetica", 9)
    c.drawCentredString(306, 40, str(number))


def render_scan(path: Path, lines: list[str], fmt: str | None = None) -> Path:
    """Black text on white paper, drawn by Pillow (no text layer anywhere)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=34)
    image = Image.new("RGB", (1000, 70 + 60 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((40, 35 + 60 * i), line, fill="black", font=font)
    image.save(path, format=fmt)
    return path


SCAN_LINES = ["Invoice from Hydraulic Pumps Ltd", "Total amount due: 420 euros"]


@pytest.fixture(scope="session")
def sample() -> SimpleNamespace:
    """What the rendered files say (tests import nothing from here: pytest runs with --import-mode=importlib)."""
    return SimpleNamespace(**{k: v for k, v in globals().items() if k.isupper()}, render_scan=render_scan)


@pytest.fixture(scope="session")
def pdf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pdfs")


@pytest.fixture(scope="session")
def outlined_pdf(pdf_dir: Path) -> Path:
    return render_report(pdf_dir / "outlined.pdf", outline=True)


@pytest.fixture(scope="session")
def plain_pdf(pdf_dir: Path) -> Path:
    return render_report(pdf_dir / "plain.pdf", outline=False)


@pytest.fixture(scope="session")
def encrypted_pdf(pdf_dir: Path) -> Path:
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(pdf_dir / "locked.pdf"), encrypt="pw")
    c.drawString(72, 720, "A secret text.")
    c.showPage()
    c.save()
    return pdf_dir / "locked.pdf"


@pytest.fixture(scope="session")
def scan_png(pdf_dir: Path) -> Path:
    return render_scan(pdf_dir / "scan.png", SCAN_LINES)


@pytest.fixture(scope="session")
def scanned_pdf(pdf_dir: Path, scan_png: Path) -> Path:
    """Page 1 has a text layer, page 2 is only an image of text."""
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(pdf_dir / "scanned.pdf"))
    c.setFont("Helvetica", 11)
    c.drawString(72, 720, "Cover page with a real text layer.")
    c.showPage()
    c.drawImage(str(scan_png), 36, 500, width=500, height=500 * 190 / 1000)
    c.showPage()
    c.save()
    return pdf_dir / "scanned.pdf"
