"""The answerability gate: signals from retrieved hits, the uncalibrated default, a fitted gate's decision,
and the app path when the gate says no (not-found text, closest references, the model never called)."""

from __future__ import annotations

import pytest

from domainrag.index.base import SearchHit
from domainrag.serving.gate import DEFAULT_MIN_DENSE, Gate, GateCalibration, decide, gate_signals
from domainrag.serving.rag import MAX_QUERY_CHARS, GenerationSettings, RagApp, check_query


def _hit(i: int, dense: float, bm25: float, rerank: float | None = None) -> SearchHit:
    hit = SearchHit(f"d{i}::0", f"d{i}.md", f"passage {i} about pumps", 0.0)
    hit.scores.update(dense=dense, bm25=bm25)
    if rerank is not None:
        hit.scores["rerank"] = rerank
    return hit


def _calibration(**more) -> GateCalibration:
    return GateCalibration(features=["dense", "bm25"], mean=[0.5, 5.0], scale=[0.1, 2.0], weights=[2.0, 1.0],
                           bias=0.0, threshold=0.5, target_false_refusal=0.05, **more)


class _Pairs:
    """A pair scorer that scores by passage length (what matters here: it is called on the top passages only)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def predict(self, pairs, **_: object):
        self.seen.extend(pairs)
        return [float(len(t)) for _, t in pairs]


def test_signals_are_the_best_scores_of_the_top_passages_and_the_hits_stay_as_retrieved() -> None:
    hits = [_hit(1, 0.3, 9.0), _hit(2, 0.7, 2.0), _hit(3, 0.9, 1.0), _hit(4, 0.99, 99.0)]
    scorer = _Pairs()
    signals = gate_signals("q", hits, reranker=scorer, top_n=3)
    assert signals["dense"] == 0.9 and signals["bm25"] == 9.0  # the 4th hit is beyond top_n
    assert signals["rerank"] == float(len("passage 1 about pumps")) and len(scorer.seen) == 3
    assert signals["reader"] is None  # no reader scorer given
    assert [h.chunk_id for h in hits] == ["d1::0", "d2::0", "d3::0", "d4::0"] and "rerank" not in hits[0].scores
    assert gate_signals("q", [_hit(1, 0.3, 1.0, rerank=-2.5)], features=["rerank"]) == {"rerank": -2.5}


def test_a_hybrid_hit_that_one_retriever_missed_scores_zero_for_it() -> None:
    """Top passages found by dense only: bm25 is 0 (evidence for the gate), not None (which left a calibrated gate
    unable to run: TAT-QA withheld-report questions hit this). Hits that were never fused keep None."""
    from domainrag.retrieval.fusion import reciprocal_rank_fusion

    dense_only = [SearchHit("a::0", "a", "x", 0.8), SearchHit("b::0", "b", "y", 0.6)]
    fused = reciprocal_rank_fusion({"dense": dense_only, "bm25": [SearchHit("c::0", "c", "z", 7.0)]},
                                   weights={"bm25": 0.5}, k=2)  # c (BM25 only) ranks third
    assert gate_signals("q", fused, features=["dense", "bm25"], top_n=2) == {"dense": 0.8, "bm25": 0.0}
    plain = SearchHit("a::0", "a", "x", 0.8)
    plain.scores["dense"] = 0.8
    assert gate_signals("q", [plain], features=["dense", "bm25"]) == {"dense": 0.8, "bm25": None}


def test_reader_signals_come_from_their_scorers_on_the_apps_messages() -> None:
    asked: list[list[dict[str, str]]] = []

    def checker(messages: list[dict[str, str]]) -> float:
        asked.append(messages)
        return 2.5

    hits = [_hit(1, 0.3, 9.0)]
    messages = [{"role": "user", "content": "Context: passage 1\n\nQuestion: q"}]
    signals = gate_signals("q", hits, features=["dense", "check"], checker=checker, messages=lambda: messages)
    assert signals == {"dense": 0.3, "check": 2.5} and asked == [messages]
    assert gate_signals("q", hits, features=["check"], messages=lambda: messages) == {"check": None}  # no scorer
    assert gate_signals("q", [], features=["check"], checker=checker, messages=lambda: messages) == {"check": None}
    assert len(asked) == 1  # no passage: the reader is not asked


def test_an_uncalibrated_gate_refuses_only_below_the_default_dense_floor() -> None:
    low, high = decide(None, {"dense": DEFAULT_MIN_DENSE - 0.01}), decide(None, {"dense": DEFAULT_MIN_DENSE + 0.01})
    assert (low.answerable, low.ran, low.calibrated) == (False, True, False)
    assert high.answerable and "uncalibrated" in high.reason
    bm25_only = decide(None, {"bm25": 3.0})
    assert bm25_only.answerable and not bm25_only.ran  # no dense score: the gate did not run, it says so


def test_a_calibrated_gate_answers_above_its_threshold_and_does_not_run_without_its_signals() -> None:
    cal = _calibration()
    assert cal.probability({"dense": 0.5, "bm25": 5.0}) == pytest.approx(0.5)
    yes, no = decide(cal, {"dense": 0.8, "bm25": 6.0}), decide(cal, {"dense": 0.3, "bm25": 4.0})
    assert yes.answerable and yes.calibrated and yes.score > 0.5
    assert not no.answerable and no.score < 0.5
    missing = decide(cal, {"dense": 0.8, "bm25": None})
    assert missing.answerable and not missing.ran and "bm25" in missing.reason


class _NoModel:
    name = "never"

    def stream(self, *a, **k):
        raise AssertionError("the gate said no: the model must not be called")

    generate = stream


class _Retriever:
    def __init__(self, hits):
        self.hits = hits
        self.config = type("C", (), {"index": "kb"})()

    def run(self, query, top_k=None, filters=None, on_stage=None):
        return list(self.hits)


def test_when_the_gate_says_no_the_app_answers_not_found_with_the_closest_references_without_the_model() -> None:
    hits = [_hit(i, 0.1, 1.0) for i in range(1, 6)]
    rag = RagApp("kb", _Retriever(hits), _NoModel(), GenerationSettings(), gate=Gate(None))
    answer = rag.invoke("What is the price of the CTL-600?")
    assert answer.answer == GenerationSettings().not_found_answer
    assert [r["document"] for r in answer.references] == ["d1.md", "d2.md", "d3.md"]
    g = answer.grounding
    assert g["abstained"] and g["grounded"] is None and g["gate"]["answerable"] is False


def test_retrieval_that_finds_nothing_abstains_and_says_why() -> None:
    answer = RagApp("kb", _Retriever([]), _NoModel(), GenerationSettings(), gate=Gate(None)).invoke("anything?")
    assert answer.references == [] and answer.grounding["reason"] == "retrieval returned no passage"


@pytest.mark.parametrize("query, says", [("", "empty"), ("  \n", "empty"), ("x" * 100_000, "100000 characters")])
def test_empty_and_overlong_questions_are_refused_with_a_clear_message(query: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        check_query(query)
    check_query("x" * MAX_QUERY_CHARS)  # the limit itself is accepted
