"""Shared pieces of the retrieval tests: a constant query embedder and small real embedded stores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from domainrag.data.chunking import Chunk
from domainrag.index import open_store, parse_store_config


class FixedEmbedder:
    """Every query embeds to the same vector: dense order is then fixed by the stored vectors alone."""

    def encode_query(self, query: str) -> np.ndarray:
        return np.ones(4, dtype=np.float32) / 2


@pytest.fixture
def fixed_embedder() -> FixedEmbedder:
    return FixedEmbedder()


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., Any]:
    """``make_store(name, texts, metadata=None)``: an embedded store, one chunk per text, seeded random vectors."""

    def make(name: str, texts: dict[str, str], metadata: dict[str, dict[str, Any]] | None = None) -> Any:
        store = open_store(name, parse_store_config(None), str(tmp_path / "stores"))
        store.create(4)
        meta = metadata or {}
        chunks = [Chunk(k, k, t, 0, metadata=dict(meta.get(k, {}))) for k, t in texts.items()]
        store.upsert(chunks, np.random.default_rng(0).random((len(texts), 4), dtype=np.float32))
        store.refresh()
        return store

    return make
