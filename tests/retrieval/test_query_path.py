"""The latency-critical query path: one query embedding, concurrent BM25, the kept table handle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from domainrag.data.chunking import Chunk
from domainrag.data.loaders import Document
from domainrag.index.config import EmbeddedStoreConfig
from domainrag.index.embedded import EmbeddedStore
from domainrag.index.ingest import ingest_documents
from domainrag.retrieval.fusion import reciprocal_rank_fusion
from domainrag.retrieval.retriever import RetrievalConfig, Retriever

pytestmark = pytest.mark.integration

QUESTIONS = [
    "how long is the warranty on a controller?",
    "Do mitochondria play a role in remodelling lace plant leaves during programmed cell death?",
    "PX-12",
]


@pytest.fixture
def docs() -> list[Document]:
    return [
        Document("pumps.md", "# Pumps\n\nThe DP-220 dosing pump delivers up to 12 litres per hour at 10 bar.", "Pumps"),
        Document("warranty.md", "# Warranty\n\nControllers carry a 36-month warranty on parts and labour.", "Warranty"),
        Document("office.md", "# Offices\n\nThe Brackenford headquarters opens at 08:00 on weekdays.", "Offices"),
        Document("probe.md", "# Probes\n\nThe PX-12 pH probe must be calibrated every 30 days.", "Probes"),
    ]


class CountingEmbedder:
    """The real embedder, counting query encodings."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dimension = inner, inner.name, inner.dimension
        self.queries = 0

    def encode(self, texts, batch_size: int = 64) -> np.ndarray:
        return self.inner.encode(texts, batch_size=batch_size)

    def encode_query(self, query: str) -> np.ndarray:
        self.queries += 1
        return self.inner.encode_query(query)


@pytest.mark.parametrize("bf16", [False, True])
def test_encode_query_matches_batch_encoding_and_restores_threads(minilm, bf16: bool) -> None:
    before = torch.get_num_threads()
    batch = minilm.encode(QUESTIONS)
    saved, minilm.query_bf16 = minilm.query_bf16, bf16
    try:
        single = np.stack([minilm.encode_query(q) for q in QUESTIONS])
    finally:
        minilm.query_bf16 = saved
    assert single.dtype == np.float32 and single.shape == (3, minilm.dimension)
    np.testing.assert_allclose(np.linalg.norm(single, axis=1), 1.0, atol=1e-5)
    if bf16:  # products in bfloat16: the same direction, not the same bits
        assert float(np.min(np.sum(single * batch, axis=1))) > 0.9999
    else:
        np.testing.assert_allclose(single, batch, atol=1e-5)
    assert torch.get_num_threads() == before


def test_hybrid_embeds_once_and_equals_fused_dense_and_bm25(tmp_path: Path, minilm, docs: list[Document]) -> None:
    store = EmbeddedStore("idx", EmbeddedStoreConfig(), str(tmp_path / "lance"))
    ingest_documents(docs, store, minilm)
    counting = CountingEmbedder(minilm)
    cfg = RetrievalConfig(index="idx", mode="hybrid", top_k=4)
    query = "warranty on controllers and pumps"
    hits = Retriever(store, counting, cfg).run(query)  # type: ignore[arg-type]
    assert counting.queries == 1
    expected = reciprocal_rank_fusion(
        {"dense": store.dense_search(minilm.encode_query(query), cfg.candidates),
         "bm25": store.text_search(query, cfg.candidates)},
        rank_constant=cfg.rank_constant,
    )[:4]
    assert [(h.chunk_id, h.ranks) for h in hits] == [(h.chunk_id, h.ranks) for h in expected]
    assert hits[0].doc_id == "warranty.md" and set(hits[0].ranks) == {"dense", "bm25"}
    assert "vector" not in hits[0].metadata


def test_bm25_error_surfaces_from_the_worker_thread(tmp_path: Path, minilm, docs: list[Document]) -> None:
    store = EmbeddedStore("idx", EmbeddedStoreConfig(), str(tmp_path / "lance"))
    ingest_documents(docs, store, minilm)
    with pytest.raises(ValueError, match="unsupported filter field"):
        Retriever(store, minilm, RetrievalConfig(index="idx", top_k=2)).run("warranty", filters={"colour": "red"})


def test_kept_table_handle_sees_writes_made_through_another_handle(tmp_path: Path) -> None:
    uri = str(tmp_path / "lance")
    reader = EmbeddedStore("kb", EmbeddedStoreConfig(read_consistency_s=0), uri)
    writer = EmbeddedStore("kb", EmbeddedStoreConfig(), uri)  # stands for another process (own connection)
    rng = np.random.default_rng(0)
    writer.upsert([Chunk("a", "a.md", "alpha pumps", 0)], rng.random((1, 8), dtype=np.float32))
    first = reader.dense_search(np.ones(8, dtype=np.float32), 5)
    assert [h.chunk_id for h in first] == ["a"]
    writer.upsert([Chunk("b", "b.md", "beta valves", 0)], rng.random((1, 8), dtype=np.float32))
    assert {h.chunk_id for h in reader.dense_search(np.ones(8, dtype=np.float32), 5)} == {"a", "b"}
    writer.drop()
    assert not reader.exists()
    reader.upsert([Chunk("c", "c.md", "gamma", 0)], rng.random((1, 8), dtype=np.float32))
    assert [h.chunk_id for h in reader.dense_search(np.ones(8, dtype=np.float32), 5)] == ["c"]
