"""Why ``data/readers/pdf.py`` reads PDFs the way it does: text extractors compared on the same files.

Candidates, each given the same files:

* ``pypdfium2``: ``PdfTextPage.get_text_range()`` (PDFium, C++), text in content-stream order;
* ``pdfplumber``: ``Page.extract_text()`` (pdfminer.six characters, lines sorted top to bottom);
* ``pdfminer``: ``pdfminer.high_level.extract_text`` with its default layout analysis (``boxes_flow=0.5``);
* ``domainrag``: :func:`domainrag.data.readers.pdf.read` (pdfplumber's paragraphs and tables, an XY cut
  for reading order, PDFium for the outline and for opening the file).

Measured:

* pages/s on a rendered 40-page two-column report and on the PDFs Debian ships with shared-mime-info and
  libtasn1-doc (when installed), best of two runs, one process;
* reading order on a two-column page, drawn twice: with the columns interleaved line by line in the
  content stream (as many generators write them) and column after column. Scores: paragraphs that come out
  whole, and the share of paragraph pairs in the right order (1.0 = left column, then right column);
* table cells: a ruled and an unruled 5×4 table; share of cells found exactly (pdfplumber's ``lines``
  strategy, its ``text`` strategy, and the reader; PDFium has no table API);
* OCR: seconds per scanned A4 page (render at 300 dpi by PDFium + Debian's tesseract) and the share of its
  words recognised, if tesseract is installed.

Written as JSON with the command, the CPU flags (``lscpu``) and versions.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_readers_pdf.py --out benchmarks/results/readers_pdf.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared benchmark helpers
from _machine import lscpu, version

REAL_PDFS = [Path("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf"),
             Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf")]
WORDS = ["pump", "valve", "seal", "bearing", "impeller", "flow", "pressure", "filter", "coupling", "motor", "housing",
         "gasket", "shaft", "rotor", "inlet", "outlet", "torque", "sensor", "reading", "alarm", "service", "interval",
         "lubricant", "corrosion", "vibration"]
TABLE = [["Model", "Pressure", "Flow", "Power"]] + [[f"P-{i}00", str(10 + i), str(30 + 5 * i), f"{i}.5"]
                                                     for i in range(1, 5)]






def _paragraph(tag: str, seed: int, n: int = 26) -> str:
    return f"{tag}: " + " ".join(WORDS[(seed * 7 + i * 3) % len(WORDS)] for i in range(n)) + "."


def _two_columns(c, paragraphs: tuple[list[str], list[str]], interleaved: bool, y0: float = 700) -> None:
    """Draw left and right columns of wrapped paragraphs; the stream order is row by row or column by column."""
    from reportlab.lib.utils import simpleSplit

    cols = []
    for paras in paragraphs:
        rows, y = [], y0
        for para in paras:
            for line in simpleSplit(para, "Helvetica", 10, 220):
                rows.append((y, line))
                y -= 12.5
            y -= 14
        cols.append(rows)
    c.setFont("Helvetica", 10)
    if interleaved:
        for i in range(max(map(len, cols))):
            for x, rows in zip((72, 320), cols, strict=True):
                if i < len(rows):
                    c.drawString(x, rows[i][0], rows[i][1])
    else:
        for x, rows in zip((72, 320), cols, strict=True):
            for y, line in rows:
                c.drawString(x, y, line)


def _table(c, y: float, ruled: bool) -> None:
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    style = [("FONT", (0, 0), (-1, -1), "Helvetica")] + ([("GRID", (0, 0), (-1, -1), 0.5, colors.black)]
                                                         if ruled else [])
    table = Table(TABLE, colWidths=90)
    table.setStyle(TableStyle(style))
    _, height = table.wrapOn(c, 400, 300)
    table.drawOn(c, 72, y - height)


def _render(folder: Path) -> dict[str, Path]:
    from reportlab.pdfgen import canvas

    files = {}
    for name, interleaved in (("two_column_interleaved", True), ("two_column_by_column", False)):
        c = canvas.Canvas(str(folder / f"{name}.pdf"))
        c.setFont("Helvetica-Bold", 16)
        c.drawString(72, 740, "Field findings")
        _two_columns(c, ORDER, interleaved)
        c.showPage()
        c.save()
        files[name] = folder / f"{name}.pdf"
    for name, ruled in (("table_ruled", True), ("table_unruled", False)):
        c = canvas.Canvas(str(folder / f"{name}.pdf"))
        c.setFont("Helvetica", 10)
        c.drawString(72, 720, "Table 1: Pump models")
        _table(c, 700, ruled)
        c.showPage()
        c.save()
        files[name] = folder / f"{name}.pdf"
    c = canvas.Canvas(str(folder / "report40.pdf"))
    for page in range(40):
        c.setFont("Helvetica-Bold", 16)
        c.drawString(72, 750, f"{page + 1} Section about {WORDS[page % len(WORDS)]}s")
        paras = ([_paragraph(f"L{page}.{i}", page * 10 + i) for i in range(3)],
                 [_paragraph(f"R{page}.{i}", page * 10 + 5 + i) for i in range(3)])
        _two_columns(c, paras, interleaved=page % 2 == 0, y0=720)
        if page % 2:
            _table(c, 300, ruled=True)
        c.setFont("Helvetica", 9)
        c.drawCentredString(300, 40, str(page + 1))
        c.showPage()
    c.save()
    files["report40"] = folder / "report40.pdf"
    return files


ORDER = ([_paragraph(f"Left{i}", i) for i in range(3)], [_paragraph(f"Right{i}", 10 + i) for i in range(3)])


def _pypdfium2(path: Path) -> list[str]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(path)
    try:
        return [pdf[i].get_textpage().get_text_range() for i in range(len(pdf))]
    finally:
        pdf.close()


def _pdfplumber(path: Path) -> list[str]:
    import pdfplumber

    with pdfplumber.open(path) as pdf:
        return [p.extract_text() or "" for p in pdf.pages]


def _pdfminer(path: Path) -> list[str]:
    from pdfminer.high_level import extract_text

    return extract_text(str(path)).split("\x0c")


def _domainrag(path: Path) -> list[str]:
    from domainrag.data.readers.pdf import read

    result = read(path)
    pages: dict[int, list[str]] = {}
    for block in result.blocks:
        pages.setdefault(block.page or 0, []).append(block.text)
    return ["\n\n".join(v) for _, v in sorted(pages.items())]


CANDIDATES: dict[str, Callable[[Path], list[str]]] = {
    "pypdfium2": _pypdfium2, "pdfplumber": _pdfplumber, "pdfminer": _pdfminer, "domainrag": _domainrag,
}


def _flat(text: str) -> str:
    return " ".join(text.split())


def _order_scores(text: str) -> dict[str, float]:
    flat = _flat(text)
    expected = ORDER[0] + ORDER[1]
    whole = sum(p in flat for p in expected)
    pos = [flat.find(p.split(":")[0] + ":") for p in expected]
    pairs = [(i, j) for i in range(len(pos)) for j in range(i + 1, len(pos))]
    right = sum(pos[i] >= 0 and pos[j] >= 0 and pos[i] < pos[j] for i, j in pairs)
    return {"paragraphs_whole": whole / len(expected), "pairs_in_order": round(right / len(pairs), 3)}


def _speed(fn: Callable[[Path], list[str]], path: Path, pages: int) -> float:
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        fn(path)
        best = min(best, time.perf_counter() - start)
    return round(pages / best, 1)


def _cells(found: list[list[str | None]]) -> float:
    want = {(r, c): v for r, row in enumerate(TABLE) for c, v in enumerate(row)}
    got = {(r, c): " ".join((v or "").split()) for r, row in enumerate(found) for c, v in enumerate(row)}
    return round(sum(got.get(k) == v for k, v in want.items()) / len(want), 3)


def _tables(path: Path) -> dict[str, float]:
    import pdfplumber

    from domainrag.data.readers.pdf import read

    out = {}
    with pdfplumber.open(path) as pdf:
        page = pdf.pages[0]
        for strategy in ("lines", "text"):
            tables = page.extract_tables({"vertical_strategy": strategy, "horizontal_strategy": strategy})
            out[f"pdfplumber_{strategy}"] = max((_cells(t) for t in tables), default=0.0)
    blocks = [b for b in read(path).blocks if b.kind == "table"]
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in blocks[0].text.splitlines()
            if not line.startswith("|---")] if blocks else []
    out["domainrag"] = _cells(rows)
    out["pypdfium2"] = "no table API"
    return out


def _ocr_seconds(folder: Path) -> dict[str, object]:
    if shutil.which("tesseract") is None:
        return {"available": False, "reason": "tesseract not installed (apt-get install tesseract-ocr)"}
    from PIL import Image, ImageDraw, ImageFont
    from reportlab.pdfgen import canvas

    from domainrag.data.readers.pdf import read

    image = Image.new("L", (2480, 3508), "white")  # an A4 page at 300 dpi
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    for i in range(40):
        draw.text((200, 200 + 75 * i), _paragraph(f"Line{i}", i, 9), fill="black", font=font)
    image.save(folder / "scan.png")
    c = canvas.Canvas(str(folder / "scan.pdf"))
    c.drawImage(str(folder / "scan.png"), 0, 0, width=595, height=842)
    c.showPage()
    c.save()
    start = time.perf_counter()
    text = _flat(read(folder / "scan.pdf").blocks[0].text)
    seconds = time.perf_counter() - start
    want = [w for i in range(40) for w in _flat(_paragraph(f"Line{i}", i, 9)).lower().split()[1:]]
    got = set(text.lower().split())
    found = round(sum(w in got for w in want) / len(want), 3)
    version = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.splitlines()
    return {"available": True, "seconds_per_page": round(seconds, 2), "words_recognised": found,
            "tesseract": version[0] if version else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/readers_pdf.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = _render(folder)
        corpus = {"report40 (rendered, 2 columns, tables)": (files["report40"], 40)}
        for path in REAL_PDFS:
            if path.is_file():
                import pypdfium2 as pdfium

                corpus[f"{path.name} (Debian)"] = (path, len(pdfium.PdfDocument(path)))
        speed = {name: {label: _speed(fn, path, n) for label, (path, n) in corpus.items()}
                 for name, fn in CANDIDATES.items()}
        order = {name: {variant: _order_scores(fn(files[variant])[0])
                        for variant in ("two_column_interleaved", "two_column_by_column")}
                 for name, fn in CANDIDATES.items()}
        tables = {variant: _tables(files[variant]) for variant in ("table_ruled", "table_unruled")}
        ocr = _ocr_seconds(folder)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "lscpu": lscpu()},
        "versions": {n: version(n) for n in ("pypdfium2", "pdfplumber", "pdfminer.six", "reportlab", "pillow")},
        "pages_per_second": speed,
        "reading_order_two_column_page": order,
        "table_cells_exact": tables,
        "ocr": ocr,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
