"""Elasticsearch ``dense_vector`` (indexed, cosine similarity, HNSW) with ``knn`` search."""

from __future__ import annotations

import os
from typing import Any

import elastic_transport

from domainrag.index.config import ElasticsearchStoreConfig
from domainrag.index.search_server import SearchServerStore, credentials, guard_connection


@guard_connection("Elasticsearch", (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout))
class ElasticsearchStore(SearchServerStore):
    def __init__(self, name: str, config: ElasticsearchStoreConfig) -> None:
        super().__init__(name)
        from elasticsearch import Elasticsearch, helpers

        self.config = config
        self.helpers = helpers
        kwargs: dict[str, Any] = {"verify_certs": config.verify_certs, "request_timeout": config.timeout_s,
                                  "max_retries": 1, "retry_on_timeout": False}
        if api_key := os.environ.get(config.api_key_env):
            kwargs["api_key"] = api_key
        elif auth := credentials(config.username_env, config.password_env):
            kwargs["basic_auth"] = auth
        self.client = Elasticsearch(config.hosts, **kwargs)

    def _index_settings(self) -> dict[str, Any]:
        return {"number_of_shards": self.config.shards, "number_of_replicas": self.config.replicas}

    def _vector_mapping(self, dimension: int) -> dict[str, Any]:
        options: dict[str, Any] = {"type": self.config.index_type}
        if self.config.index_type != "flat":
            options.update(m=self.config.m, ef_construction=self.config.ef_construction)
        return {"type": "dense_vector", "dims": dimension, "index": True, "similarity": "cosine",
                "index_options": options}

    def _dimension_from_mapping(self, vector_mapping: dict[str, Any]) -> int | None:
        dim = vector_mapping.get("dims")
        return int(dim) if dim is not None else None

    def _knn_body(self, vector: list[float], k: int, filters: list[dict[str, Any]]) -> dict[str, Any]:
        knn: dict[str, Any] = {"field": "vector", "query_vector": vector, "k": k,
                               "num_candidates": max(self.config.num_candidates, k)}
        if filters:
            knn["filter"] = filters
        return {"size": k, "knn": knn}
