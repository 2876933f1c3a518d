"""Answer metrics against reference answers: key-fact accuracy, refusal, exact match, token F1."""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass

from domainrag.serving.prompts import NOT_FOUND_ANSWER

_REFUSAL = re.compile(
    r"(does not contain|doesn't contain|not (?:found|mentioned|provided|available) in|no information|cannot find|"
    r"can't find|not in the (?:context|knowledge base))",
    re.IGNORECASE,
)


def normalize(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation/articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation) or ch in "-.")
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split()).strip(" .")


def is_refusal(answer: str) -> bool:
    return bool(_REFUSAL.search(answer)) or normalize(NOT_FOUND_ANSWER) in normalize(answer)


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


@dataclass(frozen=True)
class AnswerVerdict:
    correct: bool
    refused: bool
    f1: float
    exact: bool


def judge_answer(answer: str, reference: str, short_answer: str | None) -> AnswerVerdict:
    """Correct = the key fact (``short_answer``) appears in the answer; for questions the corpus
    cannot answer (empty ``short_answer``), correct = the answer refuses."""
    refused = is_refusal(answer)
    if not short_answer:
        correct = refused
    else:
        correct = normalize(short_answer) in normalize(answer) and not refused
    return AnswerVerdict(correct, refused, token_f1(answer, reference), normalize(answer) == normalize(reference))
