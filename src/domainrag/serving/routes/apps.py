"""App completion: ``POST /v1/apps/{app}/completion``, a grounded answer as JSON or as SSE events.

Streamed as ``data: {"type": "token", ...}`` events, one ``{"type": "references", ...}`` event carrying the
cited ``references``, every passage the model was given (``passages``, each full, cited ones marked),
the ``finish_reason`` ("length": cut at the token limit) and the ``session_id``, then ``[DONE]``. The
non-streamed answer has the same fields. Pass the returned ``session_id`` back to continue a conversation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from domainrag.data.prompts import strip_invalid_citations
from domainrag.serving.answer import prepare_rag
from domainrag.serving.auth import KeyDep, check_app
from domainrag.serving.limits import SlotDep
from domainrag.serving.schemas import GENERATION_ERRORS, AppAnswer, CompletionRequest
from domainrag.serving.state import AppsDep, SessionsDep
from domainrag.serving.streaming import SSE_HEADERS, Streamed, collect, sse, sse_tokens

router = APIRouter(tags=["apps"])


@router.post("/v1/apps/{app}/completion", responses={
    200: {"model": AppAnswer, "content": {"text/event-stream": {}},
          "description": "the answer, or with stream=true server-sent token events, one references event "
                         "(the answer's other fields) and [DONE]"},
    **GENERATION_ERRORS})
async def completion(
    app: str, body: CompletionRequest, request: Request, key: KeyDep, apps: AppsDep, sessions: SessionsDep,
    slot: SlotDep,
) -> Response:
    """Answer one question from the app's knowledge base (optionally streamed, optionally in a session)."""
    check_app(key, app)
    rag = await run_in_threadpool(apps.get, app)
    await slot.acquire()
    session_id = await run_in_threadpool(sessions.open, body.session_id, app, key.id if key else "")
    history = await run_in_threadpool(sessions.history, session_id)
    answer = await run_in_threadpool(prepare_rag, rag, body.query, history, body.top_k, body.filters,
                                     rag.generation.to_generation_config())

    async def ending(got: Streamed, text: str) -> dict[str, Any]:
        """The answer's fields besides its text: sources, passages given, why it ended, its session."""
        usage = await run_in_threadpool(answer.usage, got.text)
        finish = "length" if got.cut else answer.finish_reason(usage)
        return {"references": got.references, "passages": answer.passages(text), "grounding": got.grounding,
                "finish_reason": finish, "session_id": session_id}

    if not body.stream:
        got = Streamed(references=[])
        if not await collect(answer.events, request, got):
            return Response(status_code=499)
        text = strip_invalid_citations(got.text, answer.n_hits)
        await run_in_threadpool(sessions.append, session_id, body.query, text)
        return JSONResponse({"answer": text, **await ending(got, text)})

    async def events() -> AsyncIterator[str]:
        got = Streamed(references=[])
        async for event in sse_tokens(answer.events, request, got, lambda text: sse({"type": "token", "text": text}),
                                      lambda error: sse({"type": "error", **error})):
            yield event
        if not got.complete:
            return
        text = strip_invalid_citations(got.text, answer.n_hits)
        await run_in_threadpool(sessions.append, session_id, body.query, text)
        yield sse({"type": "references", **await ending(got, text)})
        yield sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={**SSE_HEADERS, "X-Session-Id": session_id})
