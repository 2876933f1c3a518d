"""Typed app records: the catalogue's stored JSON is unchanged, and records read back as models."""

from __future__ import annotations

import pytest

from domainrag.errors import NotFoundError
from domainrag.retrieval.retriever import RetrievalConfig
from domainrag.serving.apps import AppRecord, AppSpec, get_app, list_apps, require_app


def test_app_records_are_typed_and_stored_as_before(ws) -> None:
    spec = AppSpec(name="docs", model="smollm2-135m-instruct", retrieval=RetrievalConfig(index="kb", top_k=3))
    stored = {  # the JSON an existing workspace holds: the spec's model_dump, nothing else
        "name": "docs", "model": "smollm2-135m-instruct",
        "retrieval": spec.retrieval.model_dump(), "generation": spec.generation.model_dump(),
    }
    assert spec.model_dump() == stored
    ws.catalog.create("app", "docs", stored)
    app = get_app(ws, "docs")
    assert isinstance(app, AppRecord)
    assert app.retrieval.index == "kb" and app.retrieval.top_k == 3 and app.generation == spec.generation
    assert app.created_at == app.updated_at > 0
    assert [a.name for a in list_apps(ws)] == ["docs"] and require_app(ws, "docs") == app
    assert get_app(ws, "nope") is None
    with pytest.raises(NotFoundError):
        require_app(ws, "nope")
