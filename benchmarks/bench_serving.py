"""Loopback load test of `domainrag serve`, plus time-to-first-token for one 1k-token prompt.

Needs a workspace with an app (run `domainrag quickstart` first). Example:

    .venv/bin/python benchmarks/bench_serving.py --workspace .domainrag --app DomainRAG \
        --concurrency 50 --out benchmarks/results/serving.json

Only 127.0.0.1 is contacted; the request loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from _machine import lscpu


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _one(client: httpx.AsyncClient, app: str, query: str) -> dict[str, float | int | str]:
    t0 = time.perf_counter()
    ttft, tokens, status = None, 0, 0
    try:
        async with client.stream("POST", f"/v1/apps/{app}/completion", json={"query": query, "stream": True}) as r:
            status = r.status_code
            if status != 200:
                await r.aread()
                return {"status": status, "seconds": time.perf_counter() - t0}
            async for line in r.aiter_lines():
                if line.startswith("data: {") and '"token"' in line:
                    tokens += 1
                    if ttft is None:
                        ttft = time.perf_counter() - t0
    except httpx.HTTPError as exc:
        return {"status": -1, "error": type(exc).__name__, "seconds": time.perf_counter() - t0}
    total = time.perf_counter() - t0
    return {"status": status, "ttft": ttft if ttft is not None else total, "tokens": tokens, "seconds": total}


async def load_test(base_url: str, app: str, queries: list[str], concurrency: int, timeout: float) -> list[dict]:
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as client:
        tasks = [_one(client, app, queries[i % len(queries)]) for i in range(concurrency)]
        return await asyncio.gather(*tasks)


def _long_messages(tokenizer, n_tokens: int, variant: int) -> list[dict[str, str]]:
    """A RAG-shaped prompt of about ``n_tokens`` tokens; ``variant`` changes its start so no backend can
    reuse a cached prefix of the previous run beyond the chat template's header."""
    filler = " ".join(["The CTL-400 controller supports Modbus RTU and has a 36-month warranty."] * 200)
    text = tokenizer.decode(tokenizer(f"Run {variant}. {filler}")["input_ids"][:n_tokens])
    return [{"role": "system", "content": "Answer only from the context."},
            {"role": "user", "content": text + "\nQuestion: what is the warranty?"}]


def ttft_long_prompt(backends: list[str], n_tokens: int = 1000, runs: int = 5) -> dict[str, dict[str, float]]:
    """Time to first token for one prompt of about ``n_tokens`` tokens with SmolLM2-135M, per backend, in-process.

    ``transformers`` (fp32), ``transformers-bf16``, ``llamacpp`` (the shipped Q4_1 GGUF) and ``llamacpp-bf16`` /
    ``llamacpp-q4_0`` (the same file converted by the endpoint's ``convert`` option) run the same model, llama.cpp
    with its flash attention (the endpoint default); the first run of each is a warm-up and is not counted.
    """
    from transformers import AutoTokenizer

    from domainrag.serving.backends import LlamaCppEndpoint, llamacpp_gguf, load_generator, load_llamacpp
    from domainrag.serving.generator import GenerationConfig
    from domainrag.zoo import resolve_llm

    path = resolve_llm("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(path)
    results: dict[str, dict[str, float]] = {}
    for backend in backends:
        if backend.startswith("llamacpp"):
            convert = backend.split("-", 1)[1] if "-" in backend else None
            endpoint = LlamaCppEndpoint(type="llamacpp", gguf="smollm2-135m-instruct", convert=convert)
            gen = load_llamacpp(llamacpp_gguf(endpoint), n_ctx=2048)
        else:
            gen = load_generator(path, None, backend, "bfloat16" if backend.endswith("bf16") else "float32")
        times, n_prompt = [], 0
        for i in range(runs + 1):
            messages = _long_messages(tokenizer, n_tokens, i)
            n_prompt = len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
                           ["input_ids"])
            t0 = time.perf_counter()
            for _piece in gen.stream(messages, GenerationConfig(max_new_tokens=4, temperature=0)):
                break
            if i:
                times.append(time.perf_counter() - t0)
        results[backend] = {"prompt_tokens": n_prompt, "ttft_s_min": min(times),
                            "ttft_s_median": float(np.median(times)), "runs": runs}
        print(backend, results[backend], flush=True)
    return results


EMULATION_ENV = ("DOMAINRAG_NATIVE_BF16", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")


def kernels() -> dict[str, str | None]:
    """What the kernels were told and built for: the settings that emulate a CPU without AVX-512 / bf16 on one
    that has them (benchmarks/README.md), torch's dispatch level and the llama.cpp build's instruction sets."""
    import torch

    out: dict[str, str | None] = {k: os.environ.get(k) for k in EMULATION_ENV}
    out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    try:
        import llama_cpp

        out["llama_cpp"] = llama_cpp.__file__
        out["llama_cpp_system_info"] = llama_cpp.llama_print_system_info().decode()
    except ImportError:
        out["llama_cpp"] = None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", default=".domainrag")
    ap.add_argument("--app", default="DomainRAG")
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--max-concurrent", type=int, default=4, help="server's DOMAINRAG_MAX_CONCURRENT")
    ap.add_argument("--queue-timeout", type=float, default=600, help="server's DOMAINRAG_QUEUE_TIMEOUT")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--out", default="benchmarks/results/serving.json")
    ap.add_argument("--ttft-backends", default="transformers,transformers-bf16,llamacpp,llamacpp-bf16,llamacpp-q4_0",
                    help="backends timed on the 1k-token prompt (llamacpp needs `make llamacpp`)")
    ap.add_argument("--only-ttft", action="store_true", help="skip the load test")
    a = ap.parse_args()
    backends = [b for b in a.ttft_backends.split(",") if b]
    if a.only_ttft:
        out = {"command": " ".join(sys.argv), "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                          **lscpu()},
               "kernels": kernels(), "long_prompt": ttft_long_prompt(backends)}
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=2))
        return

    qa = Path(__file__).resolve().parents[1] / "src/domainrag/sample_data/qa_heldout.jsonl"
    queries = [json.loads(line)["question"] for line in qa.read_text().splitlines() if line.strip()]
    port = _free_port()
    env = {**os.environ, "DOMAINRAG_MAX_CONCURRENT": str(a.max_concurrent),
           "DOMAINRAG_QUEUE_TIMEOUT": str(a.queue_timeout)}
    server = subprocess.Popen([sys.executable, "-m", "domainrag.cli.main", "--workspace", a.workspace, "serve",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        asyncio.run(load_test(base, a.app, queries[:1], 1, a.timeout))  # warm-up: loads the models
        t0 = time.perf_counter()
        results = asyncio.run(load_test(base, a.app, queries, a.concurrency, a.timeout))
        wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(30)
    ok = [r for r in results if r["status"] == 200]
    ttfts = np.array([r["ttft"] for r in ok]) if ok else np.array([np.nan])
    tokens = sum(int(r["tokens"]) for r in ok)
    out = {
        "command": " ".join(sys.argv), "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "concurrency": a.concurrency, "server_max_concurrent": a.max_concurrent, "ok": len(ok),
        "errors": len(results) - len(ok), "status_counts": {str(s): sum(r["status"] == s for r in results)
                                                          for s in {r["status"] for r in results}},
        "ttft_p50_s": float(np.percentile(ttfts, 50)), "ttft_p99_s": float(np.percentile(ttfts, 99)),
        "aggregate_tokens_per_s": tokens / wall, "wall_s": wall,
        "long_prompt": ttft_long_prompt(backends),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
