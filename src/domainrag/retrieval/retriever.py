"""Dense, BM25 and hybrid retrieval over any :class:`VectorStore`, one results API."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from domainrag.index.base import Filters, SearchHit, VectorStore
from domainrag.retrieval.embedder import Embedder
from domainrag.retrieval.fusion import reciprocal_rank_fusion
from domainrag.retrieval.reranker import PairScorer, rerank_hits

Mode = Literal["dense", "bm25", "hybrid"]


@functools.cache
def _pool() -> ThreadPoolExecutor:
    """Process-wide workers for the BM25 half of hybrid queries (created on first use)."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="domainrag-bm25")


class RetrievalConfig(BaseModel):
    """How an app retrieves: validated once, stored with the app."""

    model_config = ConfigDict(extra="forbid")

    vector_store: str = Field("embedded", description="store type, or a full store config under `store`")
    index: str
    top_k: int = Field(5, ge=1, le=100)
    mode: Mode = "hybrid"
    dense_weight: float = Field(1.0, ge=0)
    bm25_weight: float = Field(1.0, ge=0)
    rank_constant: int = Field(60, ge=0)
    candidates: int = Field(30, ge=1, description="hits fetched from each retriever before fusion")
    score_threshold: float | None = Field(
        None, description="drop hits whose dense cosine similarity is below this (dense/hybrid)"
    )
    filters: Filters | None = None
    rerank_model: str | None = Field(None, description="registered reranker (cross-encoder) model name")
    rerank_top_n: int = Field(20, ge=1, le=200, description="fused hits rescored by the reranker")


class Retriever:
    """Runs one query against a store: embed → dense + BM25 → RRF → threshold → [rerank] → top_k."""

    def __init__(
        self, store: VectorStore, embedder: Embedder, config: RetrievalConfig, reranker: PairScorer | None = None
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.config = config
        self.reranker = reranker

    def run(self, query: str, top_k: int | None = None, filters: Filters | None = None) -> list[SearchHit]:
        cfg = self.config
        k = top_k or cfg.top_k
        flt = filters if filters is not None else cfg.filters
        n = max(cfg.candidates, k, cfg.rerank_top_n if self.reranker is not None else 0)
        vector = None  # embedded once: a server that declines to fuse gets the same vector for dense search
        if cfg.mode == "hybrid" and self.store.fuses_on_server:
            vector = self.embedder.encode_query(query)
            server = self.store.hybrid_search(query, vector, n, flt, cfg.rank_constant)
            if server is not None:
                return self._rerank(query, server, k)
        results: dict[str, list[SearchHit]] = {}
        if cfg.mode == "bm25":
            results["bm25"] = self.store.text_search(query, n, flt)
        elif cfg.mode == "dense":
            results["dense"] = self.store.dense_search(self.embedder.encode_query(query), n, flt)
        else:
            # BM25 needs no query vector: it runs on a worker thread while this one embeds the query and
            # searches the vectors (torch and the engines release the GIL), so hybrid costs about
            # max(BM25, embed + dense) instead of the sum.
            bm25 = _pool().submit(self.store.text_search, query, n, flt)
            try:
                if vector is None:
                    vector = self.embedder.encode_query(query)
                results["dense"] = self.store.dense_search(vector, n, flt)
            finally:
                results["bm25"] = bm25.result()
            hits = reciprocal_rank_fusion(
                results, {"dense": cfg.dense_weight, "bm25": cfg.bm25_weight}, cfg.rank_constant
            )
        if cfg.mode != "hybrid":
            hits = next(iter(results.values()))
        if cfg.score_threshold is not None and cfg.mode != "bm25":
            hits = [h for h in hits if h.scores.get("dense", -1.0) >= cfg.score_threshold]
        return self._rerank(query, hits, k)

    def _rerank(self, query: str, hits: list[SearchHit], k: int) -> list[SearchHit]:
        """Top ``max(rerank_top_n, k)`` hits reordered by the reranker (if any), cut to ``k``."""
        if self.reranker is None:
            return hits[:k]
        return rerank_hits(self.reranker, query, hits[: max(self.config.rerank_top_n, k)])[:k]
