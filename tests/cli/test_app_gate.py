"""The answerability gate from the CLI: calibrate an app on labelled questions, see it in `app show`, get its
decision and the answer's grounding from `app invoke --json`, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_cli_loop import run

pytestmark = pytest.mark.integration


def test_calibrate_show_invoke_and_bad_input(tmp_path: Path, sample_paths) -> None:
    home = tmp_path / "ws"
    run(["index", "create", "kb", "--embedding-model", "all-minilm-l6-v2"], home)
    run(["ingest", "--index", "kb", str(sample_paths.docs)], home)
    run(["app", "create", "--name", "qa", "--model", "smollm2-135m-instruct",
         "--retrieval", '{"index": "kb", "top_k": 3}', "--generation", '{"max_new_tokens": 8}'], home)
    assert "not calibrated" in run(["app", "show", "qa"], home).stdout

    out = run(["app", "calibrate", "qa", "--questions", str(sample_paths.qa_train), "--limit", "40",
               "--signals", "dense,bm25", "--target-false-refusal", "0.1"], home).stdout
    assert "gate fitted on 40 answerable and 40 unanswerable question(s) (40 with gold withheld)" in out
    record = json.loads(run(["app", "show", "qa", "--json"], home).stdout)
    gate = record["gate"]
    assert gate["features"] == ["dense", "bm25"] and gate["measured"]["false_refusal_rate"] <= 0.1
    assert "calibrated on qa_train.jsonl" in run(["app", "show", "qa"], home).stdout

    answer = json.loads(run(["app", "invoke", "qa", "--query", "What does the CTL-400 weigh?", "--json"],
                            home).stdout)
    g = answer["grounding"]
    assert g["gate"]["calibrated"] and g["gate"]["ran"] and set(g["gate"]["signals"]) == {"dense", "bm25"}
    assert g["grounded"] is not True or all(s["status"] == "supported" for s in g["sentences"])

    for query, says in (("", "the question is empty"), ("x" * 100_000, "100000 characters long")):
        bad = run(["app", "invoke", "qa", "--query", query], home, check=False)
        assert bad.returncode == 2 and says in bad.stderr and "Traceback" not in bad.stderr
    few = run(["app", "calibrate", "qa", "--questions", str(sample_paths.qa_train), "--limit", "20",
               "--no-withhold-gold", "--signals", "dense"], home, check=False)
    assert few.returncode == 1 and "unanswerable" in few.stderr and "Traceback" not in few.stderr
