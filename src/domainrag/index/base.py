"""The one interface every vector store implements, and the hit type every search returns."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from domainrag.data.chunking import Chunk
from domainrag.errors import DimensionMismatchError

Filters = dict[str, Any]
"""Metadata filters: ``{"doc_id": "a.md"}`` or ``{"doc_id": ["a.md", "b.md"]}``."""


@dataclass
class SearchHit:
    """One retrieved chunk with its score and its rank in each retriever that found it."""

    chunk_id: str
    doc_id: str
    text: str
    score: float
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "doc_id": self.doc_id,
            "title": self.title,
            "text": self.text,
            "score": self.score,
            "ranks": self.ranks,
            "scores": self.scores,
            "metadata": self.metadata,
        }


class VectorStore(ABC):
    """A named index of chunks with vectors and full text."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def exists(self) -> bool: ...

    @abstractmethod
    def create(self, dimension: int) -> None:
        """Create the index with a mapping derived from the embedding model's dimension."""

    @abstractmethod
    def dimension(self) -> int | None:
        """Vector dimension read back from the store itself (None if the index is absent)."""

    @abstractmethod
    def _write(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> int: ...

    @abstractmethod
    def existing_ids(self, chunk_ids: Sequence[str]) -> set[str]: ...

    @abstractmethod
    def chunk_sources(self, doc_id: str) -> dict[str, str]:
        """``{chunk id: source}`` of the document's chunks in the index (source ``""`` where none was recorded)."""

    def ids_for_document(self, doc_id: str) -> set[str]:
        return set(self.chunk_sources(doc_id))

    @abstractmethod
    def delete_chunks(self, chunk_ids: Sequence[str]) -> int: ...

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def document_count(self) -> int: ...

    @abstractmethod
    def dense_search(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> list[SearchHit]: ...

    @abstractmethod
    def text_search(self, query: str, k: int, filters: Filters | None = None) -> list[SearchHit]: ...

    @abstractmethod
    def drop(self) -> None: ...

    @property
    def fuses_on_server(self) -> bool:
        """Whether :meth:`hybrid_search` fuses on the server (else the retriever runs dense + BM25 itself)."""
        return False

    def hybrid_search(
        self, query: str, vector: np.ndarray, k: int, filters: Filters | None = None, rank_constant: int = 60
    ) -> list[SearchHit] | None:
        """Server-side fused search where the engine offers it; None means "fuse on the client"."""
        return None

    def refresh(self) -> None:  # noqa: B027 - optional hook, deliberately a no-op by default
        """Make recent writes searchable (no-op where writes are immediately visible)."""

    def check_dimension(self, model_dim: int, model_name: str, *, query: bool = False) -> None:
        """Refuse (before any write, or for a ``query``) if the stored dimension differs from the model's."""
        dim = self.dimension()
        if dim is not None and dim != model_dim:
            raise DimensionMismatchError(self.name, dim, model_name, model_dim, query=query)

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> int:
        """Insert or replace chunks by id; vectors are checked against the index first."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        if not chunks:
            return 0
        dim = self.dimension()
        if dim is not None and vectors.shape[1] != dim:
            raise DimensionMismatchError(self.name, dim, "the given vectors", int(vectors.shape[1]))
        return self._write(chunks, np.asarray(vectors, dtype=np.float32))

    @staticmethod
    def _source_of(metadata_json: str | None) -> str:
        """The ``source`` recorded in a chunk's stored metadata JSON ("" if none)."""
        try:
            meta = json.loads(metadata_json or "{}")
        except ValueError:
            return ""
        return str(meta.get("source") or "") if isinstance(meta, dict) else ""

    def stats(self) -> dict[str, Any]:
        return {
            "index": self.name,
            "chunks": self.count(),
            "documents": self.document_count(),
            "dimension": self.dimension(),
        }
