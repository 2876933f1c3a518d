"""The fastest in-process backend for this CPU, chosen by timing a short prompt when a model is deployed.

Candidates: transformers in float32; in bfloat16 only where the CPU multiplies bf16 natively (elsewhere it
is emulated, many times slower, and never tried); llama.cpp re-encoded as q8_0 and q4_0 when
llama-cpp-python is installed and the model's weights are a GGUF-packaged base model's own (a fine-tuned
model has no GGUF). Each candidate is loaded, warmed by one request, then timed on the same chat prompt
(a RAG-shaped question with context, a few new tokens, greedy); the fastest total wins. llama.cpp runs one
request at a time, so under concurrent load transformers (continuous batching) may still serve more:
the figures are recorded with the endpoint so the choice can be checked and overridden
(``model deploy --endpoint``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from domainrag import hardware
from domainrag.serving.backends.config import EndpointConfig, LlamaCppEndpoint, TransformersEndpoint
from domainrag.serving.backends.gguf import llamacpp_gguf
from domainrag.serving.backends.llamacpp import import_llama_cpp, load_llamacpp
from domainrag.serving.backends.transformers import load_generator
from domainrag.serving.generator import BackendError, GenerationConfig, Generator
from domainrag.workspace import ResolvedLLM, Workspace
from domainrag.zoo import BASE_MODELS, resolve_llm, weights_digest

NEW_TOKENS = 8
RUNS = 2
_CONTEXT = ("The DP-220 dosing pump delivers up to 12 litres per hour at 10 bar. Its diaphragm should be replaced "
            "every 4000 operating hours. The CTL-400 controller carries a 36-month warranty on parts and labour; "
            "claims are filed through the service portal with the unit serial number. ")
PROMPT = [
    {"role": "system", "content": "Answer from the context only and cite passages as [n].\n\n[1] " + _CONTEXT * 3},
    {"role": "user", "content": "How often is the DP-220 diaphragm replaced?"},
]


def _gguf_base(ws: Workspace, llm: ResolvedLLM) -> str | None:
    """The GGUF-packaged base model whose weights this LLM is (unchanged), else None."""
    base_name = llm.name if llm.record is None else llm.record.get("base_model")
    base = BASE_MODELS.get(base_name or "")
    if base is None or base.kind != "llm":
        return None
    folder, adapter = ws.llm_path(llm)
    if adapter is not None:
        return None
    if llm.record is not None and weights_digest(folder) != weights_digest(resolve_llm(base_name)):
        return None
    return base_name


def candidates(ws: Workspace, llm: ResolvedLLM) -> list[EndpointConfig]:
    """The endpoints worth timing for this LLM on this machine (see the module docstring)."""
    found: list[EndpointConfig] = [TransformersEndpoint(dtype="float32")]
    if hardware.native_bf16():
        found.append(TransformersEndpoint(dtype="bfloat16"))
    try:
        import_llama_cpp()
    except Exception:  # the optional extra is not installed: transformers only
        return found
    if (gguf := _gguf_base(ws, llm)) is not None:
        found += [LlamaCppEndpoint(type="llamacpp", gguf=gguf, convert="q8_0"),
                  LlamaCppEndpoint(type="llamacpp", gguf=gguf, convert="q4_0")]
    return found


def label(cfg: EndpointConfig) -> str:
    if isinstance(cfg, LlamaCppEndpoint):
        return f"llama.cpp {cfg.convert or 'gguf'}"
    return f"transformers {getattr(cfg, 'dtype', '')}"


def _load(ws: Workspace, llm: ResolvedLLM, cfg: EndpointConfig) -> Generator:
    if isinstance(cfg, LlamaCppEndpoint):
        return load_llamacpp(llamacpp_gguf(cfg), cfg.n_ctx, cfg.n_threads, llm.name, cfg.flash_attn)
    base, adapter = ws.llm_path(llm)
    return load_generator(base, adapter, llm.name, cfg.dtype, cfg.max_batch,
                          cfg.prefill_budget)  # type: ignore[union-attr]


def _time_once(generator: Generator) -> tuple[float, float]:
    """(seconds to the first piece, seconds in all) of one greedy completion of :data:`PROMPT`."""
    start = time.perf_counter()
    first = None
    for _ in generator.stream(PROMPT, GenerationConfig(temperature=0, max_new_tokens=NEW_TOKENS)):
        first = first if first is not None else time.perf_counter() - start
    total = time.perf_counter() - start
    return (first if first is not None else total), total


def measure(ws: Workspace, llm: ResolvedLLM, progress: Callable[[str], None] = lambda _: None
            ) -> tuple[EndpointConfig, dict[str, Any]]:
    """Time every candidate; the fastest endpoint and the figures (what to record with it)."""
    rows: list[dict[str, Any]] = []
    configs = candidates(ws, llm)
    for cfg in configs:
        name = label(cfg)
        progress(f"loading {name}")
        started = time.perf_counter()
        try:
            generator = _load(ws, llm, cfg)
            load_s = time.perf_counter() - started
            progress(f"timing {name}")
            _time_once(generator)  # warm-up: first-call allocations are not the backend's speed
            runs = [_time_once(generator) for _ in range(RUNS)]
        except Exception as exc:  # a candidate that cannot run here is recorded, not fatal
            rows.append({"backend": name, "endpoint": cfg.model_dump(), "error": f"{type(exc).__name__}: {exc}"})
            continue
        rows.append({"backend": name, "endpoint": cfg.model_dump(), "load_s": round(load_s, 3),
                     "ttft_s": round(statistics.median(r[0] for r in runs), 4),
                     "total_s": round(statistics.median(r[1] for r in runs), 4)})
        progress(f"{name}: {rows[-1]['total_s']:.2f} s")
    timed = [r for r in rows if "total_s" in r]
    if not timed:
        raise BackendError(f"no backend could run model '{llm.name}': " + "; ".join(r["error"] for r in rows),
                           hint="check the model's weights with `domainrag model list`, or deploy it with --endpoint")
    best = min(timed, key=lambda r: r["total_s"])
    chosen = next(c for c in configs if c.model_dump() == best["endpoint"])
    figures = {"chosen": best["backend"], "new_tokens": NEW_TOKENS, "runs": RUNS, "native_bf16": hardware.native_bf16(),
               "candidates": rows, "measured_at": time.time()}
    return chosen, figures
