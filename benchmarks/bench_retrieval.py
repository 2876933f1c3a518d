"""Ingestion throughput and query latency of domainrag's embedded store, optionally against LlamaIndex.

Corpus: the real passages of PubMedQA (``CONTEXTS``, 3,358) and TAT-QA dev + test (paragraphs, 2,635),
one document each, then deterministic variants (sentences shuffled with a seeded RNG, a ``[variant k]``
suffix) until the corpus chunks (``chunk_document`` with ingestion's defaults) reach ``--chunks``.
Queries: PubMedQA questions (``--warmup`` of them first, untimed, then ``--queries`` timed ones);
relevance for the sanity metrics: the question's own abstract (any passage or variant of it).

Ingestion: ``ingest_documents`` (chunk → embed with the real MiniLM → upsert → ``refresh()``) into a
fresh embedded store. With ``--ingest-sample S`` only the first S chunks go through it (that is the
measured throughput); the rest is bulk-loaded with ``store.upsert`` in large batches, with vectors from
the same embedder (``--bulk-vectors model``) or random unit vectors (``--bulk-vectors random``, fast but
dense results become meaningless for those rows), then ``refresh()`` builds the BM25 and, past
``ann_min_rows``, the IVF-PQ index; each phase is timed separately.

Query latency: ``Retriever.run`` (embed query + dense + BM25 + RRF, top-10), also dense-only. The
query is encoded by ``--query-backend`` (default ``auto``: ONNX Runtime when available, see
``Embedder``); the per-stage breakdown also times the torch encoder on the same queries
(``embed_query_torch``) so both encoders are compared on the same machine state.

    python benchmarks/bench_retrieval.py --chunks 10000 --chunks 100000 --ingest-sample 5000 \\
        --compare-llamaindex --out benchmarks/results/retrieval.json --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from domainrag.data.chunking import Chunk, chunk_document
from domainrag.data.loaders import Document
from domainrag.evaluation.retrieval import evaluate_run
from domainrag.index.config import EmbeddedStoreConfig
from domainrag.index.embedded import EmbeddedStore
from domainrag.index.ingest import embed_text, ingest_documents
from domainrag.retrieval.embedder import Embedder, load_embedder
from domainrag.retrieval.fusion import reciprocal_rank_fusion
from domainrag.retrieval.retriever import RetrievalConfig, Retriever
from domainrag.zoo import resolve_embedder

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"
MODEL = "all-minilm-l6-v2"
METRICS = ("recall@10", "mrr@10", "ndcg@10")
_SENT = re.compile(r"(?<=[.!?])\s+")


# ---------------------------------------------------------------- corpus and queries


@dataclass(frozen=True)
class Passage:
    pid: str
    text: str
    group: str  # relevance unit: the PubMed id for PubMedQA, the passage itself for TAT-QA


def load_passages(data_dir: Path) -> list[Passage]:
    pqa = json.loads((data_dir / "pubmedqa" / "ori_pqal.json").read_text())
    out = [
        Passage(f"pubmedqa-{pmid}-{j}", ctx, f"pubmedqa-{pmid}")
        for pmid in sorted(pqa)
        for j, ctx in enumerate(pqa[pmid]["CONTEXTS"])
        if ctx.strip()
    ]
    for name in ("tatqa_dataset_dev.json", "tatqa_dataset_test_gold.json"):
        for entry in json.loads((data_dir / "tatqa" / name).read_text()):
            for para in entry["paragraphs"]:
                if para["text"].strip():
                    out.append(Passage(f"tatqa-{para['uid']}", para["text"], f"tatqa-{para['uid']}"))
    return out


def load_queries(data_dir: Path) -> list[tuple[str, str, str]]:
    """(query id, question, relevant group) for every PubMedQA question, in PubMed-id order."""
    pqa = json.loads((data_dir / "pubmedqa" / "ori_pqal.json").read_text())
    return [(f"q{pmid}", pqa[pmid]["QUESTION"], f"pubmedqa-{pmid}") for pmid in sorted(pqa)]


def variant(p: Passage, k: int) -> Document:
    """Copy ``k`` of a passage: the original for k=0, else its sentences shuffled (seeded) plus a suffix."""
    meta = {"group": p.group}
    if k == 0:
        return Document(p.pid, p.text, metadata=meta)
    sents = _SENT.split(p.text.strip())
    random.Random(f"{p.pid}/{k}").shuffle(sents)
    return Document(f"{p.pid}~v{k}", " ".join(sents) + f" [variant {k}]", metadata=meta)


def build_corpus(passages: Sequence[Passage], n_chunks: int) -> tuple[list[Document], list[list[Chunk]]]:
    """Documents (originals, then variant 1 of each, ...) until their chunks reach ``n_chunks``."""
    docs: list[Document] = []
    chunks: list[list[Chunk]] = []
    total, k = 0, 0
    while total < n_chunks:
        for p in passages:
            doc = variant(p, k)
            cs = chunk_document(doc)  # ingest_documents' defaults: 120 words, 20 overlap
            docs.append(doc)
            chunks.append(cs)
            total += len(cs)
            if total >= n_chunks:
                break
        k += 1
    return docs, chunks


# ---------------------------------------------------------------- timing helpers


class TimedEmbedder:
    """Wraps an Embedder and accumulates the time spent encoding (duck-typed for ingest/retriever)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.seconds = inner, 0.0
        self.name, self.dimension = inner.name, inner.dimension

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self.inner.encode(texts, batch_size=batch_size)
        finally:
            self.seconds += time.perf_counter() - t0

    def encode_query(self, query: str) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self.inner.encode_query(query)
        finally:
            self.seconds += time.perf_counter() - t0


def latency(fn: Callable[[str], Any], warm: Sequence[str], timed: Sequence[str]) -> tuple[dict[str, float], list[Any]]:
    for q in warm:
        fn(q)
    times, outs = [], []
    for q in timed:
        t0 = time.perf_counter()
        outs.append(fn(q))
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1000
    stats = {"p50_ms": np.percentile(ms, 50), "p99_ms": np.percentile(ms, 99), "mean_ms": ms.mean()}
    return {k: round(float(v), 2) for k, v in stats.items()}, outs


def quality(queries: Sequence[tuple[str, str, str]], groups_per_query: Sequence[Sequence[str]]) -> dict[str, float]:
    """Abstract-level metrics: a query's hit list mapped to relevance groups (best rank kept)."""
    qrels = {qid: {group: 1} for qid, _, group in queries}
    run = {}
    for (qid, _, _), groups in zip(queries, groups_per_query, strict=True):
        row: dict[str, float] = {}
        for rank, g in enumerate(groups):
            row.setdefault(g, float(len(groups) - rank))
        run[qid] = row
    return {k: round(v, 4) for k, v in evaluate_run(qrels, run, METRICS).items()}


def unit_random(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ---------------------------------------------------------------- domainrag


class BulkVectors:
    """Vectors for the bulk-loaded remainder, cached by chunk id so a larger N reuses a smaller N's work."""

    def __init__(self, embedder: TimedEmbedder, kind: str, batch_size: int) -> None:
        self.embedder, self.kind, self.batch_size = embedder, kind, batch_size
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, chunks: Sequence[Chunk]) -> np.ndarray:
        todo = [c for c in chunks if c.chunk_id not in self.cache]
        if todo:
            if self.kind == "model":
                vecs = self.embedder.encode([embed_text(c) for c in todo], batch_size=self.batch_size)
            else:
                vecs = unit_random(len(todo), self.embedder.dimension, seed=len(self.cache))
            self.cache.update(zip((c.chunk_id for c in todo), vecs, strict=True))
        return np.stack([self.cache[c.chunk_id] for c in chunks])


def run_domainrag(
    n: int, docs: list[Document], chunks: list[list[Chunk]], sample_docs: int, embedder: TimedEmbedder,
    bulk: BulkVectors, args: argparse.Namespace, workdir: str, queries: list[tuple[str, str, str]],
    warm: list[str],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    store = EmbeddedStore(f"bench_{n}", EmbeddedStoreConfig(), workdir)
    expected = sum(len(cs) for cs in chunks)
    if args.reuse and store.exists() and store.count() == expected:
        print(f"[domainrag N={n}] reusing the {expected:,}-chunk table in {workdir}", file=sys.stderr)
        return query_latency(n, store, embedder, args, queries, warm, {"reused_table": True}), {}
    store.drop()
    refresh_s = [0.0]
    inner_refresh = store.refresh

    def timed_refresh() -> None:
        t0 = time.perf_counter()
        inner_refresh()
        refresh_s[0] += time.perf_counter() - t0

    store.refresh = timed_refresh  # type: ignore[method-assign]

    # 1. the measured pipeline: ingest_documents on the sample (or everything)
    embedder.seconds = 0.0
    t0 = time.perf_counter()
    report = ingest_documents(docs[:sample_docs], store, embedder, batch_size=args.batch_size)
    ingest_s = time.perf_counter() - t0
    ingest = {
        "chunks": report.written,
        "seconds": round(ingest_s, 2),
        "chunks_per_s": round(report.written / ingest_s, 1),
        "embed_seconds": round(embedder.seconds, 2),
        "refresh_seconds": round(refresh_s[0], 2),
        "chunks_per_s_excluding_refresh": round(report.written / (ingest_s - refresh_s[0]), 1),
    }
    print(f"[domainrag N={n}] ingest_documents: {ingest}", file=sys.stderr)

    # 2. bulk remainder (not part of the throughput figure)
    rest = [c for cs in chunks[sample_docs:] for c in cs]
    vectors: dict[str, np.ndarray] = {}
    bulk_info: dict[str, Any] = {"chunks": len(rest), "vectors": args.bulk_vectors if rest else None}
    if rest:
        embedder.seconds = 0.0
        t_vec = t_write = 0.0
        for start in range(0, len(rest), args.bulk_batch):
            part = rest[start : start + args.bulk_batch]
            t0 = time.perf_counter()
            vecs = bulk(part)
            t_vec += time.perf_counter() - t0
            t0 = time.perf_counter()
            store.upsert(part, vecs)
            t_write += time.perf_counter() - t0
            vectors.update(zip((c.chunk_id for c in part), vecs, strict=True))
            print(f"\r  bulk {start + len(part):,}/{len(rest):,}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        refresh_s[0] = 0.0
        store.refresh()
        bulk_info.update(vector_seconds=round(t_vec, 2), upsert_seconds=round(t_write, 2),
                         refresh_seconds=round(refresh_s[0], 2))
        print(f"[domainrag N={n}] bulk: {bulk_info}", file=sys.stderr)
    return query_latency(n, store, embedder, args, queries, warm, {"ingest": ingest, "bulk": bulk_info}), vectors


def query_latency(
    n: int, store: EmbeddedStore, embedder: TimedEmbedder, args: argparse.Namespace,
    queries: list[tuple[str, str, str]], warm: list[str], info: dict[str, Any],
) -> dict[str, Any]:
    """Latency and sanity metrics of ``Retriever.run`` (hybrid, dense), then each stage alone."""
    total = store.count()
    ann = total >= store.config.ann_min_rows
    timed = [q for _, q, _ in queries]
    out: dict[str, Any] = {"chunks": total, "ann_index": ann, **info}
    for mode in ("hybrid", "dense"):
        retriever = Retriever(store, embedder, RetrievalConfig(index=store.name, mode=mode, top_k=10))  # type: ignore[arg-type]
        embedder.seconds = 0.0
        lat, hits = latency(retriever.run, warm, timed)
        lat["embed_mean_ms"] = round(embedder.seconds / (len(warm) + len(timed)) * 1000, 2)
        lat.update(quality(queries, [[h.metadata.get("group", h.doc_id) for h in hs] for hs in hits]))
        out[mode] = lat
        print(f"[domainrag N={n}] {mode}: {lat}", file=sys.stderr)
    out["query_encoder"] = embedder.inner.query_path
    out["stages"] = stage_latency(store, embedder.inner, warm, timed)
    print(f"[domainrag N={n}] stages: {out['stages']}", file=sys.stderr)
    if not args.keep:
        store.drop()
    return out


def stage_latency(
    store: EmbeddedStore, embedder: Embedder, warm: Sequence[str], timed: Sequence[str]
) -> dict[str, Any]:
    """Where a hybrid query's time goes: each stage timed alone, one after the other, same queries.

    ``candidates`` (30) hits per retriever as ``Retriever.run`` fetches them; fusion on those lists.
    """
    n = RetrievalConfig(index=store.name).candidates
    vecs = {q: embedder.encode_query(q) for q in [*warm, *timed]}
    hits: dict[str, dict[str, list[Any]]] = {q: {} for q in timed}

    def dense(q: str) -> None:
        hits.setdefault(q, {})["dense"] = store.dense_search(vecs[q], n)

    def bm25(q: str) -> None:
        hits.setdefault(q, {})["bm25"] = store.text_search(q, n)

    out = {"embed_query": latency(embedder.encode_query, warm, timed)[0],
           "embed_query_torch": latency(embedder.encode_query_torch, warm, timed)[0],
           "dense_search": latency(dense, warm, timed)[0], "bm25_search": latency(bm25, warm, timed)[0]}
    out["rrf_fusion"] = latency(lambda q: reciprocal_rank_fusion(hits[q]), [], timed)[0]
    out["note"] = ("each stage alone, sequentially; Retriever.run overlaps bm25_search with "
                   "embed_query + dense_search on a worker thread; embed_query is the encoder Retriever.run "
                   "used (query_encoder), embed_query_torch the torch one on the same queries for comparison")
    return out


# ---------------------------------------------------------------- LlamaIndex


def run_llamaindex(
    n: int, chunks: list[list[Chunk]], sample_docs: int, vectors: dict[str, np.ndarray], model_path: str,
    args: argparse.Namespace, queries: list[tuple[str, str, str]], warm: list[str],
) -> dict[str, Any]:
    """Same chunk texts through IngestionPipeline(HuggingFaceEmbedding) → VectorStoreIndex (in-memory)."""
    from llama_index.core import Settings, VectorStoreIndex
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.schema import MetadataMode, TextNode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    Settings.llm = None  # never reach for an OpenAI default
    embed_model = HuggingFaceEmbedding(model_name=model_path, embed_batch_size=args.batch_size, device="cpu")
    Settings.embed_model = embed_model

    def node(c: Chunk, embedding: list[float] | None = None) -> TextNode:
        return TextNode(
            id_=c.chunk_id, text=embed_text(c), embedding=embedding,
            metadata={"doc_id": c.doc_id, "group": c.metadata["group"]},
            excluded_embed_metadata_keys=["doc_id", "group"], excluded_llm_metadata_keys=["doc_id", "group"],
        )

    sample = [node(c) for cs in chunks[:sample_docs] for c in cs]
    embed_model.get_text_embedding_batch(["warm-up"] * 8)  # first-call overhead out of the timing
    assert sample[0].get_content(metadata_mode=MetadataMode.EMBED) == sample[0].text  # same text as domainrag
    t0 = time.perf_counter()
    embedded = IngestionPipeline(transformations=[embed_model]).run(nodes=sample)
    index = VectorStoreIndex(embedded, embed_model=embed_model)
    ingest_s = time.perf_counter() - t0
    ingest = {"chunks": len(sample), "seconds": round(ingest_s, 2), "chunks_per_s": round(len(sample) / ingest_s, 1)}
    print(f"[llamaindex N={n}] ingest: {ingest}", file=sys.stderr)
    rest = [c for cs in chunks[sample_docs:] for c in cs]
    bulk_s = 0.0
    if rest:  # the very vectors domainrag stored, inserted pre-embedded
        t0 = time.perf_counter()
        for start in range(0, len(rest), args.bulk_batch):
            index.insert_nodes([node(c, vectors[c.chunk_id].tolist()) for c in rest[start : start + args.bulk_batch]])
        bulk_s = time.perf_counter() - t0
    retriever = index.as_retriever(similarity_top_k=10)
    qs = queries[: args.llamaindex_queries] if args.llamaindex_queries else queries
    lat, hits = latency(retriever.retrieve, warm, [q for _, q, _ in qs])
    lat.update(quality(qs, [[h.node.metadata["group"] for h in hs] for hs in hits]))
    print(f"[llamaindex N={n}] dense: {lat}", file=sys.stderr)
    return {"chunks": len(sample) + len(rest), "ingest": ingest, "dense": lat, "queries": len(qs),
            "bulk": {"chunks": len(rest), "seconds": round(bulk_s, 2)}}


# ---------------------------------------------------------------- report


def machine_info() -> dict[str, Any]:
    import torch

    versions = {}
    for pkg in ("domainrag", "torch", "onnxruntime", "onnx", "sentence-transformers", "transformers", "lancedb",
                "pyarrow", "numpy",
                "llama-index-core", "llama-index-embeddings-huggingface"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| chunks | ingest chunks/s (on n) | bulk vectors | refresh s | hybrid p50 / p99 ms | dense p50 / p99 ms "
        "| hybrid R@10 | LlamaIndex chunks/s | LlamaIndex p50 / p99 ms | ingest ratio | p50 ratio hybrid / dense |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["results"]:
        d = r["domainrag"]
        li = r.get("llamaindex")
        rat = r.get("ratios", {})
        hy, de = d["hybrid"], d["dense"]
        if "ingest" in d:
            ing = d["ingest"]
            refresh = d["bulk"].get("refresh_seconds", ing["refresh_seconds"])
            ingest_cols = f"{ing['chunks_per_s']} ({ing['chunks']:,}) | {d['bulk']['vectors'] or '-'} | {refresh}"
        else:
            ingest_cols = "- (reused table) | - | -"
        lines.append(
            f"| {d['chunks']:,} | {ingest_cols} | {hy['p50_ms']} / {hy['p99_ms']} | {de['p50_ms']} / {de['p99_ms']} "
            f"| {hy['recall@10']:.3f} "
            + (f"| {li['ingest']['chunks_per_s']} | {li['dense']['p50_ms']} / {li['dense']['p99_ms']} "
               f"| {rat['ingest_chunks_per_s']:.2f} | {rat['query_p50_hybrid']:.2f} / {rat['query_p50_dense']:.2f} |"
               if li else "| - | - | - | - |")
        )
    lines.append("")
    lines.append("Ratios are domainrag / LlamaIndex: ingest > 1 means domainrag ingests faster, latency < 1 means "
                 "domainrag answers faster (LlamaIndex's default retriever is dense-only).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--chunks", type=int, action="append", help="corpus size in chunks (repeatable)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder with pubmedqa/ and tatqa/")
    ap.add_argument("--ingest-sample", type=int, default=None,
                    help="measure ingest_documents on the first N chunks only, bulk-load the rest")
    ap.add_argument("--bulk-vectors", choices=("model", "random"), default="model",
                    help="vectors for the bulk-loaded rest: the same embedder, batched, or random unit vectors")
    ap.add_argument("--batch-size", type=int, default=64, help="embedding batch size (both frameworks)")
    ap.add_argument("--bulk-batch", type=int, default=4096, help="chunks per bulk upsert")
    ap.add_argument("--queries", type=int, default=200, help="timed queries")
    ap.add_argument("--warmup", type=int, default=20, help="untimed queries first (disjoint from the timed ones)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--query-backend", choices=("auto", "onnx", "torch"), default="auto",
                    help="how one query is encoded (Embedder.query_backend); batches always use torch")
    ap.add_argument("--compare-llamaindex", action="store_true")
    ap.add_argument("--llamaindex-queries", type=int, default=None,
                    help="timed LlamaIndex queries (default: --queries; its store scans in Python)")
    ap.add_argument("--workdir", default=None, help="LanceDB folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the tables")
    ap.add_argument("--reuse", action="store_true",
                    help="with --workdir: query a kept table of the right size instead of ingesting again "
                         "(latency only; no ingestion figures, no LlamaIndex comparison)")
    ap.add_argument("--out", default=None, help="write the JSON result here")
    ap.add_argument("--markdown", action="store_true", help="print the results as a markdown table")
    args = ap.parse_args(argv)
    sizes = args.chunks or [10_000]
    if args.reuse and (args.workdir is None or args.compare_llamaindex):
        ap.error("--reuse needs --workdir and cannot be combined with --compare-llamaindex")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info()
    passages = load_passages(args.data_dir)
    all_queries = load_queries(args.data_dir)
    if args.warmup + args.queries > len(all_queries):
        ap.error(f"--warmup + --queries must be at most {len(all_queries)}")
    warm = [q for _, q, _ in all_queries[: args.warmup]]
    queries = all_queries[args.warmup : args.warmup + args.queries]
    model_path = resolve_embedder(MODEL)
    embedder = TimedEmbedder(load_embedder(model_path, MODEL))
    embedder.inner.query_backend = args.query_backend
    embedder.encode(["warm-up"] * 8)  # first-call overhead out of the timing
    embedder.encode_query("warm-up")  # builds (or loads the cached) ONNX encoder before any timing
    bulk = BulkVectors(embedder, args.bulk_vectors, args.batch_size)
    tmp = tempfile.TemporaryDirectory(prefix="bench_retrieval_") if args.workdir is None else None
    workdir = args.workdir or tmp.name  # type: ignore[union-attr]

    result: dict[str, Any] = {
        "benchmark": "retrieval",
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "machine": info,
        "settings": {
            "model": MODEL, "model_path": model_path, "batch_size": args.batch_size,
            "batch_size_note": "domainrag ingest_documents(batch_size) and HuggingFaceEmbedding(embed_batch_size)",
            "passages": len(passages), "queries": len(queries), "warmup": args.warmup, "top_k": 10,
            "ingest_sample": args.ingest_sample, "bulk_vectors": args.bulk_vectors,
            "query_backend": args.query_backend, "query_threads": embedder.inner.query_threads,
            "store": EmbeddedStoreConfig().model_dump(),
        },
        "results": [],
    }
    for n in sizes:
        docs, chunks = build_corpus(passages, n)
        sample_docs = len(docs)
        if args.ingest_sample and args.ingest_sample < n:
            counts = np.cumsum([len(cs) for cs in chunks])
            sample_docs = int(np.searchsorted(counts, args.ingest_sample) + 1)
        entry: dict[str, Any] = {"target_chunks": n, "documents": len(docs)}
        entry["domainrag"], vectors = run_domainrag(
            n, docs, chunks, sample_docs, embedder, bulk, args, workdir, queries, warm
        )
        if args.compare_llamaindex:
            if not vectors and sample_docs < len(docs):
                raise RuntimeError("bulk vectors missing")
            li = run_llamaindex(n, chunks, sample_docs, vectors, model_path, args, queries, warm)
            entry["llamaindex"] = li
            d = entry["domainrag"]
            entry["ratios"] = {
                "ingest_chunks_per_s": round(d["ingest"]["chunks_per_s"] / li["ingest"]["chunks_per_s"], 3),
                "query_p50_hybrid": round(d["hybrid"]["p50_ms"] / li["dense"]["p50_ms"], 3),
                "query_p50_dense": round(d["dense"]["p50_ms"] / li["dense"]["p50_ms"], 3),
                "query_p99_dense": round(d["dense"]["p99_ms"] / li["dense"]["p99_ms"], 3),
                "note": "domainrag / LlamaIndex; LlamaIndex's default retriever is dense-only",
            }
        del vectors
        result["results"].append(entry)
    print(json.dumps([{k: r[k] for k in r if k in ("target_chunks", "ratios")} for r in result["results"]], indent=1))
    if args.markdown:
        print(markdown(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
