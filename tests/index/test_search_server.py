"""The OpenSearch/Elasticsearch base without a server: filters, credentials, mappings, hit conversion,
bulk error filtering, and the queries sent (recorded by a fake client)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from domainrag.data.chunking import Chunk
from domainrag.errors import DomainRagError
from domainrag.index.search_server import SOURCE_FIELDS, SearchServerStore, credentials, term_filters


def test_term_filters_map_fields_and_values() -> None:
    assert term_filters(None) == [] and term_filters({}) == []
    assert term_filters({"doc_id": "a.md"}) == [{"terms": {"doc_id": ["a.md"]}}]
    assert term_filters({"title": ("T1", "T2")}) == [{"terms": {"title.raw": ["T1", "T2"]}}]
    both = term_filters({"doc_id": ["a", "b"], "title": "T"})
    assert {"terms": {"doc_id": ["a", "b"]}} in both and {"terms": {"title.raw": ["T"]}} in both


def test_unknown_filter_field_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported filter field 'author'"):
        term_filters({"author": "x"})


def test_credentials_come_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("T_USER", raising=False)
    monkeypatch.delenv("T_PASS", raising=False)
    assert credentials("T_USER", "T_PASS") is None
    monkeypatch.setenv("T_USER", "alice")
    assert credentials("T_USER", "T_PASS") is None  # a user name without a password is no credential
    monkeypatch.setenv("T_PASS", "s3cret")
    assert credentials("T_USER", "T_PASS") == ("alice", "s3cret")
    monkeypatch.setenv("T_USER", "")
    assert credentials("T_USER", "T_PASS") is None


class _Indices:
    def __init__(self) -> None:
        self.created: dict[str, Any] = {}

    def exists(self, index: str) -> bool:
        return index in self.created

    def create(self, index: str, body: dict[str, Any]) -> None:
        self.created[index] = body

    def get_mapping(self, index: str) -> dict[str, Any]:
        return {index: {"mappings": self.created[index]["mappings"]}}

    def refresh(self, index: str) -> None:
        pass


class FakeClient:
    """Records search bodies and answers with canned hits."""

    def __init__(self, hits: list[dict[str, Any]] | None = None) -> None:
        self.indices = _Indices()
        self.searches: list[dict[str, Any]] = []
        self.hits = hits or []

    def search(self, index: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.searches.append(body)
        return {"hits": {"hits": self.hits}}


class FakeHelpers:
    def __init__(self, errors: list[Any]) -> None:
        self.errors, self.actions = errors, []

    def bulk(self, client: Any, actions: Any, **kwargs: Any) -> tuple[int, list[Any]]:
        self.actions = list(actions)
        assert kwargs["raise_on_error"] is False and kwargs["raise_on_exception"] is False
        return len(self.actions), self.errors


class Store(SearchServerStore):
    def __init__(self, client: FakeClient, errors: list[Any] | None = None) -> None:
        super().__init__("idx")
        self.client, self.helpers = client, FakeHelpers(errors or [])

    def _vector_mapping(self, dimension: int) -> dict[str, Any]:
        return {"type": "vec", "dims": dimension}

    def _index_settings(self) -> dict[str, Any]:
        return {"shards": 1}

    def _knn_body(self, vector: list[float], k: int, filters: list[dict[str, Any]]) -> dict[str, Any]:
        return {"size": k, "knn": {"vector": vector, "filter": filters}}

    def _dimension_from_mapping(self, vector_mapping: dict[str, Any]) -> int | None:
        return vector_mapping.get("dims")


def _hit(chunk_id: str, score: float, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"_id": chunk_id, "_score": score, "_source": {
        "chunk_id": chunk_id, "doc_id": chunk_id.split("::")[0], "text": f"text {chunk_id}", "title": "T",
        "metadata": json.dumps(metadata or {})}}


def test_create_derives_the_mapping_and_dimension_reads_it_back() -> None:
    store = Store(FakeClient())
    assert store.dimension() is None
    store.create(384)
    body = store.client.indices.created["idx"]
    props = body["mappings"]["properties"]
    assert body["settings"] == {"shards": 1} and props["vector"] == {"type": "vec", "dims": 384}
    assert props["doc_id"] == {"type": "keyword"} and props["title"]["fields"]["raw"]["type"] == "keyword"
    assert body["mappings"]["_meta"]["dimension"] == 384
    assert store.dimension() == 384
    store.create(768)  # an existing index is left alone
    assert store.dimension() == 384


def test_dense_hits_are_converted_back_to_cosine_and_bm25_scores_kept() -> None:
    client = FakeClient([_hit("a.md::0::x", 0.9, {"page": 3}), _hit("b.md::0::y", 0.5)])
    store = Store(client)
    store.create(2)
    dense = store.dense_search(np.array([0.6, 0.8]), 2, filters={"doc_id": "a.md"})
    assert [round(h.score, 6) for h in dense] == [0.8, 0.0]  # (1 + cos) / 2 → cos
    assert dense[0].ranks == {"dense": 1} and dense[1].ranks == {"dense": 2} and dense[0].metadata == {"page": 3}
    sent = client.searches[-1]
    assert sent["_source"] == SOURCE_FIELDS and sent["knn"]["filter"] == [{"terms": {"doc_id": ["a.md"]}}]
    assert sent["knn"]["vector"] == pytest.approx([0.6, 0.8])
    bm25 = store.text_search("pump flow", 2, filters={"title": "T"})
    assert [h.score for h in bm25] == [0.9, 0.5] and bm25[0].scores == {"bm25": 0.9}
    query = client.searches[-1]["query"]["bool"]
    assert query["must"] == [{"match": {"text": "pump flow"}}] and query["filter"] == [{"terms": {"title.raw": ["T"]}}]


def test_blank_query_and_missing_index_search_nothing() -> None:
    client = FakeClient([_hit("a::0::x", 1.0)])
    store = Store(client)
    assert store.dense_search(np.ones(2), 3) == [] and store.text_search("pump", 3) == []
    store.create(2)
    assert store.text_search("   ", 3) == [] and client.searches == []


def test_chunk_sources_read_the_recorded_source() -> None:
    client = FakeClient([_hit("a.md::0::x", 1.0, {"source": "file:///d/a.md"}), _hit("a.md::1::y", 1.0)])
    store = Store(client)
    store.create(2)
    assert store.chunk_sources("a.md") == {"a.md::0::x": "file:///d/a.md", "a.md::1::y": ""}
    assert client.searches[-1]["query"] == {"term": {"doc_id": "a.md"}}


def test_bulk_drops_missing_deletes_and_write_reports_rejections() -> None:
    store = Store(FakeClient(), errors=[{"delete": {"status": 404}}, {"index": {"status": 400, "error": "bad"}}])
    assert store._bulk(iter([])) == [{"index": {"status": 400, "error": "bad"}}]
    store.create(2)
    chunk = Chunk("a::0::x", "a", "text", 0, "T", {"k": 1})
    with pytest.raises(DomainRagError, match="1 of 1 chunks were rejected by index 'idx'"):
        store.upsert([chunk], np.ones((1, 2), dtype=np.float32))
    action = store.helpers.actions[0]
    assert action["_id"] == "a::0::x" and action["_source"]["metadata"] == '{"k": 1}'
    assert action["_source"]["vector"] == [1.0, 1.0]


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_a_dead_server_is_a_clear_error_not_a_transport_traceback(engine: str) -> None:
    import socket

    from domainrag.index import open_store, parse_store_config
    from domainrag.index.search_server import StoreUnavailable

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = open_store("kb", parse_store_config({"type": engine, "hosts": [f"http://127.0.0.1:{port}"]}), "unused")
    for call in (store.exists, store.count, lambda: store.text_search("pump", 3)):
        with pytest.raises(StoreUnavailable) as err:
            call()
        assert f"127.0.0.1:{port}" in str(err.value) and "'kb'" in str(err.value) and err.value.hint
