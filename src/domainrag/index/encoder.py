"""What the index layer needs from an embedding model: the :class:`Encoder` protocol.

Ingest and index creation depend on this protocol, not on a concrete model class, so the index layer
stays below retrieval (whose ``Embedder`` satisfies it) and tests can pass any object with these members.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """Turns document texts into unit-length float32 vectors of a fixed dimension."""

    name: str
    """The model's name, used in error messages (e.g. a dimension mismatch)."""
    dimension: int
    """Length of every vector :meth:`encode` returns; an index's mapping is derived from it."""

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """One row per text, shape ``(len(texts), dimension)``, float32, L2-normalised."""
        ...
