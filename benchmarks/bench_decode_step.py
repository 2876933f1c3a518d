"""Time of one continuous-batching decode step at a given batch size, in-process (no HTTP, no retrieval).

All ``--batch`` prompts (sample-domain RAG prompts of ~600 tokens, the app's chat template and default system
prompt) are prefilled before the first decode step (prefill budget unlimited), then every step decodes the
whole running batch, sampling at ``--temperature`` (0.1, the app default) with the default top-p 0.95 and
repetition penalty 1.1. Reported: the median time of the steps that still had at least 90 % of the batch,
and the decode tokens per second over those steps. Run it once per checkout to compare two commits on one
machine (``PYTHONPATH=/path/to/other/src``), alternating, as benchmarks/README.md does:

    PYTHONPATH=src .venv/bin/python benchmarks/bench_decode_step.py --batch 50 --out /tmp/step_new.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import threading
import time
from pathlib import Path

from _machine import lscpu, version

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "domainrag" / "sample_data"


def prompts(n: int) -> list[list[dict[str, str]]]:
    """``n`` RAG prompts: a held-out question over three sample documents' first 120 words each."""
    from domainrag.serving.rag import DEFAULT_SYSTEM_PROMPT

    docs = sorted((SAMPLE / "docs").glob("*.md"))
    questions = [json.loads(line)["question"] for line in (SAMPLE / "qa_heldout.jsonl").read_text().splitlines()
                 if line.strip()]
    out = []
    for i in range(n):
        passages = "\n\n".join(f"[{j + 1}] " + " ".join(docs[(i + j) % len(docs)].read_text().split()[:120])
                               for j in range(3))
        out.append([{"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
                    {"role": "user", "content": f"{passages}\n\nQuestion: {questions[i % len(questions)]}"}])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.1)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    import domainrag
    from domainrag.serving.backends import load_generator
    from domainrag.serving.generator import GenerationConfig
    from domainrag.zoo import resolve_llm

    generator = load_generator(str(resolve_llm("smollm2-135m-instruct")), None, "smol", "auto", a.batch, 10**9)
    cfg = GenerationConfig(temperature=a.temperature, max_new_tokens=a.max_new_tokens)
    generator.generate(prompts(1)[0], GenerationConfig(temperature=0, max_new_tokens=4))  # warm-up
    steps: list[tuple[float, int]] = []
    generator.batch.on_step = lambda size: steps.append((time.perf_counter(), size))
    texts: list[str] = [""] * a.batch
    threads = [threading.Thread(target=lambda i=i, m=m: texts.__setitem__(i, generator.generate(m, cfg)))
               for i, m in enumerate(prompts(a.batch))]
    start = time.perf_counter()
    with generator._lock:  # every request queued before the first prefill
        for thread in threads:
            thread.start()
        while generator.batch._waiting.qsize() < a.batch - 1:  # the worker holds one, waiting for the lock
            time.sleep(0.01)
        time.sleep(0.5)
    for thread in threads:
        thread.join()
    total = time.perf_counter() - start
    full = [(t1 - t0, size) for (t0, size), (t1, _) in itertools.pairwise(steps) if size >= 0.9 * a.batch]
    step_s = statistics.median(d for d, _ in full)
    out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "domainrag": str(Path(domainrag.__file__)),
           "batch": a.batch, "temperature": a.temperature, "max_new_tokens": a.max_new_tokens,
           "dtype": generator.dtype, "steps": len(steps), "steps_at_90pct_batch": len(full),
           "median_step_s": round(step_s, 4), "decode_tokens_per_s_at_90pct": round(
               sum(size for _, size in full) / sum(d for d, _ in full), 1),
           "wall_s": round(total, 2), "machine": lscpu(),
           "versions": {p: version(p) for p in ("torch", "transformers")},
           "date": time.strftime("%Y-%m-%d %H:%M")}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "machine"}))


if __name__ == "__main__":
    main()
