"""The evaluation result: typed, saved as the "domainrag.eval/1" JSON layout, and old files still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from domainrag.cli.main import app as cli
from domainrag.errors import DatasetError
from domainrag.evaluation.answer_eval import run_answer_eval
from domainrag.evaluation.result import SCHEMA, EvalResult, model_info, new_result

from .test_answers import QUESTIONS, ScriptedApp

# A result as written before results were typed (hand-built dicts): the layout, keys and nesting.
OLD_FILE = {
    "schema": "domainrag.eval/1", "title": "Answer evaluation — q",
    "metadata": {"created_at": "2024-01-01T00:00:00+00:00", "command": "domainrag eval answers --app a",
                 "domainrag_version": "0.1.0", "python": "3.12.0", "platform": "Linux",
                 "dataset_files": {"q.jsonl": {"path": "/tmp/q.jsonl", "sha256": "ab" * 32}},
                 "models": {"llm": {"name": "llm", "source": "catalogue"}}, "elapsed_s": 1.5},
    "warnings": ["1 empty question(s) skipped: e"],
    "retrieval": None,
    "answers": {
        "dataset": {"questions": 1, "answerable": 1, "unanswerable": 0},
        "metrics": ["key_fact_accuracy", "faithfulness"],
        "judge": {"configured": False, "status": "not measured (no --judge-model given)", "prompt": "p"},
        "runs": [{"label": "a", "config": {"app": "a", "model": "llm"}, "metrics": {"key_fact_accuracy": 1.0,
                  "faithfulness": None}, "status": {"faithfulness": "not measured"}, "judge_errors": 0, "errors": 1,
                  "seconds": 0.5}],
        "questions": [{"id": "q1", "question": "How long?", "reference": "30 s", "short_answer": "30 s",
                       "gold": ["pumps"], "results": {"a": {
                           "answer": None, "error": "RuntimeError: boom", "references": [], "passages": [],
                           "score": {"answerable": True, "error": "RuntimeError: boom", "key_fact": 0.0},
                           "correct": False}}}],
    },
}


def test_json_layout_round_trips(tmp_path: Path) -> None:
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("x")
    app = ScriptedApp({QUESTIONS[0]["question"]: "Prime it for 30 seconds [1]."})
    result = run_answer_eval({"app": lambda: app}, QUESTIONS, dataset_files={"q.jsonl": qfile}, command="t")
    path = result.write_json(tmp_path / "out" / "r.json")
    data = json.loads(path.read_text())
    assert list(data) == ["schema", "title", "metadata", "warnings", "retrieval", "answers", "gate"]
    assert data["schema"] == SCHEMA and data["retrieval"] is None and data["metadata"]["command"] == "t"
    entry = data["answers"]["questions"][0]["results"]["app"]
    assert entry["cited"] == [1] and entry["passages"][0]["doc_id"] == "pumps"
    assert set(entry["passages"][0]) == {"doc_id", "chunk_id", "score", "text"}
    assert set(entry["score"]) >= {"answerable", "exact", "f1", "key_fact", "faithfulness_detail"}
    assert EvalResult.read_json(path).to_json() == data  # nothing lost on the way back


def test_old_files_load_and_render(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps(OLD_FILE))
    loaded = EvalResult.read_json(path)
    assert loaded.answers is not None and loaded.answers.questions[0].results["a"].cited == []
    assert loaded.answers.questions[0].results["a"].score.error == "RuntimeError: boom"
    res = CliRunner().invoke(cli, ["eval", "render", str(path), "--report", str(tmp_path / "old.html")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "old.html").read_text()
    assert "RuntimeError: boom" in page and "How long?" in page and "<img" in page


def test_malformed_file_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**OLD_FILE, "metadata": {"command": "x"}}))
    with pytest.raises(DatasetError, match=r"bad\.json \(field 'metadata\.created_at'\)"):
        EvalResult.read_json(bad)
    (tmp_path / "nojson.json").write_text("{")
    with pytest.raises(DatasetError, match="not JSON"):
        EvalResult.read_json(tmp_path / "nojson.json")
    with pytest.raises(DatasetError, match="no such file"):
        EvalResult.read_json(tmp_path / "missing.json")


def test_new_result_metadata(tmp_path: Path) -> None:
    f = tmp_path / "corpus.jsonl"
    f.write_text("{}")
    result = new_result("T", {"corpus.jsonl": f}, command="c")
    assert result.metadata.dataset_files["corpus.jsonl"].sha256 == (
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
    assert model_info(None, "all-minilm-l6-v2")["source"] == "base model"
    assert model_info(None, "/some/path") == {"name": "/some/path", "source": "path or hub id"}
