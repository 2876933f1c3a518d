"""RAFT-style grounded training examples, in the exact layout serving uses.

Each example puts a question's gold passage among distractors (or withholds it and targets the
not-found answer), so fine-tuning teaches citing and refusing in the serving prompt format.
Lives in the data layer so both training and sample-data building use it without importing
each other.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from domainrag.data.formats import Messages
from domainrag.data.prompts import DEFAULT_SYSTEM_PROMPT, NOT_FOUND_ANSWER, ContextPassage, build_messages, norm_text
from domainrag.errors import DomainRagError


def _gold_passage(evidence: str, doc_chunks: Sequence[str]) -> str:
    """The chunk that contains the evidence (or overlaps it most), else the evidence itself."""
    ev = norm_text(evidence)
    for chunk in doc_chunks:
        if ev and ev in norm_text(chunk):
            return chunk
    ev_words = set(ev.split())
    best, best_overlap = evidence, 0.5  # require over half of the evidence words
    for chunk in doc_chunks:
        overlap = len(ev_words & set(norm_text(chunk).split())) / max(1, len(ev_words))
        if overlap > best_overlap:
            best, best_overlap = chunk, overlap
    return best


def _with_citation(answer: str, k: int) -> str:
    """``answer`` with ``[k]`` before its final punctuation ("X is Y [2].")."""
    answer = answer.strip()
    m = re.search(r"[.!?]+$", answer)
    if m is None:
        return f"{answer} [{k}]"
    return f"{answer[: m.start()]} [{k}]{m.group(0)}"


def build_rag_sft_examples(
    qa: Sequence[Mapping[str, str]],
    chunks: Mapping[str, Sequence[str]] | None = None,
    n_distractors: int = 3,
    p_withhold: float = 0.2,
    seed: int = 0,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> list[Messages]:
    """RAFT-style chat examples: answer from a gold passage among distractors, with a citation.

    Each QA item needs ``question``, ``answer`` and ``doc``; ``evidence`` (a sentence from the doc)
    selects the gold passage among ``chunks[doc]`` (or is the passage itself when the doc has no
    chunks). Distractors are drawn from other docs' chunks (or other items' evidence). With
    probability ``p_withhold`` the gold passage is left out and the target answer is
    :data:`NOT_FOUND_ANSWER`, which teaches the model to refuse instead of guessing.
    """
    rng = random.Random(seed)
    chunks = chunks or {}
    pool: list[tuple[str, str]] = [(doc, c) for doc, cs in chunks.items() for c in cs if c.strip()]
    if not pool:  # no chunk table: other items' evidence serves as distractors
        seen: set[tuple[str, str]] = set()
        for item in qa:
            key = (item["doc"], item.get("evidence") or item["answer"])
            if key not in seen:
                seen.add(key)
                pool.append(key)
    examples: list[Messages] = []
    for n, item in enumerate(qa):
        missing = [k for k in ("question", "answer", "doc") if not str(item.get(k) or "").strip()]
        if missing:
            raise DomainRagError(f"QA item {n} lacks {', '.join(missing)}", hint="every item needs question/answer/doc")
        doc = item["doc"]
        evidence = item.get("evidence") or item["answer"]
        gold = ContextPassage(_gold_passage(evidence, chunks.get(doc, ())), source=doc)
        others = [(d, t) for d, t in pool if d != doc]
        picked = rng.sample(others, min(n_distractors, len(others)))
        passages = [ContextPassage(t, source=d) for d, t in picked]
        withhold = rng.random() < p_withhold
        if not withhold:
            passages.append(gold)
        rng.shuffle(passages)
        answer = NOT_FOUND_ANSWER if withhold else _with_citation(item["answer"], passages.index(gold) + 1)
        messages = build_messages(item["question"], passages, system_prompt=system_prompt)
        examples.append([*messages, {"role": "assistant", "content": answer}])
    return examples


def write_chat_jsonl(examples: Sequence[Messages], path: Path) -> Path:
    """Write examples as OpenAI ``messages`` JSONL (the input format of :func:`run_sft`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for messages in examples:
            fh.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    return path
