"""Dense, BM25 and hybrid retrieval over any :class:`VectorStore`, one results API."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from domainrag.errors import DimensionMismatchError
from domainrag.index.base import Filters, SearchHit, VectorStore
from domainrag.retrieval.embedder import Embedder
from domainrag.retrieval.fusion import reciprocal_rank_fusion
from domainrag.retrieval.reranker import PairScorer, rerank_hits

Mode = Literal["dense", "bm25", "hybrid"]
RerankFusion = Literal["replace", "rrf"]
OnStage = Callable[[str, float], None]
"""``on_stage(stage, seconds)``: told the time of each stage of a query (for a server's metrics)."""
T = TypeVar("T")


def _timed(on_stage: OnStage | None, stage: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, its time reported to ``on_stage`` (if any) as ``stage``."""
    if on_stage is None:
        return fn(*args)
    start = time.perf_counter()
    try:
        return fn(*args)
    finally:
        on_stage(stage, time.perf_counter() - start)


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
    expand_children: int = Field(
        0,
        ge=0,
        le=100,
        description="look at the top N fused hits: one whose metadata lists `children` (doc ids: a table's "
        "caption and notes, a section's paragraphs; or chunk ids of its own document: the paragraphs around an "
        "ingested table) pulls those chunks in right after it; 0 = off",
    )
    rerank_model: str | None = Field(None, description="registered reranker (cross-encoder) model name")
    rerank_top_n: int = Field(20, ge=1, le=200, description="fused hits rescored by the reranker")
    rerank_fusion: RerankFusion = Field(
        "replace",
        description="replace: order by reranker score; rrf: reciprocal-rank fusion of the reranker's order "
        "with the retrieval order (safer when the reranker was trained on little data)",
    )
    rerank_retrieval_weight: float = Field(
        1.0, ge=0, description="rrf: weight of the retrieval order against the reranker's (weight 1)"
    )
    rerank_context: str | None = Field(
        None,
        description="metadata field whose text the reranker reads after each hit's text (e.g. the section or "
        "table a paragraph belongs to); train the reranker on the same reranker_text() format",
    )


class Retriever:
    """Runs one query against a store: embed → dense + BM25 → RRF → threshold → [expand] → [rerank] → top_k."""

    def __init__(
        self, store: VectorStore, embedder: Embedder, config: RetrievalConfig, reranker: PairScorer | None = None
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.config = config
        self.reranker = reranker

    def run(
        self, query: str, top_k: int | None = None, filters: Filters | None = None, on_stage: OnStage | None = None
    ) -> list[SearchHit]:
        """The top hits for ``query``; ``on_stage(stage, seconds)`` is told each stage's time: ``embed``, ``dense``,
        ``bm25``, ``fusion``, ``hybrid`` (fused by the engine), ``expand`` and ``rerank``."""
        cfg, on = self.config, on_stage
        k = top_k or cfg.top_k
        flt = filters if filters is not None else cfg.filters
        n = max(cfg.candidates, k, cfg.rerank_top_n if self.reranker is not None else 0)
        vector = None  # embedded once: a server that declines to fuse gets the same vector for dense search
        if cfg.mode == "hybrid" and self.store.fuses_on_server:
            vector = _timed(on, "embed", self.embedder.encode_query, query)
            server = _timed(on, "hybrid", self._guarded, self.store.hybrid_search, vector, query, vector, n, flt,
                            cfg.rank_constant)
            if server is not None:
                return self._rerank(query, self._expand(query, server, vector, flt, on), k, on)
        results: dict[str, list[SearchHit]] = {}
        if cfg.mode == "bm25":
            results["bm25"] = _timed(on, "bm25", self.store.text_search, query, n, flt)
        elif cfg.mode == "dense":
            vector = _timed(on, "embed", self.embedder.encode_query, query)
            results["dense"] = _timed(on, "dense", self._guarded, self.store.dense_search, vector, vector, n, flt)
        else:
            # BM25 needs no query vector: it runs on a worker thread while this one embeds the query and
            # searches the vectors (torch and the engines release the GIL), so hybrid costs about
            # max(BM25, embed + dense) instead of the sum.
            bm25 = _pool().submit(_timed, on, "bm25", self.store.text_search, query, n, flt)
            try:
                if vector is None:
                    vector = _timed(on, "embed", self.embedder.encode_query, query)
                results["dense"] = _timed(on, "dense", self._guarded, self.store.dense_search, vector, vector, n, flt)
            finally:
                results["bm25"] = bm25.result()
            hits = _timed(on, "fusion", reciprocal_rank_fusion,
                          results, {"dense": cfg.dense_weight, "bm25": cfg.bm25_weight}, cfg.rank_constant)
        if cfg.mode != "hybrid":
            hits = next(iter(results.values()))
        if cfg.score_threshold is not None and cfg.mode != "bm25":
            hits = [h for h in hits if h.scores.get("dense", -1.0) >= cfg.score_threshold]
        return self._rerank(query, self._expand(query, hits, vector, flt, on), k, on)

    def _guarded(self, search: Callable[..., T], vector: Any, *args: Any) -> T:
        """``search(*args)``; when it fails, a query vector of another size than the index's is named as the cause.

        Engines reject a wrong-sized vector with their own message (LanceDB's ValueError, a bare HTTP 400);
        checking the dimension only after a failure keeps the store round-trip off every good query.
        """
        try:
            return search(*args)
        except Exception as exc:
            name = getattr(self.embedder, "name", "of the query")
            try:
                self.store.check_dimension(int(np.shape(vector)[-1]), name, query=True)
            except DimensionMismatchError as mismatch:
                raise mismatch from exc
            except Exception:  # an unreachable store (or a stand-in without one) keeps its own error
                pass
            raise

    def _expand(
        self, query: str, hits: list[SearchHit], vector: Any, filters: Filters | None, on_stage: OnStage | None = None
    ) -> list[SearchHit]:
        """Children of the top ``expand_children`` hits placed right after their parent (see the config field).

        A child already further down the list moves up; the other hits keep their order. Children are
        fetched with the query (dense similarity when a query vector exists, else BM25) restricted to the
        listed doc ids, in one store query for all parents (one round-trip on a remote engine), so their
        own order is by relevance; a child listed by several parents follows the best-ranked one.
        ``ranks["parent"]`` is the parent's rank.
        """
        top = self.config.expand_children
        parents = [h for h in hits[:top] if isinstance(h.metadata.get("children"), list) and h.metadata["children"]]
        if not parents:
            return hits
        allowed = (filters or {}).get("doc_id")  # a doc_id filter of the query still holds for the children
        if allowed is not None:
            allowed = {str(a) for a in allowed} if isinstance(allowed, (list, tuple, set)) else {str(allowed)}
        owner: dict[str, str] = {}  # child id -> chunk id of the best-ranked parent listing it
        chunk_ids: set[str] = set()  # children that are chunks of the parent's own document (ingested tables)
        expanded: set[tuple[str, ...]] = set()  # each chunk of a long table carries the same list
        for parent in parents:
            listed = tuple(map(str, parent.metadata["children"]))
            if listed in expanded:
                continue
            expanded.add(listed)
            for child in listed:
                own_chunk = child.startswith(f"{parent.doc_id}::")  # a chunk id: <doc_id>::<n>::<hash>
                if child not in owner and (own_chunk or allowed is None or child in allowed):
                    owner[child] = parent.chunk_id
                    if own_chunk:
                        chunk_ids.add(child)
        if not owner:
            return hits
        found: list[SearchHit] = []
        docs = [c for c in owner if c not in chunk_ids]
        search = (self.store.dense_search, vector) if vector is not None else (self.store.text_search, query)
        for field, ids in (("doc_id", docs), ("chunk_id", sorted(chunk_ids))):
            if not ids:
                continue
            flt = {**(filters or {}), field: ids}
            parents_of = len({owner[c] for c in ids})
            k = len(ids) if field == "chunk_id" else min(8 * len(ids), 200 * parents_of)  # a document: many chunks
            found += _timed(on_stage, "expand", search[0], search[1], k, flt)
        children: dict[str, list[SearchHit]] = {}
        for child in found:
            key = child.chunk_id if child.chunk_id in chunk_ids else child.doc_id
            if key in owner:
                children.setdefault(owner[key], []).append(child)
        out: list[SearchHit] = []
        placed: set[str] = set()
        for rank, hit in enumerate(hits, start=1):
            if hit.chunk_id not in placed:
                out.append(hit)
                placed.add(hit.chunk_id)
            for child in children.get(hit.chunk_id, []):
                if child.chunk_id not in placed:
                    child.ranks["parent"] = rank
                    out.append(child)
                    placed.add(child.chunk_id)
        return out

    def _rerank(self, query: str, hits: list[SearchHit], k: int, on_stage: OnStage | None = None) -> list[SearchHit]:
        """Top ``max(rerank_top_n, k)`` hits reordered by the reranker (if any), cut to ``k``."""
        if self.reranker is None:
            return hits[:k]
        cfg = self.config
        top = hits[: max(cfg.rerank_top_n, k)]
        fusion = (cfg.rank_constant, cfg.rerank_retrieval_weight) if cfg.rerank_fusion == "rrf" else None
        rerank = functools.partial(rerank_hits, context=cfg.rerank_context, fusion=fusion)
        return _timed(on_stage, "rerank", rerank, self.reranker, query, top)[:k]
