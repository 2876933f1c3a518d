"""The same store contract on real OpenSearch (lucene and faiss HNSW) and Elasticsearch nodes."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from domainrag.data.loaders import Document
from domainrag.errors import DimensionMismatchError
from domainrag.index import (
    ElasticsearchStoreConfig,
    EmbeddedStoreConfig,
    OpenSearchStoreConfig,
    VectorStore,
    open_store,
)
from domainrag.index.ingest import ingest_documents
from domainrag.retrieval.retriever import RetrievalConfig, Retriever

pytestmark = pytest.mark.integration

QUERIES = {
    "how long is the warranty on a controller?": "warranty.md",
    "PX-12 calibration interval": "probe.md",
    "what flow rate can the dosing pump deliver": "pumps.md",
    "when does the head office open": "office.md",
}


@pytest.fixture
def docs(docs: list[Document]) -> list[Document]:
    """The shared four documents plus a fifth (gateway) one."""
    return [
        *docs,
        Document(
            "gateway.md", "# Gateway\n\nThe GW-2 gateway forwards Modbus data to the cloud every 60 seconds.", "Gateway"
        ),
    ]


@pytest.fixture(params=["opensearch-lucene", "opensearch-faiss", "elasticsearch"])
def store(request: pytest.FixtureRequest, tmp_path) -> VectorStore:
    name = f"test-{uuid.uuid4().hex[:8]}"
    if request.param.startswith("opensearch"):
        url = request.getfixturevalue("opensearch_url")
        cfg = OpenSearchStoreConfig(hosts=[url], engine=request.param.split("-")[1])
    else:
        cfg = ElasticsearchStoreConfig(hosts=[request.getfixturevalue("elasticsearch_url")])
    s = open_store(name, cfg, str(tmp_path))
    yield s
    s.drop()


def test_mapping_is_derived_from_the_model_and_mismatch_refused(
    store: VectorStore, minilm, docs: list[Document]
) -> None:
    store.create(minilm.dimension)
    assert store.dimension() == 384
    store.drop()
    store.create(768)
    with pytest.raises(DimensionMismatchError, match="768"):
        ingest_documents(docs, store, minilm)
    assert store.count() == 0


def test_ingest_search_and_resume(store: VectorStore, minilm, docs: list[Document]) -> None:
    report = ingest_documents(docs, store, minilm)
    assert report.written == 5 and store.count() == 5 and store.document_count() == 5
    again = ingest_documents(docs, store, minilm)
    assert again.written == 0 and again.skipped_existing == 5 and store.count() == 5

    for mode in ("dense", "bm25", "hybrid"):
        retriever = Retriever(store, minilm, RetrievalConfig(index=store.name, mode=mode, top_k=3))
        top = {q: retriever.run(q)[0].doc_id for q in QUERIES}
        hits = sum(top[q] == d for q, d in QUERIES.items())
        assert hits >= 3, (mode, top)
    hit = Retriever(store, minilm, RetrievalConfig(index=store.name, top_k=3)).run("warranty controller")[0]
    assert -1.0 <= hit.scores["dense"] <= 1.0 and hit.ranks
    only = store.text_search("warranty pump", 5, filters={"doc_id": ["pumps.md"]})
    assert [h.doc_id for h in only] == ["pumps.md"]

    edited = Document("pumps.md", "# Pumps\n\nThe DP-220 now delivers 15 litres per hour.", "Pumps")
    rep = ingest_documents([edited], store, minilm)
    assert rep.written == 1 and rep.deleted_stale == 1 and store.count() == 5


def test_results_agree_with_the_embedded_engine(store: VectorStore, minilm, tmp_path, docs: list[Document]) -> None:
    embedded = open_store("agree", EmbeddedStoreConfig(), str(tmp_path / "lance"))
    for s in (store, embedded):
        ingest_documents(docs, s, minilm)
    for q in QUERIES:
        vec = minilm.encode_query(q)
        a = [(h.doc_id, round(h.score, 3)) for h in store.dense_search(vec, 3)]
        b = [(h.doc_id, round(h.score, 3)) for h in embedded.dense_search(vec, 3)]
        assert [d for d, _ in a] == [d for d, _ in b]
        assert np.allclose([s for _, s in a], [s for _, s in b], atol=0.01)


def test_bulk_reports_per_item_errors(store: VectorStore, minilm) -> None:
    store.create(minilm.dimension)
    bad = [{"_op_type": "index", "_index": store.name, "_id": "x", "_source": {"position": "not-a-number"}}]
    failed = store._bulk(iter(bad))  # type: ignore[attr-defined]
    assert len(failed) == 1


def test_opensearch_server_side_hybrid(opensearch_url: str, minilm, tmp_path, docs: list[Document]) -> None:
    """The hybrid query + RRF search pipeline runs on the server and ranks like client-side RRF."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    store = open_store(name, OpenSearchStoreConfig(hosts=[opensearch_url], server_hybrid=True), str(tmp_path))
    try:
        ingest_documents(docs, store, minilm)
        retriever = Retriever(store, minilm, RetrievalConfig(index=name, mode="hybrid", top_k=3))
        for q in QUERIES:
            hits = retriever.run(q)
            assert hits and set(hits[0].ranks) == {"hybrid"}
        top = {q: retriever.run(q)[0].doc_id for q in QUERIES}
        assert sum(top[q] == d for q, d in QUERIES.items()) >= 3, top
    finally:
        store.drop()


def test_same_named_documents_from_two_sources_never_overwrite(store: VectorStore, minilm) -> None:
    """Issue 19 item 1 on the server engines: one id from another source is refused, nothing deleted."""
    from domainrag.index.ingest import DocumentIdCollision

    a = Document("notes.txt", "Team A keeps the pump notes.", "notes", {"source": "file:///a/notes.txt"})
    b = Document("notes.txt", "Team B keeps the probe notes.", "notes", {"source": "file:///b/notes.txt"})
    ingest_documents([a], store, minilm)
    with pytest.raises(DocumentIdCollision, match=r"file:///a/notes\.txt"):
        ingest_documents([b], store, minilm)
    assert store.count() == 1 and store.chunk_sources("notes.txt") and [
        h.text for h in store.text_search("notes", 5)] == [a.text]
    edited = Document("notes.txt", "Team A keeps the pump and valve notes.", "notes", {"source": "file:///a/notes.txt"})
    report = ingest_documents([edited], store, minilm)
    assert report.written == 1 and report.deleted_stale == 1 and store.count() == 1
