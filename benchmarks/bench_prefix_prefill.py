"""Would caching the shared prompt prefix (system prompt + chat template) speed up a RAG prompt's prefill?

The continuous batch prefills each prompt alone (``serving/backends/batching.py``). Every prompt of an app
starts with the same system prompt, so its keys and values could be computed once and each request prefill
only the rest. This script times, in-process, both ways for the same sample-domain RAG prompts
(``bench_decode_step.prompts``; SmolLM2-135M as the app serves it, ``auto`` dtype): ``full`` prefills the
whole prompt into an empty cache, ``prefix`` copies a cache holding the shared prefix and prefills the
remainder. The two alternate per prompt, for ``--rounds`` rounds; the medians and the largest difference of
the last-token logits are recorded.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_prefix_prefill.py --out benchmarks/results/prefix_prefill.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

from _machine import lscpu, version
from bench_decode_step import prompts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    import torch
    from transformers import DynamicCache

    from domainrag.serving.backends import load_generator
    from domainrag.zoo import resolve_llm

    generator = load_generator(str(resolve_llm("smollm2-135m-instruct")), None, "smol", "auto", 4, 10**9)
    model, tok = generator.model, generator.tokenizer
    ids = [tok.apply_chat_template(p, add_generation_prompt=True) for p in prompts(a.prompts)]
    ids = [i if isinstance(i, list) else i["input_ids"] for i in ids]
    shared = 0
    while shared < min(map(len, ids)) and len({x[shared] for x in ids}) == 1:
        shared += 1
    with torch.inference_mode():
        prefix_cache = DynamicCache()
        model(input_ids=torch.tensor([ids[0][:shared]]), past_key_values=prefix_cache, use_cache=True)

        def full(x: list[int]) -> torch.Tensor:
            return model(input_ids=torch.tensor([x]), past_key_values=DynamicCache(), use_cache=True,
                         logits_to_keep=1).logits[:, -1].float()

        def prefix(x: list[int]) -> torch.Tensor:
            return model(input_ids=torch.tensor([x[shared:]]), past_key_values=copy.deepcopy(prefix_cache),
                         use_cache=True, logits_to_keep=1).logits[:, -1].float()

        full(ids[0]), prefix(ids[0])  # warm-up
        diff = max(float((full(x) - prefix(x)).abs().max()) for x in ids)
        times: dict[str, list[float]] = {"full": [], "prefix": []}
        for _ in range(a.rounds):
            for x in ids:
                for name, fn in (("full", full), ("prefix", prefix)):
                    start = time.perf_counter()
                    fn(x)
                    times[name].append(time.perf_counter() - start)
    out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "dtype": generator.dtype,
           "attention": model.config._attn_implementation, "torch_threads": torch.get_num_threads(),
           "prompt_tokens": [len(x) for x in ids], "shared_prefix_tokens": shared,
           "median_s": {k: round(statistics.median(v), 4) for k, v in times.items()},
           "max_abs_logit_diff": round(diff, 4), "date": time.strftime("%Y-%m-%d"),
           "load_average_at_start": os.getloadavg(), "machine": lscpu(),
           "versions": {p: version(p) for p in ("torch", "transformers")}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("shared_prefix_tokens", "median_s", "max_abs_logit_diff")}))


if __name__ == "__main__":
    main()
