"""The latency-critical query path: one query embedding, concurrent BM25, the kept table handle."""

from __future__ import annotations

import copy
import json
import logging
import sys
import threading
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from domainrag.data.chunking import Chunk
from domainrag.data.loaders import Document
from domainrag.index.config import EmbeddedStoreConfig
from domainrag.index.embedded import EmbeddedStore
from domainrag.index.ingest import ingest_documents
from domainrag.retrieval.embedder import Embedder
from domainrag.retrieval.fusion import reciprocal_rank_fusion
from domainrag.retrieval.retriever import RetrievalConfig, Retriever

pytestmark = pytest.mark.integration

QUESTIONS = [
    "how long is the warranty on a controller?",
    "Do mitochondria play a role in remodelling lace plant leaves during programmed cell death?",
    "PX-12",
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


TATQA = Path(__file__).resolve().parents[3] / "shared" / "data" / "tatqa" / "tatqa_dataset_test_gold.json"


def real_queries(n: int = 200) -> list[str]:
    """The sample domain's 50 held-out questions, then TAT-QA questions (sample training ones without it)."""
    sample = resources.files("domainrag.sample_data")
    qs = [json.loads(line)["question"] for line in sample.joinpath("qa_heldout.jsonl").read_text().splitlines()]
    if TATQA.exists():
        qs += [q["question"] for entry in json.loads(TATQA.read_text()) for q in entry["questions"]]
    else:
        qs += [json.loads(line)["question"] for line in sample.joinpath("qa_train.jsonl").read_text().splitlines()]
    return qs[:n]


def fresh(embedder: Embedder, backend: str = "auto") -> Embedder:
    """The same loaded model with its own (not yet built) query encoder state."""
    e = copy.copy(embedder)
    e.query_backend, e._onnx, e._onnx_error, e._onnx_lock = backend, None, None, threading.Lock()  # type: ignore[assignment]
    return e


@pytest.mark.parametrize("backend", ["torch-fp32", "torch-bf16", "onnx"])
def test_encode_query_matches_batch_encoding_and_restores_threads(minilm, backend: str) -> None:
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    before = torch.get_num_threads()
    batch = minilm.encode(QUESTIONS)
    e = fresh(minilm, "onnx" if backend == "onnx" else "torch")
    e.query_bf16 = backend == "torch-bf16"
    single = np.stack([e.encode_query(q) for q in QUESTIONS])
    assert single.dtype == np.float32 and single.shape == (3, minilm.dimension)
    np.testing.assert_allclose(np.linalg.norm(single, axis=1), 1.0, atol=1e-5)
    if backend == "torch-bf16":  # products in bfloat16: the same direction, not the same bits
        assert float(np.min(np.sum(single * batch, axis=1))) > 0.9999
    else:  # float32 torch, and the same float32 weights in ONNX Runtime's fused graph
        np.testing.assert_allclose(single, batch, atol=1e-5)
    assert torch.get_num_threads() == before


def test_onnx_query_encoder_matches_sentence_transformers_on_real_queries(minilm) -> None:
    pytest.importorskip("onnxruntime")
    queries = real_queries(200)
    assert len(queries) == 200
    ref = minilm.model.encode(queries, normalize_embeddings=True, convert_to_numpy=True, batch_size=64)
    e = fresh(minilm, "onnx")
    onnx = np.stack([e.encode_query(q) for q in queries])
    assert e.query_path == "onnx"
    cos = np.sum(onnx * ref, axis=1)
    assert float(cos.min()) >= 0.9999, queries[int(cos.argmin())]


def test_onnx_falls_back_to_torch_when_onnxruntime_is_unimportable(
    minilm, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    e = fresh(minilm, "auto")
    with caplog.at_level(logging.WARNING, logger="domainrag.retrieval.embedder"):
        vecs = [e.encode_query(q) for q in QUESTIONS]
    assert e.query_path == "torch" and "onnxruntime is not importable" in (e._onnx_error or "")
    assert sum("stays on torch" in r.getMessage() for r in caplog.records) == 1  # logged once
    torch_vecs = [fresh(minilm, "torch").encode_query(q) for q in QUESTIONS]
    np.testing.assert_array_equal(np.stack(vecs), np.stack(torch_vecs))
    with pytest.raises(RuntimeError, match="onnxruntime is not importable"):
        fresh(minilm, "onnx").encode_query("pumps")


def test_onnx_export_is_cached_and_reused(minilm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    from domainrag.retrieval.onnx_encoder import load_onnx_encoder

    monkeypatch.setenv("DOMAINRAG_CACHE", str(tmp_path))
    first = load_onnx_encoder(minilm.model)
    stat = first.path.stat()
    assert first.path.parent == tmp_path / "onnx" and first.path.suffix == ".onnx"
    assert [p.name for p in first.path.parent.iterdir() if p.suffix == ".tmp"] == []  # atomic write left nothing

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("exported again instead of reusing the cache")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    second = load_onnx_encoder(minilm.model)
    assert second.path == first.path and second.path.stat().st_mtime_ns == stat.st_mtime_ns
    np.testing.assert_allclose(second.encode(QUESTIONS[0]), first.encode(QUESTIONS[0]), atol=1e-6)
    monkeypatch.undo()

    monkeypatch.setenv("DOMAINRAG_CACHE", str(tmp_path))
    first.path.write_bytes(b"not an onnx graph")  # a damaged cache file is exported again
    third = load_onnx_encoder(minilm.model)
    np.testing.assert_allclose(third.encode(QUESTIONS[0]), first.encode(QUESTIONS[0]), atol=1e-6)


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
