"""What OpenSearch and Elasticsearch stores share: documents keyed by chunk id, ``_bulk`` writes
with per-item error handling, mget for existence, BM25 ``match`` queries and term filters.

Both servers report cosine k-NN scores as ``(1 + cos) / 2``; hits are converted back to cosine so
scores mean the same on every backend.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from domainrag.data.chunking import Chunk
from domainrag.errors import DomainRagError
from domainrag.index.base import Filters, SearchHit, VectorStore

T = TypeVar("T")
_FILTER_FIELDS = {"doc_id": "doc_id", "title": "title.raw", "chunk_id": "chunk_id"}
SOURCE_FIELDS = ["chunk_id", "doc_id", "title", "text", "metadata"]


def term_filters(filters: Filters | None) -> list[dict[str, Any]]:
    out = []
    for key, value in (filters or {}).items():
        if key not in _FILTER_FIELDS:
            raise ValueError(f"unsupported filter field '{key}' (use doc_id or title)")
        field = _FILTER_FIELDS[key]
        values = list(value) if isinstance(value, (list, tuple, set)) else [value]
        out.append({"terms": {field: values}})
    return out


class StoreUnavailable(DomainRagError):
    """The search server could not be reached (refused, timed out or reset)."""


def guard_connection(engine: str, errors: tuple[type[Exception], ...]) -> Callable[[type[T]], type[T]]:
    """Class decorator: every public method of the store turns the client's connection ``errors`` into a
    :class:`StoreUnavailable` naming the engine, the index and the hosts, instead of a transport traceback."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except errors as exc:
                hosts = ", ".join(map(str, getattr(getattr(self, "config", None), "hosts", []))) or "?"
                raise StoreUnavailable(
                    f"{engine} at {hosts} did not answer for index '{self.name}' ({type(exc).__name__})",
                    hint=f"check that {engine} is running and reachable, and the store's hosts",
                ) from exc

        return call

    def decorate(cls: type[T]) -> type[T]:
        for name in dir(cls):
            if name.startswith("_") or isinstance(inspect.getattr_static(cls, name), (property, staticmethod,
                                                                                     classmethod)):
                continue
            if callable(method := getattr(cls, name)):
                setattr(cls, name, wrap(method))
        return cls

    return decorate


def credentials(username_env: str, password_env: str) -> tuple[str, str] | None:
    """HTTP basic auth from the environment only: credentials never live in configs or the catalogue."""
    user, password = os.environ.get(username_env), os.environ.get(password_env)
    return (user, password) if user and password else None


class SearchServerStore(VectorStore):
    """Base for the OpenSearch and Elasticsearch stores; subclasses give the client and the mappings."""

    client: Any

    @abstractmethod
    def _vector_mapping(self, dimension: int) -> dict[str, Any]: ...

    @abstractmethod
    def _index_settings(self) -> dict[str, Any]: ...

    @abstractmethod
    def _knn_body(self, vector: list[float], k: int, filters: list[dict[str, Any]]) -> dict[str, Any]: ...

    @abstractmethod
    def _dimension_from_mapping(self, vector_mapping: dict[str, Any]) -> int | None: ...

    helpers: Any  # the client library's ``helpers`` module (both clients ship the same bulk helper)

    def _bulk(self, actions: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send actions with the client's bulk helper; return the failed items (a delete of a
        missing id is not a failure)."""
        _, errors = self.helpers.bulk(
            self.client, actions, raise_on_error=False, raise_on_exception=False, chunk_size=500, max_retries=2
        )
        return [e for e in errors if not (isinstance(e, dict) and e.get("delete", {}).get("status") == 404)]

    def _mappings(self, dimension: int) -> dict[str, Any]:
        return {
            "_meta": {"domainrag": True, "dimension": dimension},
            "properties": {
                "chunk_id": {"type": "keyword"},
                "doc_id": {"type": "keyword"},
                "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
                "text": {"type": "text"},
                "position": {"type": "integer"},
                "metadata": {"type": "keyword", "index": False, "doc_values": False},
                "vector": self._vector_mapping(dimension),
            },
        }

    def exists(self) -> bool:
        return bool(self.client.indices.exists(index=self.name))

    def create(self, dimension: int) -> None:
        if self.exists():
            return
        self.client.indices.create(
            index=self.name, body={"settings": self._index_settings(), "mappings": self._mappings(dimension)}
        )

    def dimension(self) -> int | None:
        if not self.exists():
            return None
        mapping = self.client.indices.get_mapping(index=self.name)
        props = next(iter(mapping.values()))["mappings"].get("properties", {})
        return self._dimension_from_mapping(props["vector"]) if "vector" in props else None

    def _write(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> int:
        def actions() -> Iterator[dict[str, Any]]:
            for c, v in zip(chunks, vectors, strict=True):
                yield {
                    "_op_type": "index",
                    "_index": self.name,
                    "_id": c.chunk_id,
                    "_source": {
                        "chunk_id": c.chunk_id,
                        "doc_id": c.doc_id,
                        "title": c.title,
                        "text": c.text,
                        "position": c.position,
                        "metadata": json.dumps(c.metadata, default=str),
                        "vector": v.tolist(),
                    },
                }

        failed = self._bulk(actions())
        if failed:
            first = json.dumps(failed[0], default=str)[:500]
            raise DomainRagError(
                f"{len(failed)} of {len(chunks)} chunks were rejected by index '{self.name}'; first: {first}",
                hint="the other chunks were written; fix the cause and re-run the ingest (it resumes)",
            )
        return len(chunks)

    def refresh(self) -> None:
        if self.exists():
            self.client.indices.refresh(index=self.name)

    def existing_ids(self, chunk_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        ids = list(chunk_ids)
        if not ids or not self.exists():
            return found
        for start in range(0, len(ids), 500):
            res = self.client.mget(index=self.name, body={"ids": ids[start : start + 500]}, _source=False)
            found |= {d["_id"] for d in res["docs"] if d.get("found")}
        return found

    def chunk_sources(self, doc_id: str) -> dict[str, str]:
        if not self.exists():
            return {}
        self.refresh()
        res = self.client.search(
            index=self.name, body={"query": {"term": {"doc_id": doc_id}}, "size": 10_000, "_source": ["metadata"]}
        )
        return {h["_id"]: self._source_of((h.get("_source") or {}).get("metadata")) for h in res["hits"]["hits"]}

    def delete_chunks(self, chunk_ids: Sequence[str]) -> int:
        if not chunk_ids:
            return 0
        self._bulk({"_op_type": "delete", "_index": self.name, "_id": i} for i in chunk_ids)
        return len(chunk_ids)

    def count(self) -> int:
        if not self.exists():
            return 0
        self.refresh()
        return int(self.client.count(index=self.name)["count"])

    def document_count(self) -> int:
        if not self.exists():
            return 0
        self.refresh()
        res = self.client.search(
            index=self.name, body={"size": 0, "aggs": {"docs": {"cardinality": {"field": "doc_id"}}}}
        )
        return int(res["aggregations"]["docs"]["value"])

    def _hits(self, res: dict[str, Any], name: str, to_cosine: bool) -> list[SearchHit]:
        hits = []
        for rank, h in enumerate(res["hits"]["hits"], start=1):
            s = h["_source"]
            score = float(h["_score"] or 0.0)
            if to_cosine:
                score = 2.0 * score - 1.0
            hits.append(
                SearchHit(
                    s["chunk_id"],
                    s["doc_id"],
                    s["text"],
                    score,
                    s.get("title") or "",
                    json.loads(s.get("metadata") or "{}"),
                    {name: rank},
                    {name: score},
                )
            )
        return hits

    def dense_search(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> list[SearchHit]:
        if not self.exists():
            return []
        body = self._knn_body(np.asarray(vector, dtype=np.float32).tolist(), k, term_filters(filters))
        return self._hits(self.client.search(index=self.name, body={**body, "_source": SOURCE_FIELDS}), "dense", True)

    def text_search(self, query: str, k: int, filters: Filters | None = None) -> list[SearchHit]:
        if not self.exists() or not query.strip():
            return []
        q: dict[str, Any] = {"bool": {"must": [{"match": {"text": query}}], "filter": term_filters(filters)}}
        res = self.client.search(index=self.name, body={"query": q, "size": k, "_source": SOURCE_FIELDS})
        return self._hits(res, "bm25", False)

    def drop(self) -> None:
        if self.exists():
            self.client.indices.delete(index=self.name)
