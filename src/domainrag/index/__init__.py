"""Vector stores: one interface (:class:`VectorStore`), three engines (embedded LanceDB,
OpenSearch, Elasticsearch) chosen by a config discriminated on ``type``."""

from __future__ import annotations

from domainrag.index.base import Filters, SearchHit, VectorStore
from domainrag.index.config import (
    ElasticsearchStoreConfig,
    EmbeddedStoreConfig,
    OpenSearchStoreConfig,
    StoreConfig,
    parse_store_config,
)
from domainrag.index.encoder import Encoder
from domainrag.index.record import EmbedderPin, IndexRecord, validate_index_name


def open_store(name: str, config: StoreConfig, default_uri: str) -> VectorStore:
    """Instantiate the backend for ``config`` (imports each client lazily: each engine's client library is
    heavy and only one is used); ``name`` is validated first."""
    validate_index_name(name)
    if isinstance(config, EmbeddedStoreConfig):
        from domainrag.index.embedded import EmbeddedStore

        return EmbeddedStore(name, config, default_uri)
    if isinstance(config, OpenSearchStoreConfig):
        from domainrag.index.opensearch import OpenSearchStore

        return OpenSearchStore(name, config)
    if isinstance(config, ElasticsearchStoreConfig):
        from domainrag.index.elasticsearch import ElasticsearchStore

        return ElasticsearchStore(name, config)
    raise TypeError(f"unknown store config {config!r}")


__all__ = [
    "ElasticsearchStoreConfig",
    "EmbeddedStoreConfig",
    "EmbedderPin",
    "Encoder",
    "Filters",
    "IndexRecord",
    "OpenSearchStoreConfig",
    "SearchHit",
    "StoreConfig",
    "VectorStore",
    "open_store",
    "parse_store_config",
    "validate_index_name",
]
