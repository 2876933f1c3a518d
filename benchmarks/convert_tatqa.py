"""Convert TAT-QA (financial report extracts) into a BEIR folder and a question file.

Corpus: every paragraph of the split (``_id`` = paragraph uid) and every table rendered as text
(rows of cells joined by `` | ``; ``_id`` = table uid). Qrels: each question's ``rel_paragraphs``
(the questions without any are left out of retrieval, as in the data set's README); with
``--table-qrels`` a question answered from the table also counts the table as relevant.
``questions.jsonl`` holds every question in the project's format: ``answer`` (spans joined by
", ", numbers as written, plus the scale), ``short_answer`` (single-span / numeric answers only),
``doc`` / ``docs`` (evidence: relevant paragraphs, and the table when the answer comes from it).
With ``--context table`` every paragraph also carries ``metadata.table``: its report's table as text,
the way a parsed report keeps a paragraph next to the table it introduces (a reranker can read it with
``RetrievalConfig.rerank_context="table"``; BM25 and the embedder still index the paragraph alone).
With ``--structure`` every table carries ``metadata.children``: the uids of its report's paragraphs,
the document structure ``RetrievalConfig.expand_children`` follows (a retrieved table pulls in the
paragraphs that introduce and explain it).

    python benchmarks/convert_tatqa.py --split test --out data/tatqa-test-beir
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _beir_out import DEFAULT_DATA_DIR, write_jsonl, write_qrels

FILES = {"dev": "tatqa_dataset_dev.json", "test": "tatqa_dataset_test_gold.json"}


def table_text(rows: list[list[str]]) -> str:
    return "\n".join(" | ".join(str(c).strip() for c in row) for row in rows if any(str(c).strip() for c in row))


def answer_text(answer: Any) -> str:
    if isinstance(answer, list):
        return ", ".join(answer_text(a) for a in answer)
    if isinstance(answer, float):
        return f"{answer:g}" if abs(answer) < 1e15 else str(answer)
    return str(answer).strip()


def convert(
    data_dir: Path,
    out: Path,
    split: str = "test",
    table_qrels: bool = False,
    context: str | None = None,
    structure: bool = False,
) -> dict[str, int]:
    src = data_dir / "tatqa" / FILES[split]
    if not src.is_file():
        raise SystemExit(f"{src}: not found (pass --data-dir pointing at the shared data folder)")
    entries = json.loads(src.read_text())
    corpus, queries, questions = [], [], []
    qrels: dict[str, dict[str, int]] = {}
    for entry in entries:
        table = entry["table"]
        children = {"metadata": {"children": [p["uid"] for p in entry["paragraphs"]]}} if structure else {}
        corpus.append({"_id": table["uid"], "title": "table", "text": table_text(table["table"]), **children})
        by_order = {str(p["order"]): p["uid"] for p in entry["paragraphs"]}
        meta = {"metadata": {"table": table_text(table["table"])}} if context == "table" else {}
        corpus.extend({"_id": p["uid"], "title": "", "text": p["text"], **meta} for p in entry["paragraphs"])
        for q in entry["questions"]:
            rel = [by_order[str(o)] for o in q.get("rel_paragraphs") or [] if str(o) in by_order]
            from_table = "table" in str(q.get("answer_from", ""))
            if rel:
                queries.append({"_id": q["uid"], "text": q["question"]})
                qrels[q["uid"]] = dict.fromkeys(rel, 1)
                if table_qrels and from_table:
                    qrels[q["uid"]][table["uid"]] = 1
            evidence = rel + ([table["uid"]] if from_table else [])
            answer = answer_text(q["answer"])
            scale = str(q.get("scale") or "").strip()
            single = not isinstance(q["answer"], list) or len(q["answer"]) == 1
            questions.append({"id": q["uid"], "question": q["question"],
                              "answer": f"{answer} {scale}" if scale and scale != "percent" else answer,
                              "short_answer": answer if single else None, "doc": evidence[0] if evidence else None,
                              "docs": evidence, "answer_type": q.get("answer_type"),
                              "answer_from": q.get("answer_from"), "scale": scale})
    out.mkdir(parents=True, exist_ok=True)
    return {"corpus": write_jsonl(out / "corpus.jsonl", corpus),
            "queries": write_jsonl(out / "queries.jsonl", queries),
            "qrels_test": write_qrels(out / "qrels" / "test.tsv", qrels),
            "questions": write_jsonl(out / "questions.jsonl", questions)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared data folder (holds tatqa/)")
    ap.add_argument("--out", type=Path, required=True, help="output BEIR folder")
    ap.add_argument("--split", choices=sorted(FILES), default="test", help="dev (train on it) or test (gold)")
    ap.add_argument("--table-qrels", action="store_true", help="a table-based answer also makes the table relevant")
    ap.add_argument("--context", choices=["table"], default=None, help="paragraphs carry their table as metadata")
    ap.add_argument("--structure", action="store_true", help="tables list their paragraphs as metadata.children")
    args = ap.parse_args(argv)
    stats = convert(args.data_dir, args.out, args.split, args.table_qrels, args.context, args.structure)
    print(f"{args.out}: " + ", ".join(f"{k} {v}" for k, v in stats.items()))


if __name__ == "__main__":
    main()
