"""Train a cross-encoder reranker on (query, positive[, negatives]) pairs.

Flow (litgpt style): :func:`run_reranker` = setup (read + split pairs by query, load the bi-encoder
and a ``CrossEncoder`` built from the same weights with a new one-logit head, mine hard negatives
with the bi-encoder, build the reranking task) → evaluate → fit (``CrossEncoderTrainer``) → evaluate →
save.

Two losses. ``mnrl`` (the default) is listwise: each (query, positive, negative_1..k) tuple is one
softmax over the positive, its hard negatives and ``in_batch_negatives`` other passages of the batch.
On TAT-QA it trained a far better reranker than ``bce`` (pointwise ``BinaryCrossEntropyLoss`` on
labelled (query, passage) rows, positives up-weighted by the negative ratio): a fresh one-logit head
on bi-encoder weights learns the *order* of a query's candidates faster than calibrated
probabilities for each pair.

The held-out evaluation is what the reranker does at query time: for each held-out query the
bi-encoder retrieves its top ``eval_candidates`` from a corpus of *all* positives (train and eval);
"before" scores that bi-encoder order, "after" the cross-encoder's reordering of the same candidates.

A dataset that is only a document corpus gets synthetic queries first, exactly as for the embedding
job (:mod:`domainrag.training.synthetic`, round-trip filtered with the bi-encoder).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from sentence_transformers import CrossEncoder, SentenceTransformer
from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, MultipleNegativesRankingLoss
from sentence_transformers.util import mine_hard_negatives

from domainrag.data.formats import Pair
from domainrag.errors import DomainRagError
from domainrag.training.hyperparameters import RerankerArgs
from domainrag.training.inputs import check_encoder
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

METADATA_FILE = "domainrag_reranker.json"
METRIC_KEYS = ("ndcg@10", "mrr@10", "recall@5")


@dataclass
class RerankerResult:
    """Where the reranker went and how held-out reranking changed.

    ``n_train`` counts training pairs, ``n_examples`` the rows trained on (``bce``: labelled
    (query, passage) rows; ``mnrl``: (query, positive, negatives...) tuples), ``n_eval`` held-out queries.
    """

    output_dir: Path
    n_train: int
    n_eval: int
    metrics_before: dict[str, float]
    metrics_after: dict[str, float]
    seconds: float
    pairs_per_s: float
    steps: int = 0
    n_examples: int = 0
    duplicates_dropped: int = 0
    truncated_examples: int = 0  # (query, passage) rows longer than max_length tokens
    synthetic: dict[str, Any] | None = None


@dataclass
class RerankTask:
    """Held-out queries, their bi-encoder candidates (in bi-encoder order) and relevant passages."""

    queries: list[str]
    candidates: list[list[str]]
    relevant: list[set[str]]


@dataclass
class _Setup:
    model: Any  # CrossEncoder
    train: list[Pair]
    task: RerankTask
    train_dataset: Any
    duplicates_dropped: int = 0
    truncated_examples: int = 0
    synthetic: dict[str, Any] | None = None


def ranking_metrics(rankings: list[list[str]], relevant: list[set[str]]) -> dict[str, float]:
    """Mean binary ``ndcg@10``, ``mrr@10`` and ``recall@5`` of ranked lists; {} for no queries."""
    if not rankings:
        return {}
    ndcg, mrr, recall = [], [], []
    for ranked, rel in zip(rankings, relevant, strict=True):
        gains = [1.0 if doc in rel else 0.0 for doc in ranked[:10]]
        dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
        idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(rel), 10)))
        ndcg.append(dcg / idcg if idcg else 0.0)
        mrr.append(next((1.0 / (i + 1) for i, g in enumerate(gains) if g), 0.0))
        recall.append(len(rel.intersection(ranked[:5])) / len(rel) if rel else 0.0)
    n = len(rankings)
    return {"ndcg@10": sum(ndcg) / n, "mrr@10": sum(mrr) / n, "recall@5": sum(recall) / n}


def build_rerank_task(bi_encoder: Any, all_pairs: list[Pair], eval_pairs: list[Pair], k: int) -> RerankTask:
    """Bi-encoder top-``k`` candidates over every positive in ``all_pairs`` for each held-out query."""
    relevant: dict[str, set[str]] = {}
    for p in eval_pairs:
        relevant.setdefault(p.query, set()).add(p.positive)
    if not relevant:
        return RerankTask([], [], [])
    corpus = list(dict.fromkeys(p.positive for p in all_pairs))
    queries = sorted(relevant)
    kwargs = {"normalize_embeddings": True, "convert_to_tensor": True, "show_progress_bar": False}
    docs = bi_encoder.encode(corpus, batch_size=64, **kwargs)
    qs = bi_encoder.encode(queries, batch_size=64, **kwargs)
    top = torch.topk(qs @ docs.T, k=min(k, len(corpus)), dim=1).indices.tolist()
    return RerankTask(queries, [[corpus[i] for i in row] for row in top], [relevant[q] for q in queries])


def rerank(model: Any, query: str, passages: list[str], batch_size: int = 32) -> tuple[list[int], np.ndarray]:
    """(indices of ``passages`` best first, cross-encoder scores) for one query."""
    if not passages:
        return [], np.zeros(0, dtype=np.float32)
    scores = np.asarray(
        model.predict([(query, p) for p in passages], batch_size=batch_size, show_progress_bar=False),
        dtype=np.float32,
    ).reshape(-1)
    order = sorted(range(len(passages)), key=lambda i: -float(scores[i]))  # stable: ties keep retrieval order
    return order, scores


def rerank_metrics(model: Any | None, task: RerankTask) -> dict[str, float]:
    """Held-out metrics of the bi-encoder order (``model`` None) or of ``model``'s reordering."""
    if model is None:
        return ranking_metrics(task.candidates, task.relevant)
    rankings = []
    for query, cands in zip(task.queries, task.candidates, strict=True):
        order, _ = rerank(model, query, cands)
        rankings.append([cands[i] for i in order])
    return ranking_metrics(rankings, task.relevant)


def worse_than_bi_encoder(before: dict[str, float], after: dict[str, float], steps: int) -> str | None:
    """Why the trained reranker should not be used, when it orders held-out candidates worse than the bi-encoder.

    A cross-encoder starts from a new, random one-logit head: on a few hundred pairs one epoch is a few dozen
    optimizer steps, which leaves it near chance (seen on the sample domain: 14 steps, nDCG@10 0.40 vs 0.76).
    """
    b, a = before.get("ndcg@10"), after.get("ndcg@10")
    if b is None or a is None or a >= b:
        return None
    return (f"held-out reranking is worse than the bi-encoder's own order (nDCG@10 {a:.3f} < {b:.3f}) after "
            f"{steps} optimizer steps; raise epochs (a new scoring head needs a few hundred steps) or add pairs "
            "before reranking with this model")


def _labelled_rows(args: RerankerArgs, bi_encoder: Any, train: list[Pair], reporter: Reporter) -> dict[str, list[Any]]:
    """(query, passage, label) columns: positives, mined hard negatives and dataset-given negatives."""
    rows: dict[str, list[Any]] = {"query": [], "passage": [], "label": []}
    if args.hard_negatives > 0:

        base = Dataset.from_dict({"query": [p.query for p in train], "passage": [p.positive for p in train]})
        mined = mine_hard_negatives(
            base,
            bi_encoder,
            num_negatives=args.hard_negatives,
            range_min=0,
            sampling_strategy="top",
            output_format="labeled-pair",
            batch_size=64,
            verbose=False,
        )
        reporter.log(f"mined up to {args.hard_negatives} hard negatives per query: {len(mined)} labelled rows")
        rows = {"query": list(mined["query"]), "passage": list(mined["passage"]), "label": list(mined["label"])}
    else:
        for p in train:
            rows["query"].append(p.query)
            rows["passage"].append(p.positive)
            rows["label"].append(1)
    given = 0
    for p in train:
        for neg in p.negatives:
            rows["query"].append(p.query)
            rows["passage"].append(neg)
            rows["label"].append(0)
            given += 1
    if given:
        reporter.log(f"added {given} dataset-provided negative(s)")
    if 0 not in rows["label"] or 1 not in rows["label"]:
        raise DomainRagError(
            "the reranker needs both relevant and irrelevant (query, passage) examples; got no negatives",
            hint="set hard_negatives >= 1 (mined with the base model) or add negative columns to the dataset",
        )
    return rows


def negative_tuples(rows: dict[str, list[Any]], train: list[Pair], seed: int) -> dict[str, list[str]]:
    """``query``, ``positive``, ``negative_1..k`` columns for the listwise loss, one row per training pair.

    A query's negatives are its label-0 passages (dataset-given first, then mined), never one of its own
    positives; k is the largest count any query has, and shorter lists are topped up with seeded
    random passages of other queries (the in-batch kind of negative), so every row has the same width.
    """

    positives: dict[str, set[str]] = {}
    for p in train:
        positives.setdefault(p.query, set()).add(p.positive)
    negatives: dict[str, list[str]] = {q: [] for q in positives}
    for p in train:  # dataset-given negatives first: the user chose them
        negatives[p.query].extend(n for n in p.negatives if n not in positives[p.query])
    for q, passage, label in zip(rows["query"], rows["passage"], rows["label"], strict=True):
        if not label and q in positives and passage not in positives[q]:
            negatives[q].append(passage)
    negatives = {q: list(dict.fromkeys(ns)) for q, ns in negatives.items()}
    k = max(len(ns) for ns in negatives.values())
    pool = sorted({p.positive for p in train} | {n for ns in negatives.values() for n in ns})
    rng = random.Random(seed)
    out: dict[str, list[str]] = {"query": [], "positive": [], **{f"negative_{i + 1}": [] for i in range(k)}}
    for p in train:
        own = negatives[p.query][:k]
        if len(own) < k:
            others = [x for x in pool if x not in positives[p.query] and x not in own]
            own += rng.sample(others, min(k - len(own), len(others)))
        if len(own) < k:  # a corpus too small to fill the row: repeat one (still never a positive)
            own += [own[0] if own else rng.choice(pool)] * (k - len(own))
        out["query"].append(p.query)
        out["positive"].append(p.positive)
        for i, neg in enumerate(own):
            out[f"negative_{i + 1}"].append(neg)
    return out


def _train_dataset(args: RerankerArgs, bi_encoder: Any, train: list[Pair], reporter: Reporter) -> Any:
    """The rows ``args.loss`` trains on: labelled pairs (``bce``) or negative tuples (``mnrl``)."""

    rows = _labelled_rows(args, bi_encoder, train, reporter)
    if args.loss == "bce":
        return Dataset.from_dict({**rows, "label": [float(x) for x in rows["label"]]})
    tuples = negative_tuples(rows, train, args.seed)
    reporter.log(f"listwise rows: {len(tuples['query'])} (query, positive, {len(tuples) - 2} negatives) tuples")
    return Dataset.from_dict(tuples)


def setup(args: RerankerArgs, reporter: Reporter) -> _Setup:
    """Read and split the pairs, load bi-encoder and cross-encoder, mine negatives, build the task."""
    check_encoder(args.base_model)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    bi_encoder = SentenceTransformer(args.base_model, device=device)
    pairs_file, synthetic = prepare_pairs(args, reporter, bi_encoder)
    loaded, train, evals = load_and_split(args, reporter, hint="add data or lower eval_fraction", dataset=pairs_file)
    task = build_rerank_task(bi_encoder, loaded.pairs, evals, args.eval_candidates)
    dataset = _train_dataset(args, bi_encoder, train, reporter)
    del bi_encoder
    # same encoder weights, new (randomly initialised) one-logit classification head
    model = CrossEncoder(args.base_model, num_labels=1, max_length=args.max_length, device=device)
    rows = [
        (q, p)
        for col in dataset.column_names
        if col not in ("query", "label")
        for q, p in zip(dataset["query"], dataset[col], strict=True)
    ]
    truncated = count_over_limit(model.tokenizer, rows, args.max_length)
    warn_truncation(reporter, truncated, len(rows), args.max_length, "(query, passage) rows")
    reporter.log(
        f"reranker setup: {len(train)} train pairs → {len(dataset)} {args.loss} rows / {len(task.queries)} held-out "
        f"queries (bi-encoder top-{args.eval_candidates}), device {device}"
    )
    return _Setup(
        model=model,
        train=train,
        task=task,
        train_dataset=dataset,
        duplicates_dropped=loaded.duplicates_dropped,
        truncated_examples=truncated,
        synthetic=synthetic,
    )


def _loss(args: RerankerArgs, s: _Setup) -> tuple[Any, dict[str, Any]]:
    """The loss object for ``args.loss`` and the statistics that describe it."""

    if args.loss == "mnrl":
        negatives = len(s.train_dataset.column_names) - 2
        loss = MultipleNegativesRankingLoss(s.model, num_negatives=args.in_batch_negatives)
        stats = {"loss": "mnrl", "hard_negatives_per_row": negatives, "in_batch_negatives": args.in_batch_negatives}
        return loss, stats
    labels = s.train_dataset["label"]
    positives = sum(1 for x in labels if x > 0.5)
    pos_weight = torch.tensor((len(labels) - positives) / max(positives, 1))
    return BinaryCrossEntropyLoss(s.model, pos_weight=pos_weight), {"loss": "bce", "pos_weight": float(pos_weight)}


def fit(args: RerankerArgs, s: _Setup, reporter: Reporter) -> dict[str, Any]:
    """Train with ``args.loss`` (listwise MNRL or pointwise BCE); checkpoint/resume."""

    loss, loss_stats = _loss(args, s)

    def make_trainer(kwargs: dict[str, Any], callbacks: list[Any]) -> Any:
        return CrossEncoderTrainer(
            model=s.model,
            # data parallel: the Trainer turns on DDP's find_unused_parameters for models that are not a
            # transformers PreTrainedModel, and the MNRL loss's one forward per candidate column then fails
            # ("marked ready twice"); every parameter is used, so it is off (tests/training/test_data_parallel.py)
            args=CrossEncoderTrainingArguments(**kwargs, ddp_find_unused_parameters=False),
            train_dataset=s.train_dataset,
            loss=loss,
            callbacks=callbacks,
        )

    return train_with_resume(
        args,
        reporter,
        make_trainer,
        scratch_prefix="domainrag-rerank-",
        n_rows=len(s.train_dataset),
        extra_stats=loss_stats,
    )


def run_reranker(args: RerankerArgs, reporter: Reporter) -> RerankerResult:
    """Train a reranker from ``args.base_model`` on ``args.dataset``: setup → evaluate → fit → evaluate → save."""
    t0 = time.perf_counter()
    s = setup(args, reporter)
    before = rerank_metrics(None, s.task)
    log_eval_metrics(reporter, "held-out reranking before (bi-encoder order)", 0, before)
    stats = fit(args, s, reporter)
    s.model.eval()
    after = rerank_metrics(s.model, s.task)
    log_eval_metrics(reporter, "held-out reranking after (cross-encoder order)", stats["steps"], after)
    warning = worse_than_bi_encoder(before, after, stats["steps"])
    if warning:
        reporter.log(f"WARNING: {warning}")

    out = Path(args.output_dir)
    if is_main_process():  # data parallel: every process holds the same weights; one writes them
        s.model.save_pretrained(str(out))
    result = RerankerResult(
        output_dir=out,
        n_train=len(s.train),
        n_eval=len(s.task.queries),
        metrics_before=before,
        metrics_after=after,
        seconds=time.perf_counter() - t0,
        pairs_per_s=stats["pairs_per_s"],
        steps=stats["steps"],
        n_examples=len(s.train_dataset),
        duplicates_dropped=s.duplicates_dropped,
        truncated_examples=s.truncated_examples,
        synthetic=s.synthetic,
    )
    meta = {
        "kind": "reranker",
        "args": jsonable_args(args),
        "n_train": result.n_train,
        "n_examples": result.n_examples,
        "n_eval": result.n_eval,
        "metrics_before": before,
        "metrics_after": after,
        "duplicates_dropped": s.duplicates_dropped,
        "truncated_examples": s.truncated_examples,
        "synthetic": s.synthetic,
        "train": finite_stats(stats),
        "warnings": [warning] if warning else [],
    }
    if is_main_process():
        (out / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    reporter.log(f"reranker saved to {out}")
    return result
