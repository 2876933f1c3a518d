"""Answer metrics against reference answers: key-fact accuracy, refusal, exact match, token F1."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Defined in serving.grounding (per-sentence support of served answers); the judge imports them from here.
from domainrag.serving.grounding import SENTENCE_BREAK, SUPPORT_OVERLAP, content_tokens, is_refusal, normalize

__all__ = ["SENTENCE_BREAK", "is_refusal", "normalize"]


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


# -- per-question scoring and aggregation for `domainrag eval answers` -----------------------------
_LABEL = re.compile(r"\b(yes|no|maybe)\b", re.IGNORECASE)
_CITE = re.compile(r"\[\d{1,3}\]")
LEXICAL_SUPPORT_OVERLAP = SUPPORT_OVERLAP


def extract_label(answer: str) -> str | None:
    """yes/no/maybe predicted by an answer: its first word if that is a label, else the first label word."""
    words = normalize(answer).split()
    if words and words[0].strip(",.;:!") in ("yes", "no", "maybe"):
        return words[0].strip(",.;:!")
    m = _LABEL.search(answer)
    return m.group(1).lower() if m else None


def lexical_support(answer: str, passages: list[str], threshold: float = LEXICAL_SUPPORT_OVERLAP) -> float | None:
    """Fraction of answer sentences whose content tokens are ≥ ``threshold`` present in the passages.

    A cheap lexical proxy, not faithfulness: it rewards copying and misses paraphrase.
    None when the answer has no content sentence.
    """
    vocab = set()
    for p in passages:
        vocab.update(content_tokens(p))
    scored = []
    for sentence in SENTENCE_BREAK.split(answer):
        toks = content_tokens(sentence)
        if toks:
            scored.append(sum(t in vocab for t in toks) / len(toks) >= threshold)
    return sum(scored) / len(scored) if scored else None


@dataclass
class QuestionScore:
    """Every answer metric for one (app, question); None = not applicable to this question."""

    answerable: bool
    error: str | None = None
    refused: bool = False
    exact: float | None = None
    f1: float | None = None
    key_fact: float | None = None
    label: str | None = None
    label_correct: float | None = None
    cited: int = 0
    cited_good: int = 0
    context_hit: float | None = None
    lexical_support: float | None = None
    faithfulness: float | None = None
    faithfulness_detail: dict[str, object] | None = None

    @property
    def correct(self) -> bool:
        """Verdict shown in the drill-down: the question's main check passed."""
        if self.error:
            return False
        if not self.answerable:
            return self.refused
        for v in (self.label_correct, self.key_fact, self.exact):
            if v is not None:
                return bool(v)
        return False


def score_answer(
    item: Mapping[str, Any],
    answer: str | None,
    cited_passages: list[tuple[str, str]] | None = None,
    context_passages: list[str] | None = None,
    error: str | None = None,
    gold: list[str] | None = None,
    retrieved_docs: list[str] | None = None,
) -> QuestionScore:
    """Score one answer against a question's reference.

    ``cited_passages`` are (document, text) of the passages the answer cites explicitly;
    ``context_passages`` the texts it was given (for lexical support when it cites none);
    ``retrieved_docs`` the documents of those passages (gold among them = a context hit). An
    errored question scores as a wrong, non-refused answer, so errors never flatter an app.
    """
    gold = gold or []
    reference = str(item.get("answer") or "")
    short = str(item.get("short_answer") or "") or None
    answerable = bool(gold) or ("doc" not in item and "docs" not in item)  # no gold field: assume answerable
    s = QuestionScore(answerable=answerable, error=error)
    text = "" if error else (answer or "")
    s.refused = bool(text) and is_refusal(text)
    if not answerable:
        return s
    if reference:
        s.exact = float(normalize(_CITE.sub("", text)) == normalize(reference))
        s.f1 = token_f1(_CITE.sub("", text), reference)
    if short:
        s.key_fact = float(bool(text) and not s.refused and normalize(short) in normalize(text))
    if _is_label(reference):
        s.label = None if s.refused else extract_label(text)
        s.label_correct = float(s.label == reference.strip().lower().rstrip("."))
    if gold and (retrieved_docs is not None or error):
        s.context_hit = float(any(d in gold for d in retrieved_docs or []))
    for doc, passage in cited_passages or []:
        s.cited += 1
        s.cited_good += int(doc in gold or (short is not None and normalize(short) in normalize(passage)))
    if text and not s.refused:
        support_from = [p for _, p in cited_passages] if cited_passages else (context_passages or [])
        s.lexical_support = lexical_support(text, support_from)
    return s


def _is_label(text: str) -> bool:
    return text.strip().lower().rstrip(".") in ("yes", "no", "maybe")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


ANSWER_METRICS = ("exact_match", "token_f1", "key_fact_accuracy", "label_accuracy", "refusal_rate_unanswerable",
                  "false_refusal_rate", "citation_precision", "citation_rate", "context_hit_rate", "lexical_support",
                  "faithfulness", "error_rate")
"""Metric names of :func:`aggregate_scores` (all in [0, 1]; higher is better except the two rates of failure)."""

LOWER_IS_BETTER = frozenset({"false_refusal_rate", "error_rate"})


def aggregate_scores(scores: list[QuestionScore]) -> dict[str, float | None]:
    """Means over the questions each metric applies to; None = no question it applies to (or not measured)."""
    ans = [s for s in scores if s.answerable]
    unans = [s for s in scores if not s.answerable]
    cited = sum(s.cited for s in ans)
    return {
        "exact_match": _mean([s.exact for s in ans if s.exact is not None]),
        "token_f1": _mean([s.f1 for s in ans if s.f1 is not None]),
        "key_fact_accuracy": _mean([s.key_fact for s in ans if s.key_fact is not None]),
        "label_accuracy": _mean([s.label_correct for s in ans if s.label_correct is not None]),
        "refusal_rate_unanswerable": _mean([float(s.refused) for s in unans]),
        "false_refusal_rate": _mean([float(s.refused) for s in ans]),
        "citation_precision": sum(s.cited_good for s in ans) / cited if cited else None,
        "citation_rate": _mean([float(s.cited > 0) for s in ans if not s.error and not s.refused]),
        "context_hit_rate": _mean([s.context_hit for s in ans if s.context_hit is not None]),
        "lexical_support": _mean([s.lexical_support for s in scores if s.lexical_support is not None]),
        "faithfulness": _mean([s.faithfulness for s in scores if s.faithfulness is not None]),
        "error_rate": _mean([float(s.error is not None) for s in scores]),
    }
