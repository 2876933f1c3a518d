"""Cross-encoder reranking of retrieved hits (models trained by ``domainrag.training.reranker``)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from domainrag.errors import model_load_error
from domainrag.hardware import native_bf16
from domainrag.index.base import SearchHit


class PairScorer(Protocol):
    """Anything that scores (query, passage) pairs, higher = more relevant: a sentence-transformers CrossEncoder."""

    def predict(self, sentences: Sequence[tuple[str, str]], *args: Any, **kwargs: Any) -> Any: ...


@functools.lru_cache(maxsize=4)
def load_reranker(path: str, device: str = "cpu") -> Any:
    """Process-wide cache of loaded ``CrossEncoder`` models."""
    from sentence_transformers import CrossEncoder  # lazy: torch start-up kept off light CLI paths

    try:
        return CrossEncoder(path, device=device)
    except (OSError, ValueError) as exc:  # not a cross-encoder folder, or a hub id that cannot be fetched
        raise model_load_error("reranker", path, exc) from exc


def reranker_text(text: str, context: str | None = None) -> str:
    """What the reranker reads for one passage: its text, then its context (if any) after a blank line.

    Training data for a context-reading reranker must use this same format.
    """
    return f"{text}\n\n{context}" if context else text


def rerank_hits(
    reranker: PairScorer,
    query: str,
    hits: Sequence[SearchHit],
    *,
    context: str | None = None,
    fusion: tuple[int, float] | None = None,
) -> list[SearchHit]:
    """``hits`` reordered by cross-encoder score; sets ``scores``/``ranks["rerank"]`` and ``score``.

    ``context`` names a metadata field the reranker reads after each hit's text (:func:`reranker_text`).
    ``fusion=(rank_constant, retrieval_weight)`` orders by reciprocal-rank fusion of the reranker's rank
    and the incoming (retrieval) rank, ``1/(c + rank_rerank) + w/(c + rank_retrieval)``, stored as
    ``scores["rerank_fused"]``; without it the reranker score alone decides. Ties keep the incoming order.
    """
    if not hits:
        return []
    texts = [reranker_text(h.text, _context(h, context)) for h in hits]
    with _bf16_on_cpu(reranker):
        raw = reranker.predict([(query, t) for t in texts], show_progress_bar=False)
    scores = np.asarray(raw, dtype=np.float32).reshape(-1)
    by_score = sorted(range(len(hits)), key=lambda i: -float(scores[i]))
    rerank_rank = {i: rank for rank, i in enumerate(by_score, start=1)}
    for i, hit in enumerate(hits):
        hit.scores["rerank"] = float(scores[i])
        hit.ranks["rerank"] = rerank_rank[i]
        hit.score = float(scores[i])
    order = by_score
    if fusion is not None:
        # not fusion.reciprocal_rank_fusion: that builds new hits (dropping their bm25/dense ranks) and
        # breaks ties by chunk id; here the hits keep every rank and ties keep the retrieval order
        c, weight = fusion
        for i, hit in enumerate(hits):
            hit.score = hit.scores["rerank_fused"] = 1.0 / (c + rerank_rank[i]) + weight / (c + i + 1)
        order = sorted(range(len(hits)), key=lambda i: -hits[i].score)
    return [hits[i] for i in order]


def _bf16_on_cpu(reranker: PairScorer) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for a torch model on a CPU with native bf16 instructions (faster scoring), else nothing.

    The weights stay fp32; only the matrix products run in bf16 (scores move slightly, rankings barely:
    see benchmarks/README.md).
    """

    device = getattr(reranker, "device", None)
    if getattr(device, "type", None) != "cpu" or not native_bf16():
        return contextlib.nullcontext()
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16)


def _context(hit: SearchHit, field: str | None) -> str | None:
    value = hit.metadata.get(field) if field else None
    return str(value) if value not in (None, "") else None
