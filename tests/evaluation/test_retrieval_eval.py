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


class ShortestFirst:
    """A stand-in cross-encoder that prefers short passages: an order unrelated to BM25's, known in advance."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, pairs: Any, **_: Any) -> Any:
        import numpy as np

        self.calls.append(len(pairs))
        return np.array([-float(len(p)) for _, p in pairs], dtype=np.float32)


def test_reranked_and_app_configs_rescore_the_head_and_keep_the_tail(
    ws: Any, beir_dir: Path, fake_embedder: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from domainrag.evaluation.spec import AppConfigSpec, RerankSpec
    from domainrag.workspace import Workspace

    scorer = ShortestFirst()
    monkeypatch.setattr(Workspace, "reranker", lambda self, name: scorer if name == "short" else None)
    ws.catalog.put("app", "docs", {"name": "docs", "model": "llm", "generation": {},
                                   "retrieval": {"index": "docs", "mode": "hybrid", "top_k": 2,
                                                 "rerank_model": "short", "rerank_top_n": 3}})
    configs = [RetrievalConfigSpec(mode="hybrid"),
               RetrievalConfigSpec(mode="hybrid", rerank=RerankSpec(model="short", top_n=3)),
               AppConfigSpec(app="docs")]
    spec = RetrievalEvalSpec(index="docs", configs=configs, ingest=True, metrics=["recall@5", "mrr@10"], drill_hits=6)
    sec = run_retrieval_eval(ws, load_beir(beir_dir), spec).retrieval
    assert sec is not None
    labels = [r.label for r in sec.runs]
    assert labels == ["hybrid", "hybrid+rerank:short,top_n=3", "app:docs (hybrid+rerank:short,top_n=3)"]
    plain, reranked, app = sec.runs
    assert reranked.config["rerank_model"] == "short" and reranked.config["rerank_top_n"] == 3
    assert (app.config["app"], app.config["app_top_k"], app.config["index"]) == ("docs", 2, "docs")
    assert "app" not in plain.config and "rerank_model" not in plain.config
    assert scorer.calls and max(scorer.calls) <= 3  # the reranker sees the head only, as in the app
    moved = 0
    for q in sec.queries:
        before, after = q.hits[plain.label], q.hits[reranked.label]
        head = sorted(before[:3], key=lambda h: len(h.text))  # stable, like the reranker's ties
        expected = [h.chunk_id for h in head] + [h.chunk_id for h in before[3:]]
        assert [h.chunk_id for h in after] == expected
        assert [h.chunk_id for h in q.hits[app.label]] == expected  # the app's pipeline is the same one
        moved += expected != [h.chunk_id for h in before]
    assert moved  # the reranker changed at least one ranking
    assert app.metrics == reranked.metrics and set(plain.metrics) == set(reranked.metrics)


def test_unknown_reranker_or_app_names_the_config(ws: Any, beir_dir: Path, fake_embedder: None) -> None:
    from domainrag.evaluation.spec import AppConfigSpec, RerankSpec

    ingest_corpus(ws, "docs", "emb-a", load_beir(beir_dir))
    nope = RetrievalConfigSpec(mode="hybrid", rerank=RerankSpec(model="nope"))
    with pytest.raises(NotFoundError, match=r"config 'hybrid\+rerank:nope': reranker model 'nope' is not registered"
                       ) as exc:
        resolve_configs(ws, "docs", [nope], ingest=False, embedding_model=None)
    assert "register it with `model create`" in (exc.value.hint or "")
    with pytest.raises(NotFoundError, match="app 'ghost' not found"):
        resolve_configs(ws, None, [AppConfigSpec(app="ghost")], ingest=False, embedding_model=None)
    ws.catalog.put("app", "orphan", {"name": "orphan", "model": "llm", "retrieval": {"index": "gone"}})
    with pytest.raises(NotFoundError, match="index 'gone' of app 'orphan'"):
        resolve_configs(ws, None, [AppConfigSpec(app="orphan")], ingest=False, embedding_model=None)
