"""Catalogue views: models (OpenAI's list), apps and indexes, limited to what the caller's key may use."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter

from domainrag.serving.apps import AppRecord, get_app
from domainrag.serving.auth import KeyDep, check_app, visible_apps
from domainrag.serving.cache import servable_embedders, servable_llms
from domainrag.serving.http_errors import ApiError
from domainrag.serving.schemas import APP_MODEL_PREFIX, KEYED_ERRORS, AppList, AppView, ModelEntry, ModelList
from domainrag.serving.state import WorkspaceDep

router = APIRouter(tags=["catalogue"])


@router.get("/v1/models", responses=KEYED_ERRORS)
def list_models(ws: WorkspaceDep, key: KeyDep) -> ModelList:
    """OpenAI model list of exactly what this key can use here, each with its `kind`: plain LLMs (`llm`) and
    embedding models (`embedding`) whose weights and packages are present, and `app:<name>` entries (`app`).

    App keys see their apps and their indexes' embedding models only."""
    records = {r["name"]: r for r in ws.catalog.list("model")}
    apps = visible_apps(ws, key)

    def entry(name: str, kind: Literal["llm", "embedding"]) -> ModelEntry:
        rec = records.get(name)
        return ModelEntry(id=name, created=int(rec["created_at"]) if rec else 0,
                          owned_by="domainrag" if rec else "base-model", kind=kind)

    data = []
    if key is None or key.allows_models:
        data += [entry(name, "llm") for name in servable_llms(ws)]
        embedders = servable_embedders(ws)
    else:
        embedders = [idx["embedding_model"] for a in apps
                     if (idx := ws.catalog.get("index", a.retrieval.index)) and idx.get("embedding_model")]
    data += [entry(name, "embedding") for name in dict.fromkeys(embedders)]
    data += [ModelEntry(id=APP_MODEL_PREFIX + app.name, created=int(app.created_at), owned_by="domainrag-app",
                        kind="app") for app in apps]
    return ModelList(data=data)


def _app_view(app: AppRecord) -> AppView:
    return AppView(name=app.name, model=app.model, index=app.retrieval.index, mode=app.retrieval.mode,
                   top_k=app.retrieval.top_k, created_at=app.created_at, updated_at=app.updated_at)


@router.get("/v1/apps", responses=KEYED_ERRORS)
def list_apps(ws: WorkspaceDep, key: KeyDep) -> AppList:
    """Apps this key may use."""
    return AppList(data=[_app_view(a) for a in visible_apps(ws, key)])


@router.get("/v1/apps/{app}", responses=KEYED_ERRORS)
def show_app(app: str, ws: WorkspaceDep, key: KeyDep) -> AppView:
    """One app this key may use: its model, index and retrieval settings."""
    check_app(key, app)
    record = get_app(ws, app)
    if record is None:
        raise ApiError(404, f"app '{app}' not found", code="app_not_found")
    return _app_view(record)


@router.get("/v1/indexes", responses=KEYED_ERRORS)
def list_indexes(ws: WorkspaceDep, key: KeyDep) -> dict[str, Any]:
    """Indexes behind the apps this key may use (all of them for open servers and `*` keys)."""
    allowed = None if key is None or key.allows_models else {a.retrieval.index for a in visible_apps(ws, key)}
    data = [
        {"name": r["name"], "embedding_model": r.get("embedding_model"), "dimension": r.get("dimension"),
         "chunks": r.get("chunks"), "documents": r.get("documents"), "store": (r.get("store") or {}).get("type")}
        for r in ws.catalog.list("index") if allowed is None or r["name"] in allowed
    ]
    return {"object": "list", "data": data}
