"""OpenSearch with the k-NN plugin: ``knn_vector`` + HNSW (lucene or faiss engine), cosine space."""

from __future__ import annotations

from typing import Any

from domainrag.index._lucene import LuceneStore, credentials
from domainrag.index.config import OpenSearchStoreConfig


class OpenSearchStore(LuceneStore):
    def __init__(self, name: str, config: OpenSearchStoreConfig) -> None:
        super().__init__(name)
        from opensearchpy import OpenSearch, helpers

        self.config = config
        self.helpers = helpers
        self.client = OpenSearch(hosts=config.hosts, http_auth=credentials(config.username_env, config.password_env),
                                 verify_certs=config.verify_certs, timeout=60)

    def _index_settings(self) -> dict[str, Any]:
        return {"index": {"knn": True, "knn.algo_param.ef_search": self.config.ef_search,
                          "number_of_shards": self.config.shards, "number_of_replicas": self.config.replicas}}

    def _vector_mapping(self, dimension: int) -> dict[str, Any]:
        return {"type": "knn_vector", "dimension": dimension,
                "method": {"name": "hnsw", "space_type": "cosinesimil", "engine": self.config.engine,
                           "parameters": {"m": self.config.m, "ef_construction": self.config.ef_construction}}}

    def _dimension_from_mapping(self, vector_mapping: dict[str, Any]) -> int | None:
        dim = vector_mapping.get("dimension")
        return int(dim) if dim is not None else None

    def _knn_body(self, vector: list[float], k: int, filters: list[dict[str, Any]]) -> dict[str, Any]:
        knn: dict[str, Any] = {"vector": vector, "k": k}
        if filters:
            knn["filter"] = {"bool": {"filter": filters}}  # efficient filtering (lucene and faiss engines)
        return {"size": k, "query": {"knn": {"vector": knn}}}
