"""Driving a blocking answer stream from async routes: the worker-thread pump, SSE framing, disconnects.

Generation runs in worker threads, one token at a time, keeping the event loop free; between tokens
the client is checked, and when it has gone the model is told to stop (its cancel event is set).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from fastapi import Request

from domainrag.serving.budget import generation_timeout
from domainrag.serving.http_errors import error_body
from domainrag.serving.rag import RagEvent
from domainrag.serving.tracing import current_trace

log = logging.getLogger(__name__)

T = TypeVar("T")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
Events = Callable[[threading.Event], Iterator[RagEvent]]
"""Starts one answer's event stream; setting the event passed in stops the model."""


class ClientGone(Exception):
    """The client disconnected while its answer was being generated."""


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event carrying ``data`` (JSON, or a bare string such as ``[DONE]``)."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


class DeadlinePassed(Exception):
    """The generation ran past ``DOMAINRAG_GENERATION_TIMEOUT`` (see :mod:`domainrag.serving.budget`)."""


async def pump(make: Callable[[threading.Event], Iterator[T]], request: Request) -> AsyncIterator[T]:
    """Drive a blocking iterator in worker threads, one item at a time, keeping the loop free.

    Between items the client and the generation deadline are checked; when the client has gone (or
    this task is cancelled, or the deadline passed) the cancel event passed to ``make`` is set, which
    stops the model at its next token. Waiting for an item also ends at the deadline.
    """
    cancel = threading.Event()
    items = make(cancel)
    done = object()
    deadline = time.monotonic() + generation_timeout()
    try:
        while True:
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())) as waited:
                item = await anyio.to_thread.run_sync(next, items, done, abandon_on_cancel=True)
            if waited.cancelled_caught:
                raise DeadlinePassed
            if item is done:
                break
            yield item  # type: ignore[misc]
            if await request.is_disconnected():
                raise ClientGone
            if time.monotonic() > deadline:
                raise DeadlinePassed
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


@dataclass
class Streamed:
    """What an answer stream gave so far: the text, the references, whether it ran to its end."""

    text: str = ""
    references: list[dict[str, Any]] | None = None
    grounding: dict[str, Any] | None = None  # the answer's per-sentence support (serving.grounding)
    complete: bool = False
    cut: bool = False  # stopped at the generation deadline (the answer ends with finish_reason "length")


async def _tokens(events: Events, request: Request, out: Streamed) -> AsyncIterator[str]:
    """Each token's text as it comes (see :func:`pump`); ``out`` collects the text and the references.

    Each piece is timed on the request's trace (time to first token, inter-token latency).
    """
    trace = current_trace()
    try:
        async for ev in pump(events, request):
            if ev.type == "token":
                if trace is not None and ev.text:
                    trace.token()
                out.text += ev.text
                yield ev.text
            else:
                out.references, out.grounding = ev.references, ev.grounding
    except DeadlinePassed:
        log.warning("generation stopped at its deadline (%g s)", generation_timeout())
        out.cut = True


async def collect(events: Events, request: Request, out: Streamed) -> bool:
    """Run an answer to its end into ``out``; False when the client left first."""
    try:
        async for _ in _tokens(events, request, out):
            pass
    except ClientGone:
        return False
    out.complete = True
    return True


async def sse_tokens(
    events: Events, request: Request, out: Streamed,
    token_event: Callable[[str], str], error_event: Callable[[dict[str, Any]], str],
) -> AsyncIterator[str]:
    """``token_event(text)`` per token; ``out.complete`` only when the answer ran to its end.

    A client that has gone ends the stream quietly; a generation failure is logged and sent as
    ``error_event(error body)``.
    """
    try:
        async for text in _tokens(events, request, out):
            yield token_event(text)
    except ClientGone:
        return
    except Exception as exc:
        log.exception("generation failed", exc_info=exc)
        yield error_event(error_body("generation failed", "server_error", "internal_error"))
        return
    out.complete = True
