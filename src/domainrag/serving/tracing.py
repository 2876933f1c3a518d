"""Request ids, per-request traces and access logs: the :class:`Observe` middleware and what it leaves in context.

Every response carries ``X-Request-ID``: the client's own when it sent a sane one (1-128 letters, digits
or ``._:-``), else a new one. The id rides in a context variable for the whole request, worker threads
included, so :class:`RequestIdFilter` puts it on every log line of that request. The request's
:class:`RequestTrace` collects what the metrics and the access log need (key id, model, token counts,
time to first token) from the code that knows it (:func:`current_trace`), and the middleware records
the request once its response is over. Access logs (``DOMAINRAG_ACCESS_LOG``: ``off``, ``text``,
``json``) go to the ``domainrag.access`` logger, one line per request: method, path, status,
duration, request id, key id (never the key), tokens.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domainrag.errors import DomainRagError
from domainrag.serving.metrics import Metrics

AccessLog = Literal["off", "text", "json"]
REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
access_log = logging.getLogger("domainrag.access")


@dataclass
class RequestTrace:
    """What one request did, filled in by the code that knows it; read by the metrics and the access log."""

    request_id: str
    metrics: Metrics | None = None
    start: float = field(default_factory=time.perf_counter)
    key_id: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_s: float | None = None
    _last_token: float | None = None

    def token(self) -> None:
        """A piece of generated text reached the client side: the first sets time to first token."""
        now = time.perf_counter()
        model = self.model or "unknown"
        if self._last_token is None:
            self.first_token_s = now - self.start
            if self.metrics is not None:
                self.metrics.ttft.labels(model).observe(self.first_token_s)
        elif self.metrics is not None:
            self.metrics.itl.labels(model).observe(now - self._last_token)
        self._last_token = now

    def usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        """The answer's token counts (once per generation)."""
        self.prompt_tokens = (self.prompt_tokens or 0) + prompt_tokens
        self.completion_tokens = (self.completion_tokens or 0) + completion_tokens
        if self.metrics is not None:
            model = self.model or "unknown"
            self.metrics.prompt_tokens.labels(model).inc(prompt_tokens)
            self.metrics.completion_tokens.labels(model).inc(completion_tokens)

    def retrieval_stage(self, stage: str, seconds: float) -> None:
        """One retrieval stage's time (called from the retriever, possibly on its worker threads)."""
        if self.metrics is not None:
            self.metrics.retrieval.labels(stage).observe(seconds)


_current: contextvars.ContextVar[RequestTrace | None] = contextvars.ContextVar("domainrag_request", default=None)


def current_trace() -> RequestTrace | None:
    """The trace of the request being served, or None outside a request (the CLI, tests calling apps directly)."""
    return _current.get()


def current_request_id() -> str | None:
    trace = _current.get()
    return trace.request_id if trace is not None else None


def retrieval_timer() -> Callable[[str, float], None] | None:
    """The ``on_stage`` callback for :meth:`Retriever.run` within a request, else None."""
    trace = _current.get()
    return trace.retrieval_stage if trace is not None else None


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (``-`` outside a request) to every record, for formats such as ``[%(request_id)s]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        return True


def access_log_mode(mode: str | None = None) -> AccessLog:
    """``mode``, else ``DOMAINRAG_ACCESS_LOG``, else off; anything else is a clear error."""
    value = (mode if mode is not None else os.environ.get("DOMAINRAG_ACCESS_LOG") or "off").strip().lower()
    if value not in get_args(AccessLog):
        raise DomainRagError(f"access log '{value}' is not one of off, text, json",
                             hint="set DOMAINRAG_ACCESS_LOG (or serve --access-log) to off, text or json")
    return value  # type: ignore[return-value]


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == b"x-request-id":
            text = value.decode("latin-1").strip()
            return text if _SANE_ID.fullmatch(text) else None
    return None


def _route(scope: Scope) -> str:
    """The matched route's template (bounded label values), or ``unmatched``."""
    route = scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")


class Observe:
    """ASGI middleware, outermost: request id, trace context, request metrics and the access log line.

    Pure ASGI rather than Starlette's BaseHTTPMiddleware, which would buffer nothing but runs the app in
    another task; here the trace's context variable is set in the very task that serves the request.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, access: AccessLog = "off") -> None:
        self.app, self.metrics, self.access = app, metrics, access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id  # for the 500 handler, outside this middleware
        trace = RequestTrace(request_id, self.metrics)
        token = _current.set(trace)
        status = 500  # an exception before the response started ends as a 500 (the outer handler answers it)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        failed = False
        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            failed = True
            raise
        finally:
            seconds = time.perf_counter() - trace.start
            self.metrics.observe_request(scope["method"], _route(scope), status, seconds)
            if self.access != "off":
                _log_access(self.access, scope, status, seconds, trace)
            if not failed:  # else the outer error handler still logs the exception under this request's id
                _current.reset(token)


def _log_access(mode: AccessLog, scope: Scope, status: int, seconds: float, trace: RequestTrace) -> None:
    fields: dict[str, Any] = {
        "ts": round(time.time(), 3), "request_id": trace.request_id, "method": scope["method"],
        "path": scope["path"], "route": _route(scope), "status": status, "duration_ms": round(seconds * 1000, 2),
        "key_id": trace.key_id, "model": trace.model, "prompt_tokens": trace.prompt_tokens,
        "completion_tokens": trace.completion_tokens,
        "ttft_ms": None if trace.first_token_s is None else round(trace.first_token_s * 1000, 2),
    }
    if mode == "json":
        access_log.info(json.dumps(fields, ensure_ascii=False))
        return
    tokens = "" if trace.prompt_tokens is None else f" tokens={trace.prompt_tokens}+{trace.completion_tokens}"
    access_log.info("%s %s %d %.1fms key=%s%s", scope["method"], scope["path"], status, seconds * 1000,
                    trace.key_id or "-", tokens)
