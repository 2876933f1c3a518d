"""Run evaluations end to end and return one JSON-able result the report renders.

Retrieval: several configurations (``bm25``, ``dense``, ``hybrid``, ``dense:<model>`` …) over
one data set, scored at document level by trec_eval. Answers: several RAG apps over one question
file, scored against reference answers. Both results share one layout (see :func:`new_result`),
so ``--json`` output can be re-rendered and compared later.

Configuration syntax (``--config``): ``MODE[:EMBEDDING_MODEL][@INDEX]``

* ``bm25`` / ``dense`` / ``hybrid`` — the ``--index`` index with its own embedding model;
* ``dense:M`` — embedding model ``M`` on its own index, named ``<index>__<m>`` unless ``@INDEX``
  names one (built by ``--ingest`` when missing);
* ``hybrid@other_index`` — an existing index, with whatever model it was built with.
"""

from __future__ import annotations

import platform
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from domainrag.errors import DomainRagError, NotFoundError
from domainrag.evaluation.answers import ANSWER_METRICS, LOWER_IS_BETTER, aggregate_scores, score_answer
from domainrag.evaluation.beir import RetrievalDataset, gold_docs
from domainrag.evaluation.retrieval import (
    DEFAULT_METRICS,
    _trec_name,
    evaluate_run_per_query,
    mean_metrics,
    run_from_hits,
)

SCHEMA = "domainrag.eval/1"
MODES = ("dense", "bm25", "hybrid")
DEFAULT_CONFIGS = ("bm25", "dense", "hybrid")
EXCERPT_CHARS = 240
Progress = Callable[[str, int, int], None]
"""``progress(label, done, total)``."""
Search = Callable[[str, int], Sequence[Any]]
"""``search(query, k)`` → ranked :class:`~domainrag.index.base.SearchHit` list."""


# -- shared result layout ---------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    from domainrag.storage.lake import sha256_file

    return sha256_file(path)


def new_result(title: str, dataset_files: Mapping[str, Path], command: str | None = None) -> dict[str, Any]:
    """The skeleton every evaluation fills: metadata (versions, data checksums, time), warnings, sections."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("domainrag")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        ver = "unknown"
    return {
        "schema": SCHEMA,
        "title": title,
        "metadata": {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": command if command is not None else " ".join(["domainrag", *sys.argv[1:]]),
            "domainrag_version": ver,
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
            "dataset_files": {name: {"path": str(p), "sha256": _sha256(p)} for name, p in dataset_files.items()},
            "models": {},
            "elapsed_s": None,
        },
        "warnings": [],
        "retrieval": None,
        "answers": None,
    }


def model_info(ws: Any, name: str) -> dict[str, Any]:
    """Where a model name resolves: catalogue (with version and digest), base model, or path/hub id."""
    from domainrag.zoo import BASE_MODELS

    record = ws.catalog.get("model", name) if ws is not None else None
    if record:
        return {"name": name, "source": "catalogue", "kind": record.get("kind"), "version": record.get("version"),
                "digest": record.get("digest"), "base_model": record.get("base_model"), "uri": record.get("uri")}
    if name in BASE_MODELS:
        return {"name": name, "source": "base model", "kind": BASE_MODELS[name].kind,
                "description": BASE_MODELS[name].description}
    return {"name": name, "source": "path or hub id"}


# -- thresholds -------------------------------------------------------------------------------------
def parse_thresholds(items: Sequence[str], allowed: Sequence[str]) -> dict[str, float]:
    """``["ndcg@10=0.6", ...]`` → {metric: minimum}; metric names must be ones the run reports."""
    out: dict[str, float] = {}
    known = {m.lower(): m for m in allowed}
    for item in items:
        name, sep, value = item.partition("=")
        key = name.strip().lower()
        if not sep:
            raise DomainRagError(f"--fail-under '{item}' is not METRIC=VALUE", hint="e.g. --fail-under ndcg@10=0.6")
        if key not in known:
            raise DomainRagError(f"--fail-under names unknown metric '{name.strip()}'",
                                 hint="metrics of this run: " + ", ".join(allowed))
        if known[key] in LOWER_IS_BETTER:
            raise DomainRagError(f"--fail-under checks minimums, but lower {known[key]} is better")
        try:
            out[known[key]] = float(value)
        except ValueError as exc:
            raise DomainRagError(f"--fail-under '{item}': '{value}' is not a number") from exc
    return out


def check_thresholds(runs: Sequence[Mapping[str, Any]], thresholds: Mapping[str, float]) -> list[str]:
    """One message per (run, metric) below its minimum; an unmeasured metric fails too (it proves nothing)."""
    failures = []
    for run in runs:
        for metric, minimum in thresholds.items():
            value = run["metrics"].get(metric)
            if value is None:
                failures.append(f"{run['label']}: {metric} not measured (required ≥ {minimum:g})")
            elif value < minimum:
                failures.append(f"{run['label']}: {metric} = {value:.4f} < {minimum:g}")
    return failures


def validate_metrics(metrics: Sequence[str]) -> list[str]:
    for m in metrics:
        _trec_name(m)  # raises ValueError naming the bad one
    return list(metrics)


# -- retrieval --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfigSpec:
    """One ``--config`` value: ``MODE[:EMBEDDING_MODEL][@INDEX]``."""

    text: str
    mode: str
    embedding_model: str | None = None
    index: str | None = None


def parse_config(text: str) -> ConfigSpec:
    raw = text.strip()
    rest, at, index = raw.rpartition("@") if "@" in raw else (raw, "", "")
    mode, colon, model = rest.partition(":")
    mode = mode.strip().lower()
    if mode not in MODES:
        raise DomainRagError(f"--config '{text}': unknown mode '{mode}'",
                             hint="use MODE[:EMBEDDING_MODEL][@INDEX] with MODE one of bm25, dense, hybrid")
    if colon and not model.strip():
        raise DomainRagError(f"--config '{text}': empty embedding model after ':'")
    if at and not index.strip():
        raise DomainRagError(f"--config '{text}': empty index name after '@'")
    if mode == "bm25" and model.strip():
        raise DomainRagError(f"--config '{text}': bm25 uses no embedding model",
                             hint="use bm25 or bm25@INDEX")
    return ConfigSpec(raw, mode, model.strip() or None, index.strip() or None)


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


def resolve_configs(
    ws: Any, index: str, specs: Sequence[ConfigSpec], *, ingest: bool, embedding_model: str | None
) -> tuple[list[ResolvedConfig], dict[str, str]]:
    """Map each spec to (index, embedding model); returns configs and {index: model} of the indexes used.

    Indexes that do not exist are an error unless ``ingest`` (then they are created and filled).
    """
    from domainrag.zoo import DEFAULT_EMBEDDER

    def existing_model(name: str) -> str | None:
        rec = ws.catalog.get("index", name)
        return rec["embedding_model"] if rec else None

    base_model = existing_model(index)
    if base_model and embedding_model and embedding_model != base_model:
        raise DomainRagError(
            f"index '{index}' was built with '{base_model}', not '{embedding_model}'",
            hint=f"drop --embedding-model, or use another --index (or --config dense:{embedding_model})")
    base_model = base_model or embedding_model or DEFAULT_EMBEDDER
    needed: dict[str, str] = {}
    out: list[ResolvedConfig] = []
    for spec in specs:
        if spec.index:
            idx = spec.index
            model = existing_model(idx) or spec.embedding_model or base_model
            if spec.embedding_model and spec.embedding_model != model:
                raise DomainRagError(f"--config '{spec.text}': index '{idx}' was built with '{model}'")
        elif spec.embedding_model and spec.embedding_model != base_model:
            idx, model = derived_index_name(index, spec.embedding_model), spec.embedding_model
            if existing_model(idx) not in (None, model):
                raise DomainRagError(f"--config '{spec.text}': index '{idx}' exists with another model",
                                     hint="name an index explicitly with @INDEX")
        else:
            idx, model = index, base_model
        if ws.catalog.get("index", idx) is None and not ingest:
            raise NotFoundError(f"index '{idx}' (for --config '{spec.text}') does not exist",
                                hint="pass --ingest to build it from the data set's corpus.jsonl")
        needed[idx] = model
        label = spec.text if spec.text not in [c.label for c in out] else f"{spec.text} #{len(out) + 1}"
        out.append(ResolvedConfig(label, spec.mode, idx, model))
    return out, needed


def ingest_corpus(
    ws: Any, index: str, model: str, dataset: RetrievalDataset, *, store: Any = "embedded",
    max_words: int = 120, overlap_words: int = 20, progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Create ``index`` if needed and ingest the data set's corpus (one Document per corpus entry).

    Chunk ids are deterministic, so re-running on an existing index only writes what is missing.
    """
    import json

    from domainrag.index.ingest import ingest_documents
    from domainrag.index.manage import create_index

    if dataset.corpus is None:
        raise DomainRagError(f"--ingest needs a corpus, and data set '{dataset.name}' has none",
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
    return {"index": index, "embedding_model": model, "max_words": max_words, "overlap_words": overlap_words,
            **report.to_dict()}


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
    ws: Any,
    dataset: RetrievalDataset,
    index: str,
    configs: Sequence[str] = DEFAULT_CONFIGS,
    *,
    ingest: bool = False,
    embedding_model: str | None = None,
    store: Any = "embedded",
    metrics: Sequence[str] = DEFAULT_METRICS,
    depth: int | None = None,
    max_words: int = 120,
    overlap_words: int = 20,
    drill_hits: int = 5,
    limit: int | None = None,
    progress: Progress | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Score every configuration on the data set; returns the result dict (see :func:`new_result`).

    Each query fetches ``depth`` chunks (default twice the largest metric cut-off); the run keeps
    each document's best rank and is cut to the largest cut-off in documents.
    """
    from domainrag.retrieval.retriever import RetrievalConfig, Retriever

    t0 = time.time()
    metrics = validate_metrics(metrics)
    depth = depth or 2 * _max_cutoff(metrics)
    specs = [parse_config(c) for c in (configs or DEFAULT_CONFIGS)]
    resolved, needed = resolve_configs(ws, index, specs, ingest=ingest, embedding_model=embedding_model)
    result = new_result(f"Retrieval evaluation — {dataset.name}", dataset.files, command)
    ingests = []
    if ingest:
        for idx, model in needed.items():
            cb = (lambda d, t, i=idx: progress(f"ingest → {i}", d, t)) if progress else None
            ingests.append(ingest_corpus(ws, idx, model, dataset, store=store, max_words=max_words,
                                         overlap_words=overlap_words, progress=cb))
    if dataset.corpus is None:
        _drop_docs_missing_from_index(dataset, ws.store(resolved[0].index))
    if limit:
        keep = list(dataset.queries)[:limit]
        dataset.queries = {q: dataset.queries[q] for q in keep}
        dataset.qrels = {q: dataset.qrels[q] for q in keep}
    result["warnings"] = dataset.stats.warnings()
    result["metadata"]["models"] = {m: model_info(ws, m) for m in sorted(set(needed.values()))}
    searchers: dict[str, tuple[Search, dict[str, Any]]] = {}
    for cfg in resolved:
        record = ws.catalog.require("index", cfg.index)
        embedder = _BatchQueryEmbedder(ws.embedder(cfg.embedding_model), list(dataset.queries.values())) \
            if cfg.mode != "bm25" and dataset.queries else None
        rc = RetrievalConfig(index=cfg.index, mode=cfg.mode, top_k=min(depth, 100), candidates=depth,
                             vector_store=record["store"]["type"])
        retriever = Retriever(ws.store(cfg.index), embedder, rc)  # type: ignore[arg-type]  # bm25 never embeds
        config = {"mode": cfg.mode, "index": cfg.index,
                  "embedding_model": cfg.embedding_model if cfg.mode != "bm25" else None,
                  "store": record["store"]["type"], "depth_chunks": depth, "level": "doc",
                  "rank_constant": rc.rank_constant if cfg.mode == "hybrid" else None,
                  "index_chunks": record.get("chunks")}
        searchers[cfg.label] = (lambda text, k, r=retriever: r.run(text, top_k=k), config)
    section = score_retrievers(searchers, dataset, metrics, depth=depth, drill_hits=drill_hits, progress=progress)
    result["retrieval"] = {**section, "ingest": ingests}
    result["metadata"]["elapsed_s"] = round(time.time() - t0, 1)
    return result


def score_retrievers(
    searchers: Mapping[str, tuple[Search, Mapping[str, Any]]],
    dataset: RetrievalDataset,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    depth: int | None = None,
    drill_hits: int = 5,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The report's retrieval section for any searchers: label → (``search(text, k)`` → hits, config shown).

    Used by ``eval retrieval``, and by anything that has its own retrievers (the quickstart). The
    run keeps each document's best-ranked chunk and is cut to the largest metric cut-off.
    """
    metrics = validate_metrics(metrics)
    cutoff = _max_cutoff(metrics)
    depth = depth or 2 * cutoff
    if not dataset.queries:
        raise DomainRagError(f"data set '{dataset.name}' has no query with a relevant document to evaluate")
    runs, hits_by_config = [], {}
    for label, (search, config) in searchers.items():
        run: dict[str, dict[str, float]] = {}
        top: dict[str, list[dict[str, Any]]] = {}
        t1 = time.time()
        for i, (qid, text) in enumerate(dataset.queries.items()):
            hits = search(text, depth)
            run[qid] = dict(list(run_from_hits(hits, "doc").items())[:cutoff])
            rel = dataset.qrels.get(qid, {})
            top[qid] = [{"doc_id": h.doc_id, "chunk_id": h.chunk_id, "score": round(float(h.score), 6),
                         "relevant": rel.get(h.doc_id, 0) > 0, "text": h.text[:EXCERPT_CHARS]}
                        for h in hits[:drill_hits]]
            if progress:
                progress(f"retrieve ({label})", i + 1, len(dataset.queries))
        per_query = evaluate_run_per_query(dataset.qrels, run, metrics)
        runs.append({"label": label, "config": dict(config), "metrics": mean_metrics(per_query, metrics),
                     "per_query": per_query, "seconds": round(time.time() - t1, 2)})
        hits_by_config[label] = top
    queries = [{"id": qid, "text": text, "relevant": sorted(d for d, g in dataset.qrels[qid].items() if g > 0),
                "hits": {label: top[qid] for label, top in hits_by_config.items()}}
               for qid, text in dataset.queries.items()]
    return {"dataset": {"name": dataset.name, "format": dataset.format, "queries": len(dataset.queries),
                        "corpus": None if dataset.corpus is None else len(dataset.corpus),
                        "qrels": sum(len(r) for r in dataset.qrels.values()), "dropped": dataset.stats.to_dict()},
            "metrics": list(metrics), "ingest": [], "runs": runs, "queries": queries}


# -- answers ----------------------------------------------------------------------------------------
class Answerer(Protocol):
    """What an app must do to be evaluated: ``invoke(question)`` → object with answer/references/passages."""

    def invoke(self, query: str) -> Any: ...


class Judge(Protocol):
    def describe(self) -> dict[str, Any]: ...

    def judge(self, question: str, answer: str, passages: list[str]) -> Any: ...


class _Unloadable:
    """Stands in for an app that failed to load: every question records the load error."""

    def __init__(self, message: str) -> None:
        self.message = message

    def invoke(self, query: str) -> Any:
        raise RuntimeError(self.message)


def app_config(ws: Any, name: str) -> dict[str, Any]:
    """What the report shows about an app: model, index, embedding model, retrieval and generation settings."""
    record = ws.catalog.require("app", name)
    retrieval = dict(record.get("retrieval") or {})
    index = ws.catalog.get("index", retrieval.get("index", "")) or {}
    gen = dict(record.get("generation") or {})
    gen.pop("system_prompt", None)  # long; the app record has it
    gen.pop("not_found_answer", None)
    return {"app": name, "model": record.get("model"), "index": retrieval.get("index"),
            "embedding_model": index.get("embedding_model"), "mode": retrieval.get("mode"),
            "top_k": retrieval.get("top_k"), **{f"generation.{k}": v for k, v in gen.items()}}


def unknown_gold_warnings(ws: Any, items: Sequence[Mapping[str, Any]], configs: Mapping[str, Mapping[str, Any]],
                          source: str) -> list[str]:
    """One warning per app index that lacks gold documents the questions name (they can never be retrieved,
    so those questions' context hit and citation precision are 0 whatever the app does)."""
    golds = sorted({d for q in items for d in gold_docs(dict(q))})
    out, checked = [], {}
    for label, cfg in configs.items():
        index = cfg.get("index")
        if not index or not golds:
            continue
        if index not in checked:
            store = ws.store(index)
            checked[index] = [d for d in golds if not store.ids_for_document(d)]
        missing = checked[index]
        if missing:
            n_q = sum(1 for q in items if any(d in missing for d in gold_docs(dict(q))))
            out.append(f"{len(missing)} gold document(s) named by {n_q} question(s) of {source} are not in index "
                       f"'{index}' of {label}: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
    return out


def _passage(hit: Any) -> dict[str, Any]:
    return {"doc_id": hit.doc_id, "chunk_id": hit.chunk_id, "score": round(float(hit.score), 6),
            "text": hit.text[:EXCERPT_CHARS]}


def run_answer_eval(
    apps: Mapping[str, Callable[[], Answerer]],
    items: Sequence[dict[str, Any]],
    *,
    dataset_files: Mapping[str, Path],
    configs: Mapping[str, Mapping[str, Any]] | None = None,
    judge: Judge | None = None,
    models: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    command: str | None = None,
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """Ask every app every question and score the answers; an app error is recorded per question.

    ``apps`` maps a label to a loader, so only one app's model is in memory at a time; ``warnings``
    (e.g. from :func:`unknown_gold_warnings`) are carried into the result.
    """
    from domainrag.data.prompts import extract_citations
    from domainrag.evaluation.judge import NOT_CONFIGURED, JudgeError

    t0 = time.time()
    name = Path(next(iter(dataset_files.values()))).stem if dataset_files else "questions"
    result = new_result(f"Answer evaluation — {name}", dataset_files, command)
    result["warnings"].extend(warnings)
    empty = [q["id"] for q in items if not str(q.get("question") or "").strip()]
    if empty:
        result["warnings"].append(f"{len(empty)} empty question(s) skipped: {', '.join(empty[:10])}")
    questions = [q for q in items if str(q.get("question") or "").strip()]
    if not questions:
        raise DomainRagError("the questions file holds no question to ask")
    judge_info = judge.describe() if judge else dict(NOT_CONFIGURED)
    per_question: dict[str, dict[str, Any]] = {q["id"]: {} for q in questions}
    runs = []
    for label, load in apps.items():
        try:
            app: Answerer = load()
        except Exception as exc:  # a model that fails to load fails each question of its run, not the others
            message = f"could not load '{label}': {type(exc).__name__}: {exc}"
            result["warnings"].append(message)
            app = _Unloadable(message)
        with_retrieval = getattr(app, "uses_retrieval", True)  # closed-book runs have no context to check
        scores = []
        judge_errors = 0
        t1 = time.time()
        for i, q in enumerate(questions):
            gold = gold_docs(q)
            entry: dict[str, Any] = {"answer": None, "error": None, "references": [], "passages": []}
            try:
                ans = app.invoke(q["question"])
            except Exception as exc:  # one failing question must not lose the others
                entry["error"] = f"{type(exc).__name__}: {exc}"
                s = score_answer(q, None, error=entry["error"], gold=gold)
            else:
                passages = list(getattr(ans, "passages", []) or [])
                cited_idx, _ = extract_citations(ans.answer, len(passages))
                cited = [(passages[n - 1].doc_id, passages[n - 1].text) for n in cited_idx]
                s = score_answer(q, ans.answer, cited, [p.text for p in passages], gold=gold,
                                 retrieved_docs=[p.doc_id for p in passages] if with_retrieval else None)
                entry.update(answer=ans.answer, cited=cited_idx, passages=[_passage(p) for p in passages],
                             references=[{k: r.get(k) for k in ("citation", "document", "chunk_id")}
                                         for r in getattr(ans, "references", []) or []])
                if judge and with_retrieval and not s.refused and ans.answer.strip():
                    try:
                        v = judge.judge(q["question"], ans.answer, [t for _, t in cited] or [p.text for p in passages])
                        s.faithfulness, s.faithfulness_detail = v.score, v.to_dict()
                    except JudgeError as exc:
                        judge_errors += 1
                        s.faithfulness_detail = {"error": exc.message}
                    except Exception as exc:  # a judge crash costs this verdict only, never the run
                        judge_errors += 1
                        s.faithfulness_detail = {"error": f"{type(exc).__name__}: {exc}"}
            entry["score"] = asdict(s)
            entry["correct"] = s.correct
            per_question[q["id"]][label] = entry
            scores.append(s)
            if progress:
                progress(f"answer ({label})", i + 1, len(questions))
        metrics = aggregate_scores(scores)
        status = {}
        if not with_retrieval:
            status["faithfulness"] = "not applicable (no retrieval: no passages to be faithful to)"
        elif judge is None:
            status["faithfulness"] = "not measured (no judge configured)"
        elif metrics["faithfulness"] is None:
            status["faithfulness"] = f"not measured (judge failed on {judge_errors} answer(s), or nothing to judge)"
        runs.append({"label": label, "config": dict((configs or {}).get(label, {"app": label})),
                     "metrics": metrics, "status": status, "judge_errors": judge_errors,
                     "errors": sum(1 for s in scores if s.error), "seconds": round(time.time() - t1, 2)})
        del app
    result["metadata"]["models"] = dict(models or {})
    n_unanswerable = sum(1 for q in questions if not gold_docs(q) and ("doc" in q or "docs" in q))
    result["answers"] = {
        "dataset": {"questions": len(questions), "answerable": len(questions) - n_unanswerable,
                    "unanswerable": n_unanswerable},
        "metrics": list(ANSWER_METRICS), "judge": judge_info, "runs": runs,
        "questions": [{"id": q["id"], "question": q["question"], "reference": q.get("answer"),
                       "short_answer": q.get("short_answer"), "gold": gold_docs(q), "results": per_question[q["id"]]}
                      for q in questions],
    }
    result["metadata"]["elapsed_s"] = round(time.time() - t0, 1)
    return result


def write_json(result: Mapping[str, Any], path: str | Path) -> Path:
    import json

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(result, indent=1, default=str))
    return p
