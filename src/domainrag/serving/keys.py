"""API keys for the HTTP API: each key grants one app (or ``*``, every app and model).

Only a SHA-256 hash of a key is stored (catalogue kind ``key``); the token itself is shown once at
creation. A key's catalogue name is its id, ``key_`` + the first 12 hex digits of the hash, so a
presented token is found with one lookup and then compared in full in constant time. A key may carry
its own limits (``rpm``, ``max_streams``; None: the server's defaults, 0: none), enforced by
:mod:`domainrag.serving.quotas`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from domainrag.errors import DomainRagError, NotFoundError
from domainrag.workspace import Workspace

KEY_PREFIX = "dr-"
ALL_APPS = "*"


@dataclass(frozen=True)
class ApiKey:
    """A verified key: its id and what it grants."""

    id: str
    app: str
    rpm: int | None = None  # requests per minute; None: the server's default, 0: no limit
    max_streams: int | None = None  # concurrent generations; None: the server's default, 0: no limit

    def allows_app(self, app: str) -> bool:
        return self.app in (ALL_APPS, app)

    @property
    def allows_models(self) -> bool:
        """Plain (non-RAG) chat with raw LLMs is for ``*`` keys only."""
        return self.app == ALL_APPS


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def key_id(digest: str) -> str:
    return f"key_{digest[:12]}"


def _check_limits(rpm: int | None, max_streams: int | None) -> None:
    for name, value in (("rpm", rpm), ("max_streams", max_streams)):
        if value is not None and value < 0:
            raise DomainRagError(f"{name} must be >= 0 (0: no limit), got {value}",
                                 hint="leave it out to use the server's default")


def create_key(
    ws: Workspace, app: str, *, note: str = "", rpm: int | None = None, max_streams: int | None = None
) -> tuple[str, dict[str, Any]]:
    """Create a key for ``app`` (must exist, or ``*``) with optional own limits; returns (token, stored record).

    Store nothing else.
    """
    _check_limits(rpm, max_streams)
    if app != ALL_APPS:
        ws.catalog.require("app", app)
    token = KEY_PREFIX + secrets.token_urlsafe(32)
    digest = hash_key(token)
    record = ws.catalog.create("key", key_id(digest), {"app": app, "sha256": digest, "note": note, "revoked_at": None,
                                                       "rpm": rpm, "max_streams": max_streams})
    return token, record


def set_key_limits(ws: Workspace, kid: str, *, rpm: int | None, max_streams: int | None) -> dict[str, Any]:
    """Set a key's own limits (None: the server's default); a running server applies them at the next request."""
    _check_limits(rpm, max_streams)
    if ws.catalog.get("key", kid) is None:
        raise NotFoundError(f"key '{kid}' not found", hint="run `domainrag key list` to see key ids")
    return ws.catalog.update("key", kid, rpm=rpm, max_streams=max_streams)


def verify_key(ws: Workspace, token: str) -> ApiKey | None:
    """The key a token belongs to, or None if unknown or revoked."""
    if not token.startswith(KEY_PREFIX):
        return None
    digest = hash_key(token)
    record = ws.catalog.get("key", key_id(digest))
    if record is None or record.get("revoked_at") or not hmac.compare_digest(record["sha256"], digest):
        return None
    return ApiKey(record["name"], record["app"], record.get("rpm"), record.get("max_streams"))


def revoke_key(ws: Workspace, kid: str) -> dict[str, Any]:
    """Mark a key revoked (kept for the audit trail); revoking twice is a no-op."""
    record = ws.catalog.get("key", kid)
    if record is None:
        raise NotFoundError(f"key '{kid}' not found", hint="run `domainrag key list` to see key ids")
    if record.get("revoked_at"):
        return record
    return ws.catalog.update("key", kid, revoked_at=time.time())


def list_keys(ws: Workspace) -> list[dict[str, Any]]:
    """All keys (hashes left out), newest last."""
    return [{k: v for k, v in r.items() if k != "sha256"} for r in ws.catalog.list("key")]


def keys_exist(ws: Workspace) -> bool:
    """True once any key was created, revoked ones included: revoking the last key never reopens a server."""
    return bool(ws.catalog.list("key"))

