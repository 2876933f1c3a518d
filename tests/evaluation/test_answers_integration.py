"""`eval answers` end to end with real models: a MiniLM index, a SmolLM2-135M app, the app's model without
retrieval, and SmolLM2 as the in-process faithfulness judge — one run, one report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from domainrag.cli.main import app as cli

LLM = "smollm2-135m-instruct"
DOCS = {
    "pump.md": "# DP-220 dosing pump\n\nThe DP-220 dosing pump delivers up to 12 litres per hour at 10 bar. "
    "Its diaphragm should be replaced every 4000 operating hours.",
    "warranty.md": "# Warranty\n\nThe CTL-400 controller carries a 36-month warranty on parts and labour.",
}
QUESTIONS = [
    {"id": "q1", "question": "How many litres per hour does the DP-220 dosing pump deliver?",
     "answer": "Up to 12 litres per hour.", "short_answer": "12 litres", "doc": "pump.md"},
    {"id": "q2", "question": "How long is the CTL-400 warranty?", "answer": "36 months.",
     "short_answer": "36-month", "doc": "warranty.md"},
]


@pytest.mark.integration
def test_with_and_without_retrieval_and_an_in_process_judge(isolated_workspace: Path, tmp_path: Path) -> None:
    from domainrag.retrieval.retriever import RetrievalConfig
    from domainrag.serving.apps import AppSpec, create_app
    from domainrag.serving.rag import GenerationSettings
    from domainrag.workspace import Workspace, create_index, ingest

    ws = Workspace.open(isolated_workspace)
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    create_index(ws, "kb", "all-minilm-l6-v2")
    ingest(ws, "kb", [folder])
    create_app(ws, AppSpec(name="docs", model=LLM, retrieval=RetrievalConfig(index="kb", top_k=1),
                           generation=GenerationSettings(max_new_tokens=24, temperature=0)))
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))

    out, html = tmp_path / "a.json", tmp_path / "a.html"
    res = CliRunner().invoke(cli, ["eval", "answers", "--app", "docs", "--no-retrieval", "--dataset", str(qfile),
                                   "--judge-model", LLM, "--json", str(out), "--report", str(html)])
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    sec = result["answers"]
    runs = {r["label"]: r for r in sec["runs"]}
    assert list(runs) == ["docs", "docs (no retrieval)"]
    rag, book = runs["docs"], runs["docs (no retrieval)"]
    assert rag["errors"] == book["errors"] == 0 and rag["judge_errors"] == 0
    assert rag["metrics"]["context_hit_rate"] == 1.0  # top-1 MiniLM retrieval finds each question's document
    assert book["metrics"]["context_hit_rate"] is None and "not applicable" in book["status"]["faithfulness"]
    assert book["config"]["retrieval"] == "none (question only)" and book["config"]["model"] == LLM
    answers = [(q["results"]["docs"], q["results"]["docs (no retrieval)"]) for q in sec["questions"]]
    assert all(b["passages"] == [] and len(r["passages"]) == 1 for r, b in answers)
    judged = [r["score"]["faithfulness_detail"] for r, _ in answers if r["score"]["faithfulness_detail"]]
    assert judged and all(0.0 <= s["p_yes"] <= 1.0 for d in judged for s in d["sentences"])
    assert sec["judge"]["model"] == LLM and "Does the context support the statement?" in sec["judge"]["prompt"]
    assert result["metadata"]["models"][LLM]["source"] == "base model"
    assert "docs (no retrieval)" in html.read_text()
