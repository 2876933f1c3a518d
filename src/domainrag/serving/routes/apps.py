"""App completion: ``POST /v1/apps/{app}/completion``, a grounded answer as JSON or as SSE events.

Streamed as ``data: {"type": "token", ...}`` events, one ``{"type": "references", ...}`` event carrying
the ``session_id``, then ``[DONE]``. Pass the returned ``session_id`` back to continue a conversation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from domainrag.data.prompts import strip_invalid_citations
from domainrag.serving.answer import prepare_rag
from domainrag.serving.auth import KeyDep, check_app
from domainrag.serving.limits import SlotDep
from domainrag.serving.schemas import CompletionRequest
from domainrag.serving.state import AppsDep, SessionsDep
from domainrag.serving.streaming import SSE_HEADERS, Streamed, collect, sse, sse_tokens

router = APIRouter(tags=["apps"])


@router.post("/v1/apps/{app}/completion", responses={
    200: {"content": {"text/event-stream": {}}, "description": "JSON answer, or SSE events when stream=true"}})
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

    if not body.stream:
        got = Streamed(references=[])
        if not await collect(answer.events, request, got):
            return Response(status_code=499)
        text = strip_invalid_citations(got.text, answer.n_hits)
        await run_in_threadpool(sessions.append, session_id, body.query, text)
        return JSONResponse({"answer": text, "references": got.references, "grounding": got.grounding,
                             "session_id": session_id})

    async def events() -> AsyncIterator[str]:
        got = Streamed(references=[])
        async for event in sse_tokens(answer.events, request, got, lambda text: sse({"type": "token", "text": text}),
                                      lambda error: sse({"type": "error", **error})):
            yield event
        if not got.complete:
            return
        await run_in_threadpool(sessions.append, session_id, body.query,
                                strip_invalid_citations(got.text, answer.n_hits))
        yield sse({"type": "references", "references": got.references, "grounding": got.grounding,
                   "session_id": session_id})
        yield sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={**SSE_HEADERS, "X-Session-Id": session_id})
