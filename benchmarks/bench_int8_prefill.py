"""Does an int8 prefill make a CPU without bf16 fast enough, and does it keep the model's answers?

Issue 17 asks for a 1k-token time to first token ≤ 1.5 s on a 2-core AVX2-only CPU, where fp32 is the
fastest path measured so far (``bench_serving.py --only-ttft``). This script tries torch's dynamic int8
quantization of the linear layers (``torch.ao.quantization.quantize_dynamic``, per-channel int8 weights,
activations quantized per tensor at run time; the fbgemm/x86 kernels), in-process on SmolLM2-135M:

- ``fp32``, ``bf16`` (only meaningful where the CPU has native bf16), ``int8`` (every linear layer but the
  tied ``lm_head``), ``int8-nodown`` (also keeps the MLP's ``down_proj`` in fp32: its inputs carry the
  largest activation outliers), ``int8-mlp`` (only ``gate_proj`` / ``up_proj``);
- speed: median forward time of a 1,024-token window of the sample documents (last-token logits only);
- quality: perplexity over up to 8 such windows, and how many of 16 greedy RAG answers
  (``bench_decode_step.prompts``, 32 new tokens) are token-for-token those of fp32.

To emulate an AVX2-only CPU on one with AVX-512, set ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
FBGEMM_ENABLE_INSTRUCTIONS=AVX2`` (fbgemm's int8 kernels read the last one).

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/bench_int8_prefill.py \
        --out benchmarks/results/int8_prefill.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from _machine import lscpu, version
from bench_decode_step import SAMPLE, prompts

VARIANTS = ("fp32", "bf16", "int8", "int8-nodown", "int8-mlp")
_KEEP_FP32 = {"int8": ("lm_head",), "int8-nodown": ("lm_head", "down_proj"),
              "int8-mlp": ("lm_head", "down_proj", "self_attn")}
ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "FBGEMM_ENABLE_INSTRUCTIONS")


def load(path: str, variant: str):  # -> a transformers model
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.bfloat16 if variant == "bf16" else torch.float32).eval()
    if variant in _KEEP_FP32:
        keep = _KEEP_FP32[variant]
        spec = {name: per_channel_dynamic_qconfig for name, mod in model.named_modules()
                if isinstance(mod, torch.nn.Linear) and not any(k in name for k in keep)}
        model = quantize_dynamic(model, spec)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    import torch
    from transformers import AutoTokenizer

    from domainrag.zoo import resolve_llm

    path = resolve_llm("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path)
    text = "\n\n".join(p.read_text() for p in sorted((SAMPLE / "docs").glob("*.md")))
    ids = tok(text, return_tensors="pt").input_ids[0]
    windows = [ids[i:i + 1024] for i in range(0, min(len(ids) - 1024, 8 * 1024), 1024)]
    chats = [tok.apply_chat_template(m, add_generation_prompt=True, return_tensors="pt", return_dict=True)
             ["input_ids"] for m in prompts(16)]
    results: dict[str, dict[str, float]] = {}
    reference: list[list[int]] | None = None
    for variant in [v for v in a.variants.split(",") if v]:
        model = load(path, variant)
        with torch.inference_mode():
            model(windows[0][None, :64])  # warm-up
            times = []
            for i in range(a.runs + 1):
                t0 = time.perf_counter()
                model(windows[i % len(windows)][None], logits_to_keep=1)
                if i:
                    times.append(time.perf_counter() - t0)
            nll = [torch.nn.functional.cross_entropy(model(w[None]).logits[0, :-1].float(), w[1:]).item()
                   for w in windows]
            answers = [model.generate(c, max_new_tokens=32, do_sample=False)[0, c.shape[1]:].tolist()
                       for c in chats]
        reference = reference or answers
        results[variant] = {
            "prefill_1024_s_median": statistics.median(times), "prefill_1024_s_min": min(times),
            "perplexity": float(torch.tensor(nll).mean().exp()),
            "answers_identical_to_first_variant": sum(x == y for x, y in zip(answers, reference, strict=True)),
            "answers": len(answers),
            "first_answer": tok.decode(answers[0]),
        }
        print(variant, {k: v for k, v in results[variant].items() if k != "first_answer"}, flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({
        "command": " ".join([sys.executable, *sys.argv]),
        "machine": lscpu(), "env": {k: os.environ.get(k) for k in ENV},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
        "quantized_engine": torch.backends.quantized.engine,
        "versions": {p: version(p) for p in ("torch", "transformers")},
        "windows": len(windows), "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
