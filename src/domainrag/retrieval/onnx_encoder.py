# Kept over sentence-transformers' backend="onnx": that needs optimum (no dependency here); why: bench_onnx_encoder.py
"""Single-query encoding with ONNX Runtime: the loaded sentence-transformers model's transformer,
exported once per weights checksum into the domainrag cache, plus the model's own pooling in numpy.

Why: at batch 1 on a CPU, PyTorch eager spends much of a small encoder's time in per-op overhead;
ONNX Runtime's fused graph encodes a short question faster from the same float32 weights (cosine
> 0.9999 to ``SentenceTransformer.encode``; measured in ``benchmarks/bench_onnx_encoder.py``, which also
compares sentence-transformers' own ONNX backend where ``optimum`` is installed). Batches stay on
sentence-transformers.

Export needs the ``onnx`` package (torch's exporter serialises through it) and running needs
``onnxruntime``; a model this module cannot reproduce exactly (modules other than Transformer →
Pooling → Normalize, pooling other than mean / cls / max / mean_sqrt_len_tokens, a non-CPU device)
raises :class:`OnnxUnavailable` so the caller keeps the torch path.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from domainrag.settings import cache_dir

FORMAT_VERSION = 1  # bump when the exported graph changes (inputs, outputs, attention kernel, opset)
INT8_VERSION = 2  # bump when _quantize's settings change: a cached int8 graph is found by its file name alone
OPSET = 17
PROBE = "ONNX export check: how long is the warranty on the DP-220 dosing pump?"
MIN_PROBE_COSINE = 0.9999
MIN_INT8_PROBE_COSINE = 0.9  # a broken quantization lands far below; retrieval quality is benchmarked
_POOLING = ("mean", "cls", "max", "mean_sqrt_len_tokens")


class OnnxUnavailable(RuntimeError):
    """The ONNX query path cannot be used for this model here; the message says why."""


class OnnxQueryEncoder:
    """Encode one text: the model's tokenizer → ONNX transformer → the model's pooling → L2 norm."""

    def __init__(
        self, session: Any, preprocess: Callable[[list[str]], dict[str, Any]], pooling: Sequence[str],
        path: Path,
    ) -> None:
        self.session = session
        self.preprocess = preprocess
        self.pooling = tuple(pooling)
        self.path = path
        self.input_names = [i.name for i in session.get_inputs()]

    def encode(self, text: str) -> np.ndarray:
        """Unit-length float32 vector of ``text`` (the same computation as ``encode([text])[0]``)."""
        features = self.preprocess([text])
        feeds = {name: _as_int64(features[name]) for name in self.input_names}
        tokens = self.session.run(None, feeds)[0]
        vec = pool(tokens, feeds["attention_mask"], self.pooling)[0]
        return (vec / max(float(np.linalg.norm(vec)), 1e-12)).astype(np.float32)


class OnnxBulkEncoder:
    """Encode many texts: longest first in batches that are each padded only to their own longest text
    (no padding waste from one long text in a batch of short ones), ONNX Runtime, the model's pooling."""

    def __init__(self, query: OnnxQueryEncoder, count_tokens: Callable[[list[str]], list[int]]) -> None:
        self.query = query
        self.count_tokens = count_tokens
        self.path = query.path

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in the order given."""
        texts = list(texts)
        order = np.argsort(-np.asarray(self.count_tokens(texts)), kind="stable") if texts else np.zeros(0, int)
        out: np.ndarray | None = None
        q = self.query
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            features = q.preprocess([texts[i] for i in idx])
            feeds = {name: _as_int64(features[name]) for name in q.input_names}
            vecs = pool(q.session.run(None, feeds)[0], feeds["attention_mask"], q.pooling)
            vecs /= np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12, None)
            if out is None:
                out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def load_onnx_bulk_encoder(model: Any, threads: int | None = None, int8: bool = False) -> OnnxBulkEncoder:
    """An :class:`OnnxBulkEncoder` for a loaded ``SentenceTransformer`` (the graph of
    :func:`load_onnx_encoder`; with ``int8``, :func:`int8_variant` of it).

    Whether int8 keeps retrieval quality is a property of the model, the corpus and the CPU's int8 kernels:
    :func:`int8_guard` checks it at first use; ``benchmarks/bench_onnx_bulk.py`` measures nDCG@10 on TAT-QA."""
    fp32 = _bulk(model, load_onnx_encoder(model, threads))
    return int8_variant(model, fp32, threads) if int8 else fp32


def int8_variant(model: Any, fp32: OnnxBulkEncoder, threads: int | None = None) -> OnnxBulkEncoder:
    """``fp32``'s graph with its MatMul weights quantized to int8 per channel by ONNX Runtime's dynamic
    quantization, cached beside it; refused when even the probe sentence lands far from torch."""
    import onnxruntime as ort

    target = int8_path(fp32.path)
    with FileLock(str(target) + ".lock"):
        if not target.exists():
            _quantize(fp32.path, target)
        base = fp32.query
        query = OnnxQueryEncoder(_session(ort, target, threads), base.preprocess, base.pooling, target)
    cos = _probe_cosine(model, query)
    if cos < MIN_INT8_PROBE_COSINE:
        raise OnnxUnavailable(f"the int8 graph strays from torch (probe cosine {cos:.4f})")
    return OnnxBulkEncoder(query, fp32.count_tokens)


def int8_path(fp32: Path) -> Path:
    """Where the int8 graph of the float32 graph ``fp32`` is cached (named by :data:`INT8_VERSION`)."""
    return fp32.with_suffix(f".q{INT8_VERSION}.int8.onnx")


def _bulk(model: Any, query: OnnxQueryEncoder) -> OnnxBulkEncoder:
    tokenizer = model.tokenizer
    limit = model.max_seq_length

    def count(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, truncation=True, max_length=limit)["input_ids"]]

    return OnnxBulkEncoder(query, count)


def _quantize(source: Path, target: Path) -> None:
    """int8 weights (per output channel), activations quantized on the fly; written atomically."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fd, tmp = tempfile.mkstemp(prefix=target.stem, suffix=".tmp.onnx", dir=target.parent)
    os.close(fd)
    try:
        quantize_dynamic(str(source), tmp, weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
        os.replace(tmp, target)
    except Exception as e:
        raise OnnxUnavailable(f"int8 quantization failed: {type(e).__name__}: {e}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def pool(tokens: np.ndarray, mask: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """sentence-transformers' ``Pooling`` for the supported modes, concatenated in order."""
    m = mask[..., None].astype(np.float32)
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(tokens[np.arange(len(tokens)), mask.argmax(axis=1)])
        elif mode == "max":
            out.append(np.where(m > 0, tokens, -np.inf).max(axis=1))
        else:
            count = np.clip(m.sum(axis=1), 1e-9, None)
            out.append((tokens * m).sum(axis=1) / (count if mode == "mean" else np.sqrt(count)))
    return np.concatenate(out, axis=-1)


def load_onnx_encoder(model: Any, threads: int | None = 1) -> OnnxQueryEncoder:
    """An :class:`OnnxQueryEncoder` for a loaded ``SentenceTransformer``, exporting it on first use.

    The graph is cached as ``<cache_dir>/onnx/<checksum>.onnx`` (checksum of the weights, the
    transformer config and :data:`FORMAT_VERSION`), written to a temporary file and renamed under a
    file lock, so concurrent processes export once and nobody reads a half-written file. A probe
    sentence is compared with the torch model on every load; a disagreeing cache file is exported
    again. ``threads``: ONNX Runtime intra-op threads (1 is fastest for one query on a busy CPU).
    """
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise OnnxUnavailable(f"onnxruntime is not importable ({e})") from e
    pooling, hf = _check_model(model)
    preprocess = getattr(model, "preprocess", None) or model.tokenize
    probe = preprocess([PROBE])
    names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in probe]
    target = cache_dir() / "onnx" / f"{checksum(hf, names)}.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        encoder = None
        if target.exists():  # cached: use it unless it fails to load or disagrees with torch
            try:
                encoder = OnnxQueryEncoder(_session(ort, target, threads), preprocess, pooling, target)
            except OnnxUnavailable:
                encoder = None
            if encoder is not None and _probe_cosine(model, encoder) < MIN_PROBE_COSINE:
                encoder = None
        if encoder is None:
            _export(hf, probe, names, target)
            encoder = OnnxQueryEncoder(_session(ort, target, threads), preprocess, pooling, target)
            cos = _probe_cosine(model, encoder)
            if cos < MIN_PROBE_COSINE:
                raise OnnxUnavailable(f"the exported graph disagrees with torch (cosine {cos:.6f})")
    return encoder


def checksum(hf: Any, input_names: Sequence[str]) -> str:
    """Hex digest of the transformer's weights, config and export format (the cache key)."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([FORMAT_VERSION, OPSET, list(input_names), hf.config.to_json_string()]).encode())
    for name, tensor in sorted(hf.state_dict().items()):
        t = tensor.detach().to("cpu", torch.float32).contiguous()
        h.update(name.encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _check_model(model: Any) -> tuple[tuple[str, ...], Any]:
    """(pooling modes, the Hugging Face transformer) when this module reproduces ``model`` exactly."""
    kinds = [type(m).__name__ for m in model]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise OnnxUnavailable(f"unsupported sentence-transformers modules {kinds}")
    if model.device.type != "cpu":
        raise OnnxUnavailable(f"the model runs on {model.device.type}; the ONNX path is for CPU")
    transformer, pooling = model[0], model[1]
    cfg = transformer.get_config_dict() if hasattr(transformer, "get_config_dict") else {}
    if cfg.get("transformer_task", "feature-extraction") != "feature-extraction":
        raise OnnxUnavailable(f"unsupported transformer task {cfg.get('transformer_task')!r}")
    modes = (pooling.pooling_mode,) if isinstance(pooling.pooling_mode, str) else tuple(pooling.pooling_mode)
    if not set(modes) <= set(_POOLING):
        raise OnnxUnavailable(f"unsupported pooling {modes}")
    hf = getattr(transformer, "auto_model", None) or getattr(transformer, "model", None)
    if hf is None:
        raise OnnxUnavailable("cannot reach the transformer inside the sentence-transformers model")
    return modes, hf


def _export(hf: Any, probe: dict[str, Any], names: Sequence[str], target: Path) -> None:
    """Trace a float32 copy (eager attention: SDPA's mask logic does not trace) to ``target``, atomically."""
    import warnings

    import torch

    try:
        import onnx  # noqa: F401  (torch's TorchScript exporter serialises through it)
    except ImportError as e:
        raise OnnxUnavailable(f"exporting needs the onnx package ({e})") from e

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, inputs, strict=True)), return_dict=False)[0]

    clone = copy.deepcopy(hf).to("cpu", torch.float32).eval()
    if hasattr(clone, "set_attn_implementation"):
        clone.set_attn_implementation("eager")
    args = tuple(probe[n].to("cpu") for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "token_embeddings"]}
    fd, tmp = tempfile.mkstemp(prefix=target.stem, suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer chatter about Python booleans that are constant here
            torch.onnx.export(
                TokenEmbeddings(clone).eval(), args, tmp, input_names=list(names),
                output_names=["token_embeddings"], dynamic_axes=axes, opset_version=OPSET, dynamo=False,
            )
        os.replace(tmp, target)
    except Exception as e:
        raise OnnxUnavailable(f"ONNX export failed: {type(e).__name__}: {e}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _session(ort: Any, path: Path, threads: int | None) -> Any:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default (one per core)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # a truncated or foreign file
        raise OnnxUnavailable(f"cannot load {path}: {type(e).__name__}: {e}") from e


def _probe_cosine(model: Any, encoder: OnnxQueryEncoder) -> float:
    ref = model.encode([PROBE], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)[0]
    return float(np.dot(encoder.encode(PROBE), ref))


def _as_int64(x: Any) -> np.ndarray:
    arr = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    return arr.astype(np.int64, copy=False)
