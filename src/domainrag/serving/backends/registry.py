"""Which backend serves a model: the generator for a name, endpoint validation, ``model deploy``/``undeploy``.

A name is resolved once, by :meth:`~domainrag.workspace.Workspace.resolve_llm`; the result (catalogue
record or base model/path/hub id) is passed on, never looked up again. Validation checks and never
converts; a GGUF conversion happens when a model is deployed (so the first request does not wait) or
when it is first loaded.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from domainrag.errors import DomainRagError, NotFoundError
from domainrag.serving.backends import choice
from domainrag.serving.backends.config import (
    ENDPOINT_EXAMPLES,
    EndpointConfig,
    LlamaCppEndpoint,
    OpenAIEndpoint,
    TransformersEndpoint,
    parse_endpoint,
)
from domainrag.serving.backends.gguf import check_gguf, llamacpp_gguf
from domainrag.serving.backends.llamacpp import import_llama_cpp, load_llamacpp
from domainrag.serving.backends.openai_compatible import OpenAICompatibleGenerator
from domainrag.serving.backends.transformers import load_generator
from domainrag.serving.generator import Generator
from domainrag.workspace import ResolvedLLM, Workspace
from domainrag.zoo import BASE_MODELS


def _resolved(ws: Workspace, llm: str | ResolvedLLM) -> ResolvedLLM:
    return llm if isinstance(llm, ResolvedLLM) else ws.resolve_llm(llm)


def endpoint_for(ws: Workspace, llm: str | ResolvedLLM) -> EndpointConfig:
    """The endpoint an LLM is served by: its record's ``endpoint``, else its base model's default backend
    (llama.cpp for the zoo GGUFs too large to dequantise), else in-process transformers."""
    resolved = _resolved(ws, llm)
    base = BASE_MODELS.get(resolved.name)
    if resolved.record is None and base is not None and base.default_backend == "llamacpp":
        return parse_endpoint({"type": "llamacpp", "gguf": base.name})
    return parse_endpoint(resolved.endpoint)


@functools.lru_cache(maxsize=16)
def _remote_generator(config_json: str, name: str) -> OpenAICompatibleGenerator:
    cfg = OpenAIEndpoint.model_validate_json(config_json)
    return OpenAICompatibleGenerator(cfg.base_url, cfg.model, api_key_env=cfg.api_key_env, timeout=cfg.timeout,
                                     name=name, extra_body=cfg.extra_body)


def generator_for(ws: Workspace, name: str | ResolvedLLM) -> Generator:
    """The (cached) generator serving an LLM, picked by its endpoint config; loads (and converts) on first use."""
    llm = _resolved(ws, name)
    cfg = endpoint_for(ws, llm)
    if isinstance(cfg, OpenAIEndpoint):
        return _remote_generator(cfg.model_dump_json(), llm.name)
    if isinstance(cfg, LlamaCppEndpoint):
        import_llama_cpp()
        return load_llamacpp(llamacpp_gguf(cfg), cfg.n_ctx, cfg.n_threads, llm.name, cfg.flash_attn)
    base, adapter = ws.llm_path(llm)
    return load_generator(base, adapter, llm.name, cfg.dtype, cfg.max_batch,
                          cfg.prefill_budget)


def validate_endpoint(ws: Workspace, name: str | ResolvedLLM, cfg: EndpointConfig, *, probe: bool = True) -> None:
    """Raise unless ``cfg`` can serve the LLM: local weights verified, GGUF and package present, or server
    reachable (``probe``). Nothing is converted or loaded."""
    llm = _resolved(ws, name)
    if isinstance(cfg, TransformersEndpoint):
        if not llm.has_weights:
            raise DomainRagError(f"model '{llm.name}' has no local weights to run in-process",
                                 hint=f"deploy it with an openai or llamacpp endpoint: {ENDPOINT_EXAMPLES}")
        ws.verify_llm(llm)
    elif isinstance(cfg, LlamaCppEndpoint):
        import_llama_cpp()
        check_gguf(cfg.gguf)
    elif probe:
        generator = OpenAICompatibleGenerator(cfg.base_url, cfg.model, api_key_env=cfg.api_key_env,
                                              timeout=min(cfg.timeout, 30.0))
        try:
            generator.check()
        finally:
            generator.close()


def prepare_endpoint(cfg: EndpointConfig) -> None:
    """Do a deploy's one-off work now, so the first request does not wait: a llama.cpp GGUF assembled and
    converted into the cache (a no-op for other backends)."""
    if isinstance(cfg, LlamaCppEndpoint):
        llamacpp_gguf(cfg)


def check_llm(ws: Workspace, llm: str | ResolvedLLM) -> None:
    """What an app needs from its model, checked at app creation (remote servers are not probed)."""
    llm = _resolved(ws, llm)
    validate_endpoint(ws, llm, endpoint_for(ws, llm), probe=False)


def deploy_model(ws: Workspace, name: str, endpoint: dict[str, Any] | str | BaseModel | None,
                 progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Validate an endpoint for a registered LLM, prepare it, and record it (``model deploy``).

    ``endpoint`` None: the in-process backends available are timed on this machine (:mod:`.choice`) and the
    fastest is recorded, with the figures as ``backend_measurement``; an explicit endpoint overrides.
    """
    record = ws.model_record(name)
    if record is None:
        hint = (f"register it first, e.g. `model create --name my-{name} --source remote --endpoint '<json>'`"
                if name in BASE_MODELS else "run `domainrag model list`")
        raise NotFoundError(f"model '{name}' is not registered", hint=hint)
    if record.get("kind") != "llm":
        raise DomainRagError(f"model '{name}' is a {record.get('kind')} model; only LLMs are deployed for generation")
    llm = ResolvedLLM(name, record)
    measurement = None
    if endpoint is None:
        validate_endpoint(ws, llm, TransformersEndpoint())
        cfg, measurement = choice.measure(ws, llm, progress)
    else:
        cfg = parse_endpoint(endpoint)
        validate_endpoint(ws, llm, cfg)
    prepare_endpoint(cfg)
    stored = None if cfg == TransformersEndpoint() else cfg.model_dump()
    return ws.catalog.update("model", name, endpoint=stored, backend_measurement=measurement)


def undeploy_model(ws: Workspace, name: str) -> dict[str, Any]:
    """Drop a model's endpoint: it runs in-process with transformers again (``model undeploy``)."""
    record = ws.catalog.require("model", name)
    if not record.get("key"):
        raise DomainRagError(f"model '{name}' is served only by its endpoint (it has no local weights)",
                             hint="deploy it to another endpoint with `model deploy`, or register a model with weights")
    return ws.catalog.update("model", name, endpoint=None)
