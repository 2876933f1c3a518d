"""OpenSearch with the k-NN plugin: ``knn_vector`` + HNSW (lucene or faiss engine), cosine space."""

from __future__ import annotations

from typing import Any

import numpy as np
import opensearchpy

from domainrag.index.base import Filters, SearchHit
from domainrag.index.config import OpenSearchStoreConfig
from domainrag.index.search_server import SOURCE_FIELDS, SearchServerStore, credentials, guard_connection, term_filters


@guard_connection("OpenSearch", (opensearchpy.exceptions.ConnectionError,))
class OpenSearchStore(SearchServerStore):
    def __init__(self, name: str, config: OpenSearchStoreConfig) -> None:
        super().__init__(name)
        from opensearchpy import OpenSearch, helpers

        self.config = config
        self.helpers = helpers
        self._pipelines: set[str] = set()
        self.client = OpenSearch(hosts=config.hosts, http_auth=credentials(config.username_env, config.password_env),
                                 verify_certs=config.verify_certs, timeout=config.timeout_s, max_retries=1,
                                 retry_on_timeout=False)

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

    @property
    def fuses_on_server(self) -> bool:
        return self.config.server_hybrid

    def hybrid_search(
        self, query: str, vector: np.ndarray, k: int, filters: Filters | None = None, rank_constant: int = 60
    ) -> list[SearchHit] | None:
        """OpenSearch's ``hybrid`` query fused by an RRF search pipeline (neural-search plugin)."""
        if not self.config.server_hybrid or not self.exists():
            return None
        pipeline = f"domainrag-rrf-{rank_constant}"
        if pipeline not in self._pipelines:
            self.client.transport.perform_request(
                "PUT", f"/_search/pipeline/{pipeline}",
                body={"phase_results_processors": [{"score-ranker-processor": {
                    "combination": {"technique": "rrf", "rank_constant": rank_constant}}}]},
            )
            self._pipelines.add(pipeline)
        flt = term_filters(filters)
        text_q: dict[str, Any] = {"bool": {"must": [{"match": {"text": query}}], "filter": flt}}
        knn = self._knn_body(np.asarray(vector, dtype=np.float32).tolist(), k, flt)["query"]
        body = {"size": k, "_source": SOURCE_FIELDS, "query": {"hybrid": {"queries": [text_q, knn]}}}
        res = self.client.search(index=self.name, body=body, params={"search_pipeline": pipeline})
        return self._hits(res, "hybrid", False)
