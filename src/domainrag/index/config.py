"""Vector-store backend configurations: a pydantic discriminated union on ``type``."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbeddedStoreConfig(_Base):
    """Embedded engine (LanceDB) on local disk or object storage; the default."""

    type: Literal["embedded"] = "embedded"
    uri: str | None = Field(None, description="database folder/URL; default <workspace>/indexes")
    nprobes: int = Field(20, ge=1, description="IVF partitions probed per ANN query")
    refine_factor: int = Field(5, ge=1, description="ANN re-ranks k * refine_factor PQ candidates with exact vectors")
    ann_min_rows: int = Field(50_000, ge=256, description="build an IVF-PQ ANN index above this many rows")
    ann_num_partitions: int | None = Field(None, ge=1, description="IVF partitions (None: LanceDB's default)")
    fts_stem: bool = Field(True, description="BM25 index stems English words (Lucene's standard analyzer does not)")
    fts_remove_stop_words: bool = Field(True, description="BM25 index drops English stop words")
    read_consistency_s: float = Field(
        1.0, ge=0, description="how stale the kept table handle may get before it checks for other processes' "
        "writes (0: check on every query)",
    )
    ann_num_sub_vectors: int | None = Field(
        None, ge=1, description="PQ sub-vectors (None: dimension / 8, i.e. 8 dimensions per sub-vector)"
    )


class OpenSearchStoreConfig(_Base):
    """OpenSearch with the k-NN plugin (``knn_vector`` + HNSW)."""

    type: Literal["opensearch"] = "opensearch"
    hosts: list[str] = Field(
        default_factory=lambda: [os.environ.get("DOMAINRAG_OPENSEARCH_URL", "http://127.0.0.1:9200")]
    )
    username_env: str = Field("OPENSEARCH_USERNAME", description="env var holding the user name, if any")
    password_env: str = Field("OPENSEARCH_PASSWORD", description="env var holding the password, if any")
    verify_certs: bool = True
    timeout_s: float = Field(30, gt=0, description="seconds one request may take before it fails (retried once): a "
                              "stalled server ends in an error naming it, not a hang")
    engine: Literal["lucene", "faiss"] = "lucene"
    m: int = Field(16, ge=2, le=100)
    ef_construction: int = Field(128, ge=2)
    ef_search: int = Field(100, ge=2)
    shards: int = Field(1, ge=1)
    replicas: int = Field(0, ge=0)
    server_hybrid: bool = Field(
        False,
        description="fuse BM25 + k-NN on the server (hybrid query + RRF search pipeline, needs the "
        "neural-search plugin) instead of client-side RRF; per-retriever ranks are then not reported",
    )


class ElasticsearchStoreConfig(_Base):
    """Elasticsearch ``dense_vector`` (indexed, cosine, HNSW)."""

    type: Literal["elasticsearch"] = "elasticsearch"
    hosts: list[str] = Field(
        default_factory=lambda: [os.environ.get("DOMAINRAG_ELASTICSEARCH_URL", "http://127.0.0.1:9200")]
    )
    username_env: str = "ELASTICSEARCH_USERNAME"
    password_env: str = "ELASTICSEARCH_PASSWORD"
    api_key_env: str = "ELASTICSEARCH_API_KEY"
    verify_certs: bool = True
    timeout_s: float = Field(30, gt=0, description="seconds one request may take before it fails (retried once): a "
                              "stalled server ends in an error naming it, not a hang")
    index_type: Literal["hnsw", "int8_hnsw", "flat"] = "hnsw"
    m: int = Field(16, ge=2, le=100)
    ef_construction: int = Field(100, ge=2)
    num_candidates: int = Field(100, ge=1)
    shards: int = Field(1, ge=1)
    replicas: int = Field(0, ge=0)


StoreConfig = Annotated[
    EmbeddedStoreConfig | OpenSearchStoreConfig | ElasticsearchStoreConfig, Field(discriminator="type")
]
_ADAPTER: TypeAdapter[StoreConfig] = TypeAdapter(StoreConfig)


def parse_store_config(
    data: dict | str | None,
) -> EmbeddedStoreConfig | OpenSearchStoreConfig | ElasticsearchStoreConfig:
    """Validate a store config from a dict or a bare type name (``"opensearch"``)."""
    if data is None:
        return EmbeddedStoreConfig()
    if isinstance(data, str):
        data = {"type": data}
    return _ADAPTER.validate_python(data)
