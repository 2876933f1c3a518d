"""Answerability gate: decide from calibrated signals whether the retrieved passages hold an answer,
before the reader is asked, so abstention does not depend on a small model obeying its prompt.

Signals of one question (``None`` where a signal cannot be computed):

* ``rerank``: the best cross-encoder score among the top passages (the app's reranker, or the gate's own);
* ``dense``: the best dense cosine similarity among them; ``bm25``: the best BM25 score;
* ``reader``: the reader's own preference for the not-found answer, mean log-probability of the first
  tokens of the app's not-found text minus that of its greedy answer's first tokens (0 when the greedy
  answer is the not-found text), from the backend's logits (:mod:`.reader_score`);
* ``check``: the reader asked whether the passages state the answer, log-odds of its "yes" over "no"
  (one more prompt prefill per question; :func:`.reader_score.answer_check`).

A :class:`GateCalibration` (fitted by ``domainrag app calibrate``, stored with the app) turns the signals
into p(answerable) with a logistic model and compares it with a threshold chosen for the user's target
false-refusal rate. An uncalibrated app uses :data:`DEFAULT_MIN_DENSE` on the dense signal alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domainrag.index.base import SearchHit
from domainrag.retrieval.reranker import PairScorer, rerank_hits

Feature = Literal["rerank", "dense", "bm25", "reader", "check"]
FEATURES: tuple[Feature, ...] = ("rerank", "dense", "bm25", "reader", "check")
READER_FEATURES = ("reader", "check")
"""Signals read from the reader's logits: they need the app's generator (a backend with logits)."""

DEFAULT_MIN_DENSE = 0.2
"""Uncalibrated apps refuse only when no passage reaches this dense cosine similarity: off-topic questions.

Deliberately lenient (it refuses almost no answerable question on the sample domain with either embedder,
see benchmarks/README.md "Answerability gate"); calibrate the app to refuse on weaker evidence."""

GATE_TOP_N = 3


class GateCalibration(BaseModel):
    """A fitted gate, stored with the app: ``p = sigmoid(bias + sum w_i (x_i - mean_i) / scale_i)``;
    the question is answered when ``p >= threshold``."""

    model_config = ConfigDict(extra="forbid")

    features: list[Feature] = Field(min_length=1)
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    threshold: float = Field(ge=0, le=1)
    target_false_refusal: float = Field(ge=0, le=1)
    reranker: str | None = Field(None, description="registered reranker the gate scores with (app has none)")
    top_n: int = Field(GATE_TOP_N, ge=1, le=100, description="passages whose best score is a signal")
    fitted_on: dict[str, Any] = Field(default_factory=dict, description="questions file, counts, how unanswerable")
    measured: dict[str, float] = Field(default_factory=dict, description="rates on the calibration data")
    fitted_at: float = Field(default_factory=time.time)

    def probability(self, signals: dict[str, float | None]) -> float | None:
        """p(answerable), or ``None`` when a signal the gate needs is missing."""
        z = self.bias
        for name, mean, scale, weight in zip(self.features, self.mean, self.scale, self.weights, strict=True):
            value = signals.get(name)
            if value is None or not math.isfinite(value):
                return None
            z += weight * (value - mean) / (scale or 1.0)
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


@dataclass
class GateDecision:
    """What the gate decided and why; ``ran`` is False when it could not compute its signals."""

    answerable: bool
    ran: bool
    calibrated: bool
    reason: str
    score: float | None = None
    threshold: float | None = None
    signals: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"answerable": self.answerable, "ran": self.ran, "calibrated": self.calibrated, "reason": self.reason,
                "score": None if self.score is None else round(self.score, 4), "threshold": self.threshold,
                "signals": {k: None if v is None else round(v, 4) for k, v in self.signals.items()}}


ReaderScore = Callable[[list[dict[str, str]]], float | None]
"""``reader(messages)`` → the not-found margin for the chat ``messages``, ``None`` when the backend has no logits."""


def gate_signals(
    query: str,
    hits: Sequence[SearchHit],
    *,
    features: Sequence[str] = FEATURES,
    reranker: PairScorer | None = None,
    reader: ReaderScore | None = None,
    checker: ReaderScore | None = None,
    messages: Callable[[], list[dict[str, str]]] | None = None,
    top_n: int = GATE_TOP_N,
) -> dict[str, float | None]:
    """The signals named in ``features`` for ``query`` and its retrieved ``hits`` (best first).

    ``rerank`` uses scores the retriever's reranker already set, else scores the top passages with
    ``reranker`` (on copies: the hits' own scores and order stay as retrieved).
    """
    top = list(hits[:top_n])
    out: dict[str, float | None] = {}
    if "rerank" in features:
        scores = [h.scores["rerank"] for h in top if "rerank" in h.scores]
        if not scores and reranker is not None and top:
            copies = [SearchHit(h.chunk_id, h.doc_id, h.text, h.score, h.title, dict(h.metadata)) for h in top]
            scores = [h.scores["rerank"] for h in rerank_hits(reranker, query, copies)]
        out["rerank"] = max(scores) if scores else None
    # Hybrid hits (fused: they carry their ranks) that one retriever did not return score 0 for it: "BM25 found
    # none of the top passages" is evidence, where None would leave a calibrated gate unable to run at all.
    fused = any(h.ranks for h in top)
    for name in ("dense", "bm25"):
        if name in features:
            values = [h.scores.get(name, 0.0) if fused else h.scores[name] for h in top if fused or name in h.scores]
            out[name] = max(values) if values else None
    for name, score in (("reader", reader), ("check", checker)):
        if name in features:
            out[name] = score(messages()) if score is not None and messages is not None and top else None
    return out


def decide(calibration: GateCalibration | None, signals: dict[str, float | None]) -> GateDecision:
    """The gate's answer for ``signals``: fitted model if calibrated, else the default dense floor."""
    if calibration is None:
        dense = signals.get("dense")
        if dense is None:
            return GateDecision(True, False, False, "uncalibrated and no dense score: gate not applied",
                                signals=signals)
        ok = dense >= DEFAULT_MIN_DENSE
        reason = (f"uncalibrated default: best dense similarity {dense:.3f} "
                  f"{'>=' if ok else '<'} {DEFAULT_MIN_DENSE}")
        return GateDecision(ok, True, False, reason, score=dense, threshold=DEFAULT_MIN_DENSE, signals=signals)
    p = calibration.probability(signals)
    if p is None:
        missing = [f for f in calibration.features if signals.get(f) is None]
        return GateDecision(True, False, True, f"signal(s) {', '.join(missing)} unavailable: gate not applied",
                            threshold=calibration.threshold, signals=signals)
    ok = p >= calibration.threshold
    reason = f"p(answerable) {p:.3f} {'>=' if ok else '<'} threshold {calibration.threshold:.3f}"
    return GateDecision(ok, True, True, reason, score=p, threshold=calibration.threshold, signals=signals)


class Gate:
    """An app's gate: its calibration (or none), the reranker and reader scorers it may use."""

    def __init__(self, calibration: GateCalibration | None, *, reranker: PairScorer | None = None,
                 reader: ReaderScore | None = None, checker: ReaderScore | None = None) -> None:
        self.calibration = calibration
        self.reranker = reranker
        self.reader = reader
        self.checker = checker

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.calibration.features) if self.calibration else ("dense",)

    def check(self, query: str, hits: Sequence[SearchHit],
              messages: Callable[[], list[dict[str, str]]] | None = None) -> GateDecision:
        top_n = self.calibration.top_n if self.calibration else GATE_TOP_N
        signals = gate_signals(query, hits, features=self.features, reranker=self.reranker, reader=self.reader,
                               checker=self.checker, messages=messages, top_n=top_n)
        return decide(self.calibration, signals)
