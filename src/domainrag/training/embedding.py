"""Fine-tune a sentence-transformers embedding model on (query, positive[, negatives]) pairs.

Flow (litgpt style): :func:`run_embedding` = setup (read + split pairs by query, load model,
build the retrieval evaluator, optionally mine hard negatives) → fit (``SentenceTransformerTrainer``
with ``MultipleNegativesRankingLoss``: every other positive in the batch is a negative, so the
``NO_DUPLICATES`` batch sampler keeps a query's own positive out of its negatives) → save.

Held-out queries never appear in training; retrieval quality is measured before and after on them
with ``InformationRetrievalEvaluator`` over a corpus of *all* positives (train and eval), which is
what an index built from the same documents would contain.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from domainrag.data.formats import Pair
from domainrag.training._st_common import (
    finite_stats,
    jsonable_args,
    load_and_split,
    log_eval_metrics,
    train_with_resume,
)
from domainrag.training._st_common import split_by_query as split_by_query  # re-export: tests and callers use it
from domainrag.training.reporting import Reporter

METADATA_FILE = "domainrag_embedding.json"
METRIC_KEYS = ("ndcg@10", "recall@1", "recall@5", "mrr@10")


@dataclass
class EmbeddingArgs:
    """Hyper-parameters and locations of one embedding fine-tuning run."""

    base_model: str  # local sentence-transformers folder (see domainrag.zoo.resolve_embedder) or hub id
    dataset: Path  # pairs CSV/JSONL (see domainrag.data.formats.read_pairs)
    output_dir: Path
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    eval_fraction: float = 0.15
    max_seq_length: int | None = None
    hard_negatives: int = 0  # >0: mine this many hard negatives per pair with the base model
    seed: int = 0
    checkpoint_dir: Path | None = None
    resume: bool = False
    save_steps: int = 100  # checkpoint interval (optimizer steps) when checkpoint_dir is set


@dataclass
class EmbeddingResult:
    """Where the model went and how retrieval on held-out queries changed.

    ``n_train`` counts training pairs, ``n_eval`` held-out queries (each may have several positives).
    """

    output_dir: Path
    dimension: int
    n_train: int
    n_eval: int
    metrics_before: dict[str, float]
    metrics_after: dict[str, float]
    seconds: float
    pairs_per_s: float
    steps: int = 0
    duplicates_dropped: int = 0


@dataclass
class _Setup:
    model: Any
    train: list[Pair]
    eval_queries: list[str]
    evaluator: Any | None
    train_dataset: Any
    duplicates_dropped: int


def build_ir_evaluator(all_pairs: list[Pair], eval_pairs: list[Pair], name: str = "heldout") -> Any | None:
    """Retrieval evaluator: eval queries against a corpus of every positive in ``all_pairs``."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    if not eval_pairs:
        return None
    corpus_ids: dict[str, str] = {}
    for p in all_pairs:
        corpus_ids.setdefault(p.positive, f"d{len(corpus_ids)}")
    query_ids: dict[str, str] = {}
    relevant: dict[str, set[str]] = {}
    for p in eval_pairs:
        qid = query_ids.setdefault(p.query, f"q{len(query_ids)}")
        relevant.setdefault(qid, set()).add(corpus_ids[p.positive])
    return InformationRetrievalEvaluator(
        queries={qid: q for q, qid in query_ids.items()},
        corpus={cid: text for text, cid in corpus_ids.items()},
        relevant_docs=relevant,
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[1, 5, 10],
        precision_recall_at_k=[1, 5, 10],
        map_at_k=[10],
        name=name,
        write_csv=False,
        show_progress_bar=False,
    )


def retrieval_metrics(model: Any, evaluator: Any | None) -> dict[str, float]:
    """``ndcg@10``, ``recall@1``, ``recall@5``, ``mrr@10`` (cosine) of ``model``; {} without eval data."""
    if evaluator is None:
        return {}
    raw = evaluator(model)
    out: dict[str, float] = {}
    for key in METRIC_KEYS:
        hits = [v for k, v in raw.items() if k.endswith(f"cosine_{key}")]
        if hits:
            out[key] = float(hits[0])
    return out


def _train_dataset(args: EmbeddingArgs, model: Any, train: list[Pair], reporter: Reporter) -> Any:
    """(anchor, positive[, negative_1..n]) dataset: mined, given, or pairs only."""
    from datasets import Dataset

    base = Dataset.from_dict({"anchor": [p.query for p in train], "positive": [p.positive for p in train]})
    if args.hard_negatives > 0:
        from sentence_transformers.util import mine_hard_negatives

        mined = mine_hard_negatives(
            base,
            model,
            num_negatives=args.hard_negatives,
            range_min=0,
            sampling_strategy="top",
            output_format="n-tuple",
            batch_size=args.batch_size,
            verbose=False,
        )
        reporter.log(
            f"mined {args.hard_negatives} hard negatives per pair; {len(mined)} of {len(base)} pairs had enough"
        )
        if len(mined) < 2:
            reporter.log("too few pairs kept after mining; training on in-batch negatives only")
            return base
        return mined
    given = min((len(p.negatives) for p in train), default=0)
    if given > 0:
        reporter.log(f"using {given} dataset-provided negative(s) per pair")
        columns = {f"negative_{i + 1}": [p.negatives[i] for p in train] for i in range(given)}
        return Dataset.from_dict({"anchor": base["anchor"], "positive": base["positive"], **columns})
    if any(p.negatives for p in train):
        reporter.log("some pairs have negatives and some do not; using in-batch negatives only")
    return base


def setup(args: EmbeddingArgs, reporter: Reporter) -> _Setup:
    """Read and split the pairs, load the model, build evaluator and training dataset."""
    from sentence_transformers import SentenceTransformer

    loaded, train, evals = load_and_split(
        args, reporter, hint="in-batch negatives need at least 2 pairs; add data or lower eval_fraction"
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(args.base_model, device=device)
    if args.max_seq_length is not None:
        model.max_seq_length = args.max_seq_length
    reporter.log(
        f"embedding setup: {len(train)} train pairs / {len(evals)} eval pairs "
        f"({len({p.query for p in evals})} held-out queries), device {device}"
    )
    return _Setup(
        model=model,
        train=train,
        eval_queries=sorted({p.query for p in evals}),
        evaluator=build_ir_evaluator(loaded.pairs, evals),
        train_dataset=_train_dataset(args, model, train, reporter),
        duplicates_dropped=loaded.duplicates_dropped,
    )


def fit(args: EmbeddingArgs, s: _Setup, reporter: Reporter) -> dict[str, Any]:
    """Train with MultipleNegativesRankingLoss; checkpoint/resume through the HF Trainer."""
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    def make_trainer(kwargs: dict[str, Any], callbacks: list[Any]) -> Any:
        targs = SentenceTransformerTrainingArguments(**kwargs, batch_sampler=BatchSamplers.NO_DUPLICATES)
        return SentenceTransformerTrainer(
            model=s.model,
            args=targs,
            train_dataset=s.train_dataset,
            loss=MultipleNegativesRankingLoss(s.model),
            callbacks=callbacks,
        )

    return train_with_resume(args, reporter, make_trainer, scratch_prefix="domainrag-emb-", n_rows=len(s.train_dataset))


def run_embedding(args: EmbeddingArgs, reporter: Reporter) -> EmbeddingResult:
    """Fine-tune ``args.base_model`` on ``args.dataset``: setup → evaluate → fit → evaluate → save."""
    t0 = time.perf_counter()
    s = setup(args, reporter)
    before = retrieval_metrics(s.model, s.evaluator)
    log_eval_metrics(reporter, "held-out retrieval before", 0, before)
    stats = fit(args, s, reporter)
    after = retrieval_metrics(s.model, s.evaluator)
    log_eval_metrics(reporter, "held-out retrieval after", stats["steps"], after)

    out = Path(args.output_dir)
    s.model.save(str(out))
    dimension = int(s.model.get_embedding_dimension() or 0)
    result = EmbeddingResult(
        output_dir=out,
        dimension=dimension,
        n_train=len(s.train),
        n_eval=len(s.eval_queries),
        metrics_before=before,
        metrics_after=after,
        seconds=time.perf_counter() - t0,
        pairs_per_s=stats["pairs_per_s"],
        steps=stats["steps"],
        duplicates_dropped=s.duplicates_dropped,
    )
    meta = {
        "kind": "embedding",
        "args": jsonable_args(args),
        "dimension": dimension,
        "n_train": result.n_train,
        "n_eval": result.n_eval,
        "metrics_before": before,
        "metrics_after": after,
        "train": finite_stats(stats),
    }
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    reporter.log(f"embedding model saved to {out} ({dimension} dimensions)")
    return result
