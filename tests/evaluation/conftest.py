"""Fixtures for evaluation tests: an isolated workspace, a deterministic fake embedder, a tiny BEIR folder."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

DOCS = {
    "pumps": ("Dosing pumps", "The dosing pump injects chlorine at a steady rate; prime the pump before first use."),
    "probes": ("pH probes", "Calibrate the pH probe with buffer solutions every month to keep readings accurate."),
    "boilers": ("Boiler feedwater", "Feedwater needs oxygen scavengers to prevent corrosion of the boiler tubes."),
    "towers": ("Cooling towers", "Cooling towers lose water to evaporation; blowdown controls basin conductivity."),
    "firmware": ("Firmware updates", "Update the controller firmware from the portal; never unplug during the update."),
    "returns": ("Returns", "Return a faulty unit within thirty days with an RMA number from customer support."),
}
QUERIES = {
    "q1": "how do I prime the dosing pump",
    "q2": "how often calibrate the pH probe buffer",
    "q3": "prevent corrosion in boiler tubes",
    "q4": "what controls basin conductivity in cooling towers",
}
QRELS = {"q1": {"pumps": 1}, "q2": {"probes": 1}, "q3": {"boilers": 1}, "q4": {"towers": 1}}


class FakeEmbedder:
    """Hashed bag of words, L2-normalised: deterministic, instant, and lexical enough to rank these docs."""

    def __init__(self, name: str, dimension: int = 64) -> None:
        self.name, self.dimension = name, dimension

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            for tok in re.findall(r"[a-z0-9]+", text.lower()):
                h = int(hashlib.md5(f"{self.name}:{tok}".encode()).hexdigest(), 16)
                out[i, h % self.dimension] += 1.0
            n = np.linalg.norm(out[i])
            out[i] = out[i] / n if n else out[i]
        return out

    def encode_query(self, query: str) -> np.ndarray:
        return self.encode([query])[0]


def write_beir(root: Path, docs=DOCS, queries=QUERIES, qrels=QRELS, extra_qrels: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": d, "title": t, "text": x}) + "\n" for d, (t, x) in docs.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (root / "qrels").mkdir(exist_ok=True)
    rows = "".join(f"{q}\t{d}\t{s}\n" for q, rel in qrels.items() for d, s in rel.items())
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows + extra_qrels)
    return root


@pytest.fixture(autouse=True)
def isolated_workspace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Each test gets its own workspace; the CLI's cached workspace handle is cleared around it."""
    from domainrag.cli._context import workspace

    home = tmp_path / "ws"
    monkeypatch.setenv("DOMAINRAG_HOME", str(home))
    monkeypatch.delenv("DOMAINRAG_LAKE", raising=False)
    monkeypatch.delenv("DOMAINRAG_JUDGE_API_KEY", raising=False)
    workspace.reset()
    yield home
    workspace.reset()


@pytest.fixture
def fake_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every embedding model name resolves to a FakeEmbedder of that name (no weights loaded)."""
    from domainrag.workspace import Workspace

    monkeypatch.setattr(Workspace, "embedder", lambda self, name: FakeEmbedder(name))


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "beir")
