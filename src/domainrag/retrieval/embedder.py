"""Sentence embeddings for chunks and queries (sentence-transformers), normalised for cosine."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence

import numpy as np


class Embedder:
    """A loaded sentence-transformers model; ``dimension`` is read from the model itself.

    ``query_threads`` is the number of torch threads one query is encoded on (default 1): a
    ~20-token input gains little from a second core, OpenMP's spinning worker threads cost tens of
    milliseconds as soon as the machine is busy, and the retriever runs the BM25 search on the other
    core meanwhile. Batches (``encode``) keep torch's own thread count.
    """

    def __init__(self, path: str, name: str | None = None, device: str = "cpu", query_threads: int | None = 1) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.name = name or path
        self.path = path
        self.model = SentenceTransformer(path, device=device)
        self.model.eval()
        self.query_threads = query_threads
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = getter()
        if dim is None:
            raise ValueError(f"cannot read the output dimension of embedding model '{self.name}'")
        self.dimension = int(dim)
        # Normalising after the model's own modules is a no-op when it ends with Normalize (MiniLM does).
        self._preprocess = getattr(self.model, "preprocess", None) or self.model.tokenize

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vecs = self.model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)

    def encode_query(self, query: str) -> np.ndarray:
        """One query through the model's own preprocessing and modules under ``inference_mode``.

        The same computation as ``encode([query])[0]`` (same tokenizer, modules and normalisation;
        tested equal) without its batching, sorting and conversion layers.
        """
        import torch

        with _QueryThreads(self.query_threads), torch.inference_mode():
            features = self._preprocess([query])
            features = {k: v.to(self.model.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
            vec = self.model(features)["sentence_embedding"][0]
            vec = torch.nn.functional.normalize(vec.float(), p=2, dim=0)
            return vec.cpu().numpy()


class _QueryThreads:
    """Run a block on ``n`` torch threads, restoring the previous count when the last such block ends.

    torch's thread count is process-wide, so concurrent queries share one reference count under a
    lock. A batch ``encode`` on another thread meanwhile may briefly run on ``n`` threads: slower,
    never wrong. ``n=None`` leaves torch alone.
    """

    _lock = threading.Lock()
    _active = 0
    _saved: int | None = None

    def __init__(self, n: int | None) -> None:
        self.n = n

    def __enter__(self) -> None:
        if self.n is None:
            return
        import torch

        cls = type(self)
        with cls._lock:
            if cls._active == 0:
                prev = torch.get_num_threads()
                cls._saved = prev if prev != self.n else None
                if cls._saved is not None:
                    torch.set_num_threads(self.n)
            cls._active += 1

    def __exit__(self, *exc: object) -> None:
        if self.n is None:
            return
        import torch

        cls = type(self)
        with cls._lock:
            cls._active -= 1
            if cls._active == 0 and cls._saved is not None:
                torch.set_num_threads(cls._saved)
                cls._saved = None


@functools.lru_cache(maxsize=4)
def load_embedder(path: str, name: str | None = None) -> Embedder:
    """Process-wide cache: loading a model costs seconds, encoding a query milliseconds."""
    return Embedder(path, name)
