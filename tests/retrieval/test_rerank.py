"""Reranking retrieved hits with a cross-encoder: order, ranks, scores, and app wiring."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from domainrag.data.chunking import Chunk
from domainrag.errors import DomainRagError, NotFoundError
from domainrag.index import open_store, parse_store_config
from domainrag.retrieval.retriever import RetrievalConfig, Retriever

TEXTS = {
    "pump": "The DP-220 pump delivers 12 litres per hour; replace the pump diaphragm every 4000 hours.",
    "valve": "The pump inlet valve must be checked weekly.",
    "warranty": "The pump warranty lasts 36 months on parts.",
    "tower": "Clean the cooling tower strainer every quarter.",
}


class KeywordScorer:
    """A stand-in cross-encoder: relevance = does the passage mention ``word``."""

    def __init__(self, word: str) -> None:
        self.word = word
        self.calls: list[list[tuple[str, str]]] = []

    def predict(self, pairs: Sequence[tuple[str, str]], **_: Any) -> np.ndarray:
        self.calls.append(list(pairs))
        return np.array([0.9 if self.word in p.lower() else 0.1 for _, p in pairs], dtype=np.float32)


@pytest.fixture
def store(tmp_path: Path):
    store = open_store("kb", parse_store_config(None), str(tmp_path / "stores"))
    store.create(4)
    rng = np.random.default_rng(0)
    store.upsert([Chunk(k, f"{k}.md", t, 0) for k, t in TEXTS.items()], rng.random((len(TEXTS), 4), dtype=np.float32))
    store.refresh()
    return store


@pytest.mark.parametrize("mode", ["bm25", "hybrid"])
def test_reranker_reorders_fused_hits_and_reports_ranks(store, fixed_embedder, mode: str) -> None:
    cfg = RetrievalConfig(index="kb", mode=mode, top_k=3, rerank_top_n=4)
    plain = Retriever(store, fixed_embedder, cfg).run("pump diaphragm")  # type: ignore[arg-type]
    scorer = KeywordScorer("warranty")
    hits = Retriever(store, fixed_embedder, cfg, reranker=scorer).run("pump diaphragm")  # type: ignore[arg-type]

    assert plain[0].chunk_id == "pump" and "rerank" not in plain[0].ranks
    assert hits[0].chunk_id == "warranty" and len(hits) == 3
    assert [h.ranks["rerank"] for h in hits] == [1, 2, 3]
    assert all(h.score == h.scores["rerank"] for h in hits)
    assert hits[0].scores["rerank"] == pytest.approx(0.9) and "bm25" in hits[0].ranks  # fused ranks are kept
    assert [h.chunk_id for h in hits[1:]] == [h.chunk_id for h in plain if h.chunk_id != "warranty"][:2]  # stable ties
    top4 = Retriever(store, fixed_embedder, cfg).run("pump diaphragm", top_k=4)  # type: ignore[arg-type]
    assert scorer.calls[0] == [("pump diaphragm", h.text) for h in top4]  # the top rerank_top_n fused hits


def test_rerank_top_n_limits_the_rescored_hits(store, fixed_embedder) -> None:
    scorer = KeywordScorer("tower")
    cfg = RetrievalConfig(index="kb", mode="bm25", top_k=1, rerank_top_n=2)
    hits = Retriever(store, None, cfg, reranker=scorer).run("pump")  # type: ignore[arg-type]
    assert len(scorer.calls[0]) == 2 and len(hits) == 1
    assert hits[0].ranks["rerank"] == 1 and hits[0].chunk_id != "tower"  # "tower" is not among the top 2 fused


def test_rrf_fusion_blends_reranker_and_retrieval_order() -> None:
    from domainrag.index.base import SearchHit
    from domainrag.retrieval.reranker import rerank_hits

    def hits() -> list[SearchHit]:
        return [SearchHit(c, c, TEXTS[c], 1.0) for c in ("pump", "valve", "warranty", "tower")]

    scorer = KeywordScorer("warranty")
    plain = rerank_hits(scorer, "q", hits())
    assert [h.chunk_id for h in plain][:2] == ["warranty", "pump"]
    # retrieval order weighted 2x: the retriever's first hit stays first; the reranker still lifts "warranty"
    fused = rerank_hits(scorer, "q", hits(), fusion=(60, 2.0))
    assert [h.chunk_id for h in fused] == ["pump", "warranty", "valve", "tower"]
    expected = 1 / (60 + 1) + 2.0 / (60 + 3)  # reranker rank 1, retrieval rank 3
    assert fused[1].score == pytest.approx(expected) and fused[1].scores["rerank_fused"] == fused[1].score
    assert fused[1].ranks["rerank"] == 1 and fused[1].scores["rerank"] == pytest.approx(0.9)
    even = rerank_hits(scorer, "q", hits(), fusion=(60, 1.0))  # equal weights: ranks 2+1 beat 1+3
    assert even[0].chunk_id == "pump"
    light = rerank_hits(scorer, "q", hits(), fusion=(60, 0.5))  # retrieval weighted half: the reranker wins
    assert light[0].chunk_id == "warranty"


def test_reranker_reads_the_context_field_after_the_text(make_store: Any) -> None:
    from domainrag.retrieval.reranker import reranker_text

    sections = {"tower": "Section: warranty claims", "pump": ""}  # an empty context adds nothing
    store = make_store("ctx", TEXTS, {k: {"section": v} for k, v in sections.items()})
    scorer = KeywordScorer("warranty")
    cfg = RetrievalConfig(index="ctx", mode="bm25", top_k=2, rerank_top_n=4, rerank_context="section")
    hits = Retriever(store, None, cfg, reranker=scorer).run("pump tower")  # type: ignore[arg-type]

    sent = dict((p, q) for q, p in scorer.calls[0])
    assert reranker_text(TEXTS["tower"], "Section: warranty claims") in sent  # text, blank line, context
    assert TEXTS["pump"] in sent and reranker_text("a", "b") == "a\n\nb" and reranker_text("a", "") == "a"
    assert hits[0].chunk_id in {"tower", "warranty"} and hits[0].text in TEXTS.values()  # hits keep their text
    plain = Retriever(store, None, cfg.model_copy(update={"rerank_context": None}), reranker=KeywordScorer("x"))
    plain.run("pump tower")  # type: ignore[arg-type]
    assert all(p in TEXTS.values() for _, p in plain.reranker.calls[0])  # type: ignore[union-attr]


@pytest.mark.integration
def test_registered_cross_encoder_serves_an_app(ws, tmp_path: Path) -> None:
    import torch
    from sentence_transformers import CrossEncoder

    from domainrag.serving.apps import AppSpec, create_app, load_app
    from domainrag.serving.models import create_model
    from domainrag.workspace import create_index, ingest
    from domainrag.zoo import resolve_embedder

    torch.set_num_threads(1)
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in TEXTS.items():
        (docs / f"{name}.md").write_text(f"# {name}\n\n{text}\n")
    create_index(ws, "kb", "all-minilm-l6-v2")
    ingest(ws, "kb", [docs])
    # no reranker weights ship offline: an (untrained) cross-encoder on the MiniLM encoder exercises the plumbing
    CrossEncoder(resolve_embedder("all-minilm-l6-v2"), num_labels=1, device="cpu").save_pretrained(str(tmp_path / "ce"))
    record = create_model(ws, "rr", source="path", path=tmp_path / "ce")
    assert (record["kind"], record["format"]) == ("reranker", "cross-encoder")

    llm = "smollm2-135m-instruct"
    retrieval = RetrievalConfig(index="kb", top_k=3, rerank_model="rr", rerank_top_n=4)
    create_app(ws, AppSpec(name="docs", model=llm, retrieval=retrieval))
    app = load_app(ws, "docs", with_generator=False)
    assert isinstance(app.retriever.reranker, CrossEncoder) and ws.reranker("rr") is app.retriever.reranker  # cached
    hits = app.retriever.run("How often is the pump diaphragm replaced?")
    assert [h.ranks["rerank"] for h in hits] == [1, 2, 3]
    assert [h.score for h in hits] == sorted((h.scores["rerank"] for h in hits), reverse=True)

    with pytest.raises(NotFoundError, match="not registered"):
        create_app(ws, AppSpec(name="x", model=llm, retrieval=retrieval.model_copy(update={"rerank_model": "nope"})))
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "weights.bin").write_bytes(b"0")
    ws.register_model(
        "emb",
        tmp_path / "fake",
        kind="embedding",
        fmt="sentence-transformers",
        base_model=None,
        source={"type": "path"},
    )
    with pytest.raises(DomainRagError, match="not a reranker"):
        create_app(ws, AppSpec(name="y", model=llm, retrieval=retrieval.model_copy(update={"rerank_model": "emb"})))
