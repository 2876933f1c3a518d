"""Bulk encoding (what ingestion embeds): speed against sentence-transformers ``encode`` side by side, and
retrieval quality of the vectors on TAT-QA.

Corpus and questions: TAT-QA's test split (``/work/shared/data/tatqa``), every paragraph and every table
(rendered as in ``convert_tatqa.py``), the questions that have relevant paragraphs. In one run, on the same
MiniLM weights and the same number of threads, the corpus is encoded by:

* ``st-torch``: ``SentenceTransformer.encode(texts, batch_size=64)`` (PyTorch; it sorts by length itself);
* ``onnx-fp32``: :class:`domainrag.retrieval.onnx_encoder.OnnxBulkEncoder`: longest-first batches padded to
  their own longest text, ONNX Runtime, float32;
* ``onnx-int8``: the same with the weights quantized to int8 per channel (ONNX Runtime dynamic quantization).

What ``ingest`` now runs (``Embedder.encode_documents`` under ``DOMAINRAG_BULK_ENCODER=auto``) is recorded too: the
encoder its int8 guard picks for this model on this CPU, with the guard's figures on the corpus's first chunks
(the same texts a first ingest of this corpus would probe). To back the guard's mean-cosine bound, the float32
vectors are also moved by isotropic random noise to a given mean cosine and nDCG@10 re-measured (no encoding;
mean of three seeds): how much quality a given mean cosine can cost when the error is not quantization's.

Questions are encoded once by ``st-torch`` (the query path is not what changes), and each corpus's nDCG@10 is
computed by exact cosine search. Reported per encoder: seconds for the corpus, texts/s, speed-up over
``st-torch``, nDCG@10 and its difference to ``st-torch``'s, and the minimum / mean cosine to its vectors.
Written as JSON with the command, ``lscpu`` and versions; timings on a shared machine are comparable only
within one run.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_onnx_bulk.py --out benchmarks/results/onnx_bulk.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared benchmark helpers
from _machine import lscpu, version
from convert_tatqa import table_text

DATA = Path("/work/shared/data/tatqa/tatqa_dataset_test_gold.json")


def load(path: Path, limit: int | None) -> tuple[list[str], list[str], list[str], list[set[int]]]:
    """(corpus ids, corpus texts, questions, relevant corpus rows per question)."""
    ids, texts, questions, relevant = [], [], [], []
    for entry in json.loads(path.read_text())[:limit]:
        ids.append(entry["table"]["uid"])
        texts.append(table_text(entry["table"]["table"]))
        row = {}
        for p in entry["paragraphs"]:
            row[str(p["order"])] = len(texts)
            ids.append(p["uid"])
            texts.append(p["text"])
        for q in entry["questions"]:
            rel = {row[str(o)] for o in q.get("rel_paragraphs") or [] if str(o) in row}
            if rel:
                questions.append(q["question"])
                relevant.append(rel)
    return ids, texts, questions, relevant


def ndcg_at_10(queries: np.ndarray, corpus: np.ndarray, relevant: list[set[int]]) -> float:
    top = np.argsort(-(queries @ corpus.T), axis=1)[:, :10]
    scores = []
    for hits, rel in zip(top, relevant, strict=True):
        dcg = sum(1 / np.log2(rank + 2) for rank, doc in enumerate(hits) if doc in rel)
        ideal = sum(1 / np.log2(rank + 2) for rank in range(min(len(rel), 10)))
        scores.append(dcg / ideal)
    return float(np.mean(scores))


def _noisy(vecs: np.ndarray, mean_cosine: float, seed: int) -> np.ndarray:
    """``vecs`` moved in random directions by the angle whose cosine is ``mean_cosine`` (each row alike)."""
    noise = np.random.default_rng(seed).standard_normal(vecs.shape).astype(np.float32)
    noise -= np.sum(noise * vecs, axis=1, keepdims=True) * vecs  # orthogonal to each row: exact cosine
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    out = vecs + np.sqrt(1 / mean_cosine**2 - 1) * noise
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all-minilm-l6-v2", help="zoo name or model folder")
    ap.add_argument("--threads", type=int, default=1, help="threads for every encoder (torch and ONNX Runtime)")
    ap.add_argument("--batch-size", type=int, default=32, help="batch size of the ONNX encoders")
    ap.add_argument("--limit", type=int, default=None, help="first N reports of the split only (a quick look)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/onnx_bulk.json"))
    args = ap.parse_args()

    import torch

    from domainrag.retrieval.embedder import Embedder
    from domainrag.retrieval.int8_guard import int8_guard
    from domainrag.retrieval.onnx_encoder import load_onnx_bulk_encoder
    from domainrag.zoo import resolve_embedder

    torch.set_num_threads(args.threads)
    # A fresh cache: the export, the int8 graph and the guard's verdict are made from this corpus, in this run.
    os.environ["DOMAINRAG_CACHE"] = tempfile.mkdtemp(prefix="bench-onnx-bulk-")
    _, texts, questions, relevant = load(args.data, args.limit)
    embedder = Embedder(resolve_embedder(args.model), args.model, bulk_encoder="auto")
    st = embedder.model
    print(f"{len(texts)} texts, {len(questions)} questions, {args.threads} thread(s)", flush=True)
    with torch.inference_mode():
        q = st.encode(questions, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                      show_progress_bar=False)
    t0 = time.perf_counter()
    embedder.encode_documents(texts[:64])  # a first ingest of this corpus: export, quantize, guard, choose
    first_use = time.perf_counter() - t0
    encoders = {"onnx-fp32": load_onnx_bulk_encoder(st, args.threads),
                "onnx-int8": load_onnx_bulk_encoder(st, args.threads, int8=True)}
    for enc in encoders.values():
        enc.encode(texts[:64], batch_size=args.batch_size)  # warm-up
    results: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    with torch.inference_mode():
        ref = st.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=False)
    base = time.perf_counter() - t0
    base_ndcg = ndcg_at_10(q, ref, relevant)
    results["st-torch"] = {"seconds": round(base, 2), "texts_per_s": round(len(texts) / base, 2), "speedup": 1.0,
                           "ndcg@10": round(base_ndcg, 4), "ndcg_delta": 0.0}
    print("st-torch", results["st-torch"], flush=True)
    for name, enc in encoders.items():
        t0 = time.perf_counter()
        vecs = enc.encode(texts, batch_size=args.batch_size)
        took = time.perf_counter() - t0
        cos = (vecs * ref).sum(axis=1)
        ndcg = ndcg_at_10(q, vecs, relevant)
        results[name] = {"seconds": round(took, 2), "texts_per_s": round(len(texts) / took, 2),
                         "speedup": round(base / took, 2), "ndcg@10": round(ndcg, 4),
                         "ndcg_delta": round(ndcg - base_ndcg, 4), "min_cosine": round(float(cos.min()), 4),
                         "mean_cosine": round(float(cos.mean()), 4)}
        print(name, results[name], flush=True)
    verdict = int8_guard(encoders["onnx-fp32"], encoders["onnx-int8"], texts[:64])  # the cached one made above
    ingest = {"setting": "auto", "bulk_path": embedder.bulk_path, "guard": verdict.describe(),
              "first_use_s": round(first_use, 1)}
    print("ingest", ingest, flush=True)
    noise = [{"mean_cosine": c, "ndcg_delta": round(float(np.mean(
        [ndcg_at_10(q, _noisy(ref, c, seed), relevant) - base_ndcg for seed in range(3)])), 4)}
        for c in (0.99, 0.97, 0.96, 0.95, 0.94, 0.93, 0.90)]
    print("noise", noise, flush=True)
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": args.model, "threads": args.threads, "texts": len(texts), "questions": len(questions),
        "note": "shared 2-core machine, contended by 7 other sessions: compare speeds within this run only",
        "results": results, "ingest_auto": ingest, "isotropic_noise": noise,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "lscpu": lscpu()},
        "versions": {p: version(p) for p in ("sentence-transformers", "torch", "onnxruntime", "onnx", "transformers")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(os.environ["DOMAINRAG_CACHE"], ignore_errors=True)


if __name__ == "__main__":
    main()
