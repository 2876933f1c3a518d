"""Answer metrics (the runner is in test_answer_eval.py, the judge in test_judge.py)."""

from __future__ import annotations

import pytest

from domainrag.evaluation.answers import aggregate_scores, extract_label, lexical_support, score_answer
from domainrag.index.base import SearchHit
from domainrag.serving.rag import RagAnswer

PUMP = SearchHit("pumps::0", "pumps", "Prime the dosing pump for 30 seconds before first use.", 0.9)
TOWER = SearchHit("towers::0", "towers", "Cooling towers lose water to evaporation.", 0.5)

QUESTIONS = [
    {"id": "a", "question": "How long do I prime the pump?", "answer": "Prime it for 30 seconds.",
     "short_answer": "30 seconds", "doc": "pumps"},
    {"id": "b", "question": "Who founded the company?",
     "answer": "The knowledge base does not contain this information.", "doc": None},
    {"id": "c", "question": "Is priming needed?", "answer": "yes", "doc": "pumps"},
]


class ScriptedApp:
    """Answers from a script; raises for questions it has no answer for."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def invoke(self, query: str) -> RagAnswer:
        if query not in self.answers:
            raise RuntimeError("generator crashed")
        return RagAnswer(self.answers[query], [{"citation": 1, "document": "pumps", "chunk_id": "pumps::0"}],
                         [PUMP, TOWER])


def test_score_answer_answerable() -> None:
    s = score_answer(QUESTIONS[0], "Prime it for 30 seconds [1].", [("pumps", PUMP.text)], gold=["pumps"])
    assert s.answerable and not s.refused
    assert s.exact == 1.0 and s.f1 == 1.0 and s.key_fact == 1.0  # citation markers do not count against EM
    assert (s.cited, s.cited_good) == (1, 1)
    assert s.lexical_support == 1.0 and s.correct


def test_citation_good_by_short_answer_in_passage() -> None:
    s = score_answer(QUESTIONS[0], "30 seconds [1][2].", [("other", "wait 30 seconds"), ("towers", TOWER.text)],
                     gold=["pumps"])
    assert (s.cited, s.cited_good) == (2, 1)


def test_unanswerable_scores_refusal_only() -> None:
    refused = score_answer(QUESTIONS[1], "The knowledge base does not contain this information.", gold=[])
    assert not refused.answerable and refused.refused and refused.correct and refused.exact is None
    assert not score_answer(QUESTIONS[1], "Alice founded it.", gold=[]).correct


def test_labels() -> None:
    assert extract_label("Yes, priming is required.") == "yes"
    assert extract_label("The data suggest maybe; no firm answer.") == "maybe"
    assert extract_label("It depends.") is None
    s = score_answer(QUESTIONS[2], "No. It is optional.", gold=["pumps"])
    assert s.label == "no" and s.label_correct == 0.0


def test_error_counts_as_wrong() -> None:
    s = score_answer(QUESTIONS[0], None, error="RuntimeError: boom", gold=["pumps"])
    assert s.key_fact == 0.0 and s.f1 == 0.0 and not s.refused and not s.correct


def test_lexical_support_threshold() -> None:
    passages = ["The pump must be primed for thirty seconds."]
    assert lexical_support("The pump must be primed. Bananas grow quickly on Mars.", passages) == 0.5
    assert lexical_support("[1]", passages) is None


def test_aggregate_hand_computed() -> None:
    scores = [score_answer(QUESTIONS[0], "30 seconds [1]", [("pumps", PUMP.text)], gold=["pumps"]),
              score_answer(QUESTIONS[0], "about a minute [1]", [("towers", TOWER.text)], gold=["pumps"]),
              score_answer(QUESTIONS[1], "The knowledge base does not contain this information.", gold=[]),
              score_answer(QUESTIONS[1], "Alice did.", gold=[])]
    m = aggregate_scores(scores)
    assert m["key_fact_accuracy"] == 0.5
    assert m["refusal_rate_unanswerable"] == 0.5
    assert m["citation_precision"] == 0.5 and m["citation_rate"] == 1.0
    assert m["label_accuracy"] is None and m["faithfulness"] is None and m["error_rate"] == 0.0


def test_context_hit_rate() -> None:
    hit = score_answer(QUESTIONS[0], "x", retrieved_docs=["towers", "pumps"], gold=["pumps"])
    miss = score_answer(QUESTIONS[0], "x", retrieved_docs=["towers"], gold=["pumps"])
    failed = score_answer(QUESTIONS[0], None, error="boom", gold=["pumps"])
    assert (hit.context_hit, miss.context_hit, failed.context_hit) == (1.0, 0.0, 0.0)
    assert aggregate_scores([hit, miss, failed])["context_hit_rate"] == pytest.approx(1 / 3)
