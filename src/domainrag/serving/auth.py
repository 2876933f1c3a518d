"""API keys on requests: the bearer-key dependency and what a key may see.

Keys are required once any key has been created (revoked ones count), or always with
``require_keys=True``; ``require_keys=False`` turns them off. A key for one app gets 403 on any other
app, on plain LLMs and on embedding models other than its app's index model, and sees only its app
(and its index) in the listings. Each keyed request counts against its key's requests per minute
(:mod:`domainrag.serving.quotas`); ``GET /metrics`` needs a ``*`` key whenever keys are required.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from domainrag.serving.apps import AppRecord, list_apps
from domainrag.serving.http_errors import ApiError
from domainrag.serving.keys import ApiKey, keys_exist, verify_key
from domainrag.serving.quotas import KeyQuotas
from domainrag.serving.tracing import current_trace
from domainrag.workspace import Workspace

_bearer = HTTPBearer(auto_error=False, description="an API key from `domainrag key create` (dr-...)")


def authenticate(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> ApiKey | None:
    """The request's key, or ``None`` on an open server; 401 when one is needed and missing or wrong, 429
    when the key is over its requests per minute.

    Whether keys are needed is checked per request, so a key created while the server runs takes effect at once.
    """
    ws: Workspace = request.app.state.ws
    require_keys: bool | None = request.app.state.require_keys
    if not (require_keys if require_keys is not None else keys_exist(ws)):
        return None
    unauthorized = {"WWW-Authenticate": "Bearer"}
    if creds is None:
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", type="authentication_error",
                       code="missing_api_key", headers=unauthorized)
    key = verify_key(ws, creds.credentials)
    if key is None:
        raise ApiError(401, "invalid or revoked API key", type="authentication_error", code="invalid_api_key",
                       headers=unauthorized)
    if (trace := current_trace()) is not None:
        trace.key_id = key.id
    quotas: KeyQuotas = request.app.state.quotas
    quotas.check_rate(key)
    return key


KeyDep = Annotated[ApiKey | None, Depends(authenticate)]


def check_admin(key: ApiKey | None) -> None:
    """403 unless ``key`` is a ``*`` key (or the server is open): for operator routes such as ``/metrics``."""
    if key is not None and not key.allows_models:
        raise ApiError(403, "this route needs a '*' key", type="permission_error", code="admin_key_required")


def check_app(key: ApiKey | None, app: str) -> None:
    """403 unless ``key`` (``None``: an open server) may use app ``app``."""
    if key is not None and not key.allows_app(app):
        raise ApiError(403, f"this API key does not grant app '{app}'", type="permission_error",
                       code="app_not_allowed")


def check_models(key: ApiKey | None) -> None:
    """403 unless ``key`` may use plain models (a `*` key, or an open server)."""
    if key is not None and not key.allows_models:
        raise ApiError(403, "this API key grants an app only; use model 'app:<name>'",
                       type="permission_error", code="model_not_allowed")


def visible_apps(ws: Workspace, key: ApiKey | None) -> list[AppRecord]:
    """The apps ``key`` may use (all of them on an open server)."""
    return [a for a in list_apps(ws) if key is None or key.allows_app(a.name)]
