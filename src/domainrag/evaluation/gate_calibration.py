"""Fit an app's answerability gate on labelled questions to a target false-refusal rate (`domainrag app calibrate`).

Each question gives gate signals (:func:`domainrag.serving.gate.gate_signals`) from the app's own retrieval:
an answerable one (it names its gold document(s)) as is, an unanswerable one (no gold) as is, and, with
``withhold_gold``, each answerable one once more with its gold documents removed from the retrieved
passages (the "negative rejection" protocol: the app's index does hold other passages, just not the
answer). A logistic regression (scikit-learn) on the standardised signals gives p(answerable); the
threshold is the highest that refuses at most ``target`` of the answerable calibration questions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from domainrag.errors import DomainRagError
from domainrag.evaluation.beir import gold_docs, read_questions
from domainrag.serving.apps import load_app, set_gate
from domainrag.serving.gate import FEATURES, GATE_TOP_N, READER_FEATURES, GateCalibration, gate_signals
from domainrag.serving.rag import RagApp

WITHHOLD_EXTRA = 20
"""Extra passages retrieved for a withheld-gold question, so that top_k remain once the gold ones are dropped."""
MIN_PER_CLASS = 5


@dataclass
class GateRow:
    """One calibration example: its signals and whether its passages hold the answer."""

    question_id: str
    answerable: bool
    withheld: bool
    signals: dict[str, float | None]


def collect_rows(
    rag: RagApp,
    items: Sequence[Mapping[str, Any]],
    *,
    withhold_gold: bool = True,
    features: Sequence[str] = FEATURES,
    reranker: Any = None,
    top_n: int = GATE_TOP_N,
    progress: Callable[[int, int], None] | None = None,
) -> list[GateRow]:
    """Gate signals of every question (and of its withheld-gold twin); the reader signal needs ``rag.generator``."""
    reader = rag.gate.reader if rag.gate is not None else None
    checker = rag.gate.checker if rag.gate is not None else None
    k = rag.retriever.config.top_k
    rows: list[GateRow] = []
    for i, q in enumerate(items):
        question, gold = str(q["question"]), set(gold_docs(dict(q)))
        variants = [(bool(gold), False)] + ([(False, True)] if gold and withhold_gold else [])
        hits_all = rag.retrieve(question, top_k=k + WITHHOLD_EXTRA if len(variants) > 1 else k)
        for answerable, withheld in variants:
            hits = [h for h in hits_all if h.doc_id not in gold][:k] if withheld else hits_all[:k]
            signals = gate_signals(question, hits, features=features, reranker=reranker, reader=reader,
                                   checker=checker, messages=lambda h=hits, q=question: rag.messages(q, h), top_n=top_n)
            rows.append(GateRow(str(q.get("id", i)), answerable, withheld, signals))
        if progress:
            progress(i + 1, len(items))
    return rows


def usable_features(rows: Sequence[GateRow], wanted: Sequence[str]) -> list[str]:
    """The wanted signals every row has (a signal missing anywhere cannot be used by the gate)."""
    return [f for f in wanted if all(r.signals.get(f) is not None and math.isfinite(r.signals[f]) for r in rows)]


def fit_gate(
    rows: Sequence[GateRow],
    target_false_refusal: float,
    *,
    features: Sequence[str] = FEATURES,
    reranker: str | None = None,
    top_n: int = GATE_TOP_N,
    fitted_on: Mapping[str, Any] | None = None,
) -> GateCalibration:
    """A gate from ``rows``: logistic model on the usable signals, threshold for ``target_false_refusal``."""
    from sklearn.linear_model import LogisticRegression  # lazy: only calibration needs scikit-learn

    if not 0 <= target_false_refusal < 1:
        raise DomainRagError(f"target false-refusal rate {target_false_refusal} is not in [0, 1)",
                             hint="e.g. --target-false-refusal 0.05")
    answerable = sum(r.answerable for r in rows)
    unanswerable = len(rows) - answerable
    if answerable < MIN_PER_CLASS or unanswerable < MIN_PER_CLASS:
        raise DomainRagError(
            f"calibration needs at least {MIN_PER_CLASS} answerable and {MIN_PER_CLASS} unanswerable questions; "
            f"got {answerable} and {unanswerable}",
            hint="add questions without a gold document (doc: null), or keep --withhold-gold on")
    used = usable_features(rows, features)
    if not used:
        raise DomainRagError(f"none of the signals {', '.join(features)} could be computed for every question",
                             hint="use a dense or hybrid retrieval mode, or give the gate a reranker")
    x = np.array([[r.signals[f] for f in used] for r in rows], dtype=np.float64)
    y = np.array([r.answerable for r in rows], dtype=np.int64)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(class_weight="balanced", max_iter=1000).fit((x - mean) / scale, y)
    cal = GateCalibration(features=used, mean=mean.tolist(), scale=scale.tolist(), weights=model.coef_[0].tolist(),
                          bias=float(model.intercept_[0]), threshold=0.0, target_false_refusal=target_false_refusal,
                          reranker=reranker, top_n=top_n, fitted_on=dict(fitted_on or {}), fitted_at=time.time())
    p = np.array([cal.probability(r.signals) for r in rows])
    p_answerable = np.sort(p[y == 1])
    allowed = math.floor(target_false_refusal * len(p_answerable))  # answerable questions it may refuse
    cal.threshold = float(p_answerable[allowed])
    cal.measured = rates(cal, rows)
    cal.fitted_on.update(answerable=answerable, unanswerable=unanswerable,
                         withheld=sum(r.withheld for r in rows))
    return cal


def rates(cal: GateCalibration, rows: Sequence[GateRow]) -> dict[str, float]:
    """Refusal on unanswerable and false refusal on answerable rows under ``cal``."""
    refused = [(r.answerable, (cal.probability(r.signals) or 0.0) < cal.threshold) for r in rows]
    ans = [ref for a, ref in refused if a]
    unans = [ref for a, ref in refused if not a]
    return {"false_refusal_rate": round(sum(ans) / max(1, len(ans)), 4),
            "refusal_rate_unanswerable": round(sum(unans) / max(1, len(unans)), 4)}


def calibrate_app(
    ws: Any,
    name: str,
    questions: Path,
    target_false_refusal: float,
    *,
    withhold_gold: bool = True,
    reranker: str | None = None,
    signals: Sequence[str] = FEATURES,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> GateCalibration:
    """Fit app ``name``'s gate on ``questions`` (a .jsonl of questions with ``doc``/``docs``) and store it."""
    unknown = [s for s in signals if s not in FEATURES]
    if unknown:
        raise DomainRagError(f"unknown gate signal(s): {', '.join(unknown)}", hint=f"choose from {', '.join(FEATURES)}")
    items = read_questions(questions)[: limit or None]
    rag = load_app(ws, name, with_generator=any(s in READER_FEATURES for s in signals))
    scorer = ws.reranker(reranker) if reranker and "rerank" in signals else None
    if rag.gate is None or rag.gate.reader is None:
        signals = [s for s in signals if s not in READER_FEATURES]  # the app's backend exposes no logits
    rows = collect_rows(rag, items, withhold_gold=withhold_gold, features=signals, reranker=scorer,
                        progress=progress)
    cal = fit_gate(rows, target_false_refusal, features=signals, reranker=reranker if scorer else None,
                   fitted_on={"questions": questions.name, "withhold_gold": withhold_gold})
    set_gate(ws, name, cal)
    return cal
