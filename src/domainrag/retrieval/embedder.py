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

    ``query_bf16`` runs the query's matrix products in bfloat16 (autocast); by default only on CPUs
    with native bf16 instructions, where it saves ~20 % of the query's CPU time while the vector stays
    within cosine 0.9999 of the float32 one (stored chunk vectors are always float32).
    """

    def __init__(
        self, path: str, name: str | None = None, device: str = "cpu", query_threads: int | None = 1,
        query_bf16: bool | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.name = name or path
        self.path = path
        self.model = SentenceTransformer(path, device=device)
        self.model.eval()
        self.query_threads = query_threads
        on_cpu = self.model.device.type == "cpu"
        self.query_bf16 = (on_cpu and native_bf16()) if query_bf16 is None else query_bf16
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
        tested equal in float32) without its batching, sorting and conversion layers.
        """
        import torch

        autocast = torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=self.query_bf16)
        with _QueryThreads(self.query_threads), torch.inference_mode(), autocast:
            features = self._preprocess([query])
            features = {k: v.to(self.model.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
            vec = self.model(features)["sentence_embedding"][0]
            vec = torch.nn.functional.normalize(vec.float(), p=2, dim=0)
            return vec.cpu().numpy()


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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
