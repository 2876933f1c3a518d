"""Bulk encoding through ONNX Runtime (what ingestion would embed with): longest-first batches padded per batch,
rows back in the caller's order, float32 equal to sentence-transformers, int8 close to it and cached."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.integration

TEXTS = [
    "pumps",
    "How long is the warranty on the DP-220 dosing pump?",
    " ".join(["The controller logs every alarm with its time and code."] * 40),  # past 256 tokens: truncated
    "Revenue | 2019 | 2018\nAmericas | 1,200 | 1,100\nEurope | 800 | 750",
    "pumps",
    "Calibrate the PX-12 probe with buffer solutions of pH 4 and pH 7 every month.",
    "",
]


def test_fp32_bulk_vectors_equal_sentence_transformers_in_order(minilm) -> None:
    pytest.importorskip("onnxruntime")
    from domainrag.retrieval.onnx_encoder import load_onnx_bulk_encoder

    encoder = load_onnx_bulk_encoder(minilm.model, threads=1)
    ref = minilm.encode(TEXTS)
    for batch_size in (1, 3, 64):  # one batch per text, uneven batches, everything in one batch
        vecs = encoder.encode(TEXTS, batch_size=batch_size)
        assert vecs.shape == ref.shape and vecs.dtype == np.float32
        assert np.sum(vecs * ref, axis=1).min() > 0.9999  # every row is its own text's vector
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert encoder.encode([]).shape[0] == 0


def test_int8_bulk_vectors_stay_close_and_the_graph_is_cached(minilm) -> None:
    pytest.importorskip("onnxruntime")
    from domainrag.retrieval.onnx_encoder import int8_path, load_onnx_bulk_encoder

    encoder = load_onnx_bulk_encoder(minilm.model, threads=1, int8=True)
    assert encoder.path.name.endswith(".int8.onnx") and encoder.path.is_file()
    fp32 = load_onnx_bulk_encoder(minilm.model, threads=1)
    assert encoder.path == int8_path(fp32.path)
    # The MatMul weights shrink to a quarter; the token embeddings (a Gather, left float32) stay whole.
    assert encoder.path.stat().st_size < 0.75 * fp32.path.stat().st_size
    cos = np.sum(encoder.encode(TEXTS, batch_size=3) * minilm.encode(TEXTS), axis=1)
    assert cos.min() > 0.9 and cos.mean() > 0.95  # close, not equal: whether retrieval keeps, bench_onnx_bulk.py
    again = load_onnx_bulk_encoder(minilm.model, threads=1, int8=True)
    assert again.path == encoder.path and np.allclose(again.encode(TEXTS[:2]), encoder.encode(TEXTS[:2]))
