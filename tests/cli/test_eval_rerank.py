"""domainrag eval retrieval with a real reranker and an app's pipeline, on a few sample-domain questions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from domainrag.cli.main import app as cli

N_QUESTIONS = 6
N_DISTRACTORS = 4


@pytest.mark.integration
def test_eval_retrieval_compares_hybrid_reranked_and_app(isolated_workspace: Path, tmp_path: Path,
                                                          sample_paths: Any) -> None:
    import torch
    from sentence_transformers import CrossEncoder

    from domainrag.retrieval.reranker import rerank_hits
    from domainrag.retrieval.retriever import RetrievalConfig, Retriever
    from domainrag.serving.apps import AppSpec, create_app
    from domainrag.serving.models import create_model
    from domainrag.workspace import Workspace, create_index, ingest
    from domainrag.zoo import resolve_embedder

    torch.set_num_threads(1)
    questions = [q for q in map(json.loads, sample_paths.qa_heldout.read_text().splitlines()) if q.get("doc")]
    questions = questions[:N_QUESTIONS]
    gold = {q["doc"] for q in questions}
    others = sorted(p.name for p in sample_paths.docs.iterdir() if p.name not in gold)[:N_DISTRACTORS]
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in [*gold, *others]:
        shutil.copy(sample_paths.docs / name, docs / name)
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in questions))

    ws = Workspace.open(isolated_workspace)
    create_index(ws, "kb", "all-minilm-l6-v2")
    ingest(ws, "kb", [docs])
    # no reranker weights ship offline and none is trained here: an untrained cross-encoder head on MiniLM
    # still orders passages its own way, which is what this test checks the evaluation reproduces
    CrossEncoder(resolve_embedder("all-minilm-l6-v2"), num_labels=1, device="cpu").save_pretrained(str(tmp_path / "ce"))
    create_model(ws, "rr", source="path", path=tmp_path / "ce")
    create_app(ws, AppSpec(name="docs", model="smollm2-135m-instruct",
                           retrieval=RetrievalConfig(index="kb", top_k=5, rerank_model="rr")))

    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["eval", "retrieval", "--index", "kb", "--dataset", str(qfile), "--config", "hybrid",
                                   "--config", "hybrid+rerank:rr", "--config", "app:docs", "--json", str(out)])
    assert res.exit_code == 0, res.output
    sec = json.loads(out.read_text())["retrieval"]
    runs = {r["label"]: r for r in sec["runs"]}
    assert list(runs) == ["hybrid", "hybrid+rerank:rr", "app:docs (hybrid+rerank:rr)"]
    for r in runs.values():
        assert all(isinstance(v, float) for v in r["metrics"].values()) and set(r["metrics"]) == set(sec["metrics"])
    assert runs["hybrid+rerank:rr"]["config"]["rerank_model"] == "rr"
    assert "app:docs (hybrid+rerank:rr)" in res.output  # the table's column names the reranker
    # the app's pipeline is hybrid + rr over its top 20: the same ranking, so the same metrics
    assert runs["app:docs (hybrid+rerank:rr)"]["metrics"] == runs["hybrid+rerank:rr"]["metrics"]

    # what the reranker dictates: hybrid's top 20 chunks (fetched as deep as the evaluation does) in rr's order,
    # scored by rerank_hits as an app scores them (bf16 on CPUs that have it, so the same ties break the same way)
    depth = runs["hybrid"]["config"]["depth_chunks"]
    retriever = Retriever(ws.store("kb"), ws.embedder("all-minilm-l6-v2"),
                          RetrievalConfig(index="kb", mode="hybrid", top_k=100, candidates=depth))
    reranker = ws.reranker("rr")
    for q in sec["queries"]:
        head = retriever.run(q["text"], top_k=depth)[:20]
        plain = [h.chunk_id for h in head]
        expected = [h.chunk_id for h in rerank_hits(reranker, q["text"], head)]
        shown = [h["chunk_id"] for h in q["hits"]["hybrid+rerank:rr"]]
        assert shown == expected[:len(shown)] and sorted(expected) == sorted(plain)
        assert [h["chunk_id"] for h in q["hits"]["hybrid"]] == plain[:len(shown)]
        assert [h["chunk_id"] for h in q["hits"]["app:docs (hybrid+rerank:rr)"]] == shown
