"""Application registry: validate an app spec against the workspace, store it, read it back typed, load it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from domainrag.errors import DomainRagError
from domainrag.index import parse_store_config
from domainrag.retrieval.retriever import RetrievalConfig, Retriever
from domainrag.serving.backends import check_llm, generator_for
from domainrag.serving.gate import DEFAULT_MIN_DENSE, Gate, GateCalibration
from domainrag.serving.generator import Generator
from domainrag.serving.rag import GenerationSettings, RagApp
from domainrag.serving.reader_score import answer_check, not_found_margin, supports_reader_score
from domainrag.storage.preflight import preflight, require
from domainrag.workspace import Workspace


class AppSpec(BaseModel):
    """A RAG application: model + retrieval config + generation defaults."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: str
    retrieval: RetrievalConfig
    generation: GenerationSettings = Field(default_factory=GenerationSettings)


class AppRecord(AppSpec):
    """An app as the catalogue stores it: its spec plus the catalogue's timestamps.

    The stored JSON is the spec's ``model_dump()``; reading it back through this model keeps old
    workspaces loading while code reads ``app.retrieval.index`` instead of nested dicts.
    """

    model_config = ConfigDict(extra="ignore")

    created_at: float
    updated_at: float
    gate: GateCalibration | None = Field(None, description="fitted by `domainrag app calibrate`; None = default")


def gate_status(app: AppRecord) -> str:
    """One line on the app's answerability gate, for `app show` and the API."""
    if app.gate is None:
        return (f"not calibrated: refuses only when no passage reaches dense similarity {DEFAULT_MIN_DENSE} "
                f"(run `domainrag app calibrate {app.name} --questions FILE`)")
    g = app.gate
    measured = ", ".join(f"{k} {v:.3f}" for k, v in g.measured.items())
    return (f"calibrated on {g.fitted_on.get('questions', '?')} for false refusals <= {g.target_false_refusal}: "
            f"signals {', '.join(g.features)}, threshold {g.threshold:.3f}" + (f" ({measured})" if measured else ""))


def set_gate(ws: Workspace, name: str, calibration: GateCalibration | None) -> AppRecord:
    """Store (or with None, remove) an app's gate calibration; the rest of its record is kept."""
    ws.catalog.update("app", name, gate=calibration.model_dump() if calibration is not None else None)
    return require_app(ws, name)


def get_app(ws: Workspace, name: str) -> AppRecord | None:
    """The catalogued app ``name``, typed; ``None`` when there is none."""
    record = ws.catalog.get("app", name)
    return AppRecord.model_validate(record) if record is not None else None


def require_app(ws: Workspace, name: str) -> AppRecord:
    """The catalogued app ``name``, typed; raises NotFoundError when there is none."""
    return AppRecord.model_validate(ws.catalog.require("app", name))


def list_apps(ws: Workspace) -> list[AppRecord]:
    """Every catalogued app, typed, oldest first."""
    return [AppRecord.model_validate(r) for r in ws.catalog.list("app")]


def validate_app(ws: Workspace, spec: AppSpec) -> dict[str, Any]:
    """Everything an invoke will need must exist now: model, index, store type, dimensions. Nothing is converted."""
    llm = ws.resolve_llm(spec.model)  # raises for unknown names and non-LLM models
    if not ws.lake.is_local:  # the app role must be able to read every artifact it loads, checked up front
        index_record = ws.catalog.get("index", spec.retrieval.index)
        records = [llm.record, *(ws.model_record(n) for n in (
            spec.retrieval.rerank_model, index_record.get("embedding_model") if index_record else None) if n)]
        keys = [r["key"] for r in records if r and r.get("key")]
        require(preflight(reads=[ws.lake.url(f"{k}/manifest.json") for k in keys]))
    check_llm(ws, llm)  # verifies local weights or the backend's package and GGUF
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
    embedder = ws.index_embedder(spec.retrieval.index)
    store.check_dimension(embedder.dimension, embedder.name)
    if spec.retrieval.rerank_model:
        ws.reranker(spec.retrieval.rerank_model)  # raises unless a registered reranker; verifies and loads it
    return index


def create_app(ws: Workspace, spec: AppSpec, *, replace: bool = False) -> dict[str, Any]:
    validate_app(ws, spec)
    data = spec.model_dump()
    return ws.catalog.put("app", spec.name, data) if replace else ws.catalog.create("app", spec.name, data)


def load_app(ws: Workspace, name: str, *, with_generator: bool = True) -> RagApp:
    app = require_app(ws, name)
    ws.catalog.require("index", app.retrieval.index)
    reranker = ws.reranker(app.retrieval.rerank_model) if app.retrieval.rerank_model else None
    retriever = Retriever(
        ws.store(app.retrieval.index), ws.index_embedder(app.retrieval.index), app.retrieval, reranker=reranker
    )
    generator = generator_for(ws, app.model) if with_generator else None  # picked by the model's endpoint config
    return RagApp(app.name, retriever, generator, app.generation, gate=make_gate(ws, app, reranker, generator))


def make_gate(ws: Workspace, app: AppRecord, reranker: Any, generator: Generator | None) -> Gate:
    """The app's gate: its calibration with the reranker and reader scorer it needs (see serving.gate)."""
    cal = app.gate
    if cal is not None and cal.reranker and "rerank" in cal.features and reranker is None:
        reranker = ws.reranker(cal.reranker)
    reader = checker = None
    if generator is not None and supports_reader_score(generator):
        not_found = app.generation.not_found_answer

        def reader(messages: list[dict[str, str]]) -> float | None:
            return not_found_margin(generator, messages, not_found)

        def checker(messages: list[dict[str, str]]) -> float | None:
            return answer_check(generator, messages)

    return Gate(cal, reranker=reranker, reader=reader, checker=checker)
