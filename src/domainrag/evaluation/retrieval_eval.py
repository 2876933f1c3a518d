"""Retrieval evaluation: score search configurations on a labelled data set, at document level, by trec_eval.

:func:`run_retrieval_eval` resolves a :class:`~domainrag.evaluation.spec.RetrievalEvalSpec` against
the workspace (indexes, embedding models, rerankers, apps' retrieval pipelines, optional ingestion of
the data set's corpus); :func:`score_retrievers` scores any set of search functions (the quickstart
uses it directly).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainrag.errors import DomainRagError, NotFoundError
from domainrag.evaluation.beir import RetrievalDataset
from domainrag.evaluation.result import (
    EvalResult,
    IngestSummary,
    RankedHit,
    RetrievalDatasetInfo,
    RetrievalQuery,
    RetrievalRun,
    RetrievalSection,
    model_info,
    new_result,
)
from domainrag.evaluation.retrieval import (
    DEFAULT_METRICS,
    evaluate_run_per_query,
    mean_metrics,
    run_from_hits,
    validate_metric,
)
from domainrag.evaluation.spec import AppConfigSpec, RerankSpec, RetrievalConfigSpec, RetrievalEvalSpec
from domainrag.index.base import SearchHit
from domainrag.index.ingest import ingest_documents
from domainrag.retrieval.reranker import PairScorer, rerank_hits
from domainrag.retrieval.retriever import RetrievalConfig, Retriever
from domainrag.serving.apps import AppRecord, require_app
from domainrag.workspace import create_index
from domainrag.zoo import DEFAULT_EMBEDDER

EXCERPT_CHARS = 240
Progress = Callable[[str, int, int], None]
"""``progress(label, done, total)``."""
Search = Callable[[str, int], Sequence[Any]]
"""``search(query, k)`` → ranked :class:`~domainrag.index.base.SearchHit` list."""


def derived_index_name(base: str, model: str) -> str:
    """Index for another embedding model on the same corpus: ``<base>__<slug of model>``."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(model).name if Path(model).exists() else model).strip("-").lower()
    return f"{base}__{slug or 'model'}"


@dataclass(frozen=True)
class ResolvedConfig:
    label: str
    mode: str
    index: str
    embedding_model: str
    rerank: RerankSpec | None = None
    app: AppRecord | None = None


def pipeline_text(rc: RetrievalConfig) -> str:
    """An app's retrieval pipeline in the --config grammar's words, e.g. ``hybrid+rerank:rr,fusion=rrf``."""
    if not rc.rerank_model:
        return rc.mode
    stage = RerankSpec(model=rc.rerank_model, fusion=rc.rerank_fusion, top_n=rc.rerank_top_n,
                       retrieval_weight=rc.rerank_retrieval_weight)
    return f"{rc.mode}+{stage.text}"


def _resolve_app(ws: Any, spec: AppConfigSpec, taken: Sequence[str], ingested: Mapping[str, str]) -> ResolvedConfig:
    """An app's config; its index must exist, or be one this run ingests (``ingested``: {index: model})."""
    app = require_app(ws, spec.app)  # NotFoundError naming the known apps
    idx = app.retrieval.index
    record = ws.catalog.get("index", idx)
    if record is None and idx not in ingested:
        raise NotFoundError(f"index '{idx}' of app '{app.name}' (config '{spec.text}') does not exist",
                            hint=f"recreate it, or point the app at another index (`domainrag app show {app.name}`)")
    label = f"{spec.text} ({pipeline_text(app.retrieval)})"
    label = label if label not in taken else f"{label} #{len(taken) + 1}"
    model = record["embedding_model"] if record else ingested[idx]
    return ResolvedConfig(label, app.retrieval.mode, idx, model, _app_rerank(app.retrieval), app)


def _app_rerank(rc: RetrievalConfig) -> RerankSpec | None:
    """The app's reranker stage; its rescored head is max(rerank_top_n, top_k) hits, as Retriever reranks them."""
    if not rc.rerank_model:
        return None
    return RerankSpec(model=rc.rerank_model, fusion=rc.rerank_fusion, top_n=max(rc.rerank_top_n, rc.top_k),
                      retrieval_weight=rc.rerank_retrieval_weight)


def resolve_configs(
    ws: Any, index: str | None, specs: Sequence[RetrievalConfigSpec | AppConfigSpec], *, ingest: bool,
    embedding_model: str | None
) -> tuple[list[ResolvedConfig], dict[str, str]]:
    """Map each config to (index, embedding model); returns them and {index: model} of the search configs' indexes.

    Indexes that do not exist are an error unless ``ingest`` (then they are created and filled); an
    app's index must exist. Apps and rerankers that are not registered are errors naming the config.
    """

    def existing_model(name: str) -> str | None:
        rec = ws.catalog.get("index", name)
        return rec["embedding_model"] if rec else None

    base_model = existing_model(index) if index else None
    if base_model and embedding_model and embedding_model != base_model:
        raise DomainRagError(
            f"index '{index}' was built with '{base_model}', not '{embedding_model}'",
            hint=f"leave embedding_model unset, or evaluate another index (or a dense config with "
                 f"embedding model '{embedding_model}')")
    base_model = base_model or embedding_model or DEFAULT_EMBEDDER
    needed: dict[str, str] = {}
    out: list[ResolvedConfig] = []
    for spec in specs:
        if isinstance(spec, AppConfigSpec):
            continue  # resolved below, once the indexes this run ingests are known
        if spec.index:
            idx = spec.index
            model = existing_model(idx) or spec.embedding_model or base_model
            if spec.embedding_model and spec.embedding_model != model:
                raise DomainRagError(f"config '{spec.text}': index '{idx}' was built with '{model}'")
        elif spec.embedding_model and spec.embedding_model != base_model:
            assert index is not None  # the spec requires one for search configs
            idx, model = derived_index_name(index, spec.embedding_model), spec.embedding_model
            if existing_model(idx) not in (None, model):
                raise DomainRagError(f"config '{spec.text}': index '{idx}' exists with another model",
                                     hint="name the config's index explicitly")
        else:
            assert index is not None
            idx, model = index, base_model
        if ws.catalog.get("index", idx) is None and not ingest:
            raise NotFoundError(f"index '{idx}' (for config '{spec.text}') does not exist",
                                hint="turn ingest on to build it from the data set's corpus.jsonl")
        needed[idx] = model
        label = spec.text if spec.text not in [c.label for c in out] else f"{spec.text} #{len(out) + 1}"
        out.append(ResolvedConfig(label, spec.mode, idx, model, spec.rerank))
    searches = iter(out)
    out = []
    for spec in specs:
        out.append(_resolve_app(ws, spec, [c.label for c in out], needed if ingest else {})
                   if isinstance(spec, AppConfigSpec) else next(searches))
    for cfg in out:  # load every reranker now: a missing one fails before any ingest or scoring
        if cfg.rerank is not None:
            _load_reranker(ws, cfg)
    return out, needed


def _load_reranker(ws: Any, cfg: ResolvedConfig) -> PairScorer:
    assert cfg.rerank is not None
    try:
        return ws.reranker(cfg.rerank.model)  # type: ignore[no-any-return]
    except DomainRagError as exc:  # same class (exit status), with the config named
        raise type(exc)(f"config '{cfg.label}': {exc.message}", hint=exc.hint) from exc


class _RerankedSearch:
    """Retrieval to depth, then the first ``rerank.top_n`` hits reordered by the reranker, the rest kept in order.

    Not Retriever(reranker=...): it rescores max(top_n, k) hits and cuts to k, so scoring to a depth of
    a few hundred chunks would rescore them all; here the reranker sees what it sees in an app.
    """

    def __init__(self, retriever: Retriever, reranker: PairScorer, rerank: RerankSpec) -> None:
        self.retriever, self.reranker, self.rerank = retriever, reranker, rerank

    def __call__(self, text: str, k: int) -> list[SearchHit]:
        n, cfg = self.rerank.top_n, self.retriever.config
        hits = self.retriever.run(text, top_k=max(k, n))
        fusion = (cfg.rank_constant, self.rerank.retrieval_weight) if self.rerank.fusion == "rrf" else None
        head = rerank_hits(self.reranker, text, hits[:n], context=cfg.rerank_context, fusion=fusion)
        return (head + hits[n:])[:k]


def _searcher(ws: Any, cfg: ResolvedConfig, depth: int, queries: Sequence[str]) -> tuple[Search, dict[str, Any]]:
    """The search function of one resolved config and the settings the report shows for it."""
    record = ws.catalog.require("index", cfg.index)
    if cfg.mode == "bm25" or not queries:
        embedder = None
    else:
        embedder = _BatchQueryEmbedder(ws.index_embedder(cfg.index) if cfg.app else ws.embedder(cfg.embedding_model),
                                       queries)
    if cfg.app is not None:  # the app's own settings; depth only widens what is scored beyond its top_k
        rc = cfg.app.retrieval.model_copy(update={"rerank_model": None})
    else:
        rc = RetrievalConfig(index=cfg.index, mode=cfg.mode, top_k=min(depth, 100), candidates=depth,  # type: ignore[arg-type]
                             vector_store=record["store"]["type"])
    retriever = Retriever(ws.store(cfg.index), embedder, rc)  # type: ignore[arg-type]  # bm25 never embeds
    config: dict[str, Any] = {"mode": cfg.mode, "index": cfg.index,
                              "embedding_model": cfg.embedding_model if cfg.mode != "bm25" else None,
                              "store": record["store"]["type"], "depth_chunks": depth, "level": "doc",
                              "rank_constant": rc.rank_constant if cfg.mode == "hybrid" else None,
                              "index_chunks": record.get("chunks")}
    if cfg.app is not None:
        config.update(app=cfg.app.name, app_top_k=cfg.app.retrieval.top_k)
    if cfg.rerank is None:
        return (lambda text, k: retriever.run(text, top_k=k)), config
    config.update(rerank_model=cfg.rerank.model, rerank_fusion=cfg.rerank.fusion, rerank_top_n=cfg.rerank.top_n,
                  rerank_retrieval_weight=cfg.rerank.retrieval_weight if cfg.rerank.fusion == "rrf" else None)
    return _RerankedSearch(retriever, _load_reranker(ws, cfg), cfg.rerank), config


def ingest_corpus(
    ws: Any, index: str, model: str, dataset: RetrievalDataset, *, store: Any = "embedded",
    max_words: int = 120, overlap_words: int = 20, progress: Callable[[int, int], None] | None = None,
) -> IngestSummary:
    """Create ``index`` if needed and ingest the data set's corpus (one Document per corpus entry).

    Chunk ids are deterministic, so re-running on an existing index only writes what is missing.
    """
    if dataset.corpus is None:
        raise DomainRagError(f"ingest needs a corpus, and data set '{dataset.name}' has none",
                             hint="put corpus.jsonl (_id, title, text) beside the questions file")
    if ws.catalog.get("index", index) is None:
        create_index(ws, index, model, store)
    store_obj = ws.store(index)
    embedder = ws.embedder(model)
    report = ingest_documents(dataset.documents(), store_obj, embedder, max_words=max_words,
                              overlap_words=overlap_words, progress=progress)
    lines = "".join(json.dumps(c.to_dict()) + "\n" for c in report.chunk_records)
    ws.lake.write_text(f"chunks/{index}/chunks.jsonl", lines)
    ws.catalog.update("index", index, chunks=store_obj.count(), documents=store_obj.document_count())
    return IngestSummary(index=index, embedding_model=model, max_words=max_words, overlap_words=overlap_words,
                         **report.to_dict())


def _drop_docs_missing_from_index(dataset: RetrievalDataset, store: Any) -> int:
    """Without a corpus file, a qrels document is unknown when the index holds no chunk of it."""
    docs = {d for rel in dataset.qrels.values() for d in rel}
    missing = {d for d in docs if not store.ids_for_document(d)}
    dropped = 0
    for qid in list(dataset.qrels):
        rel = dataset.qrels[qid]
        dropped += sum(1 for d in rel if d in missing)
        kept = {d: g for d, g in rel.items() if d not in missing}
        if any(g > 0 for g in kept.values()):
            dataset.qrels[qid] = kept
        else:
            del dataset.qrels[qid]
            dataset.queries.pop(qid, None)
            dataset.stats.queries_without_qrels += 1
    dataset.stats.unknown_doc_qrels += dropped
    return dropped


class _BatchQueryEmbedder:
    """Encodes every query in one batched call up front (per-query calls cost far more on CPU)."""

    def __init__(self, embedder: Any, queries: Sequence[str], batch_size: int = 64) -> None:
        self.embedder = embedder
        self.name, self.dimension = embedder.name, embedder.dimension
        unique = list(dict.fromkeys(queries))
        self._vectors = dict(zip(unique, embedder.encode(unique, batch_size=batch_size), strict=True))

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> Any:
        return self.embedder.encode(texts, batch_size=batch_size)

    def encode_query(self, query: str) -> Any:
        vec = self._vectors.get(query)
        return vec if vec is not None else self.embedder.encode_query(query)


def _max_cutoff(metrics: Sequence[str]) -> int:
    cuts = [int(m.partition("@")[2]) for m in metrics if m.partition("@")[2].isdigit()]
    return max([*cuts, 100])


def run_retrieval_eval(
    ws: Any, dataset: RetrievalDataset, spec: RetrievalEvalSpec, *, progress: Progress | None = None,
    command: str | None = None,
) -> EvalResult:
    """Score every configuration of ``spec`` on the data set.

    Each query fetches ``spec.depth`` chunks (default twice the largest metric cut-off); the run
    keeps each document's best rank and is cut to the largest cut-off in documents.
    """
    t0 = time.time()
    depth = spec.depth or 2 * _max_cutoff(spec.metrics)
    resolved, needed = resolve_configs(ws, spec.index, spec.configs, ingest=spec.ingest,
                                       embedding_model=spec.embedding_model)
    result = new_result(f"Retrieval evaluation — {dataset.name}", dataset.files, command)
    ingests = []
    if spec.ingest:
        for idx, model in needed.items():
            cb = (lambda d, t, i=idx: progress(f"ingest → {i}", d, t)) if progress else None
            ingests.append(ingest_corpus(ws, idx, model, dataset, store=spec.store, max_words=spec.max_words,
                                         overlap_words=spec.overlap_words, progress=cb))
    if dataset.corpus is None:
        _drop_docs_missing_from_index(dataset, ws.store(resolved[0].index))
    if spec.limit:
        keep = list(dataset.queries)[:spec.limit]
        dataset.queries = {q: dataset.queries[q] for q in keep}
        dataset.qrels = {q: dataset.qrels[q] for q in keep}
    result.warnings = dataset.stats.warnings()
    models = {*needed.values(), *(c.embedding_model for c in resolved),
              *(c.rerank.model for c in resolved if c.rerank)}
    result.metadata.models = {m: model_info(ws, m) for m in sorted(models)}
    queries = list(dataset.queries.values())
    searchers = {cfg.label: _searcher(ws, cfg, depth, queries) for cfg in resolved}
    section = score_retrievers(searchers, dataset, spec.metrics, depth=depth, drill_hits=spec.drill_hits,
                               progress=progress)
    section.ingest = ingests
    result.retrieval = section
    result.metadata.elapsed_s = round(time.time() - t0, 1)
    return result


def score_retrievers(
    searchers: Mapping[str, tuple[Search, Mapping[str, Any]]],
    dataset: RetrievalDataset,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    depth: int | None = None,
    drill_hits: int = 5,
    progress: Progress | None = None,
) -> RetrievalSection:
    """The retrieval section for any searchers: label → (``search(text, k)`` → hits, config shown).

    The run keeps each document's best-ranked chunk and is cut to the largest metric cut-off.
    """
    metrics = [validate_metric(m) for m in metrics]
    cutoff = _max_cutoff(metrics)
    depth = depth or 2 * cutoff
    if not dataset.queries:
        raise DomainRagError(f"data set '{dataset.name}' has no query with a relevant document to evaluate")
    runs, hits_by_config = [], {}
    for label, (search, config) in searchers.items():
        run: dict[str, dict[str, float]] = {}
        top: dict[str, list[RankedHit]] = {}
        t1 = time.time()
        for i, (qid, text) in enumerate(dataset.queries.items()):
            hits = search(text, depth)
            run[qid] = dict(list(run_from_hits(hits, "doc").items())[:cutoff])
            rel = dataset.qrels.get(qid, {})
            top[qid] = [RankedHit(doc_id=h.doc_id, chunk_id=h.chunk_id, score=round(float(h.score), 6),
                                  relevant=rel.get(h.doc_id, 0) > 0, text=h.text[:EXCERPT_CHARS])
                        for h in hits[:drill_hits]]
            if progress:
                progress(f"retrieve ({label})", i + 1, len(dataset.queries))
        per_query = evaluate_run_per_query(dataset.qrels, run, metrics)
        runs.append(RetrievalRun(label=label, config=dict(config), metrics=mean_metrics(per_query, metrics),
                                 per_query=per_query, seconds=round(time.time() - t1, 2)))
        hits_by_config[label] = top
    queries = [RetrievalQuery(id=qid, text=text, relevant=sorted(d for d, g in dataset.qrels[qid].items() if g > 0),
                              hits={label: top[qid] for label, top in hits_by_config.items()})
               for qid, text in dataset.queries.items()]
    info = RetrievalDatasetInfo(name=dataset.name, format=dataset.format, queries=len(dataset.queries),
                                corpus=None if dataset.corpus is None else len(dataset.corpus),
                                qrels=sum(len(r) for r in dataset.qrels.values()), dropped=dataset.stats.to_dict())
    return RetrievalSection(dataset=info, metrics=list(metrics), ingest=[], runs=runs, queries=queries)
