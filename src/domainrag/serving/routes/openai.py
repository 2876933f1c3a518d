"""OpenAI-compatible endpoints: ``POST /v1/chat/completions`` and ``POST /v1/embeddings``.

Chat: ``model`` is an LLM (plain chat) or ``app:<name>`` (RAG: the last user message is the question,
earlier ones are history; the cited sources are the message's ``annotations``, OpenAI's ``url_citation``
objects, and ride along in full in an extra ``references`` field; LangChain, which drops both, reads them from
the ``X-Domainrag-Citations`` header of a non-streamed answer). A client's system
messages are dropped for apps: the app's grounding prompt is never replaced. Embeddings: ``model`` is a
registered or base embedding model (or one an index uses), ``input`` a string or a list of strings;
``encoding_format`` float or base64.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from domainrag.data.prompts import strip_invalid_citations
from domainrag.serving.answer import PreparedAnswer, prepare_plain, prepare_rag
from domainrag.serving.auth import KeyDep, check_app, check_models, visible_apps
from domainrag.serving.budget import check_input_chars
from domainrag.serving.cache import AppCache, embedding_names
from domainrag.serving.citations import url_citations
from domainrag.serving.generator import GenerationConfig
from domainrag.serving.http_errors import ApiError
from domainrag.serving.keys import ApiKey
from domainrag.serving.limits import GenerationSlot, SlotDep
from domainrag.serving.schemas import (
    APP_MODEL_PREFIX,
    GENERATION_ERRORS,
    ChatCompletion,
    ChatRequest,
    EmbeddingRequest,
)
from domainrag.serving.sessions import SessionStore
from domainrag.serving.state import AppsDep, SessionsDep, WorkspaceDep
from domainrag.serving.streaming import SSE_HEADERS, Streamed, collect, sse, sse_tokens

DEFAULT_CHAT_MAX_TOKENS = 256
CITATIONS_HEADER = "X-Domainrag-Citations"
"""Response header of a non-streamed app answer: its ``annotations`` as JSON (for clients that drop them)."""
MAX_CITATIONS_HEADER = 8192

log = logging.getLogger(__name__)
router = APIRouter(tags=["openai"])


@dataclasses.dataclass
class PreparedChat:
    """A chat request made ready: its answer, and the app session it continues (apps only)."""

    answer: PreparedAnswer
    question: str = ""
    session_id: str | None = None
    is_app: bool = False

    def finish_reason(self, got: Streamed, usage: dict[str, int]) -> str:
        """"length" when cut at ``max_tokens`` or the generation deadline, else "stop"."""
        return "length" if got.cut else self.answer.finish_reason(usage)


def _sampling(body: ChatRequest, config: GenerationConfig) -> GenerationConfig:
    """``config`` with the request's stop sequences, seed and penalties (every backend honours them)."""
    return dataclasses.replace(config, stop=body.stop_sequences(), seed=body.seed,
                               presence_penalty=body.presence_penalty or 0.0,
                               frequency_penalty=body.frequency_penalty or 0.0)


async def _app_chat(body: ChatRequest, app: str, key: ApiKey | None, apps: AppCache, sessions: SessionStore,
                    slot: GenerationSlot) -> PreparedChat:
    check_app(key, app)
    rag = await run_in_threadpool(apps.get, app)
    *earlier, last = body.messages
    if last.role != "user" or not last.text().strip():
        raise ApiError(400, "the last message must be a non-empty user message", param="messages")
    history = [{"role": m.role, "content": m.text()} for m in earlier if m.role in ("user", "assistant")]
    base = rag.generation.to_generation_config()
    requested = body.max_completion_tokens or body.max_tokens
    config = _sampling(body, dataclasses.replace(
        base,
        temperature=base.temperature if body.temperature is None else body.temperature,
        top_p=body.top_p or base.top_p,
        max_new_tokens=min(base.max_new_tokens, requested or base.max_new_tokens),
    ))
    await slot.acquire()
    session_id = None
    if body.session_id is not None:
        session_id = await run_in_threadpool(sessions.open, body.session_id, app, key.id if key else "")
        history = await run_in_threadpool(sessions.history, session_id) + history
    answer = await run_in_threadpool(prepare_rag, rag, last.text(), history, body.top_k, body.filters, config)
    return PreparedChat(answer, last.text(), session_id, is_app=True)


async def _plain_chat(body: ChatRequest, key: ApiKey | None, apps: AppCache, slot: GenerationSlot) -> PreparedChat:
    check_models(key)
    generator = await run_in_threadpool(apps.model, body.model)
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                for m in body.messages if m.role in ("system", "developer", "user", "assistant")]
    if not any(m["role"] == "user" for m in messages):
        raise ApiError(400, "messages must include a user message", param="messages")
    requested = body.max_completion_tokens or body.max_tokens
    config = _sampling(body, GenerationConfig(
        temperature=GenerationConfig.temperature if body.temperature is None else body.temperature,
        top_p=body.top_p or GenerationConfig.top_p, max_new_tokens=requested or DEFAULT_CHAT_MAX_TOKENS))
    await slot.acquire()
    return PreparedChat(await run_in_threadpool(prepare_plain, generator, messages, config))


async def prepare_chat(body: ChatRequest, key: ApiKey | None, apps: AppCache, sessions: SessionStore,
                       slot: GenerationSlot) -> PreparedChat:
    """Check a chat request (or a legacy completion made one) and make its answer ready to stream."""
    body.check_supported()
    check_input_chars([m.text() for m in body.messages])
    if body.model.startswith(APP_MODEL_PREFIX):
        return await _app_chat(body, body.model[len(APP_MODEL_PREFIX):], key, apps, sessions, slot)
    return await _plain_chat(body, key, apps, slot)


def citations_header(annotations: list[dict[str, Any]]) -> dict[str, str]:
    """The annotations again as an ASCII JSON header: LangChain's ChatOpenAI drops message annotations and extra
    fields but keeps response headers (``include_response_headers=True``) in ``response_metadata["headers"]``."""
    value = json.dumps(annotations, ensure_ascii=True, separators=(",", ":"))
    if len(value) > MAX_CITATIONS_HEADER:  # HTTP clients refuse oversized header blocks (h11: 16 KiB in all)
        log.warning("citations header left out: %d bytes (limit %d)", len(value), MAX_CITATIONS_HEADER)
        return {}
    return {CITATIONS_HEADER: value}


@router.post("/v1/chat/completions", responses={
    200: {"model": ChatCompletion, "content": {"text/event-stream": {}},
          "description": "a chat.completion, or with stream=true server-sent chat.completion.chunk events and "
                         f"[DONE]; an app's non-streamed answer also sends its annotations in {CITATIONS_HEADER}"},
    **GENERATION_ERRORS})
async def chat_completions(
    body: ChatRequest, request: Request, key: KeyDep, apps: AppsDep, sessions: SessionsDep, slot: SlotDep,
) -> Response:
    """OpenAI chat completions; `model` is an LLM or `app:<name>` (answers grounded in the app's index)."""
    chat = await prepare_chat(body, key, apps, sessions, slot)
    answer = chat.answer
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    extra: dict[str, Any] = {"session_id": chat.session_id} if chat.session_id else {}

    def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> str:
        return sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **more})

    async def remember(text: str) -> None:
        if chat.session_id is not None:
            await run_in_threadpool(sessions.append, chat.session_id, chat.question, text)

    if not body.stream:
        got = Streamed()
        if not await collect(answer.events, request, got):
            return Response(status_code=499)
        text, refs = got.text, got.references
        message: dict[str, Any] = {"role": "assistant", "content": text}
        headers: dict[str, str] = {}
        if refs is not None:
            text = strip_invalid_citations(text, answer.n_hits)
            message.update(content=text, annotations=url_citations(text, refs))
            extra["references"], extra["grounding"] = refs, got.grounding
            headers = citations_header(message["annotations"])
        await remember(text)
        usage = await run_in_threadpool(answer.usage, text)
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": created, "model": body.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": chat.finish_reason(got, usage)}],
            "usage": usage, **extra,
        }, headers=headers)

    async def events() -> AsyncIterator[str]:
        got = Streamed()
        yield chunk({"role": "assistant", "content": ""})
        async for event in sse_tokens(answer.events, request, got, lambda text: chunk({"content": text}), sse):
            yield event
        if not got.complete:
            return
        text, refs = got.text, got.references
        last: dict[str, Any] = {}
        if refs is not None:  # the spans are those of the text streamed
            last["annotations"] = url_citations(text, refs)
            extra["references"], extra["grounding"] = refs, got.grounding
        await remember(strip_invalid_citations(text, answer.n_hits) if refs is not None else text)
        usage = await run_in_threadpool(answer.usage, text)
        yield chunk(last, chat.finish_reason(got, usage), **extra)
        if body.stream_options and body.stream_options.include_usage:
            yield sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model,
                       "choices": [], "usage": usage})
        yield sse("[DONE]")

    headers = {**SSE_HEADERS, **({"X-Session-Id": chat.session_id} if chat.session_id else {})}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _embed(embedder: Any, texts: list[str]) -> tuple[np.ndarray, int]:
    """Normalised vectors (as the indexes store them) and the number of tokens embedded."""
    model = embedder.model
    tokens = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
    return embedder.encode(texts), sum(len(t) for t in tokens)


@router.post("/v1/embeddings", responses=GENERATION_ERRORS)
async def embeddings(body: EmbeddingRequest, ws: WorkspaceDep, key: KeyDep, slot: SlotDep) -> dict[str, Any]:
    """OpenAI embeddings with a registered or base embedding model (app keys: their index's model only)."""
    texts = body.texts()
    if key is not None and not key.allows_models:
        allowed = sorted({idx["embedding_model"] for a in visible_apps(ws, key)
                          if (idx := ws.catalog.get("index", a.retrieval.index)) is not None})
        if body.model not in allowed:
            raise ApiError(403, "this API key may only embed with its app's index model "
                           f"({', '.join(allowed) or 'none'})", type="permission_error",
                           code="model_not_allowed", param="model")
    elif body.model not in await run_in_threadpool(embedding_names, ws):
        raise ApiError(404, f"embedding model '{body.model}' does not exist", code="model_not_found",
                       param="model")
    await slot.acquire()
    embedder = await run_in_threadpool(ws.embedder, body.model)
    if body.dimensions is not None and body.dimensions != embedder.dimension:
        raise ApiError(400, f"model '{body.model}' produces {embedder.dimension}-dimensional vectors; "
                       "other dimensions are not supported", param="dimensions")
    vectors, tokens = await run_in_threadpool(_embed, embedder, texts)

    def encode(vec: np.ndarray) -> list[float] | str:
        if body.encoding_format == "base64":  # little-endian float32, as OpenAI's SDKs decode it
            return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
        return vec.tolist()

    return {"object": "list", "model": body.model,
            "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
