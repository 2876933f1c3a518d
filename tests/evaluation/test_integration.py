"""`eval retrieval --ingest` with the real all-MiniLM-L6-v2 on the first 100 PubMedQA entries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from domainrag.cli.main import app as cli

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"


@pytest.mark.integration
@pytest.mark.skipif(not (SHARED / "pubmedqa" / "ori_pqal.json").is_file(),
                    reason=f"shared data set {SHARED}/pubmedqa/ori_pqal.json is absent")
def test_pubmedqa_100_dense_hybrid_bm25(tmp_path: Path, load_script: Any) -> None:
    beir = tmp_path / "pubmedqa-100"
    stats = load_script("benchmarks/convert_pubmedqa.py").convert(SHARED, beir, limit=100, test_split="all")
    assert stats["corpus"] == stats["queries"] == stats["qrels_test"] == 100

    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["eval", "retrieval", "--index", "pubmedqa100", "--dataset", str(beir), "--ingest",
                                   "--embedding-model", "all-minilm-l6-v2", "--config", "bm25", "--config", "dense",
                                   "--config", "hybrid", "--json", str(out), "--report", str(tmp_path / "r.html"),
                                   "--fail-under", "ndcg@10=0.5"])
    assert res.exit_code == 0, res.output
    runs = {r["label"]: r["metrics"] for r in json.loads(out.read_text())["retrieval"]["runs"]}
    # Random ranking of 100 abstracts would give nDCG@10 ≈ 0.04; PubMedQA questions paraphrase their abstract.
    assert runs["dense"]["ndcg@10"] > 0.8
    assert runs["bm25"]["ndcg@10"] > 0.8
    assert runs["hybrid"]["ndcg@10"] >= min(runs["dense"]["ndcg@10"], runs["bm25"]["ndcg@10"]) - 0.05
    assert runs["dense"]["recall@100"] == 1.0  # every abstract is within the first 100 of a 100-document corpus


@pytest.mark.skipif(not (SHARED / "pubmedqa" / "ori_pqal.json").is_file(),
                    reason=f"shared data set {SHARED}/pubmedqa/ori_pqal.json is absent")
def test_pubmedqa_passage_unit_marks_every_section_of_the_abstract_relevant(tmp_path: Path, load_script: Any) -> None:
    entries = json.loads((SHARED / "pubmedqa" / "ori_pqal.json").read_text())
    first = list(entries)[:20]
    convert = load_script("benchmarks/convert_pubmedqa.py").convert
    stats = convert(SHARED, tmp_path, limit=20, test_split="all", unit="passage")
    n_sections = sum(len(entries[p]["CONTEXTS"]) for p in first)
    assert stats["corpus"] == stats["qrels_test"] == n_sections > 20
    corpus = [json.loads(line) for line in (tmp_path / "corpus.jsonl").read_text().splitlines()]
    assert corpus[0]["_id"] == f"{first[0]}#1" and corpus[0]["text"] == entries[first[0]]["CONTEXTS"][0]
    assert corpus[0]["metadata"]["section"] == entries[first[0]]["LABELS"][0]
    qrels = [line.split("\t") for line in (tmp_path / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    assert all(doc.split("#")[0] == qid for qid, doc, _ in qrels)  # relevant = own abstract's sections only
    questions = [json.loads(line) for line in (tmp_path / "questions.jsonl").read_text().splitlines()]
    gold = questions[0].get("docs") or [questions[0]["doc"]]
    assert gold == [f"{first[0]}#{i + 1}" for i in range(len(entries[first[0]]["CONTEXTS"]))]
