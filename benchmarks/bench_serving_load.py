"""Open-loop load test of `domainrag serve` (after vLLM's benchmark_serving), batching off vs on in one run.

Builds a throwaway workspace from the shipped sample domain (its docs indexed with MiniLM, an app on the
default SmolLM2-135M), then for each mode starts a server on 127.0.0.1 and measures, with streamed
``/v1/chat/completions`` on ``app:bench`` (RAG prompts: the sample's held-out questions with their
retrieved passages; exact token counts from ``stream_options.include_usage``):

* ``--concurrent N``: N streaming requests sent at once;
* ``--rates``: Poisson arrivals at each rate (requests/s, open loop: a request is sent at its arrival time
  whether or not earlier ones finished); higher rates are skipped once TTFT p95 passed ``--slo`` seconds;
* a single stream alone (the baseline of the aggregate tokens/s target).

Modes: ``old`` deploys the model with ``max_batch: 1`` (one request at a time, as before continuous
batching), ``new`` with the default, ``new:N`` with a prefill budget of N prompt tokens per decode step.
``MODE@SRC`` runs that mode's server from another checkout's ``src`` folder (two commits in one run).
Every server gets the same limiter (``--max-concurrent``, long queue wait), so only batching differs. Example:

    PYTHONPATH=src .venv/bin/python benchmarks/bench_serving_load.py --concurrent 50 --rates 0.25,0.5,1,2 \
        --out benchmarks/results/serving_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _machine import lscpu, version

SAMPLE = Path(__file__).resolve().parents[1] / "src/domainrag/sample_data"
LLM = "smollm2-135m-instruct"


def build_workspace(root: Path, max_new_tokens: int, temperature: float) -> None:
    from domainrag.retrieval.retriever import RetrievalConfig
    from domainrag.serving.apps import AppSpec, create_app
    from domainrag.serving.models import create_model
    from domainrag.serving.rag import GenerationSettings
    from domainrag.workspace import Workspace, create_index, ingest
    from domainrag.zoo import resolve_llm

    ws = Workspace.open(root)
    create_index(ws, "docs", "all-minilm-l6-v2")
    ingest(ws, "docs", [SAMPLE / "docs"])
    create_model(ws, "bench-llm", source="path", path=Path(resolve_llm(LLM)))
    create_app(ws, AppSpec(name="bench", model="bench-llm", retrieval=RetrievalConfig(index="docs", top_k=3),
                           generation=GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature)))


def endpoint(mode: str, max_batch: int) -> dict[str, Any]:
    """The endpoint of a mode: ``old`` (one request at a time), ``new`` (the default batching) or
    ``new:N`` (batching with a prefill budget of N prompt tokens between two decode steps)."""
    mode = mode.partition("@")[0]
    if mode == "old":
        return {"type": "transformers", "max_batch": 1}
    name, _, budget = mode.partition(":")
    if name != "new":
        raise SystemExit(f"unknown mode {mode!r}: old, new or new:PREFILL_BUDGET")
    return {"type": "transformers", "max_batch": max_batch, **({"prefill_budget": int(budget)} if budget else {})}


def deploy(root: Path, config: dict[str, Any]) -> None:
    from domainrag.serving.backends import deploy_model
    from domainrag.workspace import Workspace

    deploy_model(Workspace.open(root), "bench-llm", config)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def one(client: httpx.AsyncClient, question: str, delay: float = 0.0) -> dict[str, Any]:
    """One streamed RAG answer: TTFT, the gaps between streamed pieces, completion tokens, status."""
    await asyncio.sleep(delay)
    body = {"model": "app:bench", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": question}]}
    t0 = time.perf_counter()
    stamps: list[float] = []
    usage: dict[str, int] = {}
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                await r.aread()
                return {"status": r.status_code, "seconds": time.perf_counter() - t0}
            async for line in r.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                event = json.loads(line[6:])
                if event.get("usage"):
                    usage = event["usage"]
                for choice in event.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        stamps.append(time.perf_counter() - t0)
    except httpx.HTTPError as exc:
        return {"status": -1, "error": type(exc).__name__, "seconds": time.perf_counter() - t0}
    total = time.perf_counter() - t0
    return {"status": 200, "ttft": stamps[0] if stamps else total, "gaps": list(np.diff(stamps)), "seconds": total,
            "completion_tokens": usage.get("completion_tokens", len(stamps)),
            "prompt_tokens": usage.get("prompt_tokens")}


def summary(results: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    ok = [r for r in results if r["status"] == 200]
    ttft = np.array([r["ttft"] for r in ok] or [np.nan])
    gaps = np.array([g for r in ok for g in r["gaps"]] or [np.nan])
    tokens = sum(r["completion_tokens"] for r in ok)
    pct = lambda a, q: round(float(np.percentile(a, q)), 3)  # noqa: E731
    return {"requests": len(results), "ok": len(ok), "errors": len(results) - len(ok),
            "ttft_p50_s": pct(ttft, 50), "ttft_p95_s": pct(ttft, 95), "ttft_p99_s": pct(ttft, 99),
            "itl_p50_s": pct(gaps, 50), "itl_p95_s": pct(gaps, 95), "completion_tokens": tokens,
            "prompt_tokens_mean": round(float(np.mean([r["prompt_tokens"] or 0 for r in ok] or [0])), 1),
            "output_tokens_per_s": round(tokens / wall, 2), "wall_s": round(wall, 2)}


async def run_batch(base: str, questions: list[str], delays: list[float], timeout: float) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=timeout) as client:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(client, q, d) for q, d in zip(questions, delays, strict=True)))
        return summary(list(results), time.perf_counter() - t0)


def measure_mode(root: Path, mode: str, a: argparse.Namespace, questions: list[str]) -> dict[str, Any]:
    config = endpoint(mode, a.max_batch)
    deploy(root, config)
    port = _free_port()
    env = {**os.environ, "DOMAINRAG_MAX_CONCURRENT": str(a.max_concurrent), "DOMAINRAG_QUEUE_TIMEOUT": "900"}
    if src := mode.partition("@")[2]:
        env["PYTHONPATH"] = str(Path(src).resolve())
        out_src = {"src": src}
    else:
        out_src = {}
    server = subprocess.Popen([sys.executable, "-m", "domainrag.cli.main", "--workspace", str(root), "serve",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"endpoint": config, **out_src}
    try:
        for _ in range(480):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        asyncio.run(run_batch(base, questions[:2], [0, 0], a.timeout))  # warm-up: loads the models
        print(f"[{mode}] server ready", flush=True)
        singles = [asyncio.run(run_batch(base, [q], [0], a.timeout)) for q in questions[:3]]
        out["single_stream"] = {"output_tokens_per_s": float(np.median([s["output_tokens_per_s"] for s in singles])),
                                "ttft_p50_s": float(np.median([s["ttft_p50_s"] for s in singles]))}
        print(f"[{mode}] single stream {out['single_stream']}", flush=True)
        if a.concurrent:
            qs = [questions[i % len(questions)] for i in range(a.concurrent)]
            out["concurrent"] = asyncio.run(run_batch(base, qs, [0.0] * len(qs), a.timeout))
            print(f"[{mode}] {a.concurrent} at once {out['concurrent']}", flush=True)
        out["rates"] = {}
        rng = np.random.default_rng(0)
        for rate in a.rates:
            n = a.requests_per_rate
            arrivals = np.cumsum(rng.exponential(1 / rate, n)).tolist()
            qs = [questions[i % len(questions)] for i in range(n)]
            result = asyncio.run(run_batch(base, qs, arrivals, a.timeout))
            out["rates"][str(rate)] = result
            print(f"[{mode}] rate {rate}/s {result}", flush=True)
            if result["ttft_p95_s"] > a.slo * 3:  # far past the SLO: higher rates only queue longer
                break
        within = [float(r) for r, s in out["rates"].items() if s["errors"] == 0 and s["ttft_p95_s"] <= a.slo]
        out["max_rate_within_slo"] = max(within) if within else None
    finally:
        server.terminate()
        server.wait(30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrent", type=int, default=50, help="simultaneous streams (0: skip)")
    ap.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",") if x], default=[0.25, 0.5, 1.0, 2.0],
                    help="comma-separated requests/s; empty: skip")
    ap.add_argument("--requests-per-rate", type=int, default=24)
    ap.add_argument("--slo", type=float, default=2.0, help="TTFT p95 target in seconds")
    ap.add_argument("--modes", default="old,new", help="comma-separated: old, new, new:PREFILL_BUDGET, each with "
                                                        "an optional @SRC (a checkout's src folder)")
    ap.add_argument("--temperature", type=float, default=0.1, help="the app's temperature (0.1 is the app default; "
                                                                    "runs before 2026-12-07 evening used 0)")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--max-concurrent", type=int, default=64, help="server's DOMAINRAG_MAX_CONCURRENT (both modes)")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="the app's max_new_tokens")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--note", default="", help="e.g. whether the machine was shared")
    ap.add_argument("--out", default="benchmarks/results/serving_load.json")
    a = ap.parse_args()
    questions = [json.loads(line)["question"] for line in (SAMPLE / "qa_heldout.jsonl").read_text().splitlines()
                 if line.strip()]
    modes: dict[str, Any] = {}
    out = {"command": " ".join(sys.argv), "note": a.note, "machine": lscpu(),
           "versions": {p: version(p) for p in ("torch", "transformers", "domainrag")},
           "model": LLM, "max_new_tokens": a.max_new_tokens, "temperature": a.temperature, "slo_ttft_p95_s": a.slo,
           "modes": modes}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        build_workspace(root, a.max_new_tokens, a.temperature)
        for mode in a.modes.split(","):
            runs = sum(1 for key in modes if key.partition(" (run")[0] == mode)
            key = f"{mode} (run {runs + 1})" if runs else mode  # a mode named twice is measured twice
            modes[key] = measure_mode(root, mode, a, questions)
            if a.concurrent and "concurrent" in modes[key]:
                modes[key]["aggregate_vs_single_stream"] = round(
                    modes[key]["concurrent"]["output_tokens_per_s"]
                    / modes[key]["single_stream"]["output_tokens_per_s"], 2)
            Path(a.out).write_text(json.dumps(out, indent=2))  # each mode saved as soon as it is measured
    print(json.dumps({k: v for k, v in out.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
