"""Generation backends and the per-model endpoint config that picks one.

A model's catalogue record may carry an ``endpoint`` (set by ``model deploy`` or by
``model create --source remote``); without one an LLM runs in-process with transformers.

* ``{"type": "transformers"}``: in-process :class:`~domainrag.serving.generator.TransformersGenerator`.
* ``{"type": "openai", "base_url": "http://host:8000/v1", "model": "..."}``: any OpenAI-compatible
  ``/chat/completions`` server (vLLM, TGI, Ollama, a cloud, another ``domainrag serve``), streamed over
  SSE with httpx. The key is read at request time from the environment variable named by
  ``api_key_env`` (default ``DOMAINRAG_REMOTE_API_KEY``); it is never stored.
* ``{"type": "llamacpp", "gguf": "<path.gguf or base model name>", "n_ctx": 2048}``: llama.cpp through
  the optional ``llama-cpp-python`` package (``pip install 'domainrag[llamacpp]'``).
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import importlib
import json
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from domainrag.errors import DomainRagError, NotFoundError
from domainrag.serving.generator import GenerationConfig, Generator, load_generator
from domainrag.settings import cache_dir
from domainrag.workspace import Workspace
from domainrag.zoo import BASE_MODELS

DEFAULT_API_KEY_ENV = "DOMAINRAG_REMOTE_API_KEY"
LLAMACPP_INSTALL_HINT = "pip install 'domainrag[llamacpp]'  (compiles llama.cpp: takes several minutes)"
ENDPOINT_EXAMPLES = (
    '{"type": "transformers"} | {"type": "openai", "base_url": "http://host:8000/v1", "model": "name"} | '
    '{"type": "llamacpp", "gguf": "smollm2-135m-instruct", "n_ctx": 2048}'
)


class BackendError(DomainRagError):
    """A generation backend failed or could not be reached (the API answers 502)."""


# -- endpoint configs -----------------------------------------------------------------------------
class TransformersEndpoint(BaseModel):
    """In-process transformers (the model's own weights, or a base model)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["transformers"] = "transformers"
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="auto: bfloat16 on CPUs with AVX512-BF16/AMX (half the memory, 3x faster prompts: "
        "1k-token TTFT 0.49 s vs 1.5 s with SmolLM2 on 2 cores), else float32")


class OpenAIEndpoint(BaseModel):
    """Any OpenAI-compatible server; ``base_url`` ends where ``/chat/completions`` and ``/models`` begin."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["openai"]
    base_url: str = Field(min_length=8, description="e.g. http://gpu-box:8000/v1")
    model: str = Field(min_length=1, description="the model id the server serves")
    api_key_env: str = Field(DEFAULT_API_KEY_ENV, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout: float = Field(120.0, gt=0, le=3600, description="seconds per read (and for the whole probe)")
    extra_body: dict[str, Any] = Field(default_factory=dict, description='e.g. {"repetition_penalty": 1.1} for vLLM')

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
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
        None, description="re-encode the weights once (cached) with llama.cpp's quantizer: bf16 (lossless from a "
        "4-bit file; 2.6x faster prompts than the shipped Q4_1 here) or q4_0 (fastest: repacked CPU kernels, but "
        "re-quantizing a 4-bit file loses a little quality) or q8_0")


EndpointConfig = Annotated[TransformersEndpoint | OpenAIEndpoint | LlamaCppEndpoint, Field(discriminator="type")]
_ENDPOINT = TypeAdapter(EndpointConfig)


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
            raise DomainRagError(f"endpoint is not valid JSON: {exc.msg} at column {exc.colno}",
                                 hint=ENDPOINT_EXAMPLES) from exc
    if isinstance(data, dict) and "api_key" in data:
        raise DomainRagError("endpoint configs never store API keys",
                             hint=f'export the key as ${DEFAULT_API_KEY_ENV} (or name another one in "api_key_env")')
    try:
        return _ENDPOINT.validate_python(data)
    except ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'endpoint'}: {e['msg']}" for e in exc.errors()]
        raise DomainRagError("invalid endpoint: " + "; ".join(parts), hint=ENDPOINT_EXAMPLES) from exc


# -- OpenAI-compatible servers --------------------------------------------------------------------
class OpenAICompatibleGenerator:
    """Streams chat completions from any OpenAI-compatible ``/v1/chat/completions`` over SSE."""

    reports_usage = True  # token counts come from the server (``stream_options.include_usage``)

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        timeout: float = 120.0,
        name: str | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = name or model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.extra_body = dict(extra_body or {})
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)))

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env)  # read per request, never kept
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _fail(self, url: str, exc: httpx.HTTPError) -> BackendError:
        if isinstance(exc, httpx.TimeoutException):
            return BackendError(f"generation endpoint {url} timed out ({type(exc).__name__})",
                                hint="raise the endpoint's timeout, or check the server's load")
        return BackendError(f"cannot reach generation endpoint {url}: {exc or type(exc).__name__}",
                            hint="check that the server is running and base_url (usually ending in /v1) is right")

    def _status_error(self, url: str, resp: httpx.Response) -> BackendError:
        try:
            body = resp.json()
            detail = body.get("error", body)
            message = detail.get("message") or detail.get("detail") if isinstance(detail, dict) else str(detail)
        except (json.JSONDecodeError, AttributeError):
            message = resp.text[:300]
        hint = None
        if resp.status_code in (401, 403):
            hint = f"set the server's API key in ${self.api_key_env}" + (
                "" if os.environ.get(self.api_key_env) else " (it is not set)")
        elif resp.status_code == 404:
            hint = f"check base_url and that the server serves model '{self.model}' (GET {self.base_url}/models)"
        return BackendError(f"generation endpoint {url} answered {resp.status_code}: {message}", hint=hint)

    def stream(
        self,
        messages: Sequence[dict[str, str]],
        config: GenerationConfig | None = None,
        cancel: threading.Event | None = None,
        usage: dict[str, int] | None = None,
    ) -> Iterator[str]:
        """Yield content deltas; setting ``cancel`` (or closing the iterator) closes the connection.

        With ``usage`` given, the server is asked for its token counts, which are stored there.
        """
        cfg = config or GenerationConfig()
        body = {"model": self.model, "messages": list(messages), "stream": True, "max_tokens": cfg.max_new_tokens,
                "temperature": cfg.temperature, "top_p": cfg.top_p, **self.extra_body}
        if usage is not None:
            body.setdefault("stream_options", {"include_usage": True})
        url = f"{self.base_url}/chat/completions"
        if cancel is not None and cancel.is_set():
            return
        try:
            with self._client.stream("POST", url, json=body, headers=self._headers()) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise self._status_error(url, resp)
                if resp.headers.get("content-type", "").startswith("application/json"):  # server ignored stream
                    resp.read()
                    _store_usage(resp.json(), usage)
                    yield from _contents(resp.json(), url, "message")
                    return
                for data in sse_data(resp.iter_lines()):
                    if cancel is not None and cancel.is_set():
                        return  # leaving the block closes the connection; the server stops generating
                    if data == "[DONE]":
                        return
                    try:
                        event = json.loads(data)
                    except json.JSONDecodeError as exc:
                        raise BackendError(f"generation endpoint {url} sent a malformed event: {data[:200]}") from exc
                    _store_usage(event, usage)
                    yield from _contents(event, url, "delta")
        except httpx.HTTPError as exc:
            raise self._fail(url, exc) from exc

    def generate(self, messages: Sequence[dict[str, str]], config: GenerationConfig | None = None) -> str:
        return "".join(self.stream(messages, config))

    def models(self) -> list[str]:
        """Model ids the server lists at ``GET <base_url>/models``."""
        url = f"{self.base_url}/models"
        try:
            resp = self._client.get(url, headers=self._headers(), timeout=min(self.timeout, 30.0))
        except httpx.HTTPError as exc:
            raise self._fail(url, exc) from exc
        if resp.status_code >= 400:
            raise self._status_error(url, resp)
        try:
            return [str(m["id"]) for m in resp.json().get("data", [])]
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
            raise BackendError(f"{url} did not answer an OpenAI model list",
                               hint="base_url should be the server's OpenAI root, usually ending in /v1") from exc

    def check(self) -> None:
        """Raise unless the server is reachable, accepts the key and serves ``model``."""
        served = self.models()
        if served and self.model not in served:
            raise BackendError(f"{self.base_url} does not serve model '{self.model}' (it serves: {', '.join(served)})")

    def close(self) -> None:
        self._client.close()


def sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The ``data`` payloads of a server-sent-event stream (multi-line data joined; comments ignored)."""
    buf: list[str] = []
    for line in lines:
        if not line:
            if buf:
                yield "\n".join(buf)
                buf = []
        elif line.startswith("data:"):
            value = line[5:]
            buf.append(value[1:] if value.startswith(" ") else value)
    if buf:
        yield "\n".join(buf)


def _store_usage(event: Any, usage: dict[str, int] | None) -> None:
    """Copy a server's ``usage`` object (OpenAI shape) into ``usage`` when both are there."""
    if usage is None or not isinstance(event, dict) or not isinstance(event.get("usage"), dict):
        return
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = event["usage"].get(key)
        if isinstance(value, int):
            usage[key] = value


def _contents(event: Any, url: str, field: str) -> Iterator[str]:
    if not isinstance(event, dict):
        raise BackendError(f"generation endpoint {url} sent an unexpected event: {str(event)[:200]}")
    if event.get("error"):
        error = event["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise BackendError(f"generation endpoint {url} failed mid-stream: {message}")
    for choice in event.get("choices") or []:
        piece = (choice.get(field) or {}).get("content")
        if piece:
            yield piece


@functools.lru_cache(maxsize=16)
def _remote_generator(config_json: str, name: str) -> OpenAICompatibleGenerator:
    cfg = OpenAIEndpoint.model_validate_json(config_json)
    return OpenAICompatibleGenerator(cfg.base_url, cfg.model, api_key_env=cfg.api_key_env, timeout=cfg.timeout,
                                     name=name, extra_body=cfg.extra_body)


# -- llama.cpp ------------------------------------------------------------------------------------
def import_llama_cpp() -> Any:
    """The ``llama_cpp`` module, or a clear error with the install hint."""
    try:
        return importlib.import_module("llama_cpp")
    except ImportError as exc:
        raise DomainRagError("the llamacpp backend needs llama-cpp-python, which is not installed",
                             hint=LLAMACPP_INSTALL_HINT) from exc


def _gguf_cache_file(name: str) -> Path:
    """``<cache>/gguf/<name>`` (the folder created): where assembled and converted GGUF files live."""
    folder = cache_dir() / "gguf"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def resolve_gguf(spec: str) -> str:
    """Path of a ``.gguf`` file, or of a GGUF-packaged base model (split packages assembled once into the cache)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return str(path.resolve())
    model = BASE_MODELS.get(spec)
    if model is None or model.kind != "llm":
        gguf_models = ", ".join(n for n, m in BASE_MODELS.items() if m.kind == "llm")
        raise DomainRagError(f"gguf '{spec}' is neither a .gguf file nor a GGUF-packaged base model",
                             hint=f"pass a path to a .gguf file or one of: {gguf_models}")
    from domainrag.zoo import _gguf_source

    target = _gguf_cache_file(f"{spec}.gguf")
    with FileLock(str(target) + ".lock"):
        if target.exists():
            return str(target)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            source = _gguf_source(model, Path(tmp))
            if not source.is_relative_to(tmp):  # shipped as one file inside its package: use it in place
                return str(source)
            shutil.move(source, target)  # same folder: an atomic rename, never a half-written file
    return str(target)


_FTYPES = {"bf16": "LLAMA_FTYPE_MOSTLY_BF16", "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0"}


def convert_gguf(gguf_path: str, tensor_type: GgufType) -> str:
    """``gguf_path`` re-encoded as ``tensor_type`` by llama.cpp's own quantizer, once, into the cache.

    Why: the Q4_1 file shipped for SmolLM2 has no fast CPU matrix kernels in llama.cpp (1k-token prompt
    2.3 s here); the same weights as BF16 take 0.72-0.9 s and as Q4_0 0.67-0.88 s (``bench_serving.py``).
    The converted file is written to a temporary name and renamed, under a file lock, so concurrent
    servers never see half a file. Its name carries the source's size and modification time.
    """
    llama_cpp = import_llama_cpp()
    source = Path(gguf_path)
    stat = source.stat()
    target = _gguf_cache_file(f"{source.stem}.{stat.st_size}-{int(stat.st_mtime)}.{tensor_type}.gguf")
    with FileLock(str(target) + ".lock"):
        if target.exists():
            return str(target)
        tmp = target.with_suffix(".partial")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, _FTYPES[tensor_type])
        params.allow_requantize = True
        params.nthread = os.cpu_count() or 1
        from llama_cpp._utils import suppress_stdout_stderr

        with suppress_stdout_stderr(disable=False):  # llama.cpp prints a line per tensor
            rc = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0 or not tmp.exists():
            tmp.unlink(missing_ok=True)
            raise BackendError(f"llama.cpp could not convert {source} to {tensor_type} (code {rc})",
                               hint="check the file is a complete GGUF model, or drop the endpoint's convert option")
        tmp.replace(target)
    return str(target)


class LlamaCppGenerator:
    """A GGUF model run by llama.cpp, streamed from a worker thread like the transformers backend."""

    reports_usage = True  # counted with llama.cpp's own tokenizer and the GGUF's chat template

    def __init__(self, gguf_path: str, *, n_ctx: int = 2048, n_threads: int | None = None,
                 name: str | None = None, flash_attn: bool = True) -> None:
        llama_cpp = import_llama_cpp()
        self.name = name or Path(gguf_path).stem
        self.llm = llama_cpp.Llama(model_path=gguf_path, n_ctx=n_ctx, n_threads=n_threads, flash_attn=flash_attn,
                                   verbose=False)
        # Freed before interpreter teardown: llama-cpp-python's __del__ fails noisily once modules are gone.
        atexit.register(self.llm.close)
        self._lock = threading.Lock()  # a llama.cpp context serves one generation at a time

    @functools.cached_property
    def _chat_formatter(self) -> Any:
        """The GGUF's own chat template, compiled once (``None`` when the file has none)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        vocab = self.llm._model
        return Jinja2ChatFormatter(template, eos_token=vocab.token_get_text(self.llm.token_eos()),
                                   bos_token=vocab.token_get_text(self.llm.token_bos()))

    def count_prompt_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        """Tokens of the chat prompt as llama.cpp will see it (the GGUF's own chat template)."""
        if self._chat_formatter is None:  # no template in the file: the bare contents are the closest count
            return sum(len(self.llm.tokenize(m["content"].encode(), add_bos=False)) for m in messages)
        prompt = self._chat_formatter(messages=list(messages)).prompt
        return len(self.llm.tokenize(prompt.encode(), add_bos=False, special=True))

    def stream(
        self,
        messages: Sequence[dict[str, str]],
        config: GenerationConfig | None = None,
        cancel: threading.Event | None = None,
        usage: dict[str, int] | None = None,
    ) -> Iterator[str]:
        """Yield text pieces; ``cancel`` stops at the next token; ``usage`` receives the token counts."""
        cfg = config or GenerationConfig()
        stop = cancel or threading.Event()
        pieces: queue.Queue[Any] = queue.Queue()
        end = object()

        def _run() -> None:
            try:
                with self._lock:
                    if stop.is_set():
                        return
                    chunks = self.llm.create_chat_completion(
                        messages=list(messages), stream=True, max_tokens=cfg.max_new_tokens,
                        temperature=cfg.temperature, top_p=cfg.top_p, repeat_penalty=cfg.repetition_penalty,
                    )
                    for chunk in chunks:
                        if stop.is_set():
                            break
                        for choice in chunk.get("choices") or []:
                            if piece := (choice.get("delta") or {}).get("content"):
                                pieces.put(piece)
            except BaseException as exc:  # surfaced to the caller
                pieces.put(exc)
            finally:
                pieces.put(end)

        threading.Thread(target=_run, daemon=True).start()
        finished, text = False, ""
        try:
            while (item := pieces.get()) is not end:
                if isinstance(item, BaseException):
                    raise item
                text += item
                yield item
            finished = True
        finally:
            if not finished:
                stop.set()
            if usage is not None:
                usage["prompt_tokens"] = self.count_prompt_tokens(messages)
                usage["completion_tokens"] = len(self.llm.tokenize(text.encode(), add_bos=False)) if text else 0

    def generate(self, messages: Sequence[dict[str, str]], config: GenerationConfig | None = None) -> str:
        return "".join(self.stream(messages, config))


@functools.lru_cache(maxsize=2)
def load_llamacpp(gguf_path: str, n_ctx: int = 2048, n_threads: int | None = None,
                  name: str | None = None, flash_attn: bool = True) -> LlamaCppGenerator:
    """Process-wide cache of loaded llama.cpp models."""
    return LlamaCppGenerator(gguf_path, n_ctx=n_ctx, n_threads=n_threads, name=name, flash_attn=flash_attn)


def llamacpp_gguf(cfg: LlamaCppEndpoint) -> str:
    """The GGUF file an endpoint runs: its file or packaged model, converted when ``convert`` asks."""
    path = resolve_gguf(cfg.gguf)
    return convert_gguf(path, cfg.convert) if cfg.convert else path


# -- per-model resolution -------------------------------------------------------------------------
def endpoint_for(ws: Workspace, name: str) -> EndpointConfig:
    """The endpoint a model name is served by: its record's ``endpoint``, else in-process transformers."""
    record = ws.model_record(name)
    if record is None:
        return TransformersEndpoint()  # base model, path or hub id
    if record.get("kind") != "llm":
        raise DomainRagError(f"model '{name}' is a {record.get('kind')} model, not an LLM")
    return parse_endpoint(record.get("endpoint"))


def generator_for(ws: Workspace, name: str) -> Generator:
    """The (cached) generator serving ``name``, picked by the model's endpoint config."""
    cfg = endpoint_for(ws, name)
    if isinstance(cfg, OpenAIEndpoint):
        return _remote_generator(cfg.model_dump_json(), name)
    if isinstance(cfg, LlamaCppEndpoint):
        import_llama_cpp()
        return load_llamacpp(llamacpp_gguf(cfg), cfg.n_ctx, cfg.n_threads, name, cfg.flash_attn)
    base, adapter = ws.llm_path(name)
    return load_generator(base, adapter, name, cfg.dtype)


def validate_endpoint(ws: Workspace, name: str, cfg: EndpointConfig, *, probe: bool = True) -> None:
    """Raise unless ``cfg`` can serve ``name``: local weights verified, package present, or server reachable."""
    if isinstance(cfg, TransformersEndpoint):
        record = ws.model_record(name)
        if record is not None and not record.get("key"):
            raise DomainRagError(f"model '{name}' has no local weights to run in-process",
                                 hint=f"deploy it with an openai or llamacpp endpoint: {ENDPOINT_EXAMPLES}")
        ws.llm_path(name)  # verifies the artifact against its manifest; the model itself loads lazily
    elif isinstance(cfg, LlamaCppEndpoint):
        import_llama_cpp()
        llamacpp_gguf(cfg)  # converts now (seconds), so the first request does not wait for it
    elif probe:
        generator = OpenAICompatibleGenerator(cfg.base_url, cfg.model, api_key_env=cfg.api_key_env,
                                              timeout=min(cfg.timeout, 30.0))
        try:
            generator.check()
        finally:
            generator.close()


def check_llm(ws: Workspace, name: str) -> None:
    """What an app needs from its model, checked at app creation (remote servers are not probed)."""
    validate_endpoint(ws, name, endpoint_for(ws, name), probe=False)


def deploy_model(ws: Workspace, name: str, endpoint: dict[str, Any] | str | BaseModel | None) -> dict[str, Any]:
    """Validate an endpoint for a registered LLM and record it (``model deploy``)."""
    record = ws.model_record(name)
    if record is None:
        hint = (f"register it first, e.g. `model create --name my-{name} --source remote --endpoint '<json>'`"
                if name in BASE_MODELS else "run `domainrag model list`")
        raise NotFoundError(f"model '{name}' is not registered", hint=hint)
    if record.get("kind") != "llm":
        raise DomainRagError(f"model '{name}' is a {record.get('kind')} model; only LLMs are deployed for generation")
    cfg = parse_endpoint(endpoint)
    validate_endpoint(ws, name, cfg)
    stored = None if cfg == TransformersEndpoint() else cfg.model_dump()
    return ws.catalog.update("model", name, endpoint=stored)


def undeploy_model(ws: Workspace, name: str) -> dict[str, Any]:
    """Drop a model's endpoint: it runs in-process with transformers again (``model undeploy``)."""
    record = ws.catalog.require("model", name)
    if not record.get("key"):
        raise DomainRagError(f"model '{name}' is served only by its endpoint (it has no local weights)",
                             hint="deploy it to another endpoint with `model deploy`, or register a model with weights")
    return ws.catalog.update("model", name, endpoint=None)
