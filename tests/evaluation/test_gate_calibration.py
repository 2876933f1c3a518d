"""Fitting the answerability gate: the threshold meets the false-refusal target on the data it was fitted on,
unusable signals are left out, and too little data is a clear error."""

from __future__ import annotations

import random

import pytest

from domainrag.errors import DomainRagError
from domainrag.evaluation.gate_calibration import GateRow, fit_gate, rates


def _rows(n: int = 60, seed: int = 0) -> list[GateRow]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):  # overlapping classes: answerable passages score higher on average, not always
        rows.append(GateRow(f"a{i}", True, False, {"dense": rng.gauss(0.6, 0.1), "bm25": rng.gauss(8, 3),
                                                     "rerank": None}))
        rows.append(GateRow(f"a{i}", False, True, {"dense": rng.gauss(0.4, 0.1), "bm25": rng.gauss(5, 3),
                                                     "rerank": None}))
    return rows


@pytest.mark.parametrize("target", [0.0, 0.05, 0.2])
def test_the_threshold_refuses_at_most_the_target_share_of_answerable_questions(target: float) -> None:
    rows = _rows()
    cal = fit_gate(rows, target, fitted_on={"questions": "train.jsonl"})
    assert cal.features == ["dense", "bm25"]  # rerank was missing: left out, not guessed
    assert cal.measured == rates(cal, rows)
    assert cal.measured["false_refusal_rate"] <= target
    assert cal.fitted_on == {"questions": "train.jsonl", "answerable": 60, "unanswerable": 60, "withheld": 60}
    assert cal.weights[0] > 0  # more dense similarity, more likely answerable


def test_a_looser_target_refuses_more_unanswerable_questions() -> None:
    rows = _rows()
    strict, loose = fit_gate(rows, 0.0), fit_gate(rows, 0.2)
    assert loose.threshold >= strict.threshold
    assert loose.measured["refusal_rate_unanswerable"] >= strict.measured["refusal_rate_unanswerable"]
    assert loose.measured["refusal_rate_unanswerable"] > 0.5


def test_too_few_unanswerable_questions_or_no_usable_signal_is_a_clear_error() -> None:
    answerable_only = [r for r in _rows() if r.answerable]
    with pytest.raises(DomainRagError, match="unanswerable"):
        fit_gate(answerable_only, 0.05)
    with pytest.raises(DomainRagError, match="could be computed"):
        fit_gate(_rows(), 0.05, features=["rerank"])
    with pytest.raises(DomainRagError, match="not in"):
        fit_gate(_rows(), 1.5)
