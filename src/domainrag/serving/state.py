"""What a running server holds (workspace, app cache, limiter, sessions, key policy) and the FastAPI
dependencies that hand it to the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request

from domainrag.serving.cache import AppCache
from domainrag.serving.limits import Limiter
from domainrag.serving.sessions import SessionStore
from domainrag.workspace import Workspace


def install_state(api: FastAPI, ws: Workspace, limiter: Limiter, require_keys: bool | None) -> None:
    """Attach the server's state to ``api.state`` (``ws``, ``apps``, ``limiter``, ``sessions``, ``require_keys``)."""
    api.state.ws = ws
    api.state.apps = AppCache(ws)
    api.state.limiter = limiter
    api.state.sessions = SessionStore(ws.settings.workspace / "sessions.db")
    api.state.require_keys = require_keys


def _workspace(request: Request) -> Workspace:
    return request.app.state.ws


def _apps(request: Request) -> AppCache:
    return request.app.state.apps


def _sessions(request: Request) -> SessionStore:
    return request.app.state.sessions


WorkspaceDep = Annotated[Workspace, Depends(_workspace)]
AppsDep = Annotated[AppCache, Depends(_apps)]
SessionsDep = Annotated[SessionStore, Depends(_sessions)]
