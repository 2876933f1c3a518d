"""Fine-tune a sentence-transformers embedding model on (query, positive[, negatives]) pairs.

Flow (litgpt style): :func:`run_embedding` = setup (read + split pairs by query, load model,
build the retrieval evaluator, optionally mine hard negatives) → fit (``SentenceTransformerTrainer``
with ``MultipleNegativesRankingLoss``: every other positive in the batch is a negative, so the
``NO_DUPLICATES`` batch sampler keeps a query's own positive out of its negatives) → save.

Options: ``loss="cached_mnrl"`` (GradCache: large batches in ``mini_batch_size`` memory),
``matryoshka_dims`` (MatryoshkaLoss, so truncated vectors still retrieve well; held-out metrics are
also reported per dimension), and a dataset that is only a document corpus: synthetic queries are
generated for its chunks first (:mod:`domainrag.training.synthetic`).

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
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MatryoshkaLoss,
    MultipleNegativesRankingLoss,
)
from sentence_transformers.sentence_transformer.training_args import (
    BatchSamplers,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.util import mine_hard_negatives

from domainrag.data.formats import Pair
from domainrag.errors import DomainRagError
from domainrag.training.hyperparameters import EmbeddingArgs
from domainrag.training.inputs import check_encoder
from domainrag.training.precision import resolve_precision
from domainrag.training.reporting import Reporter
from domainrag.training.st_common import (
    count_over_limit,
    finite_stats,
    is_main_process,
    jsonable_args,
    load_and_split,
    log_eval_metrics,
    prepare_pairs,
    train_with_resume,
    warn_truncation,
)

METADATA_FILE = "domainrag_embedding.json"
METRIC_KEYS = ("ndcg@10", "recall@1", "recall@5", "mrr@10")


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
    truncated_texts: int = 0
    synthetic: dict[str, Any] | None = None  # generated / deduped / filtered / kept counts for a corpus dataset
    metrics_after_by_dim: dict[int, dict[str, float]] | None = None  # matryoshka_dims runs only


@dataclass
class _Setup:
    model: Any
    train: list[Pair]
    eval_queries: list[str]
    evaluator: Any | None
    train_dataset: Any
    duplicates_dropped: int
    all_pairs: list[Pair]
    eval_pairs: list[Pair]
    truncated_texts: int = 0
    synthetic: dict[str, Any] | None = None


def build_ir_evaluator(
    all_pairs: list[Pair], eval_pairs: list[Pair], name: str = "heldout", truncate_dim: int | None = None
) -> Any | None:
    """Retrieval evaluator: eval queries against a corpus of every positive in ``all_pairs``."""

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
        truncate_dim=truncate_dim,
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

    base = Dataset.from_dict({"anchor": [p.query for p in train], "positive": [p.positive for p in train]})
    if args.hard_negatives > 0:

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


def check_dimensions(args: EmbeddingArgs, dimension: int | None) -> None:
    """``matryoshka_dims`` within the model's output ``dimension`` (option values are checked by EmbeddingArgs)."""
    if args.matryoshka_dims and dimension and max(args.matryoshka_dims) > dimension:
        raise DomainRagError(
            f"matryoshka_dims {args.matryoshka_dims} go beyond the model's {dimension} dimensions",
            hint=f"use dimensions up to {dimension}, e.g. [{dimension}, {dimension // 2}, {dimension // 4}]",
        )


def setup(args: EmbeddingArgs, reporter: Reporter) -> _Setup:
    """Check options, load the model, read (or generate) and split the pairs, build evaluator and dataset."""
    check_encoder(args.base_model)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(args.base_model, device=device)
    if args.max_seq_length is not None:
        model.max_seq_length = args.max_seq_length
    check_dimensions(args, model.get_embedding_dimension())
    dataset, synthetic = prepare_pairs(args, reporter, model)
    loaded, train, evals = load_and_split(
        args,
        reporter,
        hint="in-batch negatives need at least 2 pairs; add data or lower eval_fraction",
        dataset=dataset,
    )
    texts = list(dict.fromkeys([t for p in loaded.pairs for t in (p.query, p.positive, *p.negatives)]))
    truncated = count_over_limit(model.tokenizer, texts, model.max_seq_length)
    warn_truncation(reporter, truncated, len(texts), model.max_seq_length, "distinct texts")
    reporter.log(
        f"embedding setup: {len(train)} train pairs / {len(evals)} eval pairs "
        f"({len({p.query for p in evals})} held-out queries), device {device}, loss {args.loss}, "
        f"precision {resolve_precision(args.precision)}"
        + (f", matryoshka dims {args.matryoshka_dims}" if args.matryoshka_dims else "")
    )
    return _Setup(
        model=model,
        train=train,
        eval_queries=sorted({p.query for p in evals}),
        evaluator=build_ir_evaluator(loaded.pairs, evals),
        train_dataset=_train_dataset(args, model, train, reporter),
        duplicates_dropped=loaded.duplicates_dropped,
        all_pairs=loaded.pairs,
        eval_pairs=evals,
        truncated_texts=truncated,
        synthetic=synthetic,
    )


def build_loss(args: EmbeddingArgs, model: Any) -> Any:
    """MNRL or its cached (GradCache) variant, wrapped in MatryoshkaLoss when ``matryoshka_dims`` is set."""

    loss = (
        CachedMultipleNegativesRankingLoss(model, mini_batch_size=args.mini_batch_size)
        if args.loss == "cached_mnrl"
        else MultipleNegativesRankingLoss(model)
    )
    if args.matryoshka_dims:
        loss = MatryoshkaLoss(model, loss, matryoshka_dims=sorted(args.matryoshka_dims, reverse=True))
    return loss


def fit(args: EmbeddingArgs, s: _Setup, reporter: Reporter) -> dict[str, Any]:
    """Train with :func:`build_loss`; checkpoint/resume through the HF Trainer."""

    def make_trainer(kwargs: dict[str, Any], callbacks: list[Any]) -> Any:
        targs = SentenceTransformerTrainingArguments(**kwargs, batch_sampler=BatchSamplers.NO_DUPLICATES)
        return SentenceTransformerTrainer(
            model=s.model,
            args=targs,
            train_dataset=s.train_dataset,
            loss=build_loss(args, s.model),
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
    by_dim: dict[int, dict[str, float]] | None = None
    if args.matryoshka_dims and s.evaluator is not None:
        by_dim = {}
        for dim in sorted(args.matryoshka_dims, reverse=True):
            evaluator = build_ir_evaluator(s.all_pairs, s.eval_pairs, name=f"heldout_{dim}", truncate_dim=dim)
            by_dim[dim] = retrieval_metrics(s.model, evaluator)
        reporter.log(
            "held-out ndcg@10 by matryoshka dim: "
            + ", ".join(f"{d}={m.get('ndcg@10', 0.0):.3f}" for d, m in by_dim.items())
        )

    out = Path(args.output_dir)
    if is_main_process():  # data parallel: every process holds the same weights; one writes them
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
        truncated_texts=s.truncated_texts,
        synthetic=s.synthetic,
        metrics_after_by_dim=by_dim,
    )
    meta = {
        "kind": "embedding",
        "args": jsonable_args(args),
        "dimension": dimension,
        "n_train": result.n_train,
        "n_eval": result.n_eval,
        "metrics_before": before,
        "metrics_after": after,
        "metrics_after_by_dim": by_dim,
        "loss": args.loss,
        "matryoshka_dims": args.matryoshka_dims,
        "duplicates_dropped": s.duplicates_dropped,
        "truncated_texts": s.truncated_texts,
        "synthetic": s.synthetic,
        "train": finite_stats(stats),
    }
    if is_main_process():
        (out / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    reporter.log(f"embedding model saved to {out} ({dimension} dimensions)")
    return result
