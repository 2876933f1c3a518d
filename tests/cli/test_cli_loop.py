"""The CLI as a user runs it (a real subprocess, real tiny models, a temporary workspace)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DOMAINRAG = [sys.executable, "-m", "domainrag.cli.main"]


def run(args: list[str], home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOMAINRAG_HOME": str(home), "COLUMNS": "200"}
    proc = subprocess.run([*DOMAINRAG, *args], env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_index_ingest_app_invoke(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "warranty.md").write_text("# Warranty\n\nEvery Zentro controller has a 36-month warranty.")
    (docs / "office.md").write_text("# Office\n\nThe Zentro office opens at 08:00.")
    (docs / "broken.jsonl").write_text('{"id": 1}\n')
    (docs / "scan.pdf").write_bytes(b"%PDF-1.4 not a text file")
    only_unsupported = tmp_path / "images"
    only_unsupported.mkdir()
    (only_unsupported / "photo.png").write_bytes(b"\x89PNG")

    out = run(["index", "create", "kb", "--embedding-model", "all-minilm-l6-v2"], home).stdout
    assert "384-d" in out  # dimension read from the model, never typed
    out = run(["ingest", "--index", "kb", str(docs)], home, check=False)
    assert out.returncode == 3  # done, but not everything went in: never a silent 0
    assert "2 documents → 2 chunks: 2 written" in out.stdout
    assert "broken.jsonl:1" in out.stderr and "scan.pdf" in out.stderr  # each skip is named, the rest continues
    assert out.stdout.startswith("ingest → kb: loading the embedding model")  # said before the model loads
    assert "ingest → kb: embedding chunks: 2/2 (100%)" in out.stdout  # progress lines when stdout is not a terminal
    assert "4 files: 2 ingested, 0 ingested with warnings, 2 skipped" in out.stdout  # counts add up
    strict = run(["ingest", "--index", "kb", str(docs), "--strict"], home, check=False)
    assert strict.returncode == 1 and "nothing was written" in strict.stderr
    nothing = run(["ingest", "--index", "kb", str(only_unsupported)], home, check=False)
    assert nothing.returncode == 1 and "photo.png" in nothing.stderr and "Traceback" not in nothing.stderr
    stats = json.loads(run(["index", "stats", "kb", "--json"], home).stdout)
    assert stats["chunks"] == 2 and stats["dimension"] == 384

    bad = run(
        ["app", "create", "--name", "A", "--model", "no-such-llm", "--retrieval", '{"index": "kb"}'], home, check=False
    )
    assert bad.returncode == 1 and "no-such-llm" in bad.stderr and "Traceback" not in bad.stderr
    bad = run(
        ["app", "create", "--name", "A", "--model", "smollm2-135m-instruct", "--retrieval", '{"index": "nope"}'],
        home,
        check=False,
    )
    assert bad.returncode == 1 and "index 'nope' not found" in bad.stderr

    run(
        [
            "app",
            "create",
            "--name",
            "A",
            "--model",
            "smollm2-135m-instruct",
            "--retrieval",
            '{"vector_store": "embedded", "index": "kb", "top_k": 1}',
            "--generation",
            '{"max_new_tokens": 24}',
        ],
        home,
    )
    shown = json.loads(run(["app", "show", "A", "--json"], home).stdout)
    assert shown["generation"]["temperature"] == 0.1
    assert "ONLY from the numbered context" in shown["generation"]["system_prompt"]
    res = json.loads(run(["app", "invoke", "A", "--query", "How long is the warranty?", "--json"], home).stdout)
    assert res["answer"].strip()
    assert [r["document"] for r in res["references"]] == ["warranty.md"]
    short = json.loads(run(["app", "invoke", "A", "--query", "How long is the warranty?", "--json",
                            "--max-tokens", "2", "--temperature", "0"], home).stdout)
    assert 0 < len(short["answer"].split()) <= 2 < len(res["answer"].split())  # this call only:
    stored = json.loads(run(["app", "show", "A", "--json"], home).stdout)
    assert stored["generation"]["max_new_tokens"] != 2  # the stored default stays


def test_dimension_mismatch_refused_at_index_create(tmp_path: Path) -> None:
    """An existing store table with another dimension is refused with both numbers."""
    from domainrag.index.config import EmbeddedStoreConfig
    from domainrag.index.embedded import EmbeddedStore

    home = tmp_path / "ws"
    home.mkdir()
    EmbeddedStore("kb", EmbeddedStoreConfig(), str(home / "indexes")).create(768)
    bad = run(["index", "create", "kb", "--embedding-model", "all-minilm-l6-v2"], home, check=False)
    assert bad.returncode == 1
    assert "768" in bad.stderr and "384" in bad.stderr
