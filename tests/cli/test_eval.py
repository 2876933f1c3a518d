"""domainrag eval through typer's CliRunner on the real CLI: configs, ingest, gates (exit codes), reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from domainrag.cli.main import app
from domainrag.index.base import SearchHit
from domainrag.serving.rag import RagAnswer


@pytest.fixture
def cli() -> typer.Typer:
    return app


def run(cli: typer.Typer, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["eval", *map(str, args)])


def failed(res, code: int, message: str) -> None:  # type: ignore[no-untyped-def]
    """The CLI printed one error message (no traceback) and exited with ``code``."""
    assert res.exit_code == code, res.output
    assert message in res.output and "Traceback" not in res.output and "error:" in res.output


def test_retrieval_ingest_compares_configs_and_writes_reports(cli, beir_dir: Path, tmp_path: Path,
                                                             fake_embedder: None) -> None:
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    res = run(cli, "retrieval", "--index", "docs", "--dataset", beir_dir, "--ingest", "--embedding-model", "emb-a",
              "--config", "bm25", "--config", "dense", "--config", "hybrid", "--config", "dense:emb-b",
              "--json", out_json, "--report", out_html, "--fail-under", "ndcg@10=0.5")
    assert res.exit_code == 0, res.output
    result = json.loads(out_json.read_text())
    runs = {r["label"]: r for r in result["retrieval"]["runs"]}
    assert list(runs) == ["bm25", "dense", "hybrid", "dense:emb-b"]
    assert runs["dense:emb-b"]["config"]["index"] == "docs__emb-b"
    assert runs["dense"]["config"]["embedding_model"] == "emb-a"
    assert runs["bm25"]["metrics"]["recall@5"] == 1.0  # these queries share words with their documents
    assert {i["index"] for i in result["retrieval"]["ingest"]} == {"docs", "docs__emb-b"}
    assert result["metadata"]["dataset_files"]["corpus.jsonl"]["sha256"]
    assert "<table class=\"metrics\">" in out_html.read_text()
    assert "ndcg@10" in res.output

    # Re-running without --ingest uses the indexes built above.
    again = run(cli, "retrieval", "--index", "docs", "--dataset", beir_dir, "--config", "dense:emb-b",
                "--fail-under", "ndcg@10=1.01", "--fail-under", "map=0")
    assert again.exit_code == 1
    assert "dense:emb-b: ndcg@10 =" in again.output and "< 1.01" in again.output


def test_missing_index_without_ingest(cli, beir_dir: Path, fake_embedder: None) -> None:
    res = run(cli, "retrieval", "--index", "nope", "--dataset", beir_dir, "--config", "bm25")
    failed(res, 1, "nope")
    assert "hint: turn ingest on" in res.output


def test_unknown_embedding_model_in_a_config_is_one_error_line(cli, beir_dir: Path) -> None:
    res = run(cli, "retrieval", "--index", "docs", "--dataset", beir_dir, "--ingest", "--config", "dense:nope-model")
    failed(res, 1, "cannot load embedding model 'nope-model'")
    assert len([line for line in res.output.splitlines() if line.startswith("error:")]) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--fail-under", "bleu=0.5"], "unknown metric 'bleu'"),
    (["--fail-under", "ndcg@10"], "METRIC=VALUE"),
    (["--config", "sparse"], "unknown mode 'sparse'"),
    (["--config", "bm25:emb"], "bm25 uses no embedding model"),
    (["--metric", "bleu@3"], "unsupported metric"),
    (["--config", "hybrid+rerank:rr,fusion=max"], "reranker fusion 'max'"),
    (["--config", "hybrid+rerank:"], "empty reranker name"),
    (["--config", "app:"], "empty app name"),
])
def test_usage_errors(cli, beir_dir: Path, args: list[str], message: str) -> None:
    res = run(cli, "retrieval", "--index", "x", "--dataset", beir_dir, "--ingest", *args)
    failed(res, 2, message)  # a usage error


def test_unknown_reranker_or_app_exits_1_naming_it(cli, beir_dir: Path, fake_embedder: None,
                                                   isolated_workspace: Path) -> None:
    from domainrag.workspace import Workspace

    res = run(cli, "retrieval", "--index", "docs", "--dataset", beir_dir, "--ingest", "--config", "hybrid",
              "--config", "hybrid+rerank:nope")
    failed(res, 1, "config 'hybrid+rerank:nope': reranker model 'nope' is not registered")
    assert "register it with `model create`" in res.output
    assert Workspace.open(isolated_workspace).catalog.get("index", "docs") is None  # checked before any ingest
    failed(run(cli, "retrieval", "--dataset", beir_dir, "--config", "app:ghost"), 1, "app 'ghost' not found")
    failed(run(cli, "retrieval", "--dataset", beir_dir, "--config", "app:ghost", "--config", "bm25"), 2,
           "--index: needed by config 'bm25'")


def test_missing_dataset_file_is_named(cli, beir_dir: Path) -> None:
    (beir_dir / "queries.jsonl").unlink()
    res = run(cli, "retrieval", "--index", "x", "--dataset", beir_dir, "--ingest")
    failed(res, 1, "queries.jsonl")


def test_unknown_qrels_warn_and_continue(cli, beir_dir: Path, tmp_path: Path, fake_embedder: None) -> None:
    with (beir_dir / "qrels" / "test.tsv").open("a") as fh:
        fh.write("q1\tghost\t1\nq404\tpumps\t1\n")
    out = tmp_path / "r.json"
    res = run(cli, "retrieval", "--index", "d", "--dataset", beir_dir, "--ingest", "--config", "bm25", "--json", out)
    assert res.exit_code == 0, res.output
    warnings = json.loads(out.read_text())["warnings"]
    assert any("name a document not in the corpus" in w for w in warnings)
    assert any("name a query not in the queries file" in w for w in warnings)


class _ClosedBookGen:
    name = "closed-book"

    def generate(self, messages, config=None) -> str:  # type: ignore[no-untyped-def]
        return "The knowledge base does not contain this information."


class FakeRag:
    def __init__(self, answer: str) -> None:
        from domainrag.serving.rag import GenerationSettings

        self.answer = answer
        self.name = "fake"
        self.generator = _ClosedBookGen()
        self.generation = GenerationSettings()

    def invoke(self, query: str) -> RagAnswer:
        hit = SearchHit("pumps::0", "pumps", "Prime the pump for 30 seconds.", 1.0)
        return RagAnswer(self.answer, [{"citation": 1, "document": "pumps", "chunk_id": "pumps::0"}], [hit])


@pytest.fixture
def two_apps(monkeypatch: pytest.MonkeyPatch, isolated_workspace: Path) -> None:
    """Two catalogued apps whose loading is replaced by scripted answers (no LLM)."""
    from domainrag.workspace import Workspace

    ws = Workspace.open(isolated_workspace)
    ws.catalog.put("index", "docs", {"embedding_model": "emb-a", "dimension": 64, "store": {"type": "embedded"}})
    for name in ("base", "tuned"):
        ws.catalog.put("app", name, {"name": name, "model": f"llm-{name}", "retrieval": {"index": "docs", "top_k": 3},
                                     "generation": {"temperature": 0.1}})
    answers = {"base": FakeRag("I think about a minute [1]."), "tuned": FakeRag("Prime it for 30 seconds [1].")}
    monkeypatch.setattr("domainrag.evaluation.app_eval.load_app", lambda ws, name, **kw: answers[name])


def test_answers_compares_apps_and_gates(cli, two_apps: None, tmp_path: Path) -> None:
    qfile = tmp_path / "q.jsonl"
    qfile.write_text(json.dumps({"id": "a", "question": "How long to prime?", "answer": "Prime it for 30 seconds.",
                                 "short_answer": "30 seconds", "doc": "pumps"}) + "\n"
                     + json.dumps({"id": "e", "question": " ", "answer": "x", "doc": "pumps"}) + "\n")
    html = tmp_path / "a.html"
    res = run(cli, "answers", "--app", "base", "--app", "tuned", "--dataset", qfile, "--report", html,
              "--fail-under", "key_fact_accuracy=0.5")
    assert res.exit_code == 1
    assert "base: key_fact_accuracy = 0.0000 < 0.5" in res.output and "tuned:" not in res.output.split("below")[-1]
    text = html.read_text()
    assert "not measured" in text and "llm-tuned" in text and "empty question(s) skipped" in text

    ok = run(cli, "answers", "--app", "tuned", "--dataset", qfile, "--fail-under", "token_f1=0.9")
    assert ok.exit_code == 0, ok.output
    unmeasured = run(cli, "answers", "--app", "tuned", "--dataset", qfile, "--fail-under", "faithfulness=0.5")
    assert unmeasured.exit_code == 1 and "faithfulness not measured" in unmeasured.output


def test_answers_no_retrieval_adds_a_run_per_app(cli, two_apps: None, tmp_path: Path) -> None:
    qfile = tmp_path / "q.jsonl"
    qfile.write_text(json.dumps({"id": "a", "question": "How long to prime?", "answer": "Prime it for 30 seconds.",
                                 "short_answer": "30 seconds", "doc": "pumps"}) + "\n")
    out = tmp_path / "a.json"
    res = run(cli, "answers", "--app", "base", "--app", "tuned", "--no-retrieval", "--dataset", qfile, "--json", out)
    assert res.exit_code == 0, res.output
    runs = {r["label"]: r for r in json.loads(out.read_text())["answers"]["runs"]}
    assert list(runs) == ["base", "base (no retrieval)", "tuned", "tuned (no retrieval)"]
    closed = runs["tuned (no retrieval)"]
    assert closed["config"]["model"] == "llm-tuned" and closed["config"]["retrieval"] == "none (question only)"
    assert "index" not in closed["config"] and closed["metrics"]["false_refusal_rate"] == 1.0
    assert runs["tuned"]["metrics"]["key_fact_accuracy"] == 1.0


def test_answers_judge_url_needs_model(cli, two_apps: None, tmp_path: Path) -> None:
    qfile = tmp_path / "q.jsonl"
    qfile.write_text(json.dumps({"id": "a", "question": "q?", "answer": "a", "doc": "d"}) + "\n")
    res = run(cli, "answers", "--app", "base", "--dataset", qfile, "--judge-url", "http://127.0.0.1:9/v1")
    failed(res, 2, "--judge-model")


def test_answers_unknown_app(cli, tmp_path: Path) -> None:
    qfile = tmp_path / "q.jsonl"
    qfile.write_text(json.dumps({"id": "a", "question": "q?", "answer": "a", "doc": "d"}) + "\n")
    res = run(cli, "answers", "--app", "ghost", "--dataset", qfile)
    failed(res, 1, "ghost")


def test_render_from_json(cli, beir_dir: Path, tmp_path: Path, fake_embedder: None) -> None:
    out = tmp_path / "r.json"
    assert run(cli, "retrieval", "--index", "d", "--dataset", beir_dir, "--ingest", "--config", "bm25",
               "--json", out).exit_code == 0
    res = run(cli, "render", out, "--report", tmp_path / "again.html")
    assert res.exit_code == 0 and "<img" in (tmp_path / "again.html").read_text()


def test_answers_warn_about_gold_docs_missing_from_the_index(cli, beir_dir: Path, fake_embedder: None,
                                                             isolated_workspace: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from domainrag.evaluation.beir import load_beir
    from domainrag.evaluation.retrieval_eval import ingest_corpus
    from domainrag.workspace import Workspace

    ws = Workspace.open(isolated_workspace)
    ingest_corpus(ws, "docs", "emb-a", load_beir(beir_dir))  # a real embedded index of the six documents
    ws.catalog.put("app", "a", {"name": "a", "model": "llm", "retrieval": {"index": "docs"}, "generation": {}})
    monkeypatch.setattr("domainrag.evaluation.app_eval.load_app", lambda ws, name, **kw: FakeRag("30 seconds [1]."))
    qfile = tmp_path / "q.jsonl"
    rows = [{"id": "a", "question": "prime?", "answer": "30 seconds", "doc": "pumps"},
            {"id": "b", "question": "ghost?", "answer": "x", "docs": ["ghost", "pumps"]},
            {"id": "c", "question": "who?", "answer": "x", "doc": None}]
    qfile.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "a.json"
    res = run(cli, "answers", "--app", "a", "--dataset", qfile, "--json", out)
    assert res.exit_code == 0, res.output
    warnings = json.loads(out.read_text())["warnings"]
    assert warnings == ["1 gold document(s) named by 1 question(s) of q.jsonl are not in index 'docs' of a: ghost"]
    assert "ghost" in res.output
