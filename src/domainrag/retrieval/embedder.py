"""Sentence embeddings for chunks and queries (sentence-transformers), normalised for cosine."""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from domainrag.errors import DomainRagError, model_load_error
from domainrag.hardware import native_bf16
from domainrag.retrieval.int8_guard import MIN_MEAN_COSINE, int8_guard
from domainrag.retrieval.onnx_encoder import OnnxBulkEncoder, int8_variant, load_onnx_bulk_encoder

if TYPE_CHECKING:
    from domainrag.retrieval.onnx_encoder import OnnxQueryEncoder

log = logging.getLogger(__name__)

QueryBackend = Literal["auto", "onnx", "torch"]
QUERY_BACKEND_ENV = "DOMAINRAG_QUERY_BACKEND"
BulkEncoderSetting = Literal["auto", "torch", "onnx", "onnx-int8"]
BULK_ENCODER_ENV = "DOMAINRAG_BULK_ENCODER"
BULK_SETTINGS = ("auto", "torch", "onnx", "onnx-int8")
# ``auto`` keeps a corpus smaller than this on torch: the one-off ONNX export, int8 quantization and guard
# (tens of seconds, once per model and CPU) cost more than they save below about a thousand chunks.
AUTO_MIN_TEXTS = 1000


class Embedder:
    """A loaded sentence-transformers model; ``dimension`` is read from the model itself.

    ``query_backend`` picks how one query is encoded (``encode_query``): ``"onnx"`` runs the model's
    transformer in ONNX Runtime (exported once per weights checksum into the cache, see
    :mod:`domainrag.retrieval.onnx_encoder`; lower single-query latency on CPUs, measured in
    ``benchmarks/bench_onnx_encoder.py``), ``"torch"`` the sentence-transformers modules, ``"auto"`` (default, or the
    ``DOMAINRAG_QUERY_BACKEND`` environment variable) ONNX when onnxruntime is importable and the
    export succeeds, else torch, logging the reason once. ``"onnx"`` raises instead of falling back.
    The ONNX encoder is prepared on the first ``encode_query``, so batch-only users never pay for it.

    ``query_threads`` is the number of torch threads one query is encoded on (default 1): a short
    input gains little from more cores, OpenMP's spinning worker threads cost time as soon as the
    machine is busy, and the retriever runs the BM25 search on another core meanwhile. Batches
    (``encode``) keep torch's own thread count.

    ``query_bf16`` runs the query's matrix products in bfloat16 (autocast); by default only on CPUs
    with native bf16 instructions, where it saves CPU time while the vector stays within cosine 0.9999
    of the float32 one (stored chunk vectors are always float32). Torch path only.

    ``bulk_encoder`` picks how ``encode_documents`` (what ingestion embeds chunks with) runs: ``"torch"``
    sentence-transformers ``encode``; ``"onnx"`` :class:`~domainrag.retrieval.onnx_encoder.OnnxBulkEncoder` in
    float32 (the same vectors, cosine 0.9999); ``"onnx-int8"`` its int8-weight graph; ``"auto"`` (default, or
    ``DOMAINRAG_BULK_ENCODER``) int8 when :func:`~domainrag.retrieval.int8_guard.int8_guard` passes for this
    model on this CPU (``int8_min_cosine`` overrides its mean-cosine bound), else float32 ONNX, else torch when
    the export fails. Chosen once, at the first ``encode_documents``; ``bulk_path`` says what was chosen.
    ``encode`` (batches of queries, the embeddings API) always stays on torch, so queries keep their encoder.
    """

    def __init__(
        self, path: str, name: str | None = None, device: str = "cpu", query_threads: int | None = 1,
        query_bf16: bool | None = None, query_backend: QueryBackend | None = None,
        bulk_encoder: BulkEncoderSetting | None = None, int8_min_cosine: float | None = None,
    ) -> None:
        from sentence_transformers import SentenceTransformer  # lazy: torch start-up kept off light CLI paths

        self.name = name or path
        self.path = path
        try:
            self.model = SentenceTransformer(path, device=device)
        except (OSError, ValueError) as exc:  # not a model folder, or a hub id that cannot be fetched
            raise model_load_error("embedding", self.name, exc) from exc
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
        backend = query_backend or os.environ.get(QUERY_BACKEND_ENV) or "auto"
        if backend not in ("auto", "onnx", "torch"):
            raise ValueError(f"query_backend must be auto, onnx or torch, not {backend!r}")
        self.query_backend: QueryBackend = backend  # type: ignore[assignment]
        self._onnx: OnnxQueryEncoder | None = None
        self._onnx_error: str | None = None  # why the ONNX path is unavailable, once tried
        self._onnx_lock = threading.Lock()
        bulk = bulk_encoder or os.environ.get(BULK_ENCODER_ENV) or "auto"
        if bulk not in BULK_SETTINGS:
            raise DomainRagError(f"{BULK_ENCODER_ENV}={bulk!r} is not a bulk encoder",
                                 hint=f"use one of {', '.join(BULK_SETTINGS)}")
        self.bulk_encoder: BulkEncoderSetting = bulk  # type: ignore[assignment]
        self.int8_min_cosine = int8_min_cosine
        self._bulk: OnnxBulkEncoder | None = None
        self._bulk_path: str | None = None  # torch | onnx-fp32 | onnx-int8 | onnx-int8-unguarded, once chosen
        self._bulk_lock = threading.Lock()

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vecs = self.model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)

    def encode_documents(self, texts: Sequence[str], batch_size: int = 64, total: int | None = None) -> np.ndarray:
        """Chunk vectors for an index, through the bulk encoder ``bulk_encoder`` picks (see the class).
        ``total``: the chunks this ingest embeds in all; under ``auto``, fewer than :data:`AUTO_MIN_TEXTS`
        stay on torch (nothing is chosen or exported for them)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self._bulk_path is None and self.bulk_encoder == "auto" and total is not None and total < AUTO_MIN_TEXTS:
            return self.encode(texts, batch_size)
        bulk = self.bulk_for(texts)
        return self.encode(texts, batch_size) if bulk is None else bulk.encode(texts, batch_size=batch_size)

    @property
    def bulk_min_texts(self) -> int:
        """Chunks an ingest must embed before ``encode_documents`` picks its bulk path (0 once it is picked, or
        when the setting is not ``auto``): a caller embedding before it knows the whole ingest waits for this
        many, so that every chunk of one ingest goes the same path."""
        return AUTO_MIN_TEXTS if self._bulk_path is None and self.bulk_encoder == "auto" else 0

    @property
    def bulk_path(self) -> str | None:
        """What ``encode_documents`` runs on: ``torch``, ``onnx-fp32``, ``onnx-int8`` (guard passed) or
        ``onnx-int8-unguarded`` (forced by the setting although the guard failed); None before its first call."""
        return self._bulk_path

    def bulk_for(self, probe: Sequence[str]) -> OnnxBulkEncoder | None:
        """The ONNX bulk encoder (None: torch), chosen on first call; ``probe``: the corpus's first texts."""
        with self._bulk_lock:
            if self._bulk_path is None:
                self._bulk, self._bulk_path = _choose_bulk(self, probe)
        return self._bulk

    def encode_query(self, query: str) -> np.ndarray:
        """One query, unit length: through ONNX Runtime or torch as ``query_backend`` says."""
        if self.query_backend != "torch":
            onnx = self.onnx_encoder()
            if onnx is not None:
                return onnx.encode(query)
        return self.encode_query_torch(query)

    @property
    def query_path(self) -> str:
        """``"onnx"`` or ``"torch"``: what ``encode_query`` ran on (``"torch"`` before its first call)."""
        return "onnx" if self._onnx is not None and self.query_backend != "torch" else "torch"

    def onnx_encoder(self) -> OnnxQueryEncoder | None:
        """The ONNX query encoder, built on first call; None (reason logged once) if unavailable."""
        if self._onnx is not None or self._onnx_error is not None:
            if self._onnx is None and self.query_backend == "onnx":
                raise RuntimeError(f"ONNX query encoding unavailable for '{self.name}': {self._onnx_error}")
            return self._onnx
        with self._onnx_lock:
            if self._onnx is None and self._onnx_error is None:
                from domainrag.retrieval.onnx_encoder import OnnxUnavailable, load_onnx_encoder

                try:
                    self._onnx = load_onnx_encoder(self.model, self.query_threads)
                except Exception as e:  # OnnxUnavailable, or e.g. an unwritable cache: keep torch
                    self._onnx_error = str(e) if isinstance(e, OnnxUnavailable) else f"{type(e).__name__}: {e}"
                    log.warning("query encoding for '%s' stays on torch: %s", self.name, e)
        return self.onnx_encoder()

    def encode_query_torch(self, query: str) -> np.ndarray:
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


def _choose_bulk(emb: Embedder, probe: Sequence[str]) -> tuple[OnnxBulkEncoder | None, str]:
    """(encoder, bulk_path) as ``emb.bulk_encoder`` says; ``auto`` falls back with the reason logged."""
    setting = emb.bulk_encoder
    if setting == "torch":
        return None, "torch"
    import torch  # lazy: torch start-up kept off light CLI paths

    threads = torch.get_num_threads()  # the threads sentence-transformers would use
    try:
        fp32 = load_onnx_bulk_encoder(emb.model, threads)
    except Exception as e:  # OnnxUnavailable, or e.g. an unwritable cache
        if setting != "auto":
            raise DomainRagError(f"{BULK_ENCODER_ENV}={setting}: ONNX bulk encoding unavailable for '{emb.name}': {e}",
                                 hint=f"set {BULK_ENCODER_ENV}=auto or torch") from e
        log.warning("bulk encoding for '%s' stays on torch: %s", emb.name, e)
        return None, "torch"
    if setting == "onnx":
        return fp32, "onnx-fp32"
    try:
        int8 = int8_variant(emb.model, fp32, threads)
        bound = MIN_MEAN_COSINE if emb.int8_min_cosine is None else emb.int8_min_cosine
        verdict = int8_guard(fp32, int8, probe, bound)
    except Exception as e:
        if setting != "auto":
            raise DomainRagError(f"{BULK_ENCODER_ENV}=onnx-int8: int8 bulk encoding unavailable for '{emb.name}': {e}",
                                 hint=f"set {BULK_ENCODER_ENV}=auto or onnx") from e
        log.warning("bulk encoding for '%s' stays on float32 ONNX: %s", emb.name, e)
        return fp32, "onnx-fp32"
    if verdict.passed:
        log.info("bulk encoding for '%s' on int8 ONNX: %s", emb.name, verdict.describe())
        return int8, "onnx-int8"
    if setting == "onnx-int8":
        log.warning("bulk encoding for '%s' on int8 ONNX as %s says, although the guard failed: %s",
                    emb.name, BULK_ENCODER_ENV, verdict.describe())
        return int8, "onnx-int8-unguarded"
    log.warning("bulk encoding for '%s' on float32 ONNX, int8 would lose quality: %s", emb.name, verdict.describe())
    return fp32, "onnx-fp32"


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
def load_embedder(path: str, name: str | None = None, revision: str | None = None) -> Embedder:
    """Process-wide cache: loading a model costs seconds, encoding a query milliseconds.

    ``revision`` (e.g. a weights digest) only keys the cache, so a folder whose weights changed loads anew.
    """
    return Embedder(path, name)
