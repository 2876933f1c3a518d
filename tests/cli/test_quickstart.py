"""The main job, end to end: `domainrag quickstart --fast` on the shipped sample domain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quickstart_runs_the_whole_loop(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    env = {**os.environ, "DOMAINRAG_HOME": str(home), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "domainrag.cli.main", "quickstart", "--fast"], env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    for step in ("embedding job", "SFT job", "register models", "create indexes", "invoke DomainRAG", "evaluate"):
        assert step in out
    assert "sources" in out and "held-out retrieval" in out and "answers on" in out

    results = json.loads((home / "reports" / "quickstart.json").read_text())
    retrieval = {run["label"]: run["metrics"] for run in results["retrieval"]["runs"]}
    base, tuned = retrieval["base embedder (dense)"], retrieval["fine-tuned embedder (dense)"]
    # The fine-tuned embedder must beat the base one on held-out questions of the sample domain.
    assert tuned["ndcg@10"] > base["ndcg@10"]
    assert {run["label"] for run in results["answers"]["runs"]} == {"base LLM", "fine-tuned LLM"}
    assert len(results["answers"]["questions"]) == 14
    # the gate fitted on the training questions, measured on the held-out ones (and their withheld-gold twins)
    gate = results["gate"]
    assert "answerability gate" in out and gate["features"] == ["dense", "bm25"] and gate["questions"] == 14
    assert all(0.0 <= gate[k] <= 1.0 for k in ("false_refusal_rate", "refusal_rate_unanswerable",
                                                 "refusal_rate_withheld_gate_only"))
    assert (home / "reports" / "quickstart.html").read_text().count("<tr") > 5
    # artifacts are where the output says they are
    models = list((home / "models").iterdir())
    assert {m.name for m in models} == {"domain-llm-v1", "domain-embedder-v1"}
    assert (home / "models" / "domain-llm-v1" / "1" / "manifest.json").exists()
    jobs = list((home / "jobs").iterdir())
    assert all((j / "log.txt").exists() and (j / "metrics.jsonl").exists() for j in jobs)
    assert any((j / "loss.png").exists() for j in jobs)
