"""The answer runner: every app asks every question; app errors and unanswerable questions are recorded."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from domainrag.errors import DomainRagError
from domainrag.evaluation.answer_eval import run_answer_eval
from domainrag.evaluation.judge import JUDGE_PROMPT
from domainrag.evaluation.result import EvalResult

from .test_answers import QUESTIONS, ScriptedApp


def test_runner_records_app_errors_and_finishes(tmp_path: Path) -> None:
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("x")
    good = ScriptedApp({QUESTIONS[0]["question"]: "Prime it for 30 seconds [1].",
                        QUESTIONS[1]["question"]: "The knowledge base does not contain this information.",
                        QUESTIONS[2]["question"]: "Yes [1]."})
    flaky = ScriptedApp({QUESTIONS[2]["question"]: "No."})
    result = run_answer_eval({"good": lambda: good, "flaky": lambda: flaky}, QUESTIONS,
                             dataset_files={"q.jsonl": qfile}, command="test").to_json()
    sec = result["answers"]
    runs = {r["label"]: r for r in sec["runs"]}
    assert runs["good"]["metrics"]["key_fact_accuracy"] == 1.0
    assert runs["good"]["metrics"]["label_accuracy"] == 1.0
    assert runs["good"]["metrics"]["refusal_rate_unanswerable"] == 1.0
    assert runs["flaky"]["errors"] == 2 and runs["flaky"]["metrics"]["error_rate"] == pytest.approx(2 / 3)
    assert runs["flaky"]["metrics"]["label_accuracy"] == 0.0
    assert runs["good"]["metrics"]["faithfulness"] is None
    assert "not measured" in runs["good"]["status"]["faithfulness"]
    assert sec["judge"]["configured"] is False and sec["judge"]["prompt"] == JUDGE_PROMPT
    q_a = sec["questions"][0]["results"]
    assert q_a["flaky"]["error"] == "RuntimeError: generator crashed"
    assert q_a["good"]["correct"] and q_a["good"]["passages"][0]["doc_id"] == "pumps"
    assert sec["dataset"] == {"questions": 3, "answerable": 2, "unanswerable": 1}
    json.dumps(result)  # JSON-able throughout


def test_result_is_typed_and_the_error_entry_scores_wrong(tmp_path: Path) -> None:
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("x")
    result = run_answer_eval({"app": lambda: ScriptedApp({})}, QUESTIONS[:1], dataset_files={"q.jsonl": qfile})
    assert isinstance(result, EvalResult) and result.answers is not None and result.retrieval is None
    entry = result.answers.questions[0].results["app"]
    assert entry.error == "RuntimeError: generator crashed" and not entry.correct and entry.score.key_fact == 0.0
    assert result.answers.runs[0].errors == 1 and result.metadata.dataset_files["q.jsonl"].sha256
    with pytest.raises(Exception, match="no question"):
        run_answer_eval({"app": lambda: ScriptedApp({})}, [{"id": "e", "question": " "}],
                        dataset_files={"q.jsonl": qfile})


class _Barrier(ScriptedApp):
    """Answers only once ``n`` questions are in flight together; a serial runner would wait forever."""

    def __init__(self, answers: dict[str, str], n: int) -> None:
        super().__init__(answers)
        self.barrier = threading.Barrier(n, timeout=10)

    def invoke(self, query: str) -> Any:
        self.barrier.wait()
        return super().invoke(query)


def test_questions_are_asked_concurrently_and_kept_in_order(tmp_path: Path) -> None:
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("x")
    answers = {QUESTIONS[0]["question"]: "Prime it for 30 seconds [1].",
               QUESTIONS[1]["question"]: "The knowledge base does not contain this information.",
               QUESTIONS[2]["question"]: "Yes [1]."}
    result = run_answer_eval({"app": lambda: _Barrier(answers, 3)}, QUESTIONS, dataset_files={"q.jsonl": qfile},
                             concurrency=3)
    assert result.answers is not None
    assert [q.results["app"].answer for q in result.answers.questions] == [answers[q["question"]] for q in QUESTIONS]
    assert result.answers.runs[0].errors == 0 and result.answers.runs[0].metrics["key_fact_accuracy"] == 1.0
    serial = run_answer_eval({"app": lambda: ScriptedApp(answers)}, QUESTIONS, dataset_files={"q.jsonl": qfile},
                             concurrency=1)
    assert serial.answers is not None and serial.answers.runs[0].metrics == result.answers.runs[0].metrics
    with pytest.raises(DomainRagError, match="concurrency"):
        run_answer_eval({"app": lambda: ScriptedApp(answers)}, QUESTIONS, dataset_files={"q.jsonl": qfile},
                        concurrency=0)


class _Held(ScriptedApp):
    """Answers its first question at once; every later one waits until ``release`` is set."""

    def __init__(self, answers: dict[str, str]) -> None:
        super().__init__(answers)
        self.calls = 0
        self.lock = threading.Lock()
        self.release = threading.Event()

    def invoke(self, query: str) -> Any:
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if not first:
            self.release.wait(10)
        return super().invoke(query)


def test_an_interrupted_evaluation_stops_without_asking_the_questions_left(tmp_path: Path) -> None:
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("x")
    questions = [{**QUESTIONS[0], "id": f"q{i}"} for i in range(12)]
    app = _Held({QUESTIONS[0]["question"]: "Prime it for 30 seconds [1]."})

    def interrupt(label: str, done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_answer_eval({"app": lambda: app}, questions, dataset_files={"q.jsonl": qfile}, concurrency=2,
                        progress=interrupt)
    app.release.set()  # the questions in flight when it stopped may finish; none of the others starts
    time.sleep(0.2)
    assert app.calls <= 3 < len(questions)
