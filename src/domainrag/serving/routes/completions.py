"""OpenAI's legacy completions: ``POST /v1/completions`` (``prompt`` in, ``text`` out).

LlamaIndex's ``OpenAILike`` and other older clients call it by default. ``model`` is an LLM or ``app:<name>``;
the prompt goes to the model as one user message (the served LLMs are chat models, so their chat template
applies), or is the app's question (the answer grounded in its index, its sources in an extra ``references``
field). Everything else (stop, seed, penalties, limits, keys, errors) is the chat route's, see
:mod:`domainrag.serving.routes.openai`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from domainrag.data.prompts import strip_invalid_citations
from domainrag.serving.auth import KeyDep
from domainrag.serving.limits import SlotDep
from domainrag.serving.routes.openai import prepare_chat
from domainrag.serving.schemas import GENERATION_ERRORS, TextCompletion, TextCompletionRequest
from domainrag.serving.state import AppsDep, SessionsDep
from domainrag.serving.streaming import SSE_HEADERS, Streamed, collect, sse, sse_tokens

router = APIRouter(tags=["openai"])


@router.post("/v1/completions", responses={
    200: {"model": TextCompletion, "content": {"text/event-stream": {}},
          "description": "a text_completion, or with stream=true server-sent text_completion chunks and [DONE]"},
    **GENERATION_ERRORS})
async def completions(
    body: TextCompletionRequest, request: Request, key: KeyDep, apps: AppsDep, sessions: SessionsDep, slot: SlotDep,
) -> Response:
    """OpenAI legacy completions; `model` is an LLM or `app:<name>` (the prompt is then the question)."""
    chat = await prepare_chat(body.to_chat(), key, apps, sessions, slot)
    answer = chat.answer
    cid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

    def completion(text: str, finish: str | None, **more: Any) -> dict[str, Any]:
        return {"id": cid, "object": "text_completion", "created": created, "model": body.model,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}], **more}

    if not body.stream:
        got = Streamed()
        if not await collect(answer.events, request, got):
            return Response(status_code=499)
        text, extra = got.text, {}
        if got.references is not None:
            text = strip_invalid_citations(text, answer.n_hits)
            extra["references"] = got.references
        usage = await run_in_threadpool(answer.usage, text)
        return JSONResponse(completion(text, chat.finish_reason(got, usage), usage=usage, **extra))

    async def events() -> AsyncIterator[str]:
        got = Streamed()
        async for event in sse_tokens(answer.events, request, got, lambda text: sse(completion(text, None)), sse):
            yield event
        if not got.complete:
            return
        extra = {"references": got.references} if got.references is not None else {}
        usage = await run_in_threadpool(answer.usage, got.text)
        yield sse(completion("", chat.finish_reason(got, usage), **extra))
        if body.stream_options and body.stream_options.include_usage:  # as OpenAI: a last chunk, no choices
            yield sse({**completion("", None), "choices": [], "usage": usage})
        yield sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)
