"""Sentence embeddings for chunks and queries (sentence-transformers), normalised for cosine."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np


class Embedder:
    """A loaded sentence-transformers model; ``dimension`` is read from the model itself."""

    def __init__(self, path: str, name: str | None = None, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.name = name or path
        self.path = path
        self.model = SentenceTransformer(path, device=device)
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = getter()
        if dim is None:
            raise ValueError(f"cannot read the output dimension of embedding model '{self.name}'")
        self.dimension = int(dim)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vecs = self.model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)

    def encode_query(self, query: str) -> np.ndarray:
        return self.encode([query])[0]


@functools.lru_cache(maxsize=4)
def load_embedder(path: str, name: str | None = None) -> Embedder:
    """Process-wide cache: loading a model costs seconds, encoding a query milliseconds."""
    return Embedder(path, name)
