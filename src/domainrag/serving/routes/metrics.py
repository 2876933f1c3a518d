"""``GET /metrics``: the API's Prometheus metrics (see :mod:`domainrag.serving.metrics` for the names).

Open on an open server; once keys are required it needs a ``*`` key, like any route that shows the
whole server (scrape with ``authorization: {credentials_file: ...}``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from domainrag.serving.auth import KeyDep, check_admin
from domainrag.serving.metrics import Metrics

router = APIRouter(tags=["meta"])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
def scrape(request: Request, key: KeyDep) -> Response:
    """Prometheus metrics: requests, errors, generation pool, time to first token, tokens, retrieval stages."""
    check_admin(key)
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
