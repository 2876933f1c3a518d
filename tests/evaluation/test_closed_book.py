"""Answers without retrieval (`eval answers --no-retrieval`) next to the same app with retrieval."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from domainrag.evaluation.answer_eval import run_answer_eval
from domainrag.evaluation.closed_book import ClosedBookApp, closed_book_config
from domainrag.serving.generator import GenerationConfig
from domainrag.serving.rag import GenerationSettings

from .test_answers import QUESTIONS, ScriptedApp


class EchoGenerator:
    """Records the messages and config it gets; answers from a script keyed by the user message."""

    name = "echo"

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.seen: list[tuple[list[dict[str, str]], GenerationConfig | None]] = []

    def generate(self, messages: Sequence[dict[str, str]], config: GenerationConfig | None = None) -> str:
        self.seen.append((list(messages), config))
        return self.answers[messages[-1]["content"]]


class AppWithGenerator(ScriptedApp):
    def __init__(self, answers: dict[str, str], generator: EchoGenerator) -> None:
        super().__init__(answers)
        self.name = "docs"
        self.generator = generator
        self.generation = GenerationSettings(max_new_tokens=7, not_found_answer="Not in the manuals.")


def test_closed_book_asks_the_model_alone_with_the_apps_settings() -> None:
    gen = EchoGenerator({"How long?": " About a minute. "})
    book = ClosedBookApp(AppWithGenerator({}, gen))
    ans = book.invoke("  How long?")
    assert ans.answer == "About a minute." and ans.passages == [] and ans.references == []
    (messages, config), = gen.seen
    assert [m["role"] for m in messages] == ["system", "user"] and messages[1]["content"] == "How long?"
    assert "Not in the manuals." in messages[0]["content"] and "passage" not in messages[0]["content"]
    assert config is not None and config.max_new_tokens == 7
    with pytest.raises(ValueError, match="empty"):
        book.invoke(" ")


def test_closed_book_needs_a_generator() -> None:
    app = ScriptedApp({})
    app.generator = None  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="no generator"):
        ClosedBookApp(app)


def test_with_and_without_retrieval_side_by_side(tmp_path: Path) -> None:
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("x")
    q = QUESTIONS[0]["question"]
    gen = EchoGenerator({q: "About a minute.", QUESTIONS[1]["question"]: "Not in the manuals."})
    rag = AppWithGenerator({q: "Prime it for 30 seconds [1].", QUESTIONS[1]["question"]: "Not in the manuals."}, gen)
    result = run_answer_eval({"docs": lambda: rag, "docs (no retrieval)": lambda: ClosedBookApp(rag)},
                             QUESTIONS[:2], dataset_files={"q.jsonl": qfile},
                             judge=None, configs={"docs (no retrieval)": closed_book_config({"app": "docs"}, "x")},
                             ).to_json()
    runs = {r["label"]: r for r in result["answers"]["runs"]}
    assert runs["docs"]["metrics"]["key_fact_accuracy"] == 1.0
    assert runs["docs (no retrieval)"]["metrics"]["key_fact_accuracy"] == 0.0
    assert runs["docs"]["metrics"]["context_hit_rate"] == 1.0
    assert runs["docs (no retrieval)"]["metrics"]["context_hit_rate"] is None  # not "0 hits": nothing was retrieved
    assert "not applicable" in runs["docs (no retrieval)"]["status"]["faithfulness"]
    assert runs["docs (no retrieval)"]["config"]["retrieval"] == "none (question only)"
    json.dumps(result)


def test_an_app_that_fails_to_load_fails_its_questions_only(tmp_path: Path) -> None:
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("x")

    def broken() -> ScriptedApp:
        raise OSError("weights missing")

    good = ScriptedApp({QUESTIONS[0]["question"]: "30 seconds [1]."})
    result = run_answer_eval({"broken": broken, "good": lambda: good}, QUESTIONS[:1],
                             dataset_files={"q.jsonl": qfile}).to_json()
    runs = {r["label"]: r for r in result["answers"]["runs"]}
    assert runs["broken"]["metrics"]["error_rate"] == 1.0 and runs["good"]["metrics"]["error_rate"] == 0.0
    assert "OSError: weights missing" in result["answers"]["questions"][0]["results"]["broken"]["error"]
    assert any("could not load 'broken'" in w for w in result["warnings"])
