"""Corpus-only embedding fine-tuning: does training on synthetic queries help on real questions?

The shipped sample domain (``src/domainrag/sample_data``: 55 product/support documents of a
fictitious water-treatment company) is given to the embedding trainer as documents only — no
queries. Synthetic queries are generated per chunk (``--modes heuristic llm``), deduplicated and
round-trip filtered, the base all-MiniLM-L6-v2 is fine-tuned on them, and both models are measured on
the 50 hand-written questions of ``qa_heldout.jsonl`` (never seen in training: the trainer only sees
the documents).

Retrieval setup: the corpus is every chunk (ingestion's chunker, 120 words) of every document; a
question's relevant chunks are the chunks of its ``doc`` that contain its ``evidence`` sentence (all
chunks of that doc if the sentence straddles a boundary). Metrics: nDCG@10, recall@5, MRR@10
(binary relevance), cosine similarity over normalised embeddings.

    nice .venv/bin/python benchmarks/bench_embedding_synthetic.py --modes heuristic llm \
        --out benchmarks/results/embedding_synthetic_sample.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "src" / "domainrag" / "sample_data"


def evaluate(model_path: str, passages: list, questions: list[dict]) -> dict[str, float]:
    """nDCG@10 / recall@5 / MRR@10 of a sentence-transformers model on the held-out questions."""
    import torch
    from sentence_transformers import SentenceTransformer

    from domainrag.training.reranker import ranking_metrics
    from domainrag.training.synthetic import normalise

    model = SentenceTransformer(model_path, device="cpu")
    texts = [p.text for p in passages]
    kwargs = {"normalize_embeddings": True, "convert_to_tensor": True, "show_progress_bar": False, "batch_size": 32}
    docs = model.encode(texts, **kwargs)
    qs = model.encode([q["question"] for q in questions], **kwargs)
    top = torch.topk(qs @ docs.T, k=10, dim=1).indices.tolist()
    rankings, relevant = [], []
    for q, row in zip(questions, top, strict=True):
        own = [p for p in passages if Path(p.doc_id).name == q["doc"]]
        rel = {p.text for p in own if normalise(q["evidence"]) in normalise(p.text)} or {p.text for p in own}
        rankings.append([texts[i] for i in row])
        relevant.append(rel)
    return ranking_metrics(rankings, relevant)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", nargs="+", default=["heuristic", "llm"], choices=["heuristic", "llm"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--learning-rate", type=float, default=5e-5)
    ap.add_argument("--per-passage", type=int, default=1, help="synthetic queries per chunk")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (1 is far faster on a busy box)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "embedding_synthetic_sample.json")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    from domainrag.training.embedding import EmbeddingArgs, run_embedding
    from domainrag.training.reporting import MemoryReporter
    from domainrag.training.synthetic import load_passages
    from domainrag.zoo import resolve_embedder

    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench-emb-syn-"))
    load_start = os.getloadavg()
    base = resolve_embedder("all-minilm-l6-v2")
    passages = load_passages(SAMPLE / "docs")
    questions = [json.loads(x) for x in (SAMPLE / "qa_heldout.jsonl").read_text().splitlines() if x.strip()]
    result: dict = {
        "command": "benchmarks/bench_embedding_synthetic.py " + " ".join(sys.argv[1:]),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "load_avg_at_start": load_start},
        "corpus": {"documents": len({p.doc_id for p in passages}), "chunks": len(passages)},
        "test_questions": len(questions),
        "base": evaluate(base, passages, questions),
        "runs": [],
    }
    print("base", result["base"], flush=True)
    for mode in a.modes:
        t0 = time.perf_counter()
        reporter = MemoryReporter(echo=True)
        res = run_embedding(
            EmbeddingArgs(
                base_model=base,
                dataset=SAMPLE / "docs",
                output_dir=work / mode / "output",
                epochs=a.epochs,
                batch_size=a.batch_size,
                learning_rate=a.learning_rate,
                eval_fraction=0.1,
                synthetic_queries=mode,
                synthetic_per_passage=a.per_passage,
            ),
            reporter,
        )
        run = {
            "mode": mode,
            "seconds": round(time.perf_counter() - t0, 1),
            "synthetic": res.synthetic,
            "n_train": res.n_train,
            "train_pairs_per_s": round(res.pairs_per_s, 2),
            "heldout_synthetic_before": res.metrics_before,
            "heldout_synthetic_after": res.metrics_after,
            "qa_heldout": evaluate(str(res.output_dir), passages, questions),
            "examples": [json.loads(x) for x in (work / mode / "synthetic_pairs.jsonl").read_text().splitlines()[:5]],
        }
        run["ndcg@10_gain_points"] = round(100 * (run["qa_heldout"]["ndcg@10"] - result["base"]["ndcg@10"]), 1)
        result["runs"].append(run)
        print(mode, run["qa_heldout"], run["ndcg@10_gain_points"], flush=True)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
