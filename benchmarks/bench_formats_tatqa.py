"""Does TAT-QA retrieval keep its quality when the reports come as PDF (or Word / Excel) instead of JSON?

Issue 14's bar: TAT-QA tables rendered to PDF and re-ingested through the product's readers must keep the
reranked-hybrid recall@5 within 3 points of the JSON path.

- **json** (the reference): ``convert_tatqa.convert(..., structure=True)``: every paragraph is a document
  (id = paragraph uid) and every table a document (id = table uid, rows joined by `` | ``) whose
  ``metadata.children`` lists its report's paragraphs; the ``corpus.jsonl`` is ingested with
  ``domainrag.workspace.ingest`` like any JSONL file.
- **pdf**: each test report extract (one TAT-QA entry) rendered by reportlab with
  ``bench_formats_sample.render_pdf``: a title heading ("Financial report extract N": TAT-QA has no company
  names), the table as a ruled ``Table`` whose first TAT-QA row is the bold header row, then the paragraphs in
  their ``order``. File stem = the table uid, the report's id. Ingested from the folder by the same call,
  so the PDF reader (pypdfium2 + pdfplumber), block chunking and the table → neighbouring-text links
  (``metadata.children``, chunk ids) are the product's own.
- **docx** (``--formats pdf,docx``): the same elements through ``bench_formats_sample.render_docx``.
- **xlsx** (``--formats ...,xlsx``): openpyxl, sheet "Table" with the table's rows, sheet "Notes" with one
  paragraph per row (a spreadsheet has no paragraphs; the reader makes every sheet a table).

Every variant goes into its own index of one temporary workspace with the base embedder
``all-minilm-l6-v2`` and ingestion's default chunking. Questions: the test questions with
``rel_paragraphs`` (935 on the full set; with ``--limit N`` those of the first N reports). Retrieval runs
through ``Retriever`` (``top_k`` 10) in dense, BM25, hybrid, hybrid + table children (``expand_children``
2, as the JSON path's headline in bench_rerank_tatqa) and, with a reranker, hybrid + table children +
reranker (top-20 rescored, RRF with the hybrid order: the JSON path's best configuration).

Relevance, at two levels, computed the same way on every variant:

- **evidence** (the bar): a retrieved chunk is a hit when it holds a relevant paragraph. On the JSON path
  the chunk's doc id is a relevant paragraph uid. A rendered chunk maps back to the paragraphs of its report
  (file stem = table uid → entry) by text: it holds paragraph P when at least half of P's word trigrams are in
  the chunk, or (a window of a long paragraph) at least half of the chunk's trigrams are P's.
- **report**: a hit is any chunk of the question's report (JSON: the paragraph / table uid's entry; rendered:
  the file stem).

recall@5: a hit among the first 5 chunks (what an app with ``top_k`` 5 returns; not trec's fraction of
relevant documents, so figures differ from rerank_tatqa.json); MRR@10: 1 / rank of the first hit in the
first 10. Also recorded per variant: files, pages, chunks by kind, table chunks whose first Markdown row is
the TAT-QA header row, reader warnings, parse seconds (every file through ``load_file`` once) and pages/s,
ingest seconds. The reranker is trained here with ``bench_rerank_tatqa``'s own functions on a small budget
of TAT-QA dev pairs (``--train-pairs``), or passed with ``--reranker DIR``; ``--train-pairs 0`` without
``--reranker`` skips the reranked configuration.

    nice .venv/bin/python benchmarks/bench_formats_tatqa.py --train-pairs 300 \\
        --out benchmarks/results/formats_tatqa.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the shared benchmark helpers
import bench_formats_sample as fs  # noqa: E402
import convert_tatqa  # noqa: E402
from _beir_out import DEFAULT_DATA_DIR  # noqa: E402
from _machine import lscpu, version  # noqa: E402

MODEL = "all-minilm-l6-v2"
FORMATS = ("pdf", "docx", "xlsx")
EXPAND = 2
_WORD = re.compile(r"[0-9a-z]+")
_CID = re.compile(r"\(cid:\d+\)")


def norm_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def trigrams(text: str) -> set[tuple[str, ...]]:
    w = norm_words(text)
    if len(w) < 3:
        return {tuple(w)} if w else set()
    return {tuple(w[i : i + 3]) for i in range(len(w) - 2)}


# ---------------------------------------------------------------- data


def load_entries(data_dir: Path, limit: int) -> list[dict[str, Any]]:
    src = data_dir / "tatqa" / convert_tatqa.FILES["test"]
    entries = json.loads(src.read_text())
    return entries[:limit] if limit else entries


def test_questions(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The questions with relevant paragraphs (as convert_tatqa's qrels): id, text, report id, paragraph uids."""
    out = []
    for e in entries:
        by_order = {str(p["order"]): p["uid"] for p in e["paragraphs"]}
        for q in e["questions"]:
            rel = [by_order[str(o)] for o in q.get("rel_paragraphs") or [] if str(o) in by_order]
            if rel:
                out.append({"id": q["uid"], "question": q["question"], "report": e["table"]["uid"], "rel": rel,
                            "answer_from": q.get("answer_from")})
    return out


def header_row(rows: list[list[str]]) -> list[str]:
    """The row drawn as the header: TAT-QA's first row, or its first row with any text when that one is empty."""
    for row in rows:
        if any(str(c).strip() for c in row):
            return [str(c) for c in row]
    return []


# ---------------------------------------------------------------- renderers


def elements(entry: dict[str, Any], n: int) -> tuple[str, list[fs.Element]]:
    title = f"Financial report extract {n}"
    rows = [[str(c).strip() for c in row] for row in entry["table"]["table"]]
    els = [fs.Element("heading", title, level=1), fs.Element("table", rows=rows)]
    els += [fs.Element("para", " ".join(p["text"].split()))
            for p in sorted(entry["paragraphs"], key=lambda p: int(p["order"]))]
    return title, els


def render_xlsx(entry: dict[str, Any], path: Path, title: str) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    sheet = wb.active
    sheet.title = "Table"
    for row in entry["table"]["table"]:
        sheet.append([str(c).strip() for c in row])
    notes = wb.create_sheet("Notes")
    for p in sorted(entry["paragraphs"], key=lambda p: int(p["order"])):
        notes.append([" ".join(p["text"].split())])
    wb.properties.title = title
    wb.save(str(path))


def render_all(entries: list[dict[str, Any]], out: Path, formats: list[str]) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    for fmt in formats:
        (out / fmt).mkdir(parents=True, exist_ok=True)
    for n, entry in enumerate(entries, 1):
        title, els = elements(entry, n)
        counts.update(e.kind for e in els)
        stem = entry["table"]["uid"]
        if "pdf" in formats:
            fs.render_pdf(els, out / "pdf" / f"{stem}.pdf", title)
        if "docx" in formats:
            fs.render_docx(els, out / "docx" / f"{stem}.docx", title)
        if "xlsx" in formats:
            render_xlsx(entry, out / "xlsx" / f"{stem}.xlsx", title)
    return dict(counts)


def json_folder(data_dir: Path, work: Path, entries: list[dict[str, Any]]) -> Path:
    """convert_tatqa's structured corpus, cut to the reports in ``entries``."""
    tmp = work / "json-full"
    convert_tatqa.convert(data_dir, tmp, "test", structure=True)
    keep = {e["table"]["uid"] for e in entries} | {p["uid"] for e in entries for p in e["paragraphs"]}
    folder = work / "json"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [ln for ln in (tmp / "corpus.jsonl").read_text().splitlines() if json.loads(ln)["_id"] in keep]
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    shutil.rmtree(tmp)
    return folder


# ---------------------------------------------------------------- relevance


class Relevance:
    """Maps retrieved chunks of any variant back to TAT-QA report ids and paragraph uids."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.report_of: dict[str, str] = {}
        self.paras: dict[str, list[tuple[str, set[tuple[str, ...]], str]]] = {}
        for e in entries:
            rid = e["table"]["uid"]
            self.report_of[rid] = rid
            self.paras[rid] = []
            for p in e["paragraphs"]:
                self.report_of[p["uid"]] = rid
                self.paras[rid].append((p["uid"], trigrams(p["text"]), f" {' '.join(norm_words(p['text']))} "))
        self._cache: dict[str, set[str]] = {}

    def report(self, variant: str, hit: Any) -> str | None:
        return self.report_of.get(hit.doc_id if variant == "json" else Path(hit.doc_id).stem)

    def paragraphs(self, variant: str, hit: Any) -> set[str]:
        """Paragraph uids the chunk holds."""
        if variant == "json":
            return {hit.doc_id} if self.report_of.get(hit.doc_id, hit.doc_id) != hit.doc_id else set()
        if hit.chunk_id not in self._cache:
            grams, words = trigrams(hit.text), f" {' '.join(norm_words(hit.text))} "
            held = set()
            for uid, pg, pw in self.paras.get(Path(hit.doc_id).stem, []):
                if len(pw.split()) < 3:  # a heading-like paragraph ("CAPITAL EXPENDITURES"): held when contained
                    if pw.strip() and pw in words:
                        held.add(uid)
                    continue
                common = len(pg & grams)
                if grams and (common >= 0.5 * len(pg) or common >= 0.5 * len(grams)):
                    held.add(uid)
            self._cache[hit.chunk_id] = held
        return self._cache[hit.chunk_id]

    def covered(self, records: list[Any], variant: str) -> int:
        """Paragraphs of the corpus that some chunk holds (a reader that loses text loses them)."""
        seen: set[str] = set()
        for c in records:
            seen |= self.paragraphs(variant, c)
        return len(seen)


# ---------------------------------------------------------------- evaluation


def configs(reranker: Any) -> list[tuple[str, str, int, Any]]:
    """(label, mode, expand_children, reranker): the cheap configurations, or the reranked one."""
    if reranker is not None:
        return [(RERANKED, "hybrid", EXPAND, reranker)]
    return [("dense", "dense", 0, None), ("bm25", "bm25", 0, None), ("hybrid", "hybrid", 0, None),
            (f"hybrid+children{EXPAND}", "hybrid", EXPAND, None)]


RERANKED = f"hybrid+children{EXPAND}+rerank"


def evaluate(ws: Any, index: str, variant: str, questions: list[dict[str, Any]], rel: Relevance,
             cfgs: list[tuple[str, str, int, Any]], per_q: dict[str, Any]) -> dict[str, Any]:
    """Mean metrics per configuration; each question's ranks and top 5 go into ``per_q``."""
    from domainrag.retrieval.retriever import RetrievalConfig, Retriever

    store, embedder = ws.store(index), ws.index_embedder(index)
    metrics: dict[str, Any] = {}
    for label, mode, expand, model in cfgs:
        cfg = RetrievalConfig(index=index, mode=mode, top_k=10, candidates=30, expand_children=expand,  # type: ignore[arg-type]
                              rerank_top_n=20, rerank_fusion="rrf")
        retriever = Retriever(store, embedder, cfg, reranker=model)
        qs = questions
        start = time.perf_counter()
        for q in qs:
            hits = retriever.run(q["question"])[:10]
            ev = next((r for r, h in enumerate(hits, 1) if rel.paragraphs(variant, h) & set(q["rel"])), None)
            rp = next((r for r, h in enumerate(hits, 1) if rel.report(variant, h) == q["report"]), None)
            per_q.setdefault(q["id"], {})[label] = {
                "rank": ev, "report_rank": rp, "top5_words": sum(len(h.text.split()) for h in hits[:5]),
                "top5": [[Path(h.doc_id).stem if variant != "json" else h.doc_id, h.metadata.get("kind", "text"),
                          sorted(rel.paragraphs(variant, h)), " ".join(h.text.split()[:16])] for h in hits[:5]],
            }
        metrics[label] = {**summarise(per_q, qs, label),
                          "query_ms": round(1000 * (time.perf_counter() - start) / max(len(qs), 1), 1)}
        print(f"  {variant} {label}: {metrics[label]}", flush=True)
    return metrics


def summarise(per_q: dict[str, Any], qs: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """recall@5 (%) and MRR@10 at evidence and report level, and words in the top 5, over ``qs``."""
    rows = [per_q[q["id"]][label] for q in qs]
    n = max(len(rows), 1)
    return {"questions": len(rows),
            "recall@5": round(100 * sum(r["rank"] is not None and r["rank"] <= 5 for r in rows) / n, 2),
            "mrr@10": round(sum(1 / r["rank"] for r in rows if r["rank"]) / n, 4),
            "report_recall@5": round(100 * sum(r["report_rank"] is not None and r["report_rank"] <= 5
                                               for r in rows) / n, 2),
            "report_mrr@10": round(sum(1 / r["report_rank"] for r in rows if r["report_rank"]) / n, 4),
            "top5_words": round(sum(r["top5_words"] for r in rows) / n, 1)}


def header_kept(chunks: list[Any], entries: list[dict[str, Any]]) -> tuple[int, int]:
    """(table chunks, those whose first Markdown table row is the report's header row, compared as letters+digits)."""
    heads = {e["table"]["uid"]: "".join(fs_norm(c) for c in header_row(e["table"]["table"])) for e in entries}
    tables = kept = 0
    for c in chunks:
        if c.metadata.get("kind") != "table":
            continue
        tables += 1
        first = next((ln for ln in c.text.splitlines() if ln.startswith("|")), "")
        kept += fs_norm(first) == heads.get(Path(c.doc_id).stem)
    return tables, kept


def fs_norm(text: str) -> str:
    return "".join(norm_words(text))


def file_pages(folder: Path, fmt: str) -> int | None:
    if fmt == "pdf":
        return fs.pdf_pages(folder)
    return None


def run_variant(ws: Any, variant: str, folder: Path, questions: list[dict[str, Any]], rel: Relevance,
                entries: list[dict[str, Any]], contextual_header: bool = True) -> dict[str, Any]:
    files, parse_s, report, ingest_s = fs.parse_and_ingest(ws, folder, f"tatqa-{variant}", contextual_header)
    index = f"tatqa-{variant}"
    chunks = report.chunk_records
    kinds = Counter(c.metadata.get("kind", "text") for c in chunks)
    if variant == "json":  # plain JSONL: no reader kinds; a table is the document whose id is a table uid
        kinds = Counter("table" if rel.report_of.get(c.doc_id) == c.doc_id else "text" for c in chunks)
    tables, kept = header_kept(chunks, entries) if variant != "json" else (kinds["table"], None)
    row: dict[str, Any] = {
        "files": len(files), "documents": report.documents, "chunks": report.chunks, "chunk_kinds": dict(kinds),
        "words_per_chunk": round(sum(len(c.text.split()) for c in chunks) / max(len(chunks), 1), 1),
        "table_chunks": tables, "table_chunks_with_header_row": kept,
        "table_chunks_with_children": sum(1 for c in chunks if c.metadata.get("children")),
        "paragraphs_held_by_some_chunk": rel.covered(chunks, variant),
        "paragraphs": sum(len(v) for v in rel.paras.values()),
        "cid_placeholders": sum(len(_CID.findall(c.text)) for c in chunks),
        "warnings": report.errors, "parse_s": round(parse_s, 2), "ingest_s": round(ingest_s, 1),
    }
    pages = file_pages(folder, variant)
    if pages is not None:
        row["pages"] = pages
        row["pages_per_s"] = round(pages / parse_s, 1)
    print(variant, json.dumps({k: v for k, v in row.items() if k != "warnings"}), flush=True)
    per_q: dict[str, Any] = {}
    row["metrics"] = evaluate(ws, index, variant, questions, rel, configs(None), per_q)
    return {"summary": row, "per_question": per_q, "index": index}


def worst(per: dict[str, dict[str, Any]], variant: str, label: str, questions: list[dict[str, Any]],
          n: int = 8) -> list[dict[str, Any]]:
    """Questions whose evidence reciprocal rank drops most from json to ``variant`` under ``label``."""
    rows = []
    for q in questions:
        a, b = per["json"].get(q["id"], {}).get(label), per[variant].get(q["id"], {}).get(label)
        if a is None or b is None:
            continue
        drop = (1 / a["rank"] if a["rank"] else 0.0) - (1 / b["rank"] if b["rank"] else 0.0)
        if drop > 1e-9:
            rows.append({"id": q["id"], "question": q["question"], "report": q["report"], "rel": q["rel"],
                         "answer_from": q["answer_from"], "rr_drop": round(drop, 3), "json_rank": a["rank"],
                         f"{variant}_rank": b["rank"], f"{variant}_report_rank": b["report_rank"],
                         "json_top5": a["top5"], f"{variant}_top5": b["top5"]})
    return sorted(rows, key=lambda r: (-r["rr_drop"], r["id"]))[:n]


# ---------------------------------------------------------------- reranker


def train(a: argparse.Namespace, work: Path) -> tuple[Path, dict[str, Any]]:
    """A small-budget reranker from bench_rerank_tatqa's own dev-pair mining and training functions."""
    import bench_rerank_tatqa as br
    from bench_engines import CachedEmbedder

    from domainrag.retrieval.embedder import load_embedder
    from domainrag.zoo import resolve_embedder

    ra = argparse.Namespace(data_dir=a.data_dir, context=None, expand_children=EXPAND, seed=a.seed,
                            pipeline_negatives=a.pipeline_negatives, train_pairs=a.train_pairs, epochs=a.epochs,
                            batch_size=16, loss="mnrl", in_batch_negatives=2, hard_negatives=0,
                            eval_fraction=0.05, max_length=a.max_length, learning_rate=a.learning_rate)
    embedder = CachedEmbedder(load_embedder(resolve_embedder(MODEL), MODEL))
    start = time.perf_counter()
    pairs, n, available = br.dev_pairs(ra, work / "rerank", embedder)
    mined = time.perf_counter() - start
    out = a.save_reranker or work / "reranker"
    info = br.train_reranker(pairs, out, ra)
    return out, {"dev_pairs_available": available, "dev_pairs_used": n,
                 "pipeline_negatives_per_pair": a.pipeline_negatives, "mining_seconds": round(mined, 1), **info}


# ---------------------------------------------------------------- report


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, cwd=HERE)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared data folder (holds tatqa/)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "formats_tatqa.json")
    ap.add_argument("--limit", type=int, default=0, help="first N test reports only (0 = all 277)")
    ap.add_argument("--formats", default="pdf", help="comma-separated rendered variants: pdf, docx, xlsx")
    ap.add_argument("--reranker", type=Path, default=None, help="a trained reranker folder (skips training)")
    ap.add_argument("--train-pairs", type=int, default=300, help="dev pairs for the reranker; 0 = no reranker")
    ap.add_argument("--pipeline-negatives", type=int, default=3)
    ap.add_argument("--learning-rate", type=float, default=5e-5)
    ap.add_argument("--epochs", type=int, default=1, help="reranker training epochs")
    ap.add_argument("--save-reranker", type=Path, default=None, help="keep the trained reranker in this folder")
    ap.add_argument("--max-length", type=int, default=192)
    ap.add_argument("--rerank-queries", type=int, default=0, help="seeded sample for the reranked runs (0 = all)")
    ap.add_argument("--keep", type=Path, default=None, help="also copy the rendered files here")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--contextual-header", choices=("on", "off"), default="on",
                    help="title and section path in front of each chunk (ingest's --contextual-header)")
    a = ap.parse_args(argv)
    formats = [f for f in a.formats.split(",") if f]
    if bad := set(formats) - set(FORMATS):
        ap.error(f"unknown formats {sorted(bad)}")
    import torch

    from domainrag.retrieval.reranker import load_reranker
    from domainrag.workspace import Workspace

    torch.set_num_threads(a.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_start, t0 = os.getloadavg(), time.perf_counter()
    entries = load_entries(a.data_dir, a.limit)
    questions = test_questions(entries)
    rel = Relevance(entries)
    results: dict[str, Any] = {}
    run: dict[str, Any] = {"training": None, "sample": [], "questions": questions}
    meta = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "model": MODEL, "reports": len(entries),
            "subset": f"first {a.limit} of 277 test reports" if a.limit else "full test_gold",
            "questions": len(questions), "contextual_header": a.contextual_header,
            "domainrag_commit": _git_commit()}  # the code the run started from

    def write(stage: str) -> dict[str, Any]:
        report = build_report(meta, results, formats, run, a, t0, load_start, stage)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=2) + "\n")
        return report

    with tempfile.TemporaryDirectory(prefix="bench-formats-tatqa-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        meta["rendered"] = {"elements": render_all(entries, work / "rendered", formats), "formats": formats,
                            "seconds": round(time.perf_counter() - start, 2)}
        if a.keep:
            shutil.copytree(work / "rendered", a.keep, dirs_exist_ok=True)
        ws = Workspace.open(work / "ws")
        folders = {"json": json_folder(a.data_dir, work, entries), **{f: work / "rendered" / f for f in formats}}
        for name, folder in folders.items():  # the cheap configurations first: written before any training
            results[name] = run_variant(ws, name, folder, questions, rel, entries, a.contextual_header == "on")
        write("without reranker")
        reranker_dir = a.reranker
        if reranker_dir is None and a.train_pairs:
            reranker_dir, run["training"] = train(a, work)
        if reranker_dir is not None:
            reranker = load_reranker(str(reranker_dir))
            ids = sorted(q["id"] for q in questions)
            keep = set(random.Random(a.seed).sample(ids, a.rerank_queries)) if 0 < a.rerank_queries < len(ids) \
                else set(ids)
            run["sample"] = [q for q in questions if q["id"] in keep]
            for name, res in results.items():
                res["summary"]["metrics"].update(evaluate(ws, res["index"], name, run["sample"], rel,
                                                          configs(reranker), res["per_question"]))
                write(f"reranked {name}")
    report = write("done")
    print(json.dumps({"bar": report["bar"], "delta_vs_json": report["delta_vs_json"], "total_s": report["total_s"]},
                     indent=1))


def compact(per: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per variant, question and configuration: evidence rank, report rank and words in the top 5 (the top 5s
    themselves only for the worst questions: all of them would make the JSON ~13 MB)."""
    return {v: {q: {m: [r["rank"], r["report_rank"], r["top5_words"]] for m, r in row.items()} for q, row in qs.items()}
            for v, qs in per.items()}


def build_report(meta: dict[str, Any], results: dict[str, Any], formats: list[str], run: dict[str, Any],
                 a: argparse.Namespace, t0: float, load_start: tuple[float, ...], stage: str) -> dict[str, Any]:
    per = {v: results[v]["per_question"] for v in results}
    sample = run["sample"]
    ref = results["json"]["summary"]["metrics"]
    done = [v for v in formats if v in results]
    labels = [m for m in ref if all(m in results[v]["summary"]["metrics"] for v in done)]
    keys = ("recall@5", "mrr@10", "report_recall@5", "report_mrr@10", "top5_words")
    delta = {v: {m: {k: round(results[v]["summary"]["metrics"][m][k] - ref[m][k], 4 if "mrr" in k else 2)
                     for k in keys} for m in labels} for v in done}
    bar_label = labels[-1]  # the reranked configuration when there is one
    on_sample: dict[str, Any] = {}
    if sample:  # every configuration on the reranked questions, for a like-for-like row
        on_sample = {v: {m: summarise(per[v], sample, m) for m in labels} for v in results}
    bar_source = on_sample or {v: results[v]["summary"]["metrics"] for v in results}
    return {
        **meta,
        "stage": stage,
        "rerank_questions": len(sample),
        "reranker": run["training"] or ({"reused": str(a.reranker)} if a.reranker else None),
        "variants": {v: results[v]["summary"] for v in results},
        "delta_vs_json": delta,
        "on_rerank_sample": on_sample,
        "bar": {"rule": "recall@5 (evidence) of the rendered variant >= JSON path - 3 points", "config": bar_label,
                "questions": len(sample) or meta["questions"],
                **{v: {"json": bar_source["json"][bar_label]["recall@5"], v: bar_source[v][bar_label]["recall@5"],
                       "delta": round(bar_source[v][bar_label]["recall@5"] - bar_source["json"][bar_label]["recall@5"],
                                      2),
                       "report_level_delta": round(bar_source[v][bar_label]["report_recall@5"]
                                                   - bar_source["json"][bar_label]["report_recall@5"], 2),
                       "met": bar_source[v][bar_label]["recall@5"] - bar_source["json"][bar_label]["recall@5"] >= -3.0}
                   for v in done}},
        "worst_questions": {v: {m: worst(per, v, m, sample if m == RERANKED else run["questions"])
                                for m in (f"hybrid+children{EXPAND}", bar_label)} for v in done},
        "per_question": compact(per),
        "total_s": round(time.perf_counter() - t0, 1),
        "load_average_at_start": [round(x, 2) for x in load_start],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "torch_threads": a.threads, "lscpu": lscpu()},
        "versions": {"domainrag_commit": meta["domainrag_commit"],
                     **{p: version(p) for p in ("reportlab", "python-docx", "openpyxl", "pdfplumber", "pdfminer.six",
                                                 "pypdfium2", "sentence-transformers", "torch", "lancedb")}},
        "date": time.strftime("%Y-%m-%d"),
    }

if __name__ == "__main__":
    main()
