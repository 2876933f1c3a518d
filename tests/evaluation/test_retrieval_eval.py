"""Retrieval evaluation: configs resolved against the workspace, and scoring any search function."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from domainrag.errors import DomainRagError, NotFoundError
from domainrag.evaluation.beir import RetrievalDataset, load_beir
from domainrag.evaluation.retrieval_eval import (
    derived_index_name,
    ingest_corpus,
    resolve_configs,
    run_retrieval_eval,
    score_retrievers,
)
from domainrag.evaluation.spec import RetrievalConfigSpec, RetrievalEvalSpec
from domainrag.index.base import SearchHit


def test_score_retrievers_with_any_search_function() -> None:
    """What the quickstart uses: label → (search(text, k), config) over an in-memory data set."""
    ds = RetrievalDataset("mem", "questions", {"q1": "a", "q2": "b"}, {"q1": {"d1": 1}, "q2": {"d2": 1}}, None, {})

    def search(text: str, k: int) -> list[SearchHit]:  # d1 first, then two chunks of d2
        return [SearchHit("d1::0", "d1", "x", 0.9), SearchHit("d2::0", "d2", "y", 0.8),
                SearchHit("d2::1", "d2", "z", 0.7)][:k]

    sec = score_retrievers({"fixed": (search, {"mode": "test"})}, ds, ["mrr@10", "ndcg@10"])
    run = sec.runs[0]
    assert run.per_query["q1"]["mrr@10"] == 1.0 and run.per_query["q2"]["mrr@10"] == 0.5
    assert run.metrics["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert [h.relevant for h in sec.queries[1].hits["fixed"]] == [False, True, True]
    assert run.config == {"mode": "test"} and sec.dataset.queries == 2
    with pytest.raises(ValueError, match="unsupported metric"):
        score_retrievers({"fixed": (search, {})}, ds, ["bleu"])


def test_derived_index_name() -> None:
    assert derived_index_name("docs", "BAAI/bge-small-en-v1.5") == "docs__baai-bge-small-en-v1-5"
    assert derived_index_name("docs", "///") == "docs__model"


def test_resolve_configs_names_the_config(ws: Any) -> None:
    ws.catalog.put("index", "docs", {"embedding_model": "emb-a", "dimension": 64, "store": {"type": "embedded"}})
    specs = [RetrievalConfigSpec(mode="bm25"), RetrievalConfigSpec(mode="dense", embedding_model="emb-b"),
             RetrievalConfigSpec(mode="bm25")]
    resolved, needed = resolve_configs(ws, "docs", specs, ingest=True, embedding_model=None)
    assert [(c.label, c.index, c.embedding_model) for c in resolved] == [
        ("bm25", "docs", "emb-a"), ("dense:emb-b", "docs__emb-b", "emb-b"), ("bm25 #3", "docs", "emb-a")]
    assert needed == {"docs": "emb-a", "docs__emb-b": "emb-b"}
    with pytest.raises(NotFoundError, match="config 'dense:emb-b'") as exc:
        resolve_configs(ws, "docs", specs, ingest=False, embedding_model=None)
    assert "--" not in exc.value.message + (exc.value.hint or "")  # evaluation speaks of fields, not CLI flags
    with pytest.raises(DomainRagError, match="built with 'emb-a', not 'emb-z'"):
        resolve_configs(ws, "docs", specs, ingest=True, embedding_model="emb-z")


def test_run_retrieval_eval_returns_a_typed_result(ws: Any, beir_dir: Path, fake_embedder: None) -> None:
    spec = RetrievalEvalSpec(index="docs", configs=[RetrievalConfigSpec(mode="bm25")], ingest=True,
                             metrics=["recall@5", "mrr@10"], limit=2)
    result = run_retrieval_eval(ws, load_beir(beir_dir), spec, command="test")
    sec = result.retrieval
    assert sec is not None and result.answers is None and result.metadata.command == "test"
    assert sec.metrics == ["recall@5", "mrr@10"] and sec.dataset.queries == 2
    assert [i.index for i in sec.ingest] == ["docs"] and sec.ingest[0].documents == 6
    assert sec.runs[0].metrics["recall@5"] == 1.0
    with pytest.raises(DomainRagError, match="ingest needs a corpus"):
        ingest_corpus(ws, "other", "emb-a", RetrievalDataset("q", "questions", {}, {}, None, {}))
