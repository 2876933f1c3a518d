"""Cross-engine agreement: the same retrieval quality on embedded (LanceDB), OpenSearch and Elasticsearch.

One shared data set (TAT-QA test_gold or PubMedQA's official test split, converted to a BEIR folder in a
temporary directory by ``convert_tatqa.py`` / ``convert_pubmedqa.py`` from ``../shared/data``), the same
chunks (``ingest_documents`` with its defaults) and the same vectors (all-MiniLM-L6-v2 via the zoo,
embedded once and replayed to every engine so that only the engines differ), then BM25 / dense /
hybrid through the same ``Retriever`` API and the project's metrics (``evaluate_run_per_query``,
document level: each document keeps its best-ranked chunk).

Agreement is judged against noise: for every engine and mode, the paired per-query difference to the
embedded engine, with a 95 % confidence interval (1.96 standard errors of the mean difference). An
interval that contains 0 means "agrees within noise".

``embedded-plain`` is the embedded engine with its BM25 index built without stemming and stop-word
removal, i.e. the analysis of Lucene's ``standard`` analyzer that the OpenSearch / Elasticsearch
mappings use, so BM25 differences can be split into "analysis" and "engine".
``opensearch-faiss`` maps the vectors with the faiss engine; on the service script's node that is
answered by exact search (see ``scripts/services/README.md``: the Maven k-NN zip has no native libraries).

Servers are started with ``scripts/services/{opensearch,elasticsearch}.sh`` one at a time (small
heaps; the machine is shared) and stopped again if this script started them.

    python benchmarks/bench_engines.py --dataset tatqa --out benchmarks/results/engines.json --markdown
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _beir_out import DEFAULT_DATA_DIR

from domainrag.evaluation.beir import RetrievalDataset, load_beir
from domainrag.evaluation.retrieval import evaluate_run_per_query, mean_metrics, run_from_hits
from domainrag.index import (
    ElasticsearchStoreConfig,
    EmbeddedStoreConfig,
    OpenSearchStoreConfig,
    VectorStore,
    open_store,
)
from domainrag.index.ingest import ingest_documents
from domainrag.retrieval.embedder import Embedder, load_embedder
from domainrag.retrieval.retriever import RetrievalConfig, Retriever
from domainrag.zoo import resolve_embedder

REPO = Path(__file__).resolve().parents[1]
SERVICES = REPO / "scripts" / "services"
MODEL = "all-minilm-l6-v2"
METRICS = ("ndcg@10", "recall@5", "recall@10", "mrr@10")
MODES = ("bm25", "dense", "hybrid")
ENGINES = ("embedded", "embedded-plain", "opensearch-lucene", "opensearch-faiss", "elasticsearch")
SERVICE_OF = {"opensearch-lucene": "opensearch", "opensearch-faiss": "opensearch", "elasticsearch": "elasticsearch"}


class CachedEmbedder:
    """Encodes each distinct text once and replays the vector, so every engine gets identical vectors.

    Duck-typed for ``ingest_documents`` and ``Retriever`` (``name``, ``dimension``, ``encode``,
    ``encode_query``); queries are encoded in one batch up front (``prime``).
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.name, self.dimension = inner, inner.name, inner.dimension
        self.cache: dict[str, np.ndarray] = {}
        self.seconds = 0.0

    def prime(self, texts: Sequence[str], batch_size: int = 64) -> None:
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if todo:
            t0 = time.perf_counter()
            self.cache.update(zip(todo, self.inner.encode(todo, batch_size=batch_size), strict=True))
            self.seconds += time.perf_counter() - t0

    def save(self, path: Path) -> None:
        """Keep the vectors (keyed by text) so a re-run with ``--workdir`` skips the embedding."""
        texts = list(self.cache)
        np.savez(path, texts=np.array(texts, dtype=object),
                 vectors=np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, self.dimension)))

    def load(self, path: Path) -> None:
        if path.is_file():
            with np.load(path, allow_pickle=True) as z:
                self.cache.update(zip(z["texts"].tolist(), z["vectors"], strict=True))

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        self.prime(texts, batch_size)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self.cache[t] for t in texts])

    def encode_query(self, query: str) -> np.ndarray:
        return self.encode([query])[0]


def convert(dataset: str, data_dir: Path, out: Path) -> RetrievalDataset:
    """The data set as a BEIR folder under ``out`` (written by the project's converter), loaded."""
    if dataset == "tatqa":
        import convert_tatqa

        convert_tatqa.convert(data_dir, out, "test", False)
    else:
        import convert_pubmedqa

        convert_pubmedqa.convert(data_dir, out, None, "official")
    return load_beir(out, "test")


def service(name: str, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SERVICES / f"{name}.sh"), action], capture_output=True, text=True, timeout=900)


@contextmanager
def running(name: str, keep: bool) -> Iterator[str]:
    """A started server's URL; stopped afterwards unless it was already running or ``keep``."""
    was_running = service(name, "status").returncode == 0
    t0 = time.perf_counter()
    start = service(name, "start")
    if start.returncode != 0:
        raise RuntimeError(f"{name}.sh start failed:\n{start.stdout[-2000:]}\n{start.stderr[-2000:]}")
    print(f"[{name}] up in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    try:
        yield service(name, "url").stdout.strip()
    finally:
        if not was_running and not keep:
            service(name, "stop")
            print(f"[{name}] stopped", file=sys.stderr)


def store_for(engine: str, url: str | None, workdir: Path) -> VectorStore:
    name = f"bench-engines-{engine}"
    if engine.startswith("embedded"):  # "-plain": BM25 without stemming / stop words, like Lucene's standard
        plain = engine.endswith("plain")
        cfg = EmbeddedStoreConfig(fts_stem=not plain, fts_remove_stop_words=not plain)
        return open_store(name.replace("-", "_"), cfg, str(workdir / "lancedb"))
    if engine.startswith("opensearch"):
        return open_store(name, OpenSearchStoreConfig(hosts=[url], engine=engine.split("-")[1]), "")  # type: ignore[list-item]
    return open_store(name, ElasticsearchStoreConfig(hosts=[url]), "")  # type: ignore[list-item]


def run_engine(
    engine: str, store: VectorStore, data: RetrievalDataset, embedder: CachedEmbedder, args: argparse.Namespace
) -> dict[str, Any]:
    """Ingest the corpus into a fresh index, then score every mode; per-query values kept for the CIs."""
    store.drop()
    t0 = time.perf_counter()
    report = ingest_documents(data.documents(), store, embedder, batch_size=64)  # type: ignore[arg-type]
    store.refresh()
    out: dict[str, Any] = {
        "ingest": {**report.to_dict(), "seconds": round(time.perf_counter() - t0, 1), "count": store.count()},
        "modes": {},
    }
    print(f"[{engine}] ingest {out['ingest']}", file=sys.stderr)
    for mode in MODES:
        cfg = RetrievalConfig(index=store.name, mode=mode, top_k=args.depth, candidates=args.depth)  # type: ignore[arg-type]
        retriever = Retriever(store, embedder, cfg)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        run = {qid: run_from_hits(retriever.run(text), "doc") for qid, text in data.queries.items()}
        seconds = time.perf_counter() - t0
        per_query = evaluate_run_per_query(data.qrels, run, METRICS)
        means = {m: round(v, 4) for m, v in mean_metrics(per_query, METRICS).items()}
        out["modes"][mode] = {"metrics": means, "ms_per_query": round(seconds / len(data.queries) * 1000, 2),
                              "per_query": per_query,
                              "top10": {q: list(r)[:10] for q, r in run.items()}}
        print(f"[{engine}] {mode}: {means}", file=sys.stderr)
    if not args.keep:
        store.drop()
    return out


def paired_ci(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], metric: str) -> dict[str, float]:
    """Mean of b - a over the queries with a 95 % normal-approximation interval."""
    d = np.array([b[q][metric] - a[q][metric] for q in a])
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0
    mean = float(d.mean())
    return {"diff": round(mean, 4), "ci95": [round(mean - 1.96 * se, 4), round(mean + 1.96 * se, 4)],
            "within_noise": bool(mean - 1.96 * se <= 0.0 <= mean + 1.96 * se)}


def top10_overlap(a: dict[str, list[str]], b: dict[str, list[str]]) -> float:
    """Mean share of the reference engine's top-10 documents that the other engine also returns."""
    return round(float(np.mean([len(set(a[q]) & set(b[q])) / max(len(a[q]), 1) for q in a])), 4)


def agreement(results: dict[str, dict[str, Any]], reference: str = "embedded") -> dict[str, Any]:
    out: dict[str, Any] = {}
    ref = results.get(reference)
    if ref is None:
        return out
    for engine, res in results.items():
        if engine == reference:
            continue
        out[engine] = {
            mode: {
                **{m: paired_ci(ref["modes"][mode]["per_query"], res["modes"][mode]["per_query"], m) for m in METRICS},
                "top10_doc_overlap": top10_overlap(ref["modes"][mode]["top10"], res["modes"][mode]["top10"]),
            }
            for mode in MODES
        }
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = ["| engine | mode | " + " | ".join(METRICS) + " | Δ nDCG@10 vs embedded (95 % CI) | top-10 overlap |",
             "|---|---|" + "---:|" * (len(METRICS) + 2)]
    for engine, res in result["engines"].items():
        for mode in MODES:
            m = res["modes"][mode]["metrics"]
            agr = result["agreement"].get(engine, {}).get(mode)
            nd = agr["ndcg@10"] if agr else None
            delta = f"{nd['diff']:+.4f} [{nd['ci95'][0]:+.4f}, {nd['ci95'][1]:+.4f}]" if nd else "reference"
            overlap = f"{agr['top10_doc_overlap']:.3f}" if agr else "-"
            lines.append(f"| {engine} | {mode} | " + " | ".join(f"{m[k]:.3f}" for k in METRICS)
                         + f" | {delta} | {overlap} |")
    plain = result.get("agreement_vs_embedded_plain", {})
    for engine, modes in plain.items():
        if engine != "embedded":
            b = modes["bm25"]
            lines.append(f"\nBM25 {engine} vs embedded-plain (same analysis): Δ nDCG@10 {b['ndcg@10']['diff']:+.4f} "
                         f"[{b['ndcg@10']['ci95'][0]:+.4f}, {b['ndcg@10']['ci95'][1]:+.4f}], "
                         f"top-10 overlap {b['top10_doc_overlap']:.3f}")
    return "\n".join(lines)


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in ("domainrag", "lancedb", "opensearch-py", "elasticsearch", "sentence-transformers", "torch"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def server_version(url: str) -> str | None:
    """The local node's version (from ``_nodes/_local``: ``GET /`` is absent on the Elasticsearch test zip)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/_nodes/_local", timeout=10) as resp:
            return str(next(iter(json.load(resp)["nodes"].values()))["version"])
    except Exception:  # informational only
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", choices=("tatqa", "pubmedqa"), default="tatqa")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared data folder")
    ap.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    ap.add_argument("--depth", type=int, default=20, help="chunks fetched per retriever and kept per query")
    ap.add_argument("--limit", type=int, default=None, help="only the first N queries (quick check)")
    ap.add_argument("--workdir", type=Path, default=None, help="BEIR folder and LanceDB (default: temporary)")
    ap.add_argument("--keep", action="store_true", help="keep the indexes and leave started servers running")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON summary here")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory(prefix="bench_engines_") if args.workdir is None else None
    workdir = args.workdir or Path(tmp.name)  # type: ignore[union-attr]
    data = convert(args.dataset, args.data_dir, workdir / f"{args.dataset}-beir")
    if args.limit:
        keep = list(data.queries)[: args.limit]
        data.queries = {q: data.queries[q] for q in keep}
        data.qrels = {q: data.qrels[q] for q in keep}
    embedder = CachedEmbedder(load_embedder(resolve_embedder(MODEL), MODEL))
    embedder.load(workdir / "vectors.npz")
    embedder.prime(list(data.queries.values()))
    print(f"{args.dataset}: {len(data.corpus or {})} documents, {len(data.queries)} queries", file=sys.stderr)

    results: dict[str, dict[str, Any]] = {}
    servers: dict[str, str | None] = {}
    order = sorted(args.engines, key=lambda e: (SERVICE_OF.get(e, ""), ENGINES.index(e)))
    for svc in dict.fromkeys(SERVICE_OF.get(e) for e in order):
        group = [e for e in order if SERVICE_OF.get(e) == svc]
        if svc is None:
            for e in group:
                results[e] = run_engine(e, store_for(e, None, workdir), data, embedder, args)
            continue
        with running(svc, args.keep) as url:
            servers[svc] = server_version(url)
            for e in group:
                results[e] = run_engine(e, store_for(e, url, workdir), data, embedder, args)
    results = {e: results[e] for e in ENGINES if e in results}
    if args.workdir is not None:
        embedder.save(workdir / "vectors.npz")

    result: dict[str, Any] = {
        "benchmark": "engines",
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "versions": versions(),
                    "servers": servers},
        "settings": {"dataset": args.dataset, "model": MODEL, "documents": len(data.corpus or {}),
                     "queries": len(data.queries), "depth_chunks": args.depth, "level": "doc",
                     "metrics": list(METRICS), "rank_constant": RetrievalConfig(index="x").rank_constant,
                     "stores": {"embedded": EmbeddedStoreConfig().model_dump(),
                                "opensearch": OpenSearchStoreConfig(hosts=["-"]).model_dump(exclude={"hosts"}),
                                "elasticsearch": ElasticsearchStoreConfig(hosts=["-"]).model_dump(exclude={"hosts"})}},
        "engines": {e: {"ingest": r["ingest"], "modes": {m: {k: v for k, v in r["modes"][m].items()
                                                              if k not in ("per_query", "top10")} for m in MODES}}
                    for e, r in results.items()},
        "agreement": agreement(results),
        # Same analysis on both sides: BM25 differences left here are the engines', not the analyzers'.
        "agreement_vs_embedded_plain": agreement(results, "embedded-plain"),
    }
    if args.markdown:
        print(markdown(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
