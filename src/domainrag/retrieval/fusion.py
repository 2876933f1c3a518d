"""Reciprocal rank fusion of ranked hit lists (Cormack et al. 2009).

Shared by every backend, so hybrid results and their per-retriever ranks mean the same thing
on the embedded engine, OpenSearch and Elasticsearch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from domainrag.index.base import SearchHit


def reciprocal_rank_fusion(
    results: Mapping[str, Sequence[SearchHit]],
    weights: Mapping[str, float] | None = None,
    rank_constant: int = 60,
    k: int | None = None,
) -> list[SearchHit]:
    """Fuse named result lists: score = sum_w weight / (rank_constant + rank)."""
    if rank_constant < 0:
        raise ValueError("rank_constant must be >= 0")
    fused: dict[str, SearchHit] = {}
    for name, hits in results.items():
        weight = 1.0 if weights is None else float(weights.get(name, 1.0))
        for rank, hit in enumerate(hits, start=1):
            entry = fused.get(hit.chunk_id)
            if entry is None:
                entry = SearchHit(hit.chunk_id, hit.doc_id, hit.text, 0.0, hit.title, dict(hit.metadata))
                fused[hit.chunk_id] = entry
            entry.ranks[name] = rank
            entry.scores[name] = hit.score
            entry.score += weight / (rank_constant + rank)
    ordered = sorted(fused.values(), key=lambda h: (-h.score, h.chunk_id))
    return ordered if k is None else ordered[:k]
