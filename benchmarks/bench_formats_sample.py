"""Does retrieval keep its quality when the sample domain's documents come as PDF or Word instead of Markdown?

The sample domain's documents (``src/domainrag/sample_data/docs``: Markdown, plus one HTML page and one plain
text file) are rendered twice into a work folder, each file keeping its stem so document ids map back
(``pump.md`` → ``pump.pdf``, ``pump.docx``). The "md" variant is the folder as shipped:

- PDF by reportlab: the ``#`` headings as larger bold paragraphs that also get PDF outline (bookmark)
  entries at their level, paragraphs, list items with bullets or numbers, Markdown tables as ruled
  reportlab ``Table``\\ s with a bold header row and, when the Markdown has a "Table N…" line next to the
  table, that line as a caption above it; a page number in the footer, as real reports have;
- Word by python-docx: ``Heading n`` styles, paragraphs, ``List Bullet``/``List Number`` items, tables in
  the ``Table Grid`` style with a ``Caption``-style paragraph above when the Markdown has one.

The Markdown is parsed with markdown-it-py (CommonMark plus GFM tables), the HTML page by its tags
(BeautifulSoup), the text file as one paragraph per blank-line-separated block. Each variant (md / pdf / docx) is
ingested with ``domainrag.workspace.ingest`` into its own embedded index of one temporary workspace, with the
base embedder ``all-minilm-l6-v2`` and ingestion's default chunking, and the held-out questions
(``qa_heldout.jsonl``; those without a ``doc`` are unanswerable and skipped) run through a ``Retriever`` in
dense, BM25 and hybrid mode. Relevance is at document level: a retrieved chunk is a hit when its
``doc_id``'s stem is the question's ``doc`` stem. recall@5: a hit among the first 5 chunks (what an app
with ``top_k 5`` returns); MRR@10: 1 / rank of the first hit among the first 10 chunks (retrieval runs
with ``top_k 10``; the candidate lists and fusion do not depend on ``top_k``, so its first 5 are
exactly what ``top_k 5`` returns).

Also recorded per variant: files, pages (PDF), chunks and their kinds, chunks with a section path, reader
warnings, "(cid:N)" placeholders left in chunk text (glyphs pdfminer could not map), parse seconds (every
file through ``load_file`` once, before ingestion) and ingest seconds (parse + chunk + embed + write).
The questions whose reciprocal rank drops most against Markdown are listed with what came back.
Written as JSON with the command, ``lscpu`` and versions.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_formats_sample.py \\
        --out benchmarks/results/formats_sample.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from markdown_it import MarkdownIt

from domainrag.data.loaders import load_file
from domainrag.data.sample import read_qa, sample_paths
from domainrag.retrieval.retriever import RetrievalConfig, Retriever
from domainrag.workspace import Workspace, create_index, ingest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared benchmark helpers
from _machine import lscpu, version

MODEL = "all-minilm-l6-v2"
MODES = ("dense", "bm25", "hybrid")
VARIANTS = ("md", "pdf", "docx")
_CAPTION = re.compile(r"^(table|tab\.)\s*[0-9ivx]+\b", re.I)
_CID = re.compile(r"\(cid:\d+\)")


# ---------------------------------------------------------------- Markdown → elements


@dataclass
class Element:
    kind: str  # heading | para | item | table
    text: str = ""
    level: int = 0  # heading level; item: 0 bullet, n = number n
    rows: list[list[str]] = field(default_factory=list)  # table: header row first
    caption: str = ""


def _inline_text(token: Any) -> str:
    """Plain text of an inline token (emphasis and links dropped, code kept, soft breaks as spaces)."""
    parts = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return "".join(parts).strip()


def parse_markdown(text: str) -> list[Element]:
    """Headings, paragraphs, list items and tables in document order; a "Table N…" paragraph right above
    (or, failing that, right below) a table becomes its caption."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    out: list[Element] = []
    lists: list[list[int]] = []  # stack of [ordered?, next number]
    row: list[str] | None = None
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.type == "heading_open":
            out.append(Element("heading", _inline_text(tokens[i + 1]), level=int(t.tag[1])))
            i += 2
        elif t.type in ("bullet_list_open", "ordered_list_open"):
            lists.append([t.type == "ordered_list_open", int(t.attrs.get("start", 1) or 1)])
        elif t.type in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif t.type == "list_item_open":
            ordered, number = lists[-1]
            out.append(Element("item", level=number if ordered else 0))
            lists[-1][1] += 1
        elif t.type == "inline" and row is not None:
            row.append(_inline_text(t))
        elif t.type == "inline":
            last = out[-1] if out else None
            if last is not None and last.kind == "item" and not last.text:
                last.text = _inline_text(t)
            else:
                out.append(Element("para", _inline_text(t)))
        elif t.type == "table_open":
            out.append(Element("table"))
        elif t.type == "tr_open":
            row = []
        elif t.type == "tr_close":
            out[-1].rows.append(row or [])
            row = None
        i += 1
    for k, el in enumerate(out):
        if el.kind != "table":
            continue
        for j in (k - 1, k + 1):
            if 0 <= j < len(out) and out[j].kind == "para" and _CAPTION.match(out[j].text):
                el.caption = out[j].text
                out[j].kind = "caption"  # drawn with its table
                break
    return [e for e in out if e.kind != "caption"]


# ---------------------------------------------------------------- renderers


def render_pdf(elements: list[Element], path: Path, title: str) -> None:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    body = styles["BodyText"]
    heads = {1: ParagraphStyle("H1", parent=body, fontName="Helvetica-Bold", fontSize=18, leading=22, spaceAfter=8),
             2: ParagraphStyle("H2", parent=body, fontName="Helvetica-Bold", fontSize=14, leading=18, spaceBefore=8),
             3: ParagraphStyle("H3", parent=body, fontName="Helvetica-Bold", fontSize=12, leading=15, spaceBefore=6)}
    caption = ParagraphStyle("Caption", parent=body, fontName="Helvetica-Oblique", fontSize=9, spaceBefore=6)
    cell = ParagraphStyle("Cell", parent=body, fontSize=9, leading=11)
    head_cell = ParagraphStyle("HeadCell", parent=cell, fontName="Helvetica-Bold")

    class Doc(SimpleDocTemplate):
        def afterFlowable(self, flowable: Any) -> None:  # reportlab calls this after drawing each flowable
            level = getattr(flowable, "outline_level", None)
            if level is None:
                return
            key = f"h{id(flowable)}"
            self.canv.bookmarkPage(key)
            self.canv.addOutlineEntry(flowable.getPlainText(), key, level=level, closed=False)

    def footer(canvas: Any, doc: Any) -> None:
        canvas.setFont("Helvetica", 8)
        canvas.drawCentredString(A4[0] / 2, 12 * mm, str(doc.page))

    story: list[Any] = []
    depth = -1  # outline levels may not skip one
    for el in elements:
        if el.kind == "heading":
            p = Paragraph(escape(el.text), heads[min(el.level, 3)])
            p.outline_level = depth = min(el.level - 1, depth + 1)
            story.append(p)
        elif el.kind == "para":
            story.append(Paragraph(escape(el.text), body))
        elif el.kind == "item":
            bullet = f"{el.level}." if el.level else "\u2022"
            story.append(Paragraph(escape(el.text), body, bulletText=bullet))
        elif el.kind == "table":
            if el.caption:
                story.append(Paragraph(escape(el.caption), caption))
            width = max(len(r) for r in el.rows)
            data = [[Paragraph(escape(c), head_cell if r == 0 else cell) for c in row + [""] * (width - len(row))]
                    for r, row in enumerate(el.rows)]
            table = Table(data, repeatRows=1, hAlign="LEFT")
            table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black),
                                       ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                                       ("VALIGN", (0, 0), (-1, -1), "TOP")]))
            story += [table, Spacer(1, 6)]
    Doc(str(path), pagesize=A4, title=title, author="domainrag benchmark").build(
        story, onFirstPage=footer, onLaterPages=footer)


def render_docx(elements: list[Element], path: Path, title: str) -> None:
    import docx

    doc = docx.Document()
    doc.core_properties.title = title
    for el in elements:
        if el.kind == "heading":
            doc.add_heading(el.text, level=min(el.level, 9))
        elif el.kind == "para":
            doc.add_paragraph(el.text)
        elif el.kind == "item":
            doc.add_paragraph(el.text, style="List Number" if el.level else "List Bullet")
        elif el.kind == "table":
            if el.caption:
                doc.add_paragraph(el.caption, style="Caption")
            width = max(len(r) for r in el.rows)
            table = doc.add_table(rows=len(el.rows), cols=width)
            table.style = "Table Grid"
            for r, row in enumerate(el.rows):
                for c, text in enumerate(row):
                    table.cell(r, c).text = text
                    if r == 0:
                        for run in table.cell(r, c).paragraphs[0].runs:
                            run.bold = True
    doc.save(str(path))


def parse_html_elements(raw: str) -> list[Element]:
    """Headings, paragraphs, list items and tables of an HTML page, in document order (BeautifulSoup)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(raw, "html.parser")
    out: list[Element] = []
    for tag in (soup.body or soup).find_all(["h1", "h2", "h3", "h4", "p", "li", "table"]):
        if tag.find_parent("table") is not None:
            continue
        text = " ".join(tag.get_text(" ").split())
        if tag.name == "table":
            rows = [[" ".join(c.get_text(" ").split()) for c in tr.find_all(["th", "td"])] for tr in tag.find_all("tr")]
            cap = tag.find("caption")
            out.append(Element("table", rows=rows, caption=" ".join(cap.get_text(" ").split()) if cap else ""))
        elif tag.name.startswith("h"):
            out.append(Element("heading", text, level=int(tag.name[1])))
        elif tag.name == "li":
            out.append(Element("item", text))
        elif text:
            out.append(Element("para", text))
    return out


def parse_source(path: Path) -> list[Element]:
    """Elements of a sample document: Markdown parsed, HTML by its tags, plain text one paragraph per
    blank-line-separated block (no structure is invented for it)."""
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        return parse_markdown(raw)
    if path.suffix in (".html", ".htm"):
        return parse_html_elements(raw)
    return [Element("para", " ".join(b.split())) for b in re.split(r"\n\s*\n", raw) if b.strip()]


def render_all(src: Path, out: Path) -> dict[str, Any]:
    """Render every document of ``src`` (Markdown, and the odd HTML or text file) into ``out/pdf`` and
    ``out/docx``; counts of what was drawn."""
    counts: Counter[str] = Counter()
    for fmt in ("pdf", "docx"):
        (out / fmt).mkdir(parents=True, exist_ok=True)
    for f in sorted(p for p in src.iterdir() if p.suffix in (".md", ".html", ".htm", ".txt")):
        counts[f"source{f.suffix}"] += 1
        elements = parse_source(f)
        counts.update(e.kind for e in elements)
        counts["captions"] += sum(1 for e in elements if e.kind == "table" and e.caption)
        title = next((e.text for e in elements if e.kind == "heading"), f.stem)
        render_pdf(elements, out / "pdf" / f"{f.stem}.pdf", title)
        render_docx(elements, out / "docx" / f"{f.stem}.docx", title)
    return dict(counts)


# ---------------------------------------------------------------- evaluation


def pdf_pages(folder: Path) -> int:
    import pypdfium2

    total = 0
    for f in sorted(folder.glob("*.pdf")):
        pdf = pypdfium2.PdfDocument(str(f))
        total += len(pdf)
        pdf.close()
    return total


def evaluate(ws: Workspace, index: str, questions: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per mode: mean recall@5 and MRR@10, and per question the gold rank (chunk rank, None when not in the
    top 10) and the top-5 chunks' (doc, first words)."""
    store, embedder = ws.store(index), ws.index_embedder(index)
    metrics: dict[str, Any] = {}
    per_q: dict[str, Any] = {}
    for mode in MODES:
        retriever = Retriever(store, embedder, RetrievalConfig(index=index, mode=mode, top_k=10))
        recall = rr_sum = 0.0
        start = time.perf_counter()
        for q in questions:
            hits = retriever.run(q["question"])
            gold = Path(q["doc"]).stem
            rank = next((r for r, h in enumerate(hits[:10], 1) if Path(h.doc_id).stem == gold), None)
            recall += rank is not None and rank <= 5
            rr_sum += 1 / rank if rank else 0.0
            per_q.setdefault(q["id"], {})[mode] = {
                "rank": rank,
                "top5": [[Path(h.doc_id).stem, h.metadata.get("section", ""), " ".join(h.text.split()[:14])]
                         for h in hits[:5]],
            }
        n = len(questions)
        metrics[mode] = {"recall@5": round(100 * recall / n, 2), "mrr@10": round(rr_sum / n, 4),
                         "query_ms": round(1000 * (time.perf_counter() - start) / n, 1)}
    return metrics, per_q


def parse_and_ingest(ws: Workspace, folder: Path, index: str,
                     contextual_header: bool = True) -> tuple[list[Path], float, Any, float]:
    """(files, seconds to parse every file once, the ingest report, seconds of the ingest into a new index)."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    start = time.perf_counter()
    for f in files:
        load_file(f, errors=[])
    parse_s = time.perf_counter() - start
    create_index(ws, index, MODEL)
    start = time.perf_counter()
    report = ingest(ws, index, [folder], contextual_header=contextual_header)
    return files, parse_s, report, time.perf_counter() - start


def run_variant(ws: Workspace, name: str, folder: Path, questions: list[dict[str, Any]],
                contextual_header: bool = True) -> dict[str, Any]:
    index = f"sample-{name}"
    files, parse_s, report, ingest_s = parse_and_ingest(ws, folder, index, contextual_header)
    chunks = report.chunk_records
    metrics, per_q = evaluate(ws, index, questions)
    row = {
        "files": len(files),
        "documents": report.documents,
        "chunks": report.chunks,
        "chunk_kinds": dict(Counter(c.metadata.get("kind", "text") for c in chunks)),
        "chunks_with_section": sum(1 for c in chunks if c.metadata.get("section")),
        "cid_placeholders": sum(len(_CID.findall(c.text)) for c in chunks),  # pdfminer's "(cid:N)" for unmapped glyphs
        "warnings": report.errors,
        "parse_s": round(parse_s, 3),
        "ingest_s": round(ingest_s, 2),
        "metrics": metrics,
    }
    if name == "pdf":
        row["pages"] = pdf_pages(folder)
        row["pages_per_s"] = round(row["pages"] / parse_s, 1)
    print(name, json.dumps({k: v for k, v in row.items() if k != "warnings"}), flush=True)
    return {"summary": row, "per_question": per_q}


def worst(per: dict[str, dict[str, Any]], variant: str, questions: list[dict[str, Any]], n: int = 5) -> list[Any]:
    """Questions whose reciprocal rank drops most from md to ``variant`` (the worst mode of each)."""
    rows = []
    for q in questions:
        best = None
        for mode in MODES:
            a, b = per["md"][q["id"]][mode], per[variant][q["id"]][mode]
            drop = (1 / a["rank"] if a["rank"] else 0.0) - (1 / b["rank"] if b["rank"] else 0.0)
            if drop > 1e-9 and (best is None or drop > best["rr_drop"]):
                best = {"id": q["id"], "question": q["question"], "doc": Path(q["doc"]).stem, "mode": mode,
                        "rr_drop": round(drop, 3), "md_rank": a["rank"], f"{variant}_rank": b["rank"],
                        "md_top5": a["top5"], f"{variant}_top5": b["top5"]}
        if best:
            rows.append(best)
    return sorted(rows, key=lambda r: (-r["rr_drop"], r["id"]))[:n]


# ---------------------------------------------------------------- report






def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/formats_sample.json"))
    ap.add_argument("--keep", type=Path, default=None, help="also copy the rendered PDF/DOCX files here")
    ap.add_argument("--contextual-header", choices=("on", "off"), default="on",
                    help="title and section path in front of each chunk (ingest's --contextual-header)")
    a = ap.parse_args()
    paths = sample_paths()
    questions = [q for q in read_qa(paths.qa_heldout) if q.get("doc")]
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-formats-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        drawn = render_all(paths.docs, work / "rendered")
        render_s = time.perf_counter() - start
        if a.keep:
            shutil.copytree(work / "rendered", a.keep, dirs_exist_ok=True)
        ws = Workspace.open(work / "ws")
        folders = {"md": paths.docs, "pdf": work / "rendered" / "pdf", "docx": work / "rendered" / "docx"}
        for name in VARIANTS:
            results[name] = run_variant(ws, name, folders[name], questions, a.contextual_header == "on")
    per = {v: results[v]["per_question"] for v in VARIANTS}
    md_metrics = results["md"]["summary"]["metrics"]
    bar = {v: {m: round(results[v]["summary"]["metrics"][m]["recall@5"] - md_metrics[m]["recall@5"], 2)
               for m in MODES} for v in ("pdf", "docx")}
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": MODEL,
        "questions": len(questions),
        "contextual_header": a.contextual_header,
        "skipped_unanswerable": len(read_qa(paths.qa_heldout)) - len(questions),
        "rendered": {"elements": drawn, "seconds": round(render_s, 2)},
        "variants": {v: results[v]["summary"] for v in VARIANTS},
        "recall5_delta_vs_md": bar,
        "bar_within_2_points": all(d >= -2.0 for row in bar.values() for d in row.values()),
        "worst_questions": {v: worst(per, v, questions) for v in ("pdf", "docx")},
        "per_question": per,
        "total_s": round(time.perf_counter() - t0, 1),
        "load_average_at_start": [round(x, 2) for x in load_start],
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "lscpu": lscpu()},
        "versions": {"domainrag_commit": _git_commit(),
                     **{p: version(p) for p in ("reportlab", "python-docx", "markdown-it-py", "pdfplumber",
                                                 "pdfminer.six", "pypdfium2", "sentence-transformers", "torch",
                                                 "onnxruntime", "lancedb")}},
        "date": time.strftime("%Y-%m-%d"),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"recall5_delta_vs_md": bar, "bar": report["bar_within_2_points"],
                      "total_s": report["total_s"]}))


if __name__ == "__main__":
    main()
