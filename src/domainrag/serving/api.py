"""The HTTP API over one workspace: RAG apps over SSE, OpenAI-compatible chat and embeddings, keys, a playground.

Endpoints (OpenAPI at ``/docs`` and ``/redoc``, served offline), one router each (:mod:`domainrag.serving.routes`):

* ``GET /healthz`` (always open), ``GET /`` (playground page), ``GET /metrics`` (Prometheus; ``*`` key)
* ``GET /v1/models``, ``GET /v1/apps``, ``GET /v1/apps/{app}``, ``GET /v1/indexes``
* ``POST /v1/apps/{app}/completion``: ``{query, session_id?, stream?, top_k?, filters?}``
* ``POST /v1/chat/completions``, ``POST /v1/completions`` (legacy) and ``POST /v1/embeddings``: OpenAI-compatible

Each LLM is served by its catalogue endpoint (:mod:`domainrag.serving.backends`); keys
(:mod:`domainrag.serving.auth`), sessions (:mod:`domainrag.serving.sessions`) and the bounded generation
pool (:mod:`domainrag.serving.limits`) with per-key limits (:mod:`domainrag.serving.quotas`) apply to
every route. Errors use OpenAI's shape (:mod:`domainrag.serving.http_errors`). Every response carries
``X-Request-ID``; metrics and access logs: :mod:`domainrag.serving.metrics`, :mod:`domainrag.serving.tracing`.
"""

from __future__ import annotations

from fastapi import FastAPI

from domainrag.serving.budget import BodyLimit
from domainrag.serving.http_errors import install_error_handlers
from domainrag.serving.limits import Limiter
from domainrag.serving.metrics import Metrics
from domainrag.serving.quotas import KeyQuotas
from domainrag.serving.routes import apps, catalogue, completions, meta, metrics, openai
from domainrag.serving.routes.docs import install_docs
from domainrag.serving.state import install_state
from domainrag.serving.tracing import AccessLog, Observe, access_log_mode
from domainrag.workspace import Workspace


def create_api(
    ws: Workspace,
    *,
    require_keys: bool | None = None,
    max_concurrent: int | None = None,
    queue_timeout: float | None = None,
    key_rpm: int | None = None,
    key_max_streams: int | None = None,
    access_log: AccessLog | None = None,
) -> FastAPI:
    """The HTTP API over one workspace.

    ``require_keys=None`` requires a key once any key exists (checked per request, so a key created
    while the server runs takes effect at once). ``max_concurrent`` and ``queue_timeout`` default to
    ``DOMAINRAG_MAX_CONCURRENT`` and ``DOMAINRAG_QUEUE_TIMEOUT`` (see :mod:`domainrag.serving.limits`),
    ``key_rpm`` and ``key_max_streams`` (the limits of keys without their own) to ``DOMAINRAG_KEY_RPM`` and
    ``DOMAINRAG_KEY_MAX_STREAMS`` (0: none), ``access_log`` to ``DOMAINRAG_ACCESS_LOG`` (off).
    """
    api = FastAPI(
        title="domainrag",
        summary="RAG apps over your own documents, with an OpenAI-compatible chat endpoint.",
        version="0.1.0",
        docs_url=None,  # served from local assets instead of a CDN (serving.routes.docs)
        redoc_url=None,
    )
    limiter = Limiter.from_env(max_concurrent, queue_timeout)
    install_state(api, ws, limiter, require_keys)
    api.state.metrics = meters = Metrics()  # this API's own registry, never the process-global one
    meters.watch_pool(lambda: limiter.in_use, lambda: limiter.waiting, limiter.limit)
    api.state.quotas = KeyQuotas.from_env(key_rpm, key_max_streams,
                                          on_refused=lambda reason: meters.rate_limited.labels(reason).inc())
    install_error_handlers(api)
    api.add_middleware(BodyLimit)  # oversized bodies get 413 before they are read (serving.budget)
    api.add_middleware(Observe, metrics=meters, access=access_log_mode(access_log))  # outermost: sees every answer
    for router in (meta.router, catalogue.router, apps.router, openai.router, completions.router, metrics.router):
        api.include_router(router)
    install_docs(api)
    return api
