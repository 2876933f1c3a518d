"""Why ``retrieval/onnx_encoder.py`` exists: single-query latency and agreement of three query encoders.

Compared in one run, on the same MiniLM weights and the same questions, one thread each:

* ``st-torch``: ``SentenceTransformer.encode([q])`` (sentence-transformers, PyTorch eager);
* ``ours-onnx``: :class:`domainrag.retrieval.onnx_encoder.OnnxQueryEncoder` (ONNX Runtime, exported by us);
* ``st-onnx``: ``SentenceTransformer(path, backend="onnx")`` if its dependency (``optimum``) is installed,
  else recorded as unavailable with the reason.

Reported per encoder: p50 / p90 latency of one query (after warm-up) and the minimum cosine of its
vectors to ``st-torch``'s. Written as JSON with the command, the CPU flags (``lscpu``) and versions.

    .venv/bin/python benchmarks/bench_onnx_encoder.py --out benchmarks/results/onnx_encoder.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared benchmark helpers
from _machine import lscpu, version

QUESTIONS = [
    "how long is the warranty on the CTL-400 controller?",
    "what flow rate can the DP-220 dosing pump deliver at 10 bar",
    "PX-12 pH probe calibration interval",
    "when does the head office open on weekdays",
    "which buffer solution is used to calibrate the probe",
    "replace the diaphragm after how many operating hours",
    "does the gateway forward Modbus data to the cloud",
    "maximum operating temperature of the cooling tower fan",
]






def _time(encode: Callable[[str], np.ndarray], rounds: int) -> tuple[dict[str, float], list[np.ndarray]]:
    vectors = [encode(q) for q in QUESTIONS]  # warm-up, and the vectors compared
    times = []
    for _ in range(rounds):
        for q in QUESTIONS:
            t0 = time.perf_counter()
            encode(q)
            times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(float(np.percentile(times, 50)), 3), "p90_ms": round(float(np.percentile(times, 90)), 3),
            "queries": len(times)}, vectors


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32).reshape(-1)
    return v / np.linalg.norm(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all-minilm-l6-v2", help="zoo name or model folder")
    ap.add_argument("--rounds", type=int, default=25, help="timed passes over the questions per encoder")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/onnx_encoder.json"))
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from domainrag.retrieval.onnx_encoder import load_onnx_encoder
    from domainrag.zoo import resolve_embedder

    torch.set_num_threads(1)
    path = resolve_embedder(args.model)
    st = SentenceTransformer(path, device="cpu")
    st.eval()
    results: dict[str, dict[str, object]] = {}

    def st_torch(q: str) -> np.ndarray:
        with torch.inference_mode():
            return st.encode([q], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)[0]

    stats, ref = _time(st_torch, args.rounds)
    results["st-torch"] = {**stats, "min_cosine_to_st_torch": 1.0}

    ours = load_onnx_encoder(st, threads=1)
    stats, vecs = _time(ours.encode, args.rounds)
    results["ours-onnx"] = {**stats, "min_cosine_to_st_torch": round(min(
        float(_unit(a) @ _unit(b)) for a, b in zip(vecs, ref, strict=True)), 6)}

    try:
        st_onnx = SentenceTransformer(path, device="cpu", backend="onnx",
                                      model_kwargs={"provider": "CPUExecutionProvider"})
    except Exception as exc:  # missing optimum, or an export it cannot do
        results["st-onnx"] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"[:300]}
    else:
        def st_onnx_encode(q: str) -> np.ndarray:
            return st_onnx.encode([q], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)[0]

        stats, vecs = _time(st_onnx_encode, args.rounds)
        results["st-onnx"] = {**stats, "min_cosine_to_st_torch": round(min(
            float(_unit(a) @ _unit(b)) for a, b in zip(vecs, ref, strict=True)), 6)}

    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": args.model,
        "torch_threads": torch.get_num_threads(),
        "results": results,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "lscpu": lscpu()},
        "versions": {p: version(p) for p in ("sentence-transformers", "torch", "onnxruntime", "onnx", "optimum",
                                               "transformers")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
