"""Fault injection between the stores and the real OpenSearch / Elasticsearch servers (a real Toxiproxy).

Under a stalled server, resets and a dead endpoint, every store operation ends within its timeout with a
:class:`StoreUnavailable` naming the engine and the proxy; after the fault is healed, re-running the ingest
leaves exactly the chunks of an undisturbed ingest (ids and counts compared).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from domainrag.data.loaders import Document
from domainrag.index import open_store
from domainrag.index.config import ElasticsearchStoreConfig, OpenSearchStoreConfig
from domainrag.index.ingest import ingest_documents
from domainrag.index.search_server import StoreUnavailable

pytestmark = pytest.mark.integration

TIMEOUT_S = 2.0
BOUND_S = 45.0  # a few requests of TIMEOUT_S each (one retry): a hung call never ends inside it


def _config(engine: str, url: str) -> Any:
    if engine == "opensearch":
        return OpenSearchStoreConfig(hosts=[url], timeout_s=TIMEOUT_S)
    return ElasticsearchStoreConfig(hosts=[url], timeout_s=TIMEOUT_S)


@pytest.fixture(params=["opensearch", "elasticsearch"])
def engine(request: pytest.FixtureRequest, toxiproxy) -> tuple[str, str, str]:
    """(engine, proxy name, proxy URL) in front of the real server."""
    url = request.getfixturevalue(f"{request.param}_url")
    name, listen = toxiproxy.proxy(url.removeprefix("http://"))
    return request.param, name, f"http://{listen}"


def _apply(toxiproxy, proxy: str, fault: str) -> None:
    if fault == "dead":
        toxiproxy.enable(proxy, False)
    else:
        toxiproxy.toxic(proxy, fault)


@pytest.mark.parametrize("fault", ["stall", "reset", "dead"])
def test_store_operations_end_with_a_clear_error_and_a_rerun_equals_an_undisturbed_ingest(
    engine: tuple[str, str, str], toxiproxy, minilm, docs: list[Document], tmp_path, fault: str
) -> None:
    kind, proxy, url = engine
    cfg = _config(kind, url)
    clean = open_store(f"faults-clean-{uuid.uuid4().hex[:8]}", cfg, str(tmp_path))
    store = open_store(f"faults-{uuid.uuid4().hex[:8]}", cfg, str(tmp_path))
    try:
        expected = sorted(c.chunk_id for c in ingest_documents(docs, clean, minilm).chunk_records)
        store.create(minilm.dimension)
        vector = np.asarray(minilm.encode(["warranty"])[0])
        _apply(toxiproxy, proxy, fault)
        operations: dict[str, Callable[[], Any]] = {
            "ingest": lambda: ingest_documents(docs, store, minilm),
            "dense": lambda: store.dense_search(vector, 3),
            "bm25": lambda: store.text_search("warranty", 3),
            "count": store.count,
        }
        for name, operation in operations.items():
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as err:
                operation()
            assert time.monotonic() - started < BOUND_S, name
            assert url.removeprefix("http://") in str(err.value) and err.value.hint, name
        toxiproxy.heal(proxy)
        report = ingest_documents(docs, store, minilm)
        assert sorted(c.chunk_id for c in report.chunk_records) == expected
        assert store.count() == len(expected) and store.existing_ids(expected) == set(expected)
    finally:
        toxiproxy.heal(proxy)
        clean.drop()
        store.drop()
