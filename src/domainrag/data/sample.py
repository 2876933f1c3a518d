"""The shipped sample domain (a fictional company's product documentation) and the training
sets derived from it.

``docs/`` and the two QA files are written by hand; ``pairs.jsonl`` (query → passage, for the
embedder) and ``sft_chat.jsonl`` (RAFT-style grounded chats, for the LLM) are derived from
``qa_train.jsonl`` by :func:`build_derived` and shipped too. Rebuild with
``python -m domainrag.data.sample``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainrag.data.chunking import chunk_document
from domainrag.data.loaders import iter_files, load_file
from domainrag.data.prompts import norm_text
from domainrag.data.raft import build_rag_sft_examples, write_chat_jsonl

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"
CHUNK_WORDS = 120
CHUNK_OVERLAP = 20


@dataclass(frozen=True)
class SamplePaths:
    docs: Path
    qa_train: Path
    qa_heldout: Path
    pairs: Path
    sft_chat: Path


def sample_paths(root: Path = SAMPLE_DIR) -> SamplePaths:
    return SamplePaths(root / "docs", root / "qa_train.jsonl", root / "qa_heldout.jsonl", root / "pairs.jsonl",
                       root / "sft_chat.jsonl")


def read_qa(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def doc_chunks(docs_dir: Path) -> dict[str, list[str]]:
    """Chunk texts per document, chunked exactly as ingestion does by default."""
    out: dict[str, list[str]] = {}
    for f in iter_files([docs_dir]):
        for d in load_file(f):
            out[d.doc_id] = [c.text for c in chunk_document(d, CHUNK_WORDS, CHUNK_OVERLAP)]
    return out



def build_derived(root: Path = SAMPLE_DIR, n_distractors: int = 1, p_withhold: float = 0.15) -> SamplePaths:
    """Write pairs.jsonl and sft_chat.jsonl from qa_train.jsonl and the docs."""
    paths = sample_paths(root)
    qa = read_qa(paths.qa_train)
    chunks = doc_chunks(paths.docs)
    with paths.pairs.open("w") as fh:
        for item in qa:
            ev = norm_text(item["evidence"])
            positive = next((c for c in chunks[item["doc"]] if ev in norm_text(c)), item["evidence"])
            fh.write(json.dumps({"query": item["question"], "positive": positive}) + "\n")
    # Short gold passages (the evidence sentence) keep sequences short, so the quickstart's SFT job
    # trains quickly on a CPU; the prompt layout is the one serving uses.
    examples = build_rag_sft_examples(qa, None, n_distractors=n_distractors, p_withhold=p_withhold, seed=0)
    write_chat_jsonl(examples, paths.sft_chat)
    return paths


if __name__ == "__main__":
    p = build_derived()
    print(f"wrote {p.pairs} and {p.sft_chat}")
