"""Retrieval metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest

from domainrag.evaluation.retrieval import evaluate_run, evaluate_run_per_query, run_from_hits
from domainrag.index.base import SearchHit

M = ("ndcg@10", "recall@1", "recall@5", "recall@10", "recall@100", "mrr@10", "map")


def test_single_relevant_at_rank_two() -> None:
    got = evaluate_run({"q": {"d1": 1}}, {"q": {"x": 3.0, "d1": 2.0, "y": 1.0}}, M)
    assert got["mrr@10"] == pytest.approx(0.5)
    assert got["ndcg@10"] == pytest.approx(1 / math.log2(3))
    assert got["recall@1"] == 0.0
    assert got["recall@5"] == got["recall@10"] == got["recall@100"] == 1.0
    assert got["map"] == pytest.approx(0.5)


def test_two_relevant_and_a_missing_query_average() -> None:
    qrels = {"a": {"d1": 1, "d2": 1}, "b": {"d9": 1}}
    run = {"a": {"d1": 3.0, "x": 2.0, "d2": 1.0}}  # "b" never retrieved: scores 0
    per_q = evaluate_run_per_query(qrels, run, M)
    ndcg_a = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert per_q["a"]["ndcg@10"] == pytest.approx(ndcg_a)
    assert per_q["a"]["map"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert per_q["a"]["recall@1"] == pytest.approx(0.5)
    assert per_q["a"]["mrr@10"] == 1.0
    assert per_q["b"] == dict.fromkeys(M, 0.0)
    mean = evaluate_run(qrels, run, M)
    assert mean["ndcg@10"] == pytest.approx(ndcg_a / 2)
    assert mean["recall@1"] == pytest.approx(0.25)


def test_graded_relevance_uses_linear_gain() -> None:
    qrels = {"q": {"hi": 2, "lo": 1}}
    swapped = evaluate_run(qrels, {"q": {"lo": 2.0, "hi": 1.0}}, ["ndcg@10"])["ndcg@10"]
    assert swapped == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert evaluate_run(qrels, {"q": {"hi": 2.0, "lo": 1.0}}, ["ndcg@10"])["ndcg@10"] == pytest.approx(1.0)


def test_cutoffs_mrr_and_recall() -> None:
    run = {"q": {f"x{i}": 100.0 - i for i in range(10)} | {"d": 1.0}}  # relevant at rank 11
    got = evaluate_run({"q": {"d": 1}}, run, ["mrr@10", "recall@10", "recall@100", "map"])
    assert got["mrr@10"] == 0.0 and got["recall@10"] == 0.0
    assert got["recall@100"] == 1.0
    assert got["map"] == pytest.approx(1 / 11)


def test_run_from_hits_keeps_each_documents_best_rank() -> None:
    hits = [SearchHit("a::0", "a", "", 0.9), SearchHit("b::0", "b", "", 0.8), SearchHit("a::1", "a", "", 0.7)]
    row = run_from_hits(hits, "doc")
    assert list(row) == ["a", "b"] and row["a"] > row["b"]
    assert evaluate_run({"q": {"b": 1}}, {"q": row}, ["mrr@10"])["mrr@10"] == 0.5
    assert len(run_from_hits(hits, "chunk")) == 3


def test_unknown_metric_is_rejected() -> None:
    with pytest.raises(ValueError, match="unsupported metric"):
        evaluate_run({"q": {"d": 1}}, {"q": {"d": 1.0}}, ["bleu"])
    for bad in ("ndcg@0", "recall@x", "mrr@-1"):  # a cut-off of 0 scored 1.0; a word gave Python's int() message
        with pytest.raises(ValueError, match=f"metric '{bad}': the cut-off after @ must be a whole number"):
            evaluate_run({"q": {"d": 1}}, {"q": {"d": 1.0}}, [bad])
