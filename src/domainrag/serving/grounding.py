"""Per-sentence grounding of an answer: does each sentence cite a passage, and does the cited passage support it?

Support is lexical: the share of a sentence's content tokens (no stopwords, no citation markers, SQuAD
normalisation) found in the passages it cites, against :data:`SUPPORT_OVERLAP`. It is cheap enough to run
on every answer, and strict in the safe direction: a paraphrase can be flagged though true, an invented
fact in new words is never passed as supported. Sentences are ``supported``, ``unsupported`` (cites passages
that do not hold its words), ``uncited`` or ``invalid-citation`` (cites a passage it was never given).

``grounded`` is True only when the gate ran, the answer is not an abstention and every sentence is
supported; it is False when a sentence is not, and ``None`` (with a reason) when it cannot be said.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

from domainrag.data.prompts import NOT_FOUND_ANSWER, citation_markers

SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
"""Where an answer splits into sentences (grounding, lexical support, claims for the faithfulness judge)."""
SUPPORT_OVERLAP = 0.6
"""Share of a sentence's content tokens that its cited passages must hold for it to count as supported."""

_CITE = re.compile(r"\[\d{1,3}\]")
_PUNCT = frozenset(string.punctuation) - {"-", "."}
_STOPWORDS = frozenset({
    "a", "an", "the", "of", "to", "in", "on", "at", "for", "by", "with", "from", "and", "or", "but", "is", "are",
    "was", "were", "be", "been", "being", "it", "its", "this", "that", "these", "those", "as", "into", "than",
    "then", "there", "their", "they", "them", "he", "she", "his", "her", "we", "our", "you", "your", "i", "not",
    "no", "do", "does", "did", "has", "have", "had", "which", "who", "whom", "what", "when", "where", "why", "how",
    "can", "could", "should", "would", "may", "might", "will", "shall", "also", "such"
})
_REFUSAL = re.compile(
    r"(does not contain|doesn't contain|not (?:found|mentioned|provided|available) in|no information|cannot find|"
    r"can't find|not in the (?:context|knowledge base))",
    re.IGNORECASE,
)


def normalize(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation/articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split()).strip(" .")


def is_refusal(answer: str, not_found: str = NOT_FOUND_ANSWER) -> bool:
    """Whether an answer abstains: a refusal phrase, or the app's not-found text."""
    return bool(_REFUSAL.search(answer)) or normalize(not_found) in normalize(answer)


def content_tokens(text: str) -> list[str]:
    """Normalised words of ``text`` without stopwords and citation markers."""
    return [t.strip(".-") for t in normalize(_CITE.sub(" ", text)).split() if t.strip(".-") not in _STOPWORDS]


def _overlap(tokens: list[str], passages: Sequence[str]) -> float:
    vocab: set[str] = set()
    for p in passages:
        vocab.update(content_tokens(p))
    return sum(t in vocab for t in tokens) / len(tokens)


def sentence_support(answer: str, passages: Sequence[str], threshold: float = SUPPORT_OVERLAP) -> list[dict[str, Any]]:
    """One entry per content sentence of ``answer``: its text, citations, overlap and status (see module doc)."""
    out = []
    for sentence in SENTENCE_BREAK.split(answer):
        tokens = content_tokens(sentence)
        if not tokens:
            continue
        cited = sorted({n for n, _, _ in citation_markers(sentence)})
        valid = [n for n in cited if 1 <= n <= len(passages)]
        entry: dict[str, Any] = {"sentence": sentence.strip(), "citations": cited, "support": None}
        if not cited:
            entry["status"] = "uncited"
        elif len(valid) < len(cited):
            entry["status"] = "invalid-citation"
        else:
            entry["support"] = round(_overlap(tokens, [passages[n - 1] for n in valid]), 3)
            entry["status"] = "supported" if entry["support"] >= threshold else "unsupported"
        out.append(entry)
    return out


def grounding(answer: str, passages: Sequence[str], *, gate: dict[str, Any] | None, abstained: bool = False,
              not_found: str = NOT_FOUND_ANSWER) -> dict[str, Any]:
    """The response's ``grounding`` field: per-sentence support, flagged sentences, and whether it is grounded."""
    gate_ran = bool(gate and gate.get("ran"))
    if abstained or is_refusal(answer, not_found):
        return {"grounded": None, "abstained": True, "reason": "the answer abstains (not-found text)",
                "gate": gate, "sentences": [], "flagged": 0}
    sentences = sentence_support(answer, passages)
    flagged = sum(1 for s in sentences if s["status"] != "supported")
    if not sentences:
        grounded, reason = None, "the answer has no content sentence"
    elif flagged:
        grounded, reason = False, f"{flagged} of {len(sentences)} sentence(s) not supported by a cited passage"
    elif not gate_ran:
        grounded, reason = None, "every sentence cites a supporting passage, but the answerability gate did not run"
    else:
        grounded, reason = True, "every sentence cites a passage that supports it"
    return {"grounded": grounded, "abstained": False, "reason": reason, "gate": gate, "sentences": sentences,
            "flagged": flagged}
