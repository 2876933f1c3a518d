"""Convert PubMedQA (expert-labelled set, ``ori_pqal.json``) into a BEIR folder and a question file.

Corpus: one document per PubMed id (its ``CONTEXTS`` joined), for every selected entry, so test
questions are retrieved among all abstracts. Queries: every selected question; ``qrels/test.tsv``
holds the official 500-question test split (``test_ground_truth.json``) and ``qrels/train.tsv``
the other 500 (``--test-split all`` puts every selected question in test). ``questions.jsonl``
holds the test questions in the project's format with the yes/no/maybe label as ``answer``.

    python benchmarks/convert_pubmedqa.py --out data/pubmedqa-beir [--limit 100 --test-split all]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _beir_out import DEFAULT_DATA_DIR, write_jsonl, write_qrels


def convert(data_dir: Path, out: Path, limit: int | None = None, test_split: str = "official") -> dict[str, int]:
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
    corpus = ({"_id": pid, "title": "", "text": " ".join(entries[pid]["CONTEXTS"]),
               "metadata": {"year": entries[pid].get("YEAR"), "meshes": entries[pid].get("MESHES", [])}}
              for pid in ids)
    stats = {"corpus": write_jsonl(out / "corpus.jsonl", corpus),
             "queries": write_jsonl(out / "queries.jsonl", ({"_id": pid, "text": entries[pid]["QUESTION"]}
                                                            for pid in ids))}
    stats["qrels_test"] = write_qrels(out / "qrels" / "test.tsv", {pid: {pid: 1} for pid in ids if pid in test_ids})
    train = {pid: {pid: 1} for pid in ids if pid not in test_ids}
    if train:
        stats["qrels_train"] = write_qrels(out / "qrels" / "train.tsv", train)
    questions = ({"id": pid, "question": entries[pid]["QUESTION"], "answer": entries[pid]["final_decision"],
                  "long_answer": entries[pid]["LONG_ANSWER"], "doc": pid} for pid in ids if pid in test_ids)
    stats["questions"] = write_jsonl(out / "questions.jsonl", questions)
    return stats


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared data folder (holds pubmedqa/)")
    ap.add_argument("--out", type=Path, required=True, help="output BEIR folder")
    ap.add_argument("--limit", type=int, default=None, help="keep only the first N entries")
    ap.add_argument("--test-split", choices=("official", "all"), default="official",
                    help="official: the 500 test ids; all: every selected question is a test query")
    args = ap.parse_args(argv)
    stats = convert(args.data_dir, args.out, args.limit, args.test_split)
    print(f"{args.out}: " + ", ".join(f"{k} {v}" for k, v in stats.items()))


if __name__ == "__main__":
    main()
