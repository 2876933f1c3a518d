"""Application registry: validate an app spec against the workspace, store it, load it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from domainrag.errors import DomainRagError
from domainrag.index import parse_store_config
from domainrag.retrieval.retriever import RetrievalConfig, Retriever
from domainrag.serving.backends import check_llm, generator_for
from domainrag.serving.rag import GenerationSettings, RagApp
from domainrag.workspace import Workspace


class AppSpec(BaseModel):
    """A RAG application: model + retrieval config + generation defaults."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: str
    retrieval: RetrievalConfig
    generation: GenerationSettings = Field(default_factory=GenerationSettings)


def validate_app(ws: Workspace, spec: AppSpec) -> dict[str, Any]:
    """Everything an invoke will need must exist now: model, index, store type, dimensions."""
    if not ws.lake.is_local:  # the app role must be able to read every artifact it loads, checked up front
        from domainrag.storage.preflight import preflight, require

        names = [spec.model, spec.retrieval.rerank_model]
        index_record = ws.catalog.get("index", spec.retrieval.index)
        if index_record:
            names.append(index_record.get("embedding_model"))
        keys = [r["key"] for n in names if n and (r := ws.model_record(n)) and r.get("key")]
        require(preflight(reads=[ws.lake.url(f"{k}/manifest.json") for k in keys]))
    check_llm(ws, spec.model)  # raises for unknown names and non-LLM models; verifies weights or the backend
    index = ws.catalog.require("index", spec.retrieval.index)
    store_cfg = parse_store_config(index.get("store"))
    if spec.retrieval.vector_store != store_cfg.type:
        raise DomainRagError(
            f"retrieval.vector_store is '{spec.retrieval.vector_store}' but index '{spec.retrieval.index}' "
            f"lives in a '{store_cfg.type}' store",
            hint=f'set "vector_store": "{store_cfg.type}"',
        )
    store = ws.store(spec.retrieval.index)
    if not store.exists():
        raise DomainRagError(f"index '{spec.retrieval.index}' is catalogued but missing from its store",
                             hint="recreate it with `domainrag index create` and re-ingest")
    embedder = ws.embedder(index["embedding_model"])
    store.check_dimension(embedder.dimension, embedder.name)
    if spec.retrieval.rerank_model:
        ws.reranker(spec.retrieval.rerank_model)  # raises unless a registered reranker; verifies and loads it
    return index


def create_app(ws: Workspace, spec: AppSpec, *, replace: bool = False) -> dict[str, Any]:
    validate_app(ws, spec)
    data = spec.model_dump()
    return ws.catalog.put("app", spec.name, data) if replace else ws.catalog.create("app", spec.name, data)


def load_app(ws: Workspace, name: str, *, with_generator: bool = True) -> RagApp:
    record = ws.catalog.require("app", name)
    spec = AppSpec.model_validate({k: v for k, v in record.items() if k in AppSpec.model_fields})
    index = ws.catalog.require("index", spec.retrieval.index)
    reranker = ws.reranker(spec.retrieval.rerank_model) if spec.retrieval.rerank_model else None
    retriever = Retriever(
        ws.store(spec.retrieval.index), ws.embedder(index["embedding_model"]), spec.retrieval, reranker=reranker
    )
    generator = None
    if with_generator:
        generator = generator_for(ws, spec.model)  # picked by the model's endpoint config
    return RagApp(spec.name, retriever, generator, spec.generation)
