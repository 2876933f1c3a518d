"""Input limits and prompt fitting: no single request can hold a model for longer than its context allows.

* The request body is capped (``DOMAINRAG_MAX_BODY_BYTES``, default 1 MiB): 413 before it is parsed.
* The messages of a chat request are capped in characters (``DOMAINRAG_MAX_INPUT_CHARS``, default
  32,000 over all messages): 400.
* The prompt must fit the model's context window with the tokens asked for. The stated rule for
  apps: the oldest history turns are dropped first, then the lowest-ranked passages, until the
  prompt fits; a question that cannot fit alone is refused (400). Plain chat is refused (400) when
  it does not fit: the client's messages are never silently cut.
* A generation runs at most ``DOMAINRAG_GENERATION_TIMEOUT`` seconds (default 300): then the model is
  stopped and the answer ends with ``finish_reason: "length"``. A client that disconnects stops it
  at the next token (:mod:`domainrag.serving.streaming`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domainrag.index.base import SearchHit
from domainrag.serving.http_errors import ApiError, body_too_large, too_large_message

DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_INPUT_CHARS = 32_000
DEFAULT_GENERATION_TIMEOUT_S = 300.0


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


def max_body_bytes() -> int:
    return int(_env_number("DOMAINRAG_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))


def max_input_chars() -> int:
    return int(_env_number("DOMAINRAG_MAX_INPUT_CHARS", DEFAULT_MAX_INPUT_CHARS))


def generation_timeout() -> float:
    return _env_number("DOMAINRAG_GENERATION_TIMEOUT", DEFAULT_GENERATION_TIMEOUT_S)


def check_input_chars(texts: Sequence[str], param: str = "messages") -> None:
    """400 when the texts together exceed the character limit."""
    total, limit = sum(len(t) for t in texts), max_input_chars()
    if total > limit:
        raise ApiError(400, f"{param} hold {total} characters; the limit is {limit} "
                       "(DOMAINRAG_MAX_INPUT_CHARS)", code="input_too_long", param=param)


def context_window(generator: Any) -> int | None:
    """Tokens the model can attend to (prompt + completion), or None when unknown (remote servers)."""
    window = getattr(generator, "context_window", None)
    return int(window) if window else None


def prompt_tokens(generator: Any, messages: list[dict[str, str]]) -> int | None:
    """Prompt tokens by the backend's own chat template, or None for backends without a local tokenizer."""
    if (count := getattr(generator, "count_prompt_tokens", None)) is not None:
        return int(count(messages))
    if (prompt_ids := getattr(generator, "prompt_ids", None)) is not None:
        return len(prompt_ids(messages)[0])
    return None


def _too_long(tokens: int, max_new: int, window: int, what: str) -> ApiError:
    return ApiError(400, f"{what} holds {tokens} tokens; with max_tokens={max_new} that exceeds the model's "
                    f"context of {window} tokens", code="context_length_exceeded", param="messages")


def check_plain_fits(generator: Any, messages: list[dict[str, str]], max_new: int) -> int:
    """Prompt tokens of a plain chat (0 when not countable); 400 when it cannot fit the context."""
    tokens = prompt_tokens(generator, messages)
    window = context_window(generator)
    if tokens is not None and window is not None and tokens + max_new > window:
        raise _too_long(tokens, max_new, window, "the prompt")
    return tokens or 0


def fit_rag_prompt(
    rag: Any, question: str, hits: list[SearchHit], history: list[dict[str, str]], max_new: int
) -> tuple[list[SearchHit], list[dict[str, str]], int]:
    """Drop the oldest history turns, then the lowest-ranked passages, until the app's prompt fits.

    Returns the kept hits, the kept history and the prompt's tokens (0 when not countable).
    """
    window = context_window(rag.generator)
    tokens = prompt_tokens(rag.generator, rag.messages(question, hits, history))
    if tokens is None or window is None:
        return hits, history, tokens or 0
    while tokens + max_new > window and (history or hits):
        if history:
            history = history[2:] if len(history) > 1 else []  # one user/assistant turn at a time
        else:
            hits = hits[:-1]
        tokens = prompt_tokens(rag.generator, rag.messages(question, hits, history)) or 0
    if tokens + max_new > window:
        raise _too_long(tokens, max_new, window, "the question")
    return hits, history, tokens


class BodyLimit:
    """ASGI middleware: a request body over the limit gets 413 in OpenAI's error shape, by its Content-Length
    before anything is read, or as it streams in (a ``413`` HTTPException that the API's handlers answer).

    Written here because Starlette's own ``max_body_size`` answers an over-long Content-Length with a plain-text
    413 that bypasses the app's exception handlers.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = max_body_bytes()
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await body_too_large(limit)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise StarletteHTTPException(413, detail=too_large_message(limit))
            return message

        await self.app(scope, counted, send)
