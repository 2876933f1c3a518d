"""Ingest's bulk encoder (DOMAINRAG_BULK_ENCODER): auto takes int8 only when its guard passes, falls back to
float32 ONNX when it does not, and an ingest through it retrieves what sentence-transformers' vectors do."""

from __future__ import annotations

import copy
import json
import threading

import numpy as np
import pytest

from domainrag.data.sample import SAMPLE_DIR, read_qa
from domainrag.errors import DomainRagError
from domainrag.index import open_store, parse_store_config
from domainrag.index.embedded import EmbeddedStore
from domainrag.index.ingest import embed_text, ingest_paths
from domainrag.index.record import EmbedderPin
from domainrag.retrieval.embedder import AUTO_MIN_TEXTS, BULK_ENCODER_ENV, Embedder
from domainrag.retrieval.int8_guard import MIN_MEAN_COSINE, int8_kernels
from domainrag.retrieval.onnx_encoder import int8_path

pytestmark = pytest.mark.integration

TEXTS = [
    "The CTL-400 controller logs every alarm with its time and code.",
    "Revenue | 2019 | 2018\nAmericas | 1,200 | 1,100\nEurope | 800 | 750",
    "pumps",
    " ".join(["Calibrate the PX-12 probe with buffer solutions of pH 4 and pH 7 every month."] * 30),
    "The warranty on the DP-220 dosing pump is two years from delivery.",
]


def bulk(embedder: Embedder, setting: str, bound: float | None = None) -> Embedder:
    """The same loaded model with its own, not yet chosen, bulk encoder."""
    e = copy.copy(embedder)
    e.bulk_encoder, e.int8_min_cosine = setting, bound  # type: ignore[assignment]
    e._bulk, e._bulk_path, e._bulk_lock = None, None, threading.Lock()
    return e


def verdict_file(e: Embedder) -> dict:
    """The cached guard verdict ``e``'s choice was made on (the one for its bound)."""
    assert e._bulk is not None
    int8 = e._bulk.path if e._bulk.path.name.endswith(".int8.onnx") else int8_path(e._bulk.path)
    verdicts = json.loads(int8.with_suffix(f".{int8_kernels()}.guard.json").read_text())["verdicts"]
    bound = MIN_MEAN_COSINE if e.int8_min_cosine is None else e.int8_min_cosine
    return next(v for v in verdicts if v["key"]["min_mean"] == bound)


def test_auto_takes_int8_only_when_the_guard_passes(minilm, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOMAINRAG_CACHE", str(tmp_path))  # a first use: export, quantize, guard
    ref = minilm.encode(TEXTS)
    auto = bulk(minilm, "auto")
    assert auto.bulk_min_texts == AUTO_MIN_TEXTS  # nothing picked yet: a small ingest stays on torch
    assert auto.encode_documents(TEXTS[:2], total=2) is not None and auto.bulk_path is None
    vecs = auto.encode_documents(TEXTS, batch_size=2)
    assert auto.bulk_min_texts == 0  # picked: every later chunk goes the same path
    verdict = verdict_file(auto)
    assert verdict["key"]["min_mean"] == MIN_MEAN_COSINE
    assert auto.bulk_path == ("onnx-int8" if verdict["verdict"]["passed"] else "onnx-fp32")
    assert auto._bulk is not None and auto._bulk.path.parent == tmp_path / "onnx"
    assert verdict["verdict"]["texts"] == len(TEXTS) + 4  # the corpus's first texts and the fixed probe
    assert vecs.shape == ref.shape and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert np.sum(vecs * ref, axis=1).mean() >= MIN_MEAN_COSINE  # rows in order, within the guard's bound

    strict = bulk(minilm, "auto", bound=0.99999)  # no int8 graph is that close: the guard fails
    vecs = strict.encode_documents(TEXTS)
    assert strict.bulk_path == "onnx-fp32" and verdict_file(strict)["verdict"]["passed"] is False
    assert np.sum(vecs * ref, axis=1).min() > 0.9999  # float32 ONNX: sentence-transformers' vectors

    forced = bulk(minilm, "onnx-int8", bound=0.99999)
    forced.encode_documents(TEXTS[:2])
    assert forced.bulk_path == "onnx-int8-unguarded"  # the setting wins, and the pin will say so

    again = bulk(minilm, "auto")  # a later corpus: the cached verdict decides, not its own texts
    again.encode_documents(["Another corpus altogether."])
    assert again.bulk_path == auto.bulk_path and verdict_file(again)["verdict"]["texts"] == len(TEXTS) + 4


def test_setting_torch_and_a_bad_setting(minilm, monkeypatch: pytest.MonkeyPatch) -> None:
    e = bulk(minilm, "torch")
    assert np.array_equal(e.encode_documents(TEXTS), minilm.encode(TEXTS)) and e.bulk_path == "torch"
    assert e.encode_documents([]).shape == (0, minilm.dimension)
    monkeypatch.setenv(BULK_ENCODER_ENV, "int4")
    with pytest.raises(DomainRagError, match=r"DOMAINRAG_BULK_ENCODER='int4'.*"):
        Embedder(minilm.path, "minilm")


def test_pin_records_bulk_encoders_without_changing_identity() -> None:
    old = EmbedderPin.model_validate({"model": "m", "digest": "abc"})  # a record from before the field
    assert old.bulk_encoders == [] and old.with_bulk_encoder(None) is old
    pin = old.with_bulk_encoder("onnx-int8").with_bulk_encoder("torch").with_bulk_encoder("onnx-int8")
    assert pin.bulk_encoders == ["onnx-int8", "torch"] and (pin.model, pin.digest) == ("m", "abc")
    assert "bulk: onnx-int8, torch" in pin.describe()


def test_ingest_through_the_bulk_encoder_retrieves_like_sentence_transformers(
    ws, minilm, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from domainrag.workspace import create_index, ingest

    written: list[tuple[list[str], np.ndarray]] = []
    upsert = EmbeddedStore.upsert

    def record(self, chunks, vectors):  # what ingest hands to the (real) store
        written.append(([c.chunk_id for c in chunks], np.asarray(vectors)))
        return upsert(self, chunks, vectors)

    monkeypatch.setattr(EmbeddedStore, "upsert", record)
    monkeypatch.delenv(BULK_ENCODER_ENV, raising=False)
    create_index(ws, "small", "all-minilm-l6-v2")
    small = ingest(ws, "small", [SAMPLE_DIR / "docs" / "warranty-policy.md"])  # a few chunks: auto keeps torch
    assert small.written and ws.embedder("all-minilm-l6-v2").bulk_path is None
    assert ws.index_record("small").embedder.bulk_encoders == []
    written.clear()
    create_index(ws, "docs", "all-minilm-l6-v2")
    monkeypatch.setattr("domainrag.retrieval.embedder.AUTO_MIN_TEXTS", 0)  # the sample corpus through ONNX
    report = ingest(ws, "docs", [SAMPLE_DIR / "docs"])
    embedder = ws.embedder("all-minilm-l6-v2")
    assert embedder.bulk_path in ("onnx-int8", "onnx-fp32")
    assert ws.index_record("docs").embedder.bulk_encoders == [embedder.bulk_path]

    # Row by row against sentence-transformers' vectors of the same embedded texts.
    text = {c.chunk_id: embed_text(c) for c in report.chunk_records}
    ids = [i for batch, _ in written for i in batch]
    ours = np.concatenate([v for _, v in written])
    assert sorted(ids) == sorted(text)
    cos = np.sum(ours * minilm.encode([text[i] for i in ids]), axis=1)
    if embedder.bulk_path == "onnx-fp32":
        assert cos.min() > 0.9999
    else:  # int8: each vector moves a little (the guard's bound); retrieval is what must not
        assert cos.mean() >= MIN_MEAN_COSINE and cos.min() > 0.85

    reference = open_store("ref", parse_store_config(None), str(tmp_path / "ref"))
    ingest_paths([SAMPLE_DIR / "docs"], reference, bulk(minilm, "torch"))
    store = ws.store("docs")
    clear = ours_gold = ref_gold = 0
    for qa in read_qa(SAMPLE_DIR / "qa_heldout.jsonl"):
        v = minilm.encode_query(qa["question"])
        got, want = store.dense_search(v, 1)[0], reference.dense_search(v, 5)
        runner_up = next((h.score for h in want if h.doc_id != want[0].doc_id), 0.0)
        if want[0].score - runner_up >= 0.02:  # a clear top-1 under float32 stays top-1
            clear += 1
            assert got.doc_id == want[0].doc_id, (qa["question"], got.doc_id, want[0].doc_id)
        ours_gold += got.doc_id == qa["doc"]
        ref_gold += want[0].doc_id == qa["doc"]
    assert clear >= 20  # the check above covered most questions
    assert ours_gold >= ref_gold - 1  # near ties may flip, the gold document is not lost
