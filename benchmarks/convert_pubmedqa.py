"""Convert PubMedQA (expert-labelled set, ``ori_pqal.json``) into a BEIR folder and a question file.

Corpus: one document per PubMed id (its ``CONTEXTS`` joined), for every selected entry, so test
questions are retrieved among all abstracts. Queries: every selected question; ``qrels/test.tsv``
holds the official 500-question test split (``test_ground_truth.json``) and ``qrels/train.tsv``
the other 500 (``--test-split all`` puts every selected question in test). ``questions.jsonl``
holds the test questions in the project's format with the yes/no/maybe label as ``answer``.

``--unit passage`` makes each ``CONTEXTS`` section its own document (``<pmid>#<n>``, 3,358 in all,
the section label in ``metadata.section``) and marks every passage of the question's abstract
relevant. At abstract level retrieval is near-saturated (base nDCG@10 0.98); at passage level a
model has to rank *all* parts of the right abstract (background, methods, results) above the other
abstracts' look-alike passages, which leaves room to measure fine-tuning.

    python benchmarks/convert_pubmedqa.py --out data/pubmedqa-beir [--limit 100 --test-split all] [--unit passage]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _beir_out import DEFAULT_DATA_DIR, write_jsonl, write_qrels


def convert(
    data_dir: Path, out: Path, limit: int | None = None, test_split: str = "official", unit: str = "abstract"
) -> dict[str, int]:
    src = data_dir / "pubmedqa" / "ori_pqal.json"
    if not src.is_file():
        raise SystemExit(f"{src}: not found (pass --data-dir pointing at the shared data folder)")
    entries = json.loads(src.read_text())
    ids = list(entries)[: limit or None]
    if test_split == "official":
        truth = json.loads((data_dir / "pubmedqa" / "test_ground_truth.json").read_text())
        test_ids = {i for i in ids if i in truth}
    else:
        test_ids = set(ids)
    out.mkdir(parents=True, exist_ok=True)
    docs = {pid: _documents(pid, entries[pid], unit) for pid in ids}
    corpus = (doc for pid in ids for doc in docs[pid])
    stats = {"corpus": write_jsonl(out / "corpus.jsonl", corpus),
             "queries": write_jsonl(out / "queries.jsonl", ({"_id": pid, "text": entries[pid]["QUESTION"]}
                                                            for pid in ids))}
    qrels = {pid: {d["_id"]: 1 for d in docs[pid]} for pid in ids}
    stats["qrels_test"] = write_qrels(out / "qrels" / "test.tsv", {p: r for p, r in qrels.items() if p in test_ids})
    train = {p: r for p, r in qrels.items() if p not in test_ids}
    if train:
        stats["qrels_train"] = write_qrels(out / "qrels" / "train.tsv", train)
    questions = ({"id": pid, "question": entries[pid]["QUESTION"], "answer": entries[pid]["final_decision"],
                  "long_answer": entries[pid]["LONG_ANSWER"], **_gold(docs[pid])} for pid in ids if pid in test_ids)
    stats["questions"] = write_jsonl(out / "questions.jsonl", questions)
    return stats


def _documents(pid: str, entry: dict, unit: str) -> list[dict]:
    """The corpus rows of one entry: its joined abstract, or one row per ``CONTEXTS`` section."""
    meta = {"year": entry.get("YEAR"), "meshes": entry.get("MESHES", [])}
    if unit == "abstract":
        return [{"_id": pid, "title": "", "text": " ".join(entry["CONTEXTS"]), "metadata": meta}]
    sections = entry.get("LABELS") or []
    return [
        {"_id": f"{pid}#{i + 1}", "title": "", "text": text,
         "metadata": meta | {"pmid": pid, "section": sections[i] if i < len(sections) else ""}}
        for i, text in enumerate(entry["CONTEXTS"])
    ]


def _gold(docs: list[dict]) -> dict:
    """The question file's gold field: ``doc`` for one relevant document, ``docs`` for several."""
    return {"doc": docs[0]["_id"]} if len(docs) == 1 else {"docs": [d["_id"] for d in docs]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared data folder (holds pubmedqa/)")
    ap.add_argument("--out", type=Path, required=True, help="output BEIR folder")
    ap.add_argument("--limit", type=int, default=None, help="keep only the first N entries")
    ap.add_argument("--test-split", choices=("official", "all"), default="official",
                    help="official: the 500 test ids; all: every selected question is a test query")
    ap.add_argument("--unit", choices=("abstract", "passage"), default="abstract",
                    help="abstract: one document per PubMed id; passage: one per CONTEXTS section, all relevant")
    args = ap.parse_args(argv)
    stats = convert(args.data_dir, args.out, args.limit, args.test_split, args.unit)
    print(f"{args.out}: " + ", ".join(f"{k} {v}" for k, v in stats.items()))


if __name__ == "__main__":
    main()
