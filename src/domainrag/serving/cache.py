"""Loaded apps and plain LLMs of a running server, reloaded when their catalogue records change (a redeploy too);
the names a client may ask for, and those of them that can be served here (the model list)."""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

from domainrag.serving.apps import get_app, load_app
from domainrag.serving.backends import generator_for
from domainrag.serving.generator import Generator
from domainrag.serving.http_errors import ApiError
from domainrag.serving.rag import RagApp
from domainrag.workspace import Workspace
from domainrag.zoo import BASE_MODELS


class AppCache:
    """Loaded apps per name and plain LLMs, each kept until its catalogue record (or its model's) changes."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._apps: dict[str, tuple[tuple[float, float | None], RagApp]] = {}
        self._models: dict[str, tuple[float | None, Generator]] = {}
        self._lock = threading.Lock()

    def _model_stamp(self, name: str) -> float | None:
        record = self.ws.model_record(name)
        return record["updated_at"] if record else None

    def get(self, name: str) -> RagApp:
        """The loaded app ``name`` (404 when there is none)."""
        app = get_app(self.ws, name)
        if app is None:
            raise ApiError(404, f"app '{name}' not found", code="app_not_found")
        stamp = (app.updated_at, self._model_stamp(app.model))
        cached = self._apps.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        with self._lock:  # one load at a time: loading a model costs seconds and memory
            cached = self._apps.get(name)
            if cached is None or cached[0] != stamp:
                cached = (stamp, load_app(self.ws, name))
                self._apps[name] = cached
        return cached[1]

    def model(self, name: str) -> Generator:
        """The generator of a plain LLM a client may chat with (404 for any other name)."""
        if name not in llm_names(self.ws):
            raise ApiError(404, f"model '{name}' does not exist", code="model_not_found", param="model")
        stamp = self._model_stamp(name)
        with self._lock:
            cached = self._models.get(name)
            if cached is None or cached[0] != stamp:
                cached = (stamp, generator_for(self.ws, name))
                self._models[name] = cached
            return cached[1]


def llm_names(ws: Workspace) -> list[str]:
    """Plain LLMs a client may chat with: registered LLMs, then base LLMs (never arbitrary paths)."""
    registered = [r["name"] for r in ws.catalog.list("model") if r.get("kind") == "llm"]
    return registered + [n for n, m in BASE_MODELS.items() if m.kind == "llm" and n not in registered]


def embedding_names(ws: Workspace) -> list[str]:
    """Embedding models a client may use: registered ones, base ones, and those the indexes were built with."""
    names = [r["name"] for r in ws.catalog.list("model") if r.get("kind") == "embedding"]
    names += [n for n, m in BASE_MODELS.items() if m.kind == "embedding"]
    names += [r["embedding_model"] for r in ws.catalog.list("index") if r.get("embedding_model")]
    return list(dict.fromkeys(names))


def _base_installed(name: str | None) -> bool:
    """True unless ``name`` is a base model whose packages are absent."""
    model = BASE_MODELS.get(name or "")
    return model is None or model.installed


def _llm_servable(record: dict[str, Any]) -> bool:
    """A registered LLM can be served here: its backend's package and its base model's weights are present
    (a remote server is not probed: listing must stay fast)."""
    endpoint = record.get("endpoint") or {}
    if endpoint.get("type") == "llamacpp":
        return importlib.util.find_spec("llama_cpp") is not None and _base_installed(endpoint.get("gguf"))
    if endpoint.get("type") == "openai":
        return True
    return _base_installed(record.get("base_model"))


def servable_llms(ws: Workspace) -> list[str]:
    """The plain LLMs of :func:`llm_names` that this server can serve now (the others answer with an install hint)."""
    registered = [r for r in ws.catalog.list("model") if r.get("kind") == "llm"]
    names = [r["name"] for r in registered if _llm_servable(r)]
    taken = {r["name"] for r in registered}
    return names + [n for n, m in BASE_MODELS.items() if m.kind == "llm" and n not in taken and m.installed]


def servable_embedders(ws: Workspace) -> list[str]:
    """The embedding models of :func:`embedding_names` whose weights are here (base models: packages installed)."""
    return [name for name in embedding_names(ws) if _base_installed(name)]
