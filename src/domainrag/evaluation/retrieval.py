"""Retrieval metrics over qrels/run dicts, computed by trec_eval (pytrec-eval-terrier).

Metric names follow the usual short forms: ``ndcg@10``, ``recall@5``, ``mrr@10``, ``map``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from domainrag.index.base import SearchHit

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]

DEFAULT_METRICS = ("ndcg@10", "recall@1", "recall@5", "recall@10", "recall@100", "mrr@10", "map")


def _trec_name(metric: str) -> tuple[str, str, int | None]:
    name, _, cut = metric.partition("@")
    if name not in ("ndcg", "recall", "precision", "mrr", "map"):
        raise ValueError(f"unsupported metric '{metric}' (use ndcg@k, recall@k, precision@k, mrr@k, map)")
    if cut and not (cut.isdigit() and int(cut) > 0):
        raise ValueError(f"metric '{metric}': the cut-off after @ must be a whole number of at least 1, e.g. {name}@10")
    k = int(cut) if cut else None
    if name == "ndcg":
        return (f"ndcg_cut.{k}", f"ndcg_cut_{k}", None) if k else ("ndcg", "ndcg", None)
    if name == "recall":
        return (f"recall.{k}", f"recall_{k}", None) if k else ("recall", "recall", None)
    if name == "precision":
        if not k:
            raise ValueError(f"metric '{metric}' needs a cut-off, e.g. precision@5")
        return (f"P.{k}", f"P_{k}", None)
    if name == "mrr":
        return ("recip_rank", "recip_rank", k)  # cut applied by truncating the run
    return ("map", "map", None)  # the one name left


def validate_metric(metric: str) -> str:
    """``metric`` if trec_eval can compute it; ValueError naming it otherwise."""
    _trec_name(metric)
    return metric


def evaluate_run_per_query(
    qrels: Qrels, run: Run, metrics: Sequence[str] = DEFAULT_METRICS
) -> dict[str, dict[str, float]]:
    """Each metric for each query in ``qrels`` that has a judgement (queries missing from the run score 0).

    Per-query values feed the report's drill-down; :func:`evaluate_run` averages them.
    """
    import pytrec_eval

    qrels_d = {q: dict(d) for q, d in qrels.items() if d}
    out: dict[str, dict[str, float]] = {q: {} for q in qrels_d}
    for metric in metrics:
        measure, key, cut = _trec_name(metric)
        r = {q: dict(run.get(q, {})) for q in qrels_d}
        if cut is not None:
            r = {q: dict(sorted(d.items(), key=lambda kv: -kv[1])[:cut]) for q, d in r.items()}
        evaluator = pytrec_eval.RelevanceEvaluator(qrels_d, {measure})
        scores = evaluator.evaluate({q: d or {"__none__": 0.0} for q, d in r.items()})
        for q in qrels_d:
            out[q][metric] = float(scores.get(q, {}).get(key, 0.0))
    return out


def mean_metrics(per_query: Mapping[str, Mapping[str, float]], metrics: Sequence[str]) -> dict[str, float]:
    """Mean of each metric over the queries of a per-query table (0.0 when there are none)."""
    return {m: float(np.mean([row[m] for row in per_query.values()])) if per_query else 0.0 for m in metrics}


def evaluate_run(qrels: Qrels, run: Run, metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over the queries in ``qrels`` (queries missing from the run score 0)."""
    return mean_metrics(evaluate_run_per_query(qrels, run, metrics), metrics)


def run_from_hits(hits: Sequence[SearchHit], level: str = "doc") -> dict[str, float]:
    """Turn ranked hits into a run row: document level keeps each document's best rank."""
    row: dict[str, float] = {}
    n = len(hits)
    for rank, h in enumerate(hits):
        key = h.doc_id if level == "doc" else h.chunk_id
        row.setdefault(key, float(n - rank))  # strictly decreasing: trec_eval sorts by score
    return row
