"""HTTP API: RAG apps over SSE, an OpenAI-compatible chat endpoint, API keys and a playground.

Endpoints (OpenAPI at ``/docs``):

* ``GET /healthz`` (always open), ``GET /`` (playground page)
* ``GET /v1/models``, ``GET /v1/apps``, ``GET /v1/apps/{app}``, ``GET /v1/indexes``
* ``POST /v1/apps/{app}/completion``: ``{query, session_id?, stream?, top_k?, filters?}``; streamed as
  ``data: {"type": "token", ...}`` events, one ``{"type": "references", ...}`` event, then ``[DONE]``
* ``POST /v1/chat/completions``: OpenAI-compatible; ``model`` is an LLM (plain chat) or ``app:<name>``
  (RAG: the last user message is the question, earlier ones are history, references ride along in an
  extra ``references`` field). A client's system messages are dropped for apps: the app's grounding
  prompt is never replaced.
* ``POST /v1/embeddings``: OpenAI-compatible; ``model`` is a registered or base embedding model (or one an
  index uses), ``input`` a string or a list of strings; ``encoding_format`` float or base64.

Each LLM is served by its catalogue endpoint (:mod:`domainrag.serving.backends`): in-process
transformers by default, or any OpenAI-compatible server, or llama.cpp.

Keys (:mod:`domainrag.serving.keys`) are required once any key has been created (revoked ones
count), or always with ``require_keys=True``; ``require_keys=False`` turns them off. A key for one app
gets 403 on any other app, on plain LLMs and on embedding models other than its app's index model, and
sees only its app (and its index) in the listings.

Sessions (:mod:`domainrag.serving.sessions`): pass the returned ``session_id`` back to continue a
conversation; short or back-referring follow-ups are retrieved together with the earlier question.

Every completion takes a slot of a bounded pool (``DOMAINRAG_MAX_CONCURRENT``, default 4); a request
that waits longer than ``DOMAINRAG_QUEUE_TIMEOUT`` seconds (default 5) for a slot gets 503 with
``Retry-After``. Generation runs in worker threads and stops when the client
disconnects. Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.
"""

# No ``from __future__ import annotations``: FastAPI must resolve the ``Depends`` aliases defined
# inside create_api at decoration time.
import asyncio
import base64
import dataclasses
import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing
from importlib import resources
from typing import Annotated, Any, Literal, TypeVar

import anyio
import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from domainrag.data.prompts import strip_invalid_citations
from domainrag.errors import ConflictError, DomainRagError, NotFoundError
from domainrag.index.base import SearchHit
from domainrag.serving.apps import load_app
from domainrag.serving.backends import BackendError, generator_for
from domainrag.serving.generator import GenerationConfig, Generator, stream_reporting_usage
from domainrag.serving.keys import ApiKey, keys_exist, verify_key
from domainrag.serving.rag import RagApp, RagEvent
from domainrag.serving.sessions import SessionStore, condense_query
from domainrag.workspace import Workspace
from domainrag.zoo import BASE_MODELS

log = logging.getLogger(__name__)

APP_MODEL_PREFIX = "app:"
DEFAULT_MAX_CONCURRENT = 4
DEFAULT_QUEUE_TIMEOUT_S = 5.0
DEFAULT_CHAT_MAX_TOKENS = 256
MAX_EMBEDDING_INPUTS = 2048
MAX_EMBEDDING_INPUT_CHARS = 32_000
T = TypeVar("T")


# -- errors ---------------------------------------------------------------------------------------
class ApiError(Exception):
    """An error answered in OpenAI's shape with a given status."""

    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None,
        param: str | None = None, headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type, code
        self.param, self.headers = param, headers


class ClientGone(Exception):
    """The client disconnected while its answer was being generated."""


def error_body(message: str, type: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.message, exc.type, exc.code, exc.param), exc.status, headers=exc.headers)


def _install_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc)

    @api.exception_handler(BackendError)
    async def _backend_error(_: Request, exc: BackendError) -> JSONResponse:
        log.warning("generation backend failed: %s", exc.message)
        return _error_response(ApiError(502, "the model's generation backend failed or is unreachable",
                                        type="server_error", code="upstream_error"))

    @api.exception_handler(DomainRagError)
    async def _domain_error(_: Request, exc: DomainRagError) -> JSONResponse:
        if isinstance(exc, NotFoundError):
            return _error_response(ApiError(404, exc.message, code="not_found"))
        if isinstance(exc, ConflictError):
            return _error_response(ApiError(409, exc.message, code="conflict"))
        return _error_response(ApiError(400, exc.message, code="bad_request"))

    @api.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error_response(ApiError(400, "request body is not valid JSON", code="invalid_json"))
        parts = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in errors]
        first = ".".join(str(p) for p in errors[0]["loc"] if p != "body") if errors else None
        return _error_response(ApiError(422, "; ".join(parts), code="validation_error", param=first or None))

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_response(ApiError(exc.status_code, str(exc.detail), code=None, headers=exc.headers))

    @api.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return _error_response(ApiError(500, "internal server error", type="server_error", code="internal_error"))


# -- capacity -------------------------------------------------------------------------------------
class Slot:
    """One held unit of generation capacity; releasing twice is harmless."""

    def __init__(self, sem: threading.BoundedSemaphore) -> None:
        self._sem: threading.BoundedSemaphore | None = sem

    def release(self) -> None:
        sem, self._sem = self._sem, None
        if sem is not None:
            sem.release()


class Limiter:
    """Bounded pool of concurrent generations with a short queue wait.

    A thread semaphore polled from async code: independent of any event loop (tests may hold a
    slot from their own thread) and never parks a worker thread on a waiting request.
    """

    def __init__(self, limit: int, wait_s: float) -> None:
        if limit < 1:
            raise ValueError("max concurrent generations must be >= 1")
        self.limit, self.wait_s = limit, wait_s
        self._sem = threading.BoundedSemaphore(limit)

    def try_acquire(self) -> Slot | None:
        return Slot(self._sem) if self._sem.acquire(blocking=False) else None

    async def acquire(self) -> Slot:
        deadline = time.monotonic() + self.wait_s
        while (slot := self.try_acquire()) is None:
            if time.monotonic() >= deadline:
                raise ApiError(
                    503, f"server is at capacity ({self.limit} concurrent generations); retry shortly",
                    type="server_error", code="server_overloaded",
                    headers={"Retry-After": str(max(1, math.ceil(self.wait_s)))},
                )
            await asyncio.sleep(0.02)
        return slot


class _SlotStream(StreamingResponse):
    """A streaming response that frees its slot however the stream ends (done, error, disconnect)."""

    def __init__(self, content: AsyncIterator[str], slot: Slot, **kwargs: Any) -> None:
        super().__init__(content, media_type="text/event-stream", **kwargs)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()


_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


async def pump(make: Callable[[threading.Event], Iterator[T]], request: Request) -> AsyncIterator[T]:
    """Drive a blocking iterator in worker threads, one item at a time, keeping the loop free.

    Between items the client is checked; when it has gone (or this task is cancelled) the cancel
    event passed to ``make`` is set, which stops the model at its next token.
    """
    cancel = threading.Event()
    items = make(cancel)
    done = object()
    try:
        while (item := await anyio.to_thread.run_sync(next, items, done, abandon_on_cancel=True)) is not done:
            yield item  # type: ignore[misc]
            if await request.is_disconnected():
                raise ClientGone
    finally:
        cancel.set()
        _close_when_idle(items)


def _close_when_idle(items: Iterator[Any]) -> None:
    """Close a generator as soon as no worker thread is inside it, so its ``finally`` blocks run now.

    Relying on garbage collection is not enough: an exception traceback can keep the generator in a
    reference cycle for a long time. A worker abandoned on cancellation may still be inside ``next``,
    where ``close()`` raises ``ValueError``; a daemon thread then retries until it is free.
    """
    close = getattr(items, "close", None)
    if close is None:
        return
    try:
        close()  # the usual case: no worker is inside it (the stream ended, or stopped between tokens)
        return
    except ValueError:  # "generator already executing" in an abandoned worker: retry off the event loop
        pass

    def attempt() -> None:
        for _ in range(6000):  # up to a minute: one token of the slowest model is far shorter
            try:
                close()
                return
            except ValueError:  # "generator already executing"
                time.sleep(0.01)

    threading.Thread(target=attempt, name="close-stream", daemon=True).start()


# -- loaded apps and models -----------------------------------------------------------------------
class AppCache:
    """Loaded apps per name and plain LLMs, reloaded when their catalogue records change (a redeploy too)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._apps: dict[str, tuple[tuple[float, float | None], RagApp]] = {}
        self._models: dict[str, tuple[float | None, Generator]] = {}
        self._lock = threading.Lock()

    def _model_stamp(self, name: str) -> float | None:
        record = self.ws.catalog.get("model", name)
        return record["updated_at"] if record else None

    def get(self, name: str) -> RagApp:
        record = self.ws.catalog.get("app", name)
        if record is None:
            raise ApiError(404, f"app '{name}' not found", code="app_not_found")
        stamp = (record["updated_at"], self._model_stamp(record["model"]))
        cached = self._apps.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        with self._lock:  # one load at a time: loading a model costs seconds and memory
            cached = self._apps.get(name)
            if cached is None or cached[0] != stamp:
                cached = (stamp, load_app(self.ws, name))
                self._apps[name] = cached
        return cached[1]

    def model(self, name: str) -> Generator:
        if name not in llm_names(self.ws):
            raise ApiError(404, f"model '{name}' does not exist", code="model_not_found", param="model")
        stamp = self._model_stamp(name)
        with self._lock:
            cached = self._models.get(name)
            if cached is None or cached[0] != stamp:
                cached = (stamp, generator_for(self.ws, name))
                self._models[name] = cached
            return cached[1]


def llm_names(ws: Workspace) -> list[str]:
    """Plain LLMs a client may chat with: registered LLMs, then base LLMs (never arbitrary paths)."""
    registered = [r["name"] for r in ws.catalog.list("model") if r.get("kind") == "llm"]
    return registered + [n for n, m in BASE_MODELS.items() if m.kind == "llm" and n not in registered]


def embedding_names(ws: Workspace) -> list[str]:
    """Embedding models a client may use: registered ones, base ones, and those the indexes were built with."""
    names = [r["name"] for r in ws.catalog.list("model") if r.get("kind") == "embedding"]
    names += [n for n, m in BASE_MODELS.items() if m.kind == "embedding"]
    names += [r["embedding_model"] for r in ws.catalog.list("index") if r.get("embedding_model")]
    return list(dict.fromkeys(names))


# -- request bodies -------------------------------------------------------------------------------
class CompletionRequest(BaseModel):
    """Ask an app one question; pass the returned ``session_id`` back for follow-ups."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=8000)
    session_id: str | None = Field(None, description="continue a conversation (8-128 chars [A-Za-z0-9_-])")
    stream: bool = False
    top_k: int | None = Field(None, ge=1, le=100)
    filters: dict[str, Any] | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        if any(part.get("type") != "text" for part in self.content):
            raise ApiError(400, "only text content parts are supported", param="messages")
        return "".join(str(part.get("text", "")) for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """OpenAI chat-completions body; unknown OpenAI parameters are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    n: int = Field(1, ge=1, le=1, description="only 1 is supported")
    # domainrag extensions (apps only)
    session_id: str | None = None
    top_k: int | None = Field(None, ge=1, le=100)
    filters: dict[str, Any] | None = None


class EmbeddingRequest(BaseModel):
    """OpenAI embeddings body; unknown OpenAI parameters are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[str] = Field(description=f"a string or up to {MAX_EMBEDDING_INPUTS} strings")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="must equal the model's dimension if given")

    def texts(self) -> list[str]:
        texts = [self.input] if isinstance(self.input, str) else self.input
        if not texts or len(texts) > MAX_EMBEDDING_INPUTS:
            raise ApiError(400, f"input must hold 1 to {MAX_EMBEDDING_INPUTS} strings", param="input")
        for i, text in enumerate(texts):
            if not text.strip() or len(text) > MAX_EMBEDDING_INPUT_CHARS:
                raise ApiError(400, f"input[{i}] must be a non-empty string of at most "
                               f"{MAX_EMBEDDING_INPUT_CHARS} characters", param="input")
        return texts


def _embed(embedder: Any, texts: list[str]) -> tuple[np.ndarray, int]:
    """Normalised vectors (as the indexes store them) and the number of tokens embedded."""
    model = embedder.model
    tokens = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
    return embedder.encode(texts), sum(len(t) for t in tokens)


# -- one prepared answer --------------------------------------------------------------------------
@dataclasses.dataclass
class _Answer:
    """Everything needed to stream one answer: app or plain model, messages, settings."""

    events: Callable[[threading.Event], Iterator[RagEvent]]
    generator: Generator | None
    prompt_tokens: int
    max_new_tokens: int
    n_hits: int = 0
    reported: dict[str, int] = dataclasses.field(default_factory=dict)  # a remote server's own counts

    def usage(self, text: str) -> dict[str, int]:
        if self.reported.get("completion_tokens") is not None:
            prompt, completion = self.reported.get("prompt_tokens", 0), self.reported["completion_tokens"]
            return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        completion = _count_tokens(self.generator, text) if self.generator is not None and self.prompt_tokens else 0
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}


def _count_tokens(generator: Generator, text: str) -> int:
    """Completion tokens by the local tokenizer; 0 for backends without one (remote servers)."""
    tokenizer = getattr(generator, "tokenizer", None)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if tokenizer is not None else 0


def _prompt_tokens(generator: Generator | None, messages: list[dict[str, str]]) -> int:
    """Prompt tokens by the local chat template; 0 for backends without one (remote servers)."""
    prompt_ids = getattr(generator, "prompt_ids", None)
    return len(prompt_ids(messages)[0]) if prompt_ids is not None else 0


def _prepare_rag(
    rag: RagApp, question: str, history: list[dict[str, str]], top_k: int | None, filters: dict[str, Any] | None,
    config: GenerationConfig,
) -> _Answer:
    """Retrieve (with the follow-up condensed against history) and build the answer stream."""
    try:
        hits: list[SearchHit] = rag.retrieve(condense_query(question, history), top_k, filters)
    except ValueError as exc:  # empty query, unsupported filter field
        raise ApiError(400, str(exc)) from exc
    prompt_tokens = _prompt_tokens(rag.generator, rag.messages(question, hits, history)) if hits else 0

    reported: dict[str, int] = {}

    def events(cancel: threading.Event) -> Iterator[RagEvent]:
        return rag.stream_with_hits(question, hits, history=history, config=config, cancel=cancel, usage=reported)

    return _Answer(events, rag.generator, prompt_tokens, config.max_new_tokens, len(hits), reported)


def _prepare_plain(generator: Generator, messages: list[dict[str, str]], config: GenerationConfig) -> _Answer:
    try:
        prompt_tokens = _prompt_tokens(generator, messages)
    except Exception as exc:  # the chat template rejects the message sequence
        raise ApiError(400, f"messages cannot be formatted for this model: {exc}", param="messages") from exc

    reported: dict[str, int] = {}

    def events(cancel: threading.Event) -> Iterator[RagEvent]:
        with closing(stream_reporting_usage(generator, messages, config, cancel, reported)) as pieces:
            for piece in pieces:
                yield RagEvent("token", piece)

    return _Answer(events, generator, prompt_tokens, config.max_new_tokens, reported=reported)


@dataclasses.dataclass
class _Streamed:
    """What an answer stream gave so far: the text, the references, whether it ran to its end."""

    text: str = ""
    references: list[dict[str, Any]] | None = None
    complete: bool = False


async def _tokens(answer: _Answer, request: Request, out: _Streamed) -> AsyncIterator[str]:
    """Each token's text as it comes (see :func:`pump`); ``out`` collects the text and the references."""
    async for ev in pump(answer.events, request):
        if ev.type == "token":
            out.text += ev.text
            yield ev.text
        else:
            out.references = ev.references


async def _collect(answer: _Answer, request: Request, out: _Streamed, slot: Slot) -> bool:
    """Run ``answer`` to its end into ``out``, then free ``slot``; False when the client left first."""
    try:
        async for _ in _tokens(answer, request, out):
            pass
    except ClientGone:
        return False
    finally:
        slot.release()
    return True


async def _sse_tokens(
    answer: _Answer, request: Request, out: _Streamed,
    token_event: Callable[[str], str], error_event: Callable[[dict[str, Any]], str],
) -> AsyncIterator[str]:
    """``token_event(text)`` per token; ``out.complete`` only when the answer ran to its end.

    A client that has gone ends the stream quietly; a generation failure is logged and sent as
    ``error_event(error body)``.
    """
    try:
        async for text in _tokens(answer, request, out):
            yield token_event(text)
    except ClientGone:
        return
    except Exception as exc:
        log.exception("generation failed", exc_info=exc)
        yield error_event(error_body("generation failed", "server_error", "internal_error"))
        return
    out.complete = True


# -- the application ------------------------------------------------------------------------------
def create_api(
    ws: Workspace,
    *,
    require_keys: bool | None = None,
    max_concurrent: int | None = None,
    queue_timeout: float | None = None,
) -> FastAPI:
    """The HTTP API over one workspace.

    ``require_keys=None`` requires a key once any key exists (checked per request, so a key created
    while the server runs takes effect at once).
    """
    api = FastAPI(
        title="domainrag",
        summary="RAG apps over your own documents, with an OpenAI-compatible chat endpoint.",
        version="0.1.0",
    )
    limit = max_concurrent or int(os.environ.get("DOMAINRAG_MAX_CONCURRENT", DEFAULT_MAX_CONCURRENT))
    wait_s = queue_timeout if queue_timeout is not None else float(
        os.environ.get("DOMAINRAG_QUEUE_TIMEOUT", DEFAULT_QUEUE_TIMEOUT_S))
    cache = AppCache(ws)
    limiter = Limiter(limit, wait_s)
    sessions = SessionStore(ws.settings.workspace / "sessions.db")
    api.state.ws, api.state.apps, api.state.limiter, api.state.sessions = ws, cache, limiter, sessions
    _install_error_handlers(api)
    bearer = HTTPBearer(auto_error=False, description="an API key from `domainrag key create` (dr-...)")

    def authenticate(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> ApiKey | None:
        required = require_keys if require_keys is not None else keys_exist(ws)
        if not required:
            return None
        unauthorized = {"WWW-Authenticate": "Bearer"}
        if creds is None:
            raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", type="authentication_error",
                           code="missing_api_key", headers=unauthorized)
        key = verify_key(ws, creds.credentials)
        if key is None:
            raise ApiError(401, "invalid or revoked API key", type="authentication_error", code="invalid_api_key",
                           headers=unauthorized)
        return key

    Key = Annotated[ApiKey | None, Depends(authenticate)]

    def check_app(key: ApiKey | None, app: str) -> None:
        if key is not None and not key.allows_app(app):
            raise ApiError(403, f"this API key does not grant app '{app}'", type="permission_error",
                           code="app_not_allowed")

    def visible_apps(key: ApiKey | None) -> list[dict[str, Any]]:
        return [a for a in ws.catalog.list("app") if key is None or key.allows_app(a["name"])]

    # -- open endpoints ---------------------------------------------------------------------------
    @api.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        """Liveness probe; never needs a key."""
        return {"status": "ok"}

    @api.get("/", include_in_schema=False)
    def playground() -> HTMLResponse:
        page = resources.files("domainrag.serving").joinpath("static/playground.html").read_text(encoding="utf-8")
        return HTMLResponse(page)

    # -- catalogue views --------------------------------------------------------------------------
    @api.get("/v1/models", tags=["catalogue"])
    def list_models(key: Key) -> dict[str, Any]:
        """OpenAI model list: plain LLMs (for `*` keys or open servers) and `app:<name>` entries."""
        data = []
        if key is None or key.allows_models:
            records = {r["name"]: r for r in ws.catalog.list("model")}
            for name in llm_names(ws):
                rec = records.get(name)
                data.append({"id": name, "object": "model", "created": int(rec["created_at"]) if rec else 0,
                             "owned_by": "domainrag" if rec else "base-model"})
        for a in visible_apps(key):
            data.append({"id": APP_MODEL_PREFIX + a["name"], "object": "model", "created": int(a["created_at"]),
                         "owned_by": "domainrag-app"})
        return {"object": "list", "data": data}

    def app_view(a: dict[str, Any]) -> dict[str, Any]:
        r = a["retrieval"]
        return {"name": a["name"], "model": a["model"], "index": r["index"], "mode": r.get("mode"),
                "top_k": r.get("top_k"), "created_at": a["created_at"], "updated_at": a["updated_at"]}

    @api.get("/v1/apps", tags=["catalogue"])
    def list_apps(key: Key) -> dict[str, Any]:
        """Apps this key may use."""
        return {"object": "list", "data": [app_view(a) for a in visible_apps(key)]}

    @api.get("/v1/apps/{app}", tags=["catalogue"])
    def show_app(app: str, key: Key) -> dict[str, Any]:
        check_app(key, app)
        record = ws.catalog.get("app", app)
        if record is None:
            raise ApiError(404, f"app '{app}' not found", code="app_not_found")
        return app_view(record)

    @api.get("/v1/indexes", tags=["catalogue"])
    def list_indexes(key: Key) -> dict[str, Any]:
        """Indexes behind the apps this key may use (all of them for open servers and `*` keys)."""
        allowed = None if key is None or key.allows_models else {a["retrieval"]["index"] for a in visible_apps(key)}
        data = [
            {"name": r["name"], "embedding_model": r.get("embedding_model"), "dimension": r.get("dimension"),
             "chunks": r.get("chunks"), "documents": r.get("documents"), "store": (r.get("store") or {}).get("type")}
            for r in ws.catalog.list("index") if allowed is None or r["name"] in allowed
        ]
        return {"object": "list", "data": data}

    # -- app completion ---------------------------------------------------------------------------
    @api.post("/v1/apps/{app}/completion", tags=["apps"], responses={
        200: {"content": {"text/event-stream": {}}, "description": "JSON answer, or SSE events when stream=true"}})
    async def completion(app: str, body: CompletionRequest, request: Request, key: Key) -> Response:
        """Answer one question from the app's knowledge base (optionally streamed, optionally in a session)."""
        check_app(key, app)
        rag = await run_in_threadpool(cache.get, app)
        slot = await limiter.acquire()
        try:
            session_id = await run_in_threadpool(sessions.open, body.session_id, app, key.id if key else "")
            history = await run_in_threadpool(sessions.history, session_id)
            answer = await run_in_threadpool(_prepare_rag, rag, body.query, history, body.top_k, body.filters,
                                             rag.generation.to_generation_config())
        except BaseException:
            slot.release()
            raise

        if not body.stream:
            got = _Streamed(references=[])
            if not await _collect(answer, request, got, slot):
                return Response(status_code=499)
            text = strip_invalid_citations(got.text, answer.n_hits)
            await run_in_threadpool(sessions.append, session_id, body.query, text)
            return JSONResponse({"answer": text, "references": got.references, "session_id": session_id})

        async def events() -> AsyncIterator[str]:
            got = _Streamed(references=[])
            async for event in _sse_tokens(answer, request, got, lambda text: sse({"type": "token", "text": text}),
                                           lambda error: sse({"type": "error", **error})):
                yield event
            if not got.complete:
                return
            await run_in_threadpool(sessions.append, session_id, body.query,
                                    strip_invalid_citations(got.text, answer.n_hits))
            yield sse({"type": "references", "references": got.references, "session_id": session_id})
            yield sse("[DONE]")

        return _SlotStream(events(), slot, headers={**_SSE_HEADERS, "X-Session-Id": session_id})

    # -- OpenAI-compatible chat -------------------------------------------------------------------
    @api.post("/v1/chat/completions", tags=["openai"], responses={
        200: {"content": {"text/event-stream": {}}, "description": "chat.completion, or chunks when stream=true"}})
    async def chat_completions(body: ChatRequest, request: Request, key: Key) -> Response:
        """OpenAI chat completions; `model` is an LLM or `app:<name>` (answers grounded in the app's index)."""
        requested = body.max_completion_tokens or body.max_tokens
        session_id: str | None = None
        if body.model.startswith(APP_MODEL_PREFIX):
            app = body.model[len(APP_MODEL_PREFIX):]
            check_app(key, app)
            rag = await run_in_threadpool(cache.get, app)
            *earlier, last = body.messages
            if last.role != "user" or not last.text().strip():
                raise ApiError(400, "the last message must be a non-empty user message", param="messages")
            history = [{"role": m.role, "content": m.text()} for m in earlier if m.role in ("user", "assistant")]
            base = rag.generation.to_generation_config()
            config = dataclasses.replace(
                base,
                temperature=base.temperature if body.temperature is None else body.temperature,
                top_p=body.top_p or base.top_p,
                max_new_tokens=min(base.max_new_tokens, requested or base.max_new_tokens),
            )
            slot = await limiter.acquire()
            try:
                if body.session_id is not None:
                    session_id = await run_in_threadpool(sessions.open, body.session_id, app, key.id if key else "")
                    history = await run_in_threadpool(sessions.history, session_id) + history
                answer = await run_in_threadpool(_prepare_rag, rag, last.text(), history, body.top_k, body.filters,
                                                 config)
            except BaseException:
                slot.release()
                raise
            question = last.text()
        else:
            if key is not None and not key.allows_models:
                raise ApiError(403, "this API key grants an app only; use model 'app:<name>'",
                               type="permission_error", code="model_not_allowed")
            generator = await run_in_threadpool(cache.model, body.model)
            messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                        for m in body.messages if m.role in ("system", "developer", "user", "assistant")]
            if not any(m["role"] == "user" for m in messages):
                raise ApiError(400, "messages must include a user message", param="messages")
            config = GenerationConfig(
                temperature=GenerationConfig.temperature if body.temperature is None else body.temperature,
                top_p=body.top_p or GenerationConfig.top_p, max_new_tokens=requested or DEFAULT_CHAT_MAX_TOKENS)
            slot = await limiter.acquire()
            try:
                answer = await run_in_threadpool(_prepare_plain, generator, messages, config)
            except BaseException:
                slot.release()
                raise
            question = ""

        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        extra: dict[str, Any] = {"session_id": session_id} if session_id else {}

        def finish_reason(usage: dict[str, int]) -> str:
            return "length" if usage["completion_tokens"] >= answer.max_new_tokens else "stop"

        def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> str:
            return sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model,
                        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **more})

        async def remember(text: str) -> None:
            if session_id is not None:
                await run_in_threadpool(sessions.append, session_id, question, text)

        if not body.stream:
            got = _Streamed()
            if not await _collect(answer, request, got, slot):
                return Response(status_code=499)
            text, refs = got.text, got.references
            if refs is not None:
                text = strip_invalid_citations(text, answer.n_hits)
                extra["references"] = refs
            await remember(text)
            usage = await run_in_threadpool(answer.usage, text)
            return JSONResponse({
                "id": cid, "object": "chat.completion", "created": created, "model": body.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                             "finish_reason": finish_reason(usage)}],
                "usage": usage, **extra,
            })

        async def events() -> AsyncIterator[str]:
            got = _Streamed()
            yield chunk({"role": "assistant", "content": ""})
            async for event in _sse_tokens(answer, request, got, lambda text: chunk({"content": text}), sse):
                yield event
            if not got.complete:
                return
            text, refs = got.text, got.references
            if refs is not None:
                extra["references"] = refs
            await remember(strip_invalid_citations(text, answer.n_hits) if refs is not None else text)
            usage = await run_in_threadpool(answer.usage, text)
            yield chunk({}, finish_reason(usage), **extra)
            if body.stream_options and body.stream_options.include_usage:
                yield sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model,
                           "choices": [], "usage": usage})
            yield sse("[DONE]")

        headers = {**_SSE_HEADERS, **({"X-Session-Id": session_id} if session_id else {})}
        return _SlotStream(events(), slot, headers=headers)

    # -- OpenAI-compatible embeddings -------------------------------------------------------------
    @api.post("/v1/embeddings", tags=["openai"])
    async def embeddings(body: EmbeddingRequest, key: Key) -> dict[str, Any]:
        """OpenAI embeddings with a registered or base embedding model (app keys: their index's model only)."""
        texts = body.texts()
        if key is not None and not key.allows_models:
            allowed = sorted({idx["embedding_model"] for a in visible_apps(key)
                              if (idx := ws.catalog.get("index", a["retrieval"]["index"])) is not None})
            if body.model not in allowed:
                raise ApiError(403, "this API key may only embed with its app's index model "
                               f"({', '.join(allowed) or 'none'})", type="permission_error",
                               code="model_not_allowed", param="model")
        elif body.model not in await run_in_threadpool(embedding_names, ws):
            raise ApiError(404, f"embedding model '{body.model}' does not exist", code="model_not_found",
                           param="model")
        slot = await limiter.acquire()
        try:
            embedder = await run_in_threadpool(ws.embedder, body.model)
            if body.dimensions is not None and body.dimensions != embedder.dimension:
                raise ApiError(400, f"model '{body.model}' produces {embedder.dimension}-dimensional vectors; "
                               "other dimensions are not supported", param="dimensions")
            vectors, tokens = await run_in_threadpool(_embed, embedder, texts)
        finally:
            slot.release()

        def encode(vec: np.ndarray) -> list[float] | str:
            if body.encoding_format == "base64":  # little-endian float32, as OpenAI's SDKs decode it
                return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
            return vec.tolist()

        return {"object": "list", "model": body.model,
                "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    return api
