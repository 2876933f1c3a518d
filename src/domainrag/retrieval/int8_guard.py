"""Whether int8 bulk vectors may stand in for float32 ones: a probe at first use per model and CPU, cached.

int8 vectors are ranked against float32 query vectors, so what matters is how far each chunk's vector moves.
The guard encodes a small probe (the first texts the corpus hands to the bulk encoder, plus a few fixed
sentences) with the float32 and the int8 ONNX graphs and passes when their mean cosine is at least
:data:`MIN_MEAN_COSINE` and no single text falls below :data:`MIN_TEXT_COSINE`.

Why these thresholds (``benchmarks/bench_onnx_bulk.py``, TAT-QA test split, all-MiniLM-L6-v2): int8 vectors at
mean cosine 0.956 to float32 kept nDCG@10 within 0.0006; the same vectors moved by isotropic random noise
(a harsher error than quantization's, which shifts related chunks alike) keep nDCG@10 within 0.005 down to a
mean cosine of about 0.95 and lose 0.0075 at 0.93. 0.945 sits between, a margin below the 0.95–0.957 that
MiniLM's probes of 16–64 TAT-QA chunks measure; the worst single text of the whole corpus was at 0.89, so
one text below 0.85 means a broken kernel or model, not rounding.

The verdict is cached beside the int8 graph, per CPU int8 kernel family (``vnni`` or ``avx2``: ONNX Runtime's
AVX2 int8 kernel can saturate where VNNI does not, so one CPU's verdict does not hold for the other), and
per thresholds; a later corpus reuses it, so every ingest with this model on this CPU makes the same choice.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock

from domainrag.retrieval.onnx_encoder import OnnxBulkEncoder

GUARD_VERSION = 1  # bump when the probe or the statistic changes
MIN_MEAN_COSINE = 0.945
MIN_TEXT_COSINE = 0.85
PROBE_TEXTS = 32
FIXED_PROBE = (
    "How long is the warranty on the DP-220 dosing pump?",
    "Revenue | 2019 | 2018\nAmericas | 1,200 | 1,100\nEurope | 800 | 750",
    "Calibrate the probe with buffer solutions of pH 4 and pH 7 every month and log the offsets.",
    "The committee reviewed the results and recommended a follow-up study in 2021.",
)


@dataclass(frozen=True)
class Int8Verdict:
    """The guard's result: ``passed`` and the figures it was decided on."""

    passed: bool
    mean_cosine: float
    min_cosine: float
    texts: int
    min_mean: float
    min_text: float
    isa: str
    cached: bool = False

    def describe(self) -> str:
        return (f"int8 vs float32 on {self.texts} probe texts: mean cosine {self.mean_cosine:.4f} "
                f"(needs {self.min_mean}), min {self.min_cosine:.4f} (needs {self.min_text}), {self.isa} CPU")


def int8_kernels() -> str:
    """``vnni`` where the CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI, AMX), ``avx2``
    on an AVX2-only x86 CPU, else the machine name (read here rather than via hardware.py: one flag set)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = set(next((line for line in fh if line.startswith("flags")), "").split())
    except OSError:
        flags = set()
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "vnni"
    return "avx2" if "avx2" in flags else platform.machine().lower() or "unknown"


def int8_guard(
    fp32: OnnxBulkEncoder, int8: OnnxBulkEncoder, corpus_texts: Sequence[str],
    min_mean: float = MIN_MEAN_COSINE, min_text: float = MIN_TEXT_COSINE,
) -> Int8Verdict:
    """The cached verdict for ``int8``'s graph on this CPU, or a new one from ``corpus_texts``' first texts."""
    isa = int8_kernels()
    path = int8.path.with_suffix(f".{isa}.guard.json")
    key = {"version": GUARD_VERSION, "min_mean": min_mean, "min_text": min_text, "isa": isa}
    with FileLock(str(path) + ".lock"):
        known = _read(path)  # one verdict per key: a stricter bound tried once does not evict the default's
        found = next((v for v in known if v.get("key") == key and isinstance(v.get("verdict"), dict)), None)
        if found is not None:
            return Int8Verdict(**{**found["verdict"], "cached": True})
        texts = [*[t for t in corpus_texts if t.strip()][:PROBE_TEXTS], *FIXED_PROBE]
        cos = np.sum(fp32.encode(texts) * int8.encode(texts), axis=1)
        mean, low = round(float(cos.mean()), 4), round(float(cos.min()), 4)
        verdict = Int8Verdict(mean >= min_mean and low >= min_text, mean, low, len(texts), min_mean, min_text, isa)
        entry = {"key": key, "verdict": {k: v for k, v in asdict(verdict).items() if k != "cached"}}
        _write(path, {"verdicts": [*known, entry]})
    return verdict


def _read(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # absent or unreadable: decide again
        return []
    found = data.get("verdicts") if isinstance(data, dict) else None
    return [v for v in found if isinstance(v, dict)] if isinstance(found, list) else []


def _write(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)
