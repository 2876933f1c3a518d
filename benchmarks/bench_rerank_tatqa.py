"""Does a trained reranker lift hybrid retrieval on TAT-QA? BM25 vs hybrid vs hybrid + reranker.

Trains the project's cross-encoder reranker (:func:`domainrag.training.reranker.run_reranker`: a
one-logit head on the all-MiniLM-L6-v2 encoder weights, hard negatives mined with the same model as a
bi-encoder) on TAT-QA *dev* (question, relevant paragraph) pairs, then measures on test_gold through
the product's ``Retriever`` (hybrid = BM25 + dense with the *base* embedder, RRF; the reranker rescores
the fused top-N) and the project's trec_eval metrics. The untrained cross-encoder (random head) is
not measured: its order is noise. The training set is capped (``--train-pairs``, one epoch) so the run
fits in ~30 minutes on a shared 2-core box; the caps are written to the output.

    nice .venv/bin/python benchmarks/bench_rerank_tatqa.py --train-pairs 400 --hard-negatives 1 \
        --pipeline-negatives 3 --learning-rate 2e-4 --max-length 192 --top-n 20 --test-queries 300 \
        --out benchmarks/results/rerank_tatqa.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _beir_out import DEFAULT_DATA_DIR

HERE = Path(__file__).resolve().parent
MODEL = "all-minilm-l6-v2"
METRICS = ("recall@5", "ndcg@10", "mrr@10", "recall@10")


def indexed_split(a: argparse.Namespace, work: Path, split: str, embedder: Any) -> tuple[Any, Any]:
    """TAT-QA ``split`` converted to BEIR, loaded, and ingested into a fresh embedded store: (data, store)."""
    import convert_tatqa

    from domainrag.evaluation.beir import load_beir
    from domainrag.index import EmbeddedStoreConfig, open_store
    from domainrag.index.ingest import ingest_documents

    folder = work / f"tatqa-{split}"
    convert_tatqa.convert(a.data_dir, folder, split, False, a.context, structure=bool(a.expand_children))
    data = load_beir(folder, "test")
    store = open_store(f"bench_rerank_tatqa_{split}", EmbeddedStoreConfig(), str(work / "lancedb"))
    store.drop()
    ingest_documents(data.documents(), store, embedder, batch_size=64)
    store.refresh()
    embedder.prime(list(data.queries.values()))
    return data, store


def clip(text: str, words: int = 200) -> str:
    return " ".join(text.split()[:words])


def reranker_input(a: argparse.Namespace, doc: Any) -> str:
    """A dev passage as the reranker will read it at query time (with its table under ``--context table``)."""
    from domainrag.retrieval.reranker import reranker_text

    context = doc.metadata.get(a.context) if a.context else None
    return reranker_text(clip(doc.text), context)


def dev_pairs(a: argparse.Namespace, work: Path, embedder: Any) -> tuple[Path, int, int]:
    """(query, positive[, negatives]) JSONL of TAT-QA dev, shuffled, capped at ``--train-pairs``.

    With ``--pipeline-negatives K`` each pair carries the K best non-relevant hits of hybrid retrieval
    over the whole dev corpus (paragraphs of the same report, tables): the candidates the reranker
    will face at query time. Returns (file, pairs written, pairs available).
    """
    from domainrag.retrieval.retriever import RetrievalConfig, Retriever

    data, store = indexed_split(a, work, "dev", embedder)
    assert data.corpus is not None
    retriever = None
    if a.pipeline_negatives:
        cfg = RetrievalConfig(index=store.name, mode="hybrid", top_k=20, candidates=30)
        retriever = Retriever(store, embedder, cfg)
    qids = sorted(data.qrels)
    random.Random(a.seed).shuffle(qids)
    rows: list[dict[str, Any]] = []
    available = sum(1 for q in qids for d, g in data.qrels[q].items() if g > 0 and d in data.corpus)
    for qid in qids:
        relevant = [d for d, g in data.qrels[qid].items() if g > 0 and d in data.corpus]
        if not relevant or qid not in data.queries:
            continue
        negatives: list[str] = []
        if retriever is not None:
            seen = set(relevant)
            for hit in retriever.run(data.queries[qid]):
                if hit.doc_id not in seen and len(negatives) < a.pipeline_negatives:
                    seen.add(hit.doc_id)
                    negatives.append(reranker_input(a, data.corpus[hit.doc_id]))
        rows += [
            {"query": data.queries[qid], "positive": reranker_input(a, data.corpus[d]), "negatives": negatives}
            for d in relevant
        ]
        if a.train_pairs and len(rows) >= a.train_pairs:
            break
    store.drop()
    out = work / "pairs.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out, len(rows), available


def train_reranker(pairs: Path, out: Path, a: argparse.Namespace) -> dict[str, Any]:
    """Run the project's reranker training job in-process; its result as a JSON-able dict."""
    from domainrag.training.reporting import MemoryReporter
    from domainrag.training.reranker import RerankerArgs, run_reranker
    from domainrag.zoo import resolve_embedder

    args = RerankerArgs(
        base_model=resolve_embedder(MODEL),
        dataset=pairs,
        output_dir=out,
        epochs=a.epochs,
        batch_size=a.batch_size,
        loss=a.loss,
        in_batch_negatives=a.in_batch_negatives,
        hard_negatives=a.hard_negatives,
        eval_fraction=a.eval_fraction,
        eval_candidates=10,
        max_length=a.max_length,
        learning_rate=a.learning_rate,
        seed=a.seed,
    )
    r = run_reranker(args, MemoryReporter(echo=True))
    return {
        "train_pairs": r.n_train,
        "labelled_rows": r.n_examples,
        "steps": r.steps,
        "batch_size": a.batch_size,
        "epochs": a.epochs,
        "loss": a.loss,
        "in_batch_negatives": a.in_batch_negatives if a.loss == "mnrl" else None,
        "reads_context": a.context,
        "hard_negatives_per_query": a.hard_negatives,
        "max_length": a.max_length,
        "learning_rate": a.learning_rate,
        "heldout_dev_queries": r.n_eval,
        "heldout_dev_before": _round(r.metrics_before),
        "heldout_dev_after": _round(r.metrics_after),
        "truncated_rows": r.truncated_examples,
        "seconds": round(r.seconds, 1),
        "rows_per_s": round(r.pairs_per_s, 2),
    }


def _round(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in d.items()}


def evaluate(a: argparse.Namespace, work: Path, embedder: Any, reranker_dir: Path | None) -> dict[str, Any]:
    """BM25, hybrid and (if given) hybrid + reranker on test_gold through ``Retriever``."""
    from domainrag.evaluation.retrieval import evaluate_run_per_query, mean_metrics, run_from_hits
    from domainrag.retrieval.reranker import load_reranker
    from domainrag.retrieval.retriever import RetrievalConfig, Retriever

    t0 = time.perf_counter()
    data, store = indexed_split(a, work, "test", embedder)
    ingest_s = time.perf_counter() - t0
    every = dict(data.queries)
    sample = sorted(random.Random(a.seed).sample(sorted(every), a.test_queries)) if a.test_queries else sorted(every)
    queries = {q: every[q] for q in sample}
    # (label, mode, reranker, fusion, expand_children)
    configs: list[tuple[str, str, Any, str, int]] = [
        ("BM25", "bm25", None, "replace", 0),
        ("hybrid (base embedder)", "hybrid", None, "replace", 0),
    ]
    x = a.expand_children
    if x:
        configs += [
            (f"BM25 + table children (top-{x})", "bm25", None, "replace", x),
            (f"hybrid + table children (top-{x})", "hybrid", None, "replace", x),
        ]
    if reranker_dir is not None:
        model = load_reranker(str(reranker_dir))
        reads = f", reads {a.context}" if a.context else ""
        plus = f" + table children (top-{x})" if x else ""
        for fusion in a.fusion:
            how = "reranker order" if fusion == "replace" else f"RRF with hybrid order, weight {a.retrieval_weight:g}"
            label = f"hybrid{plus} + trained reranker (top-{a.top_n}, {how}{reads})"
            configs.append((label, "hybrid", model, fusion, x))
    runs = []
    # BM25 / hybrid are cheap: scored on every test query and on the (seeded) sample the reranker sees
    todo = [(*c, every, "all") for c in configs if c[2] is None] if a.test_queries else []
    which = "sample" if a.test_queries else "all"
    todo += [(*c, queries, which) for c in configs]
    for label, mode, reranker, fusion, expand, qs, subset in todo:
        cfg = RetrievalConfig(
            index=store.name,
            mode=mode,  # type: ignore[arg-type]
            top_k=10,
            candidates=max(30, a.top_n),
            rerank_top_n=a.top_n,
            rerank_fusion=fusion,  # type: ignore[arg-type]
            rerank_retrieval_weight=a.retrieval_weight,
            rerank_context=a.context,
            expand_children=expand,
        )
        retriever = Retriever(store, embedder, cfg, reranker=reranker)  # type: ignore[arg-type]
        t1 = time.perf_counter()
        run = {qid: run_from_hits(retriever.run(text), "doc") for qid, text in qs.items()}
        seconds = time.perf_counter() - t1
        qrels = {q: data.qrels[q] for q in qs}
        metrics = _round(mean_metrics(evaluate_run_per_query(qrels, run, METRICS), METRICS))
        runs.append(
            {
                "label": label,
                "reranked": reranker is not None,
                "rerank_fusion": fusion if reranker is not None else None,
                "expand_children": expand,
                "queries": subset,
                "n_queries": len(qs),
                "metrics": metrics,
                "seconds": round(seconds, 1),
                "ms_per_query": round(seconds / len(qs) * 1000, 1),
            }
        )
        print(f"{label} [{subset}, {len(qs)} q]: {metrics} ({seconds:.0f} s)", flush=True)
    store.drop()
    return {
        "queries_reranked": len(queries),
        "queries_available": len(every),
        "corpus": len(data.corpus or {}),
        "ingest_and_embed_seconds": round(ingest_s, 1),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="shared data folder (holds tatqa/)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "rerank_tatqa.json")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new temp folder)")
    ap.add_argument("--train-pairs", type=int, default=400, help="cap on dev (query, paragraph) pairs; 0 = all")
    ap.add_argument(
        "--hard-negatives",
        type=int,
        default=3,
        help="mined per query with the base bi-encoder among the training positives",
    )
    ap.add_argument(
        "--pipeline-negatives",
        type=int,
        default=0,
        help="non-relevant hybrid hits over the full dev corpus given per pair as negatives",
    )
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--loss", choices=["mnrl", "bce"], default="mnrl", help="reranker loss (listwise / pointwise)")
    ap.add_argument("--in-batch-negatives", type=int, default=2, help="mnrl: batch passages per query softmax")
    ap.add_argument(
        "--fusion",
        action="append",
        choices=["replace", "rrf"],
        help="how reranked runs order the top-N (repeatable; default both)",
    )
    ap.add_argument(
        "--expand-children",
        type=int,
        default=0,
        help="tables list their report's paragraphs (convert_tatqa --structure); a table among the top N "
        "fused hits pulls them in after it (RetrievalConfig.expand_children); 0 = off",
    )
    ap.add_argument("--retrieval-weight", type=float, default=1.0, help="rrf: weight of the hybrid order")
    ap.add_argument(
        "--context",
        choices=["table"],
        default=None,
        help="the reranker reads each paragraph with its report's table (trained and served the same way)",
    )
    ap.add_argument("--learning-rate", type=float, default=5e-5)
    ap.add_argument("--max-length", type=int, default=256, help="cross-encoder tokens per (query, passage)")
    ap.add_argument("--eval-fraction", type=float, default=0.05, help="dev queries held out by the job")
    ap.add_argument("--top-n", type=int, default=20, help="fused hybrid hits rescored by the reranker")
    ap.add_argument(
        "--test-queries",
        type=int,
        default=0,
        help="seeded random sample of test_gold queries for the reranked run (0 = all)",
    )
    ap.add_argument("--vectors", type=Path, default=None, help="optional text→vector cache (bench_engines.py)")
    ap.add_argument("--reranker", type=Path, default=None, help="skip training: use this trained reranker")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    a.fusion = a.fusion or ["replace", "rrf"]
    import torch

    torch.set_num_threads(a.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench-rerank-tatqa-"))
    work.mkdir(parents=True, exist_ok=True)
    t0, load0 = time.time(), os.getloadavg()
    training: dict[str, Any] | None = None
    reranker_dir = a.reranker
    from bench_engines import CachedEmbedder

    from domainrag.retrieval.embedder import load_embedder
    from domainrag.zoo import resolve_embedder

    embedder = CachedEmbedder(load_embedder(resolve_embedder(MODEL), MODEL))
    if a.vectors and a.vectors.is_file():
        embedder.load(a.vectors)  # vectors keyed by text: a cache, not a result
    if reranker_dir is None:
        pairs, n, available = dev_pairs(a, work, embedder)
        reranker_dir = work / "reranker"
        training = {
            "dev_pairs_available": available,
            "dev_pairs_used": n,
            "pipeline_negatives_per_pair": a.pipeline_negatives,
            **train_reranker(pairs, reranker_dir, a),
        }
    test = evaluate(a, work, embedder, reranker_dir)
    same = [r for r in test["runs"] if r["queries"] == test["runs"][-1]["queries"]]  # the reranked queries
    bm25, hybrid = (r["metrics"]["recall@5"] for r in same[:2])  # plain BM25 and hybrid come first
    reranked = [r for r in same if r["reranked"]] or [same[1]]
    best_run = max(reranked, key=lambda r: r["metrics"]["recall@5"])
    best = best_run["metrics"]["recall@5"]
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "data": "TAT-QA: reranker trained on dev pairs, measured on test_gold (paragraph qrels)",
        "embedder": f"{MODEL} (base, not fine-tuned) for the dense half of hybrid",
        "reranker_base": f"cross-encoder from {MODEL} weights, new one-logit head (untrained = random, not run)",
        "training": training or {"reused": str(a.reranker)},
        "test": test,
        "target": {
            "rule": "reranked hybrid recall@5 >= BM25 recall@5 + 0.10",
            "queries": same[0]["queries"],
            "bm25_recall@5": bm25,
            "hybrid_recall@5": hybrid,
            "reranked_recall@5": best,
            "reranked_best_config": best_run["label"],
            "gain_over_bm25_points": round((best - bm25) * 100, 1),
            "met": best >= bm25 + 0.10,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": a.threads,
            "loadavg_start": [round(x, 2) for x in load0],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "total_seconds": round(time.time() - t0, 1),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["target"], indent=2))
    print(f"wrote {a.out}; reranker in {reranker_dir}")


if __name__ == "__main__":
    main()
