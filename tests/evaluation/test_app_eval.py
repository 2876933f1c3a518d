"""Answer evaluation of catalogued apps: configs shown in the report, closed-book runs, the judge's model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from domainrag.evaluation.app_eval import app_config, evaluate_apps
from domainrag.evaluation.spec import AnswerEvalSpec

from .test_answers import QUESTIONS, ScriptedApp


class _App(ScriptedApp):
    def __init__(self) -> None:
        from domainrag.serving.rag import GenerationSettings

        super().__init__({QUESTIONS[0]["question"]: "Prime it for 30 seconds [1]."})
        self.name, self.generator, self.generation = "docs", None, GenerationSettings()


def test_evaluate_apps(ws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws.catalog.put("index", "kb", {"embedding_model": "emb-a", "dimension": 8, "store": {"type": "embedded"}})
    ws.catalog.put("app", "docs", {"name": "docs", "model": "llm-x", "retrieval": {"index": "kb", "top_k": 2},
                                   "generation": {"temperature": 0.1, "system_prompt": "long"}})
    config = app_config(ws, "docs")
    assert config.pop("gate").startswith("not calibrated")
    assert config == {"app": "docs", "model": "llm-x", "index": "kb", "embedding_model": "emb-a",
                      "mode": None, "top_k": 2, "generation.temperature": 0.1}
    monkeypatch.setattr("domainrag.evaluation.app_eval.load_app", lambda ws, name, **kw: _App())
    monkeypatch.setattr("domainrag.evaluation.app_eval.unknown_gold_warnings", lambda *a: ["w"])
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    result = evaluate_apps(ws, AnswerEvalSpec(apps=["docs"], no_retrieval=True, limit=1), qfile, command="c")
    assert result.answers is not None and result.answers.dataset.questions == 1
    runs = {r.label: r for r in result.answers.runs}
    assert list(runs) == ["docs", "docs (no retrieval)"]
    assert runs["docs"].metrics["key_fact_accuracy"] == 1.0
    assert runs["docs (no retrieval)"].errors == 1  # its app has no generator: the load error is recorded
    assert any("no generator" in w for w in result.warnings) and "w" in result.warnings
    assert set(result.metadata.models) == {"llm-x", "emb-a"}


def test_withheld_gold_questions_are_answered_without_their_gold_documents() -> None:
    from domainrag.evaluation.app_eval import WithholdingApp, withheld_items
    from domainrag.index.base import SearchHit

    items = [{"id": "q1", "question": "How long?", "doc": "gold.md"}, {"id": "u1", "question": "Price?", "doc": None}]
    twins = withheld_items(items, 5, "Not found.")
    assert twins == [{"id": "q1~withheld", "question": "How long?", "answer": "Not found.", "short_answer": "",
                      "doc": None, "withhold": ["gold.md"]}]

    class Rag:
        retriever = type("R", (), {"config": type("C", (), {"top_k": 2})()})()

        def retrieve(self, query, top_k=None):
            self.asked_k = top_k
            return [SearchHit(f"{d}::0", d, "t", 1.0) for d in ("gold.md", "a.md", "b.md", "c.md")]

        def answer_from(self, query, hits):
            return [h.doc_id for h in hits]

    rag = Rag()
    assert WithholdingApp(rag).invoke_item(twins[0]) == ["a.md", "b.md"]  # top_k passages, none from gold.md
    assert rag.asked_k > 2  # fetched extra so that top_k remain
