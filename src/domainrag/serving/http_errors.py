"""API errors in OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``, and the handlers that
turn every failure (ours, the backends', validation, unexpected) into one."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from domainrag.errors import ConflictError, DomainRagError, NotFoundError
from domainrag.serving.generator import BackendError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered in OpenAI's shape with a given status."""

    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None,
        param: str | None = None, headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type, code
        self.param, self.headers = param, headers


def error_body(message: str, type: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _response(exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.message, exc.type, exc.code, exc.param), exc.status, headers=exc.headers)


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return _response(exc)


async def _backend_error(_: Request, exc: BackendError) -> JSONResponse:
    log.warning("generation backend failed: %s", exc.message)
    return _response(ApiError(502, "the model's generation backend failed or is unreachable",
                              type="server_error", code="upstream_error"))


async def _domain_error(_: Request, exc: DomainRagError) -> JSONResponse:
    if isinstance(exc, NotFoundError):
        return _response(ApiError(404, exc.message, code="not_found"))
    if isinstance(exc, ConflictError):
        return _response(ApiError(409, exc.message, code="conflict"))
    return _response(ApiError(400, exc.message, code="bad_request"))


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    """A body, path or query that fails validation: 400 as OpenAI answers it (not FastAPI's 422), naming the field."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return _response(ApiError(400, "request body is not valid JSON", code="invalid_json"))
    parts = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in errors]
    # param: the top-level field, as OpenAI names it (the message keeps the full path, union branches included)
    fields = [p for p in errors[0]["loc"] if p not in ("body", "query", "path")] if errors else []
    return _response(ApiError(400, "; ".join(parts), code="validation_error",
                              param=str(fields[0]) if fields else None))


def too_large_message(limit: int) -> str:
    return f"request body exceeds {limit} bytes (DOMAINRAG_MAX_BODY_BYTES)"


def body_too_large(limit: int) -> JSONResponse:
    """The 413 answer to a request body over ``limit`` bytes (see serving.budget.BodyLimit)."""
    return _response(ApiError(413, too_large_message(limit), code="request_too_large"))


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = "request_too_large" if exc.status_code == 413 else None
    return _response(ApiError(exc.status_code, str(exc.detail), code=code, headers=exc.headers))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    # answered outside the request-id middleware (Starlette's outermost error middleware): add the id here
    request_id = getattr(request.state, "request_id", None)
    return _response(ApiError(500, "internal server error", type="server_error", code="internal_error",
                              headers={"X-Request-ID": request_id} if request_id else None))


def install_error_handlers(api: FastAPI) -> None:
    """Answer every error in OpenAI's shape (a backend failure is 502, a DomainRagError 400/404/409)."""
    handlers: dict[type[Exception], Any] = {
        ApiError: _api_error, BackendError: _backend_error, DomainRagError: _domain_error,
        RequestValidationError: _validation_error, StarletteHTTPException: _http_error, Exception: _unexpected,
    }
    for exc_type, handler in handlers.items():
        api.add_exception_handler(exc_type, handler)
