"""Office readers' speed: pages (slides) or rows per second, the chosen reader next to an alternative.

Files are rendered by the libraries themselves (python-docx, python-pptx, openpyxl, csv) into a work
folder, then each approach reads every file ``--rounds`` times; the best round counts (the machine may be
shared). Approaches per format:

- docx: ``ours`` (python-docx, body order, heading styles, tables with merges and captions) vs ``raw-xml``
  (zipfile + lxml over ``word/document.xml``, the text of every ``w:p`` only: no styles, no table
  structure; the speed ceiling of any reader of the same XML).
- pptx: ``ours`` (python-pptx, reading order, tables, notes) vs ``raw-xml`` (every ``a:t`` of each
  slide part, in XML order, no notes).
- xlsx: ``ours`` (openpyxl read-only, cached values, Markdown tables) vs the bare library in its two
  modes, ``openpyxl-read-only`` (streamed rows) and ``openpyxl-normal`` (the whole workbook in memory),
  both only turning values into strings, vs ``pandas`` (``read_excel(sheet_name=None)``, openpyxl
  underneath).
- csv: ``ours`` (csv module, sniffed dialect) vs ``pandas`` (``read_csv``, C parser, all columns as text).

Each row also records how many letters and digits an approach kept, so a fast reader that drops
content (notes, table cells) shows it. Written as JSON with the command, ``lscpu`` and library versions.

    .venv/bin/python benchmarks/bench_readers_office.py --out benchmarks/results/readers_office.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared benchmark helpers
from _machine import lscpu, version

WORDS = ["pump", "seal", "valve", "flow", "pressure", "torque", "bolt", "motor", "housing", "impeller", "bearing",
         "shaft", "gasket", "inlet", "outlet", "litre", "hour", "maximum", "minimum", "check", "replace",
         "inspect", "clean", "mount", "wire", "fuse", "rated", "nominal"]


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_docx(path: Path, pages: int) -> dict[str, int]:
    """About ``pages`` pages: per page a heading, four 80-word paragraphs and every other page a 6x4 table."""
    import docx

    rng = random.Random(0)
    doc = docx.Document()
    doc.add_paragraph("Benchmark manual", style="Title")
    for page in range(pages):
        doc.add_heading(f"Section {page + 1}", level=1 + page % 2)
        for _ in range(4):
            doc.add_paragraph(_sentence(rng, 80))
        if page % 2:
            doc.add_paragraph(f"Table {page}: values", style="Caption")
            table = doc.add_table(rows=6, cols=4)
            for row in table.rows:
                for cell in row.cells:
                    cell.text = rng.choice(WORDS)
    doc.save(path)
    return {"pages": pages}


def make_pptx(path: Path, slides: int) -> dict[str, int]:
    import pptx
    from pptx.util import Inches

    rng = random.Random(0)
    prs = pptx.Presentation()
    for i in range(slides):
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        slide.shapes.title.text = f"Slide {i + 1}"
        slide.placeholders[1].text = "\n".join(_sentence(rng, 10) for _ in range(5))
        slide.notes_slide.notes_text_frame.text = _sentence(rng, 30)
        if i % 4 == 0:
            table = slide.shapes.add_table(5, 3, Inches(1), Inches(5), Inches(6), Inches(1.5)).table
            for r in range(5):
                for c in range(3):
                    table.cell(r, c).text = rng.choice(WORDS)
    prs.save(path)
    return {"pages": slides}


def make_xlsx(path: Path, rows: int) -> dict[str, int]:
    import openpyxl

    rng = random.Random(0)
    wb = openpyxl.Workbook(write_only=True)
    for s in range(2):
        ws = wb.create_sheet(f"Sheet{s + 1}")
        ws.append(["id", "part", "qty", "price", "note", "site", "batch", "ok"])
        for i in range(rows // 2):
            ws.append([i, rng.choice(WORDS), rng.randint(1, 99), round(rng.random() * 100, 2),
                       _sentence(rng, 4), rng.choice(WORDS), f"B{i % 97}", i % 3 == 0])
    wb.save(path)
    return {"rows": rows}


def make_csv(path: Path, rows: int) -> dict[str, int]:
    rng = random.Random(0)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "part", "qty", "price", "note", "site", "batch", "ok"])
        for i in range(rows):
            w.writerow([i, rng.choice(WORDS), rng.randint(1, 99), round(rng.random() * 100, 2),
                        _sentence(rng, 4), rng.choice(WORDS), f"B{i % 97}", i % 3 == 0])
    return {"rows": rows}


# ------------------------------------------------------------------------------------------ readers


def ours(path: Path) -> list[str]:
    from domainrag.data.readers import READERS

    return [b.caption + " " + b.text for b in READERS[path.suffix](path).blocks]


def raw_xml(member_prefix: str, text_tag: str) -> Callable[[Path], list[str]]:
    def read(path: Path) -> list[str]:
        from lxml import etree

        texts: list[str] = []
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if name.startswith(member_prefix) and name.endswith(".xml"):
                    texts.extend(etree.fromstring(z.read(name)).itertext(text_tag))
        return texts

    return read


def openpyxl_mode(read_only: bool) -> Callable[[Path], list[str]]:
    """Every cell value as text, without Markdown: the library's own cost in one mode."""

    def read(path: Path) -> list[str]:
        import openpyxl

        wb = openpyxl.load_workbook(path, read_only=read_only, data_only=True)
        try:
            return [str(v) for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for v in row
                    if v is not None]
        finally:
            wb.close()

    return read


def pandas_excel(path: Path) -> list[str]:
    import pandas as pd

    frames = pd.read_excel(path, sheet_name=None, header=None, dtype=str, na_filter=False)
    return [v for f in frames.values() for v in f.to_numpy().ravel()]


def pandas_csv(path: Path) -> list[str]:
    import pandas as pd

    return list(pd.read_csv(path, header=None, dtype=str, keep_default_na=False).to_numpy().ravel())


def kept(texts: list[str]) -> int:
    """Letters and digits an approach kept (Markdown pipes, separators and spaces do not count)."""
    return sum(ch.isalnum() for t in texts for ch in t)


W_NS = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}t"
A_NS = "{http://schemas.openxmlformats.org/drawingml/2006/main}t"
FORMATS: dict[str, tuple[Callable[[Path, int], dict[str, int]], dict[str, Callable[[Path], list[str]]]]] = {
    "docx": (make_docx, {"ours": ours, "raw-xml": raw_xml("word/document", W_NS)}),
    "pptx": (make_pptx, {"ours": ours, "raw-xml": raw_xml("ppt/slides/slide", A_NS)}),
    "xlsx": (make_xlsx, {"ours": ours, "openpyxl-read-only": openpyxl_mode(True),
                         "openpyxl-normal": openpyxl_mode(False), "pandas": pandas_excel}),
    "csv": (make_csv, {"ours": ours, "pandas": pandas_csv}),
}


def _time(read: Callable[[Path], list[str]], path: Path, rounds: int) -> tuple[float, int]:
    best, texts = float("inf"), []
    for _ in range(rounds):
        t0 = time.perf_counter()
        texts = read(path)
        best = min(best, time.perf_counter() - t0)
    return best, kept(texts)






def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docx-pages", type=int, default=300)
    ap.add_argument("--pptx-slides", type=int, default=200)
    ap.add_argument("--xlsx-rows", type=int, default=40_000)
    ap.add_argument("--csv-rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/readers_office.json"))
    a = ap.parse_args()
    sizes = {"docx": a.docx_pages, "pptx": a.pptx_slides, "xlsx": a.xlsx_rows, "csv": a.csv_rows}
    load_start = os.getloadavg()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-office-") as tmp:
        for fmt, (make, approaches) in FORMATS.items():
            path = Path(tmp) / f"bench.{fmt}"
            unit = make(path, sizes[fmt])
            (unit_name, count), = unit.items()
            row: dict[str, Any] = {unit_name: count, "file_mb": round(path.stat().st_size / 2**20, 2)}
            for name, read in approaches.items():
                seconds, alnum = _time(read, path, a.rounds)
                row[name] = {"seconds": round(seconds, 3), f"{unit_name}_per_s": round(count / seconds, 1),
                             "alnum_chars_kept": alnum}
            results[fmt] = row
            print(fmt, json.dumps(row), flush=True)
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rounds": a.rounds,
        "load_average_at_start": [round(x, 2) for x in load_start],
        "results": results,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "lscpu": lscpu()},
        "versions": {p: version(p) for p in ("python-docx", "python-pptx", "openpyxl", "pandas", "lxml")},
        "date": time.strftime("%Y-%m-%d"),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
