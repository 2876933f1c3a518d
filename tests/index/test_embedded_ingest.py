"""Embedded (LanceDB) store + ingestion with the real MiniLM embedder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from domainrag.data.loaders import Document
from domainrag.errors import DimensionMismatchError
from domainrag.index.config import EmbeddedStoreConfig
from domainrag.index.embedded import EmbeddedStore
from domainrag.index.ingest import ingest_documents
from domainrag.retrieval.retriever import RetrievalConfig, Retriever

pytestmark = pytest.mark.integration


def _store(tmp_path: Path, name: str = "idx") -> EmbeddedStore:
    return EmbeddedStore(name, EmbeddedStoreConfig(), str(tmp_path / "lance"))


def test_dimension_mismatch_is_refused_before_any_write(tmp_path: Path, minilm, docs: list[Document]) -> None:
    store = _store(tmp_path)
    store.create(768)  # as if built for a 768-d model
    with pytest.raises(DimensionMismatchError) as err:
        ingest_documents(docs, store, minilm)
    assert "768" in str(err.value) and "384" in str(err.value)
    assert store.count() == 0


def test_ingest_is_idempotent_and_searchable(tmp_path: Path, minilm, docs: list[Document]) -> None:
    store = _store(tmp_path)
    first = ingest_documents(docs, store, minilm)
    assert first.written == first.chunks == store.count() == 4
    second = ingest_documents(docs, store, minilm)
    assert second.written == 0 and second.skipped_existing == 4
    assert store.count() == 4 and store.document_count() == 4
    retriever = Retriever(store, minilm, RetrievalConfig(index="idx", top_k=2))
    hits = retriever.run("how long is the warranty on a controller?")
    assert hits[0].doc_id == "warranty.md"
    assert set(hits[0].ranks) <= {"dense", "bm25"} and hits[0].ranks
    bm25 = Retriever(store, minilm, RetrievalConfig(index="idx", mode="bm25")).run("PX-12 calibrated buffer")
    assert bm25[0].doc_id == "probe.md" and bm25[0].ranks == {"bm25": 1}
    only = retriever.run("warranty", filters={"doc_id": ["office.md", "pumps.md"]})
    assert {h.doc_id for h in only} <= {"office.md", "pumps.md"}


class _CrashingEmbedder:
    """Wraps the real embedder and fails on the n-th batch, like a killed process."""

    def __init__(self, inner, fail_on_batch: int) -> None:
        self.inner, self.fail_on, self.calls = inner, fail_on_batch, 0
        self.dimension, self.name = inner.dimension, inner.name

    def encode(self, texts, batch_size: int = 64) -> np.ndarray:
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("killed")
        return self.inner.encode(texts, batch_size)


def test_ingest_resumes_after_crash_without_duplicates_or_losses(tmp_path: Path, minilm, docs: list[Document]) -> None:
    store = _store(tmp_path)
    with pytest.raises(RuntimeError, match="killed"):
        ingest_documents(docs, store, _CrashingEmbedder(minilm, fail_on_batch=3), batch_size=1, encode_group=1)
    assert store.count() == 2  # two batches landed before the crash
    report = ingest_documents(docs, store, minilm, batch_size=1, encode_group=1)
    assert report.skipped_existing == 2 and report.written == 2
    assert store.count() == 4
    assert len(store.existing_ids([f"{d.doc_id}" for d in docs])) == 0  # ids are chunk ids, not doc ids


def test_changed_document_replaces_its_stale_chunks(tmp_path: Path, minilm, docs: list[Document]) -> None:
    store = _store(tmp_path)
    ingest_documents(docs, store, minilm)
    edited = Document("pumps.md", "# Pumps\n\nThe DP-220 now delivers up to 15 litres per hour.", "Pumps")
    report = ingest_documents([edited], store, minilm)
    assert report.written == 1 and report.deleted_stale == 1
    assert store.count() == 4
    texts = [h.text for h in store.text_search("litres per hour", 5)]
    assert any("15 litres" in t for t in texts) and not any("12 litres" in t for t in texts)
