"""Evaluation specifications: validation errors name the field; the metric gate."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from domainrag.errors import DomainRagError
from domainrag.evaluation.result import AnswerRun
from domainrag.evaluation.spec import (
    AnswerEvalSpec,
    AppConfigSpec,
    JudgeSpec,
    RerankSpec,
    RetrievalConfigSpec,
    RetrievalEvalSpec,
    check_thresholds,
    validate_thresholds,
)


def test_config_spec_validation() -> None:
    assert RetrievalConfigSpec(mode="Hybrid", index=" other ").model_dump() == {
        "kind": "search", "mode": "hybrid", "embedding_model": None, "index": "other", "rerank": None, "label": None}
    assert RetrievalConfigSpec(mode="dense", embedding_model="m", index="i").text == "dense:m@i"
    with pytest.raises(ValidationError, match="unknown mode 'sparse'"):
        RetrievalConfigSpec(mode="sparse")
    with pytest.raises(ValidationError, match="bm25 uses no embedding model"):
        RetrievalConfigSpec(mode="bm25", embedding_model="m")
    with pytest.raises(ValidationError, match="embedding_model"):
        RetrievalConfigSpec(mode="dense", embedding_model=" ")


def test_rerank_and_app_specs() -> None:
    spec = RetrievalConfigSpec(mode="hybrid", rerank={"model": " rr ", "fusion": "rrf", "retrieval_weight": 2})
    assert spec.rerank == RerankSpec(model="rr", fusion="rrf", retrieval_weight=2.0)
    assert spec.text == "hybrid+rerank:rr,fusion=rrf,retrieval_weight=2"  # defaults left out of the label
    with pytest.raises(ValidationError, match=r"rerank\.fusion"):
        RetrievalConfigSpec(mode="hybrid", rerank={"model": "rr", "fusion": "max"})
    with pytest.raises(ValidationError, match=r"rerank\.top_n"):
        RetrievalConfigSpec(mode="hybrid", rerank={"model": "rr", "top_n": 0})
    with pytest.raises(ValidationError, match="empty reranker model name"):
        RerankSpec(model="  ")
    assert AppConfigSpec(app=" docs ").text == "app:docs"
    with pytest.raises(ValidationError, match="empty app name"):
        AppConfigSpec(app=" ")
    # a config given as a dict is an app config when it names an app, a search config otherwise
    typed = RetrievalEvalSpec(configs=[{"app": "docs"}, {"kind": "search", "mode": "bm25"}], index="kb").configs
    assert [c.kind for c in typed] == ["app", "search"]
    assert RetrievalEvalSpec(configs=[{"app": "docs"}]).index is None  # an app brings its own index
    with pytest.raises(ValidationError, match="needed by config 'bm25'") as exc:
        RetrievalEvalSpec(configs=[{"app": "docs"}, {"mode": "bm25"}])
    assert exc.value.errors()[0]["loc"] == ("index",)


def test_retrieval_spec_defaults_and_errors() -> None:
    spec = RetrievalEvalSpec(index="docs")
    assert [c.text for c in spec.configs] == ["bm25", "dense", "hybrid"] and "ndcg@10" in spec.metrics
    with pytest.raises(ValidationError) as exc:
        RetrievalEvalSpec(index="docs", metrics=["ndcg@10", "bleu"])
    assert exc.value.errors()[0]["loc"] == ("metrics",) and "unsupported metric 'bleu'" in str(exc.value)
    with pytest.raises(ValidationError, match="overlap_words"):
        RetrievalEvalSpec(index="docs", overlap_words=-1)


def test_answer_spec() -> None:
    spec = AnswerEvalSpec(apps=["a", "b"], judge=JudgeSpec(model="smol"))
    assert spec.judge is not None and spec.judge.threshold == 0.5 and spec.judge.url is None
    with pytest.raises(ValidationError, match="app named twice: a"):
        AnswerEvalSpec(apps=["a", "a"])
    with pytest.raises(ValidationError, match="apps"):
        AnswerEvalSpec(apps=[])


def test_thresholds() -> None:
    allowed = ["key_fact_accuracy", "faithfulness", "error_rate"]
    assert validate_thresholds({"Key_Fact_Accuracy": 0.5}, allowed) == {"key_fact_accuracy": 0.5}
    with pytest.raises(DomainRagError, match="unknown metric 'bleu'") as exc:
        validate_thresholds({"bleu": 0.5}, allowed)
    assert "key_fact_accuracy" in (exc.value.hint or "")
    with pytest.raises(DomainRagError, match="lower error_rate is better"):
        validate_thresholds({"error_rate": 0.1}, allowed)
    runs = [AnswerRun(label="a", metrics={"key_fact_accuracy": 0.4, "faithfulness": None}),
            AnswerRun(label="b", metrics={"key_fact_accuracy": 0.9, "faithfulness": 1.0})]
    assert check_thresholds(runs, {"key_fact_accuracy": 0.5, "faithfulness": 0.5}) == [
        "a: key_fact_accuracy = 0.4000 < 0.5", "a: faithfulness not measured (required ≥ 0.5)"]
