"""Cross-encoder reranking of retrieved hits (models trained by ``domainrag.training.reranker``)."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from domainrag.index.base import SearchHit


class PairScorer(Protocol):
    """Anything that scores (query, passage) pairs, higher = more relevant: a sentence-transformers CrossEncoder."""

    def predict(self, sentences: Sequence[tuple[str, str]], *args: Any, **kwargs: Any) -> Any: ...


@functools.lru_cache(maxsize=4)
def load_reranker(path: str, device: str = "cpu") -> Any:
    """Process-wide cache of loaded ``CrossEncoder`` models."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import CrossEncoder

    return CrossEncoder(path, device=device)


def rerank_hits(reranker: PairScorer, query: str, hits: Sequence[SearchHit]) -> list[SearchHit]:
    """``hits`` reordered by cross-encoder score; sets ``scores``/``ranks["rerank"]`` and ``score``.

    Ties keep the incoming (retrieval) order.
    """
    if not hits:
        return []
    raw = reranker.predict([(query, h.text) for h in hits], show_progress_bar=False)
    scores = np.asarray(raw, dtype=np.float32).reshape(-1)
    order = sorted(range(len(hits)), key=lambda i: -float(scores[i]))
    out: list[SearchHit] = []
    for rank, i in enumerate(order, start=1):
        hit = hits[i]
        hit.scores["rerank"] = float(scores[i])
        hit.ranks["rerank"] = rank
        hit.score = float(scores[i])
        out.append(hit)
    return out
