"""Query-time retrieval: embedders, dense / BM25 / hybrid (RRF) search."""

from domainrag.retrieval.embedder import Embedder, load_embedder
from domainrag.retrieval.fusion import reciprocal_rank_fusion
from domainrag.retrieval.retriever import RetrievalConfig, Retriever

__all__ = ["Embedder", "RetrievalConfig", "Retriever", "load_embedder", "reciprocal_rank_fusion"]
