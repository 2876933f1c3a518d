"""The per-model endpoint config: which backend serves an LLM, as a discriminated union on ``type``.

A model's catalogue record may carry an ``endpoint`` (set by ``model deploy`` or by
``model create --source remote``); without one an LLM runs in-process with transformers.

* ``{"type": "transformers"}``: in-process transformers (:mod:`.transformers`).
* ``{"type": "openai", "base_url": "http://host:8000/v1", "model": "..."}``: any OpenAI-compatible
  ``/chat/completions`` server (vLLM, TGI, Ollama, a cloud, another ``domainrag serve``) (:mod:`.openai_compatible`).
  The key is read at request time from the environment variable named by ``api_key_env`` (default
  ``DOMAINRAG_REMOTE_API_KEY``); it is never stored.
* ``{"type": "llamacpp", "gguf": "<path.gguf or base model name>", "n_ctx": 2048}``: llama.cpp through
  the optional ``llama-cpp-python`` package (:mod:`.llamacpp`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from domainrag.errors import DomainRagError

DEFAULT_API_KEY_ENV = "DOMAINRAG_REMOTE_API_KEY"
DEFAULT_MAX_BATCH = 64  # requests decoded together by a continuous batch
DEFAULT_PREFILL_BUDGET = 4096  # prompt tokens prefilled between two decode steps of a continuous batch
ENDPOINT_EXAMPLES = (
    '{"type": "transformers"} | {"type": "openai", "base_url": "http://host:8000/v1", "model": "name"} | '
    '{"type": "llamacpp", "gguf": "smollm2-135m-instruct", "n_ctx": 2048}'
)


class TransformersEndpoint(BaseModel):
    """In-process transformers (the model's own weights, or a base model)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["transformers"] = "transformers"
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="auto: bfloat16 on CPUs with AVX512-BF16/AMX (half the memory, faster prompts), "
        "else float32")
    max_batch: int = Field(DEFAULT_MAX_BATCH, ge=1, le=1024,
                           description="requests decoded together (continuous batching); 1 runs one request at a time")
    prefill_budget: int = Field(DEFAULT_PREFILL_BUDGET, ge=1, le=1_000_000,
                                description="prompt tokens read between two decode steps (at least one prompt): "
                                "higher gives waiting requests their first token sooner, lower keeps the "
                                "running streams' tokens coming evenly")


class OpenAIEndpoint(BaseModel):
    """Any OpenAI-compatible server; ``base_url`` ends where ``/chat/completions`` and ``/models`` begin."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["openai"]
    base_url: str = Field(description="e.g. http://gpu-box:8000/v1")
    model: str = Field(min_length=1, description="the model id the server serves")
    api_key_env: str = Field(DEFAULT_API_KEY_ENV, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout: float = Field(120.0, gt=0, le=3600, description="seconds per read (and for the whole probe)")
    extra_body: dict[str, Any] = Field(default_factory=dict, description='e.g. {"repetition_penalty": 1.1} for vLLM')

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or not urlsplit(value).hostname:
            raise ValueError("base_url must be an http:// or https:// URL with a host, e.g. http://gpu-box:8000/v1")
        return value.rstrip("/")


GgufType = Literal["bf16", "q8_0", "q4_0"]


class LlamaCppEndpoint(BaseModel):
    """llama.cpp in-process (optional extra ``llamacpp``)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["llamacpp"]
    gguf: str = Field(min_length=1, description="path to a .gguf file, or a GGUF-packaged base model name")
    n_ctx: int = Field(2048, ge=128, le=262144)
    n_threads: int | None = Field(None, ge=1)
    flash_attn: bool = Field(True, description="llama.cpp's flash attention (faster long prompts on CPU)")
    convert: GgufType | None = Field(
        None, description="re-encode the weights once (cached, at deploy or first load) with llama.cpp's quantizer: "
        "bf16 (lossless from a 4-bit file; faster prompts than a Q4_1 file) or q4_0 (fastest: repacked CPU kernels, "
        "but re-quantizing a 4-bit file loses a little quality) or q8_0")


EndpointConfig = Annotated[TransformersEndpoint | OpenAIEndpoint | LlamaCppEndpoint, Field(discriminator="type")]
_ENDPOINT: TypeAdapter[EndpointConfig] = TypeAdapter(EndpointConfig)


def parse_endpoint(data: dict[str, Any] | str | BaseModel | None) -> EndpointConfig:
    """An endpoint config from a dict or JSON text (``None`` means in-process transformers)."""
    if data is None:
        return TransformersEndpoint()
    if isinstance(data, TransformersEndpoint | OpenAIEndpoint | LlamaCppEndpoint):
        return data
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise DomainRagError(f"endpoint is not valid JSON: {exc.msg} (column {exc.colno})",
                                 hint=ENDPOINT_EXAMPLES) from exc
    if isinstance(data, dict) and "api_key" in data:
        raise DomainRagError("endpoint configs never store API keys",
                             hint=f'export the key as ${DEFAULT_API_KEY_ENV} (or name another one in "api_key_env")')
    try:
        return _ENDPOINT.validate_python(data)
    except ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'endpoint'}: {e['msg']}" for e in exc.errors()]
        raise DomainRagError("invalid endpoint: " + "; ".join(parts), hint=ENDPOINT_EXAMPLES) from exc
