"""Embedding fine-tuning: query-disjoint split, held-out retrieval gains, hard negatives, resume."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from domainrag.data.formats import Pair
from domainrag.training.embedding import EmbeddingArgs, run_embedding, split_by_query
from domainrag.training.reporting import MemoryReporter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = [
    "Zorblat",
    "Quimby",
    "Vextor",
    "Pallun",
    "Drennik",
    "Moskar",
    "Tavril",
    "Obrun",
    "Felkis",
    "Jarvolt",
    "Krindle",
    "Sopwar",
    "Ulmet",
    "Brasko",
    "Nirvel",
    "Gostak",
    "Helmin",
    "Yarrow",
    "Cadrix",
    "Pember",
]
CITIES = [
    "Berlin",
    "Oslo",
    "Lisbon",
    "Madrid",
    "Vienna",
    "Prague",
    "Dublin",
    "Warsaw",
    "Athens",
    "Rome",
    "Paris",
    "Zurich",
    "Helsinki",
    "Budapest",
    "Brussels",
    "Riga",
    "Tallinn",
    "Sofia",
    "Zagreb",
    "Milan",
]
ATTRIBUTES = [
    ("When was project {n} started?", "The {c} office opened its doors in {y}."),
    ("How many people work on project {n}?", "The {c} office employs {k} engineers."),
    ("Who leads project {n}?", "The {c} office is managed by a director named {m}."),
    ("What does project {n} build?", "The {c} office builds {p} for industrial customers."),
]


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    """Internal code names the base model cannot link to the office each passage talks about.

    Held-out queries ask about code names seen in training with *other* questions, so only a
    model that learned "Zorblat is the Berlin office" retrieves their passages.
    """
    rng = random.Random(0)
    path = tmp_path / "pairs.jsonl"
    with path.open("w") as fh:
        for n, c in zip(NAMES, CITIES, strict=True):
            for q, p in ATTRIBUTES:
                passage = p.format(
                    c=c,
                    y=rng.randint(1950, 2020),
                    k=rng.randint(10, 900),
                    m=rng.choice(["Ana", "Bo", "Cy"]),
                    p=rng.choice(["pumps", "valves", "sensors", "motors"]),
                )
                fh.write(json.dumps({"query": q.format(n=n), "positive": passage}) + "\n")
        fh.write(json.dumps({"query": "Who leads project Zorblat?", "positive": passage}) + "\n")  # extra positive
    return path


def test_split_keeps_each_query_on_one_side() -> None:
    pairs = [Pair(f"q{i % 7}", f"p{i}") for i in range(30)]
    train, evals = split_by_query(pairs, 0.3, seed=1)
    assert {p.query for p in train}.isdisjoint({p.query for p in evals})
    assert len({p.query for p in evals}) == 2 and len(train) + len(evals) == 30
    assert (train, evals) == split_by_query(pairs, 0.3, seed=1)
    assert split_by_query(pairs, 0.0, seed=1) == (pairs, [])


@pytest.mark.integration
@pytest.mark.slow
def test_finetuning_improves_heldout_retrieval(embedder: str, pairs_file: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    args = EmbeddingArgs(
        base_model=embedder,
        dataset=pairs_file,
        output_dir=tmp_path / "model",
        epochs=4,
        batch_size=16,
        learning_rate=2e-4,
        eval_fraction=0.2,
    )
    reporter = MemoryReporter()
    result = run_embedding(args, reporter)

    assert result.dimension == 384 and result.n_eval == 16 and result.n_train in (64, 65)
    assert set(result.metrics_before) == {"ndcg@10", "recall@1", "recall@5", "mrr@10"}
    assert result.metrics_before["ndcg@10"] < 0.4
    assert result.metrics_after["ndcg@10"] > result.metrics_before["ndcg@10"] + 0.3
    assert result.metrics_after["recall@5"] > result.metrics_before["recall@5"]
    steps = 4 * -(-result.n_train // 16)
    assert result.pairs_per_s > 0 and result.steps == steps
    assert [m["step"] for m in reporter.metrics if "loss" in m] == list(range(1, steps + 1))

    meta = json.loads((result.output_dir / "domainrag_embedding.json").read_text())
    assert meta["dimension"] == 384 and meta["metrics_after"] == result.metrics_after
    reloaded = SentenceTransformer(str(result.output_dir), device="cpu")
    vec = reloaded.encode(["Who leads project Quimby?", "The Oslo office is managed by a director named Bo."])
    assert vec.shape == (2, 384) and float(reloaded.similarity(vec[:1], vec[1:])) > 0.3


@pytest.mark.integration
def test_hard_negatives_and_resume(embedder: str, pairs_file: Path, tmp_path: Path) -> None:
    def args(**kw: object) -> EmbeddingArgs:
        return EmbeddingArgs(
            base_model=embedder,
            dataset=pairs_file,
            output_dir=tmp_path / "model",
            epochs=1,
            batch_size=16,
            eval_fraction=0.2,
            hard_negatives=1,
            checkpoint_dir=tmp_path / "ckpt",
            save_steps=2,
            **kw,  # type: ignore[arg-type]
        )

    class Crash(MemoryReporter):
        def metric(self, step: int, **values: float) -> None:
            super().metric(step, **values)
            if step == 3 and "loss" in values:
                raise KeyboardInterrupt

    crashed = Crash()
    with pytest.raises(KeyboardInterrupt):
        run_embedding(args(), crashed)
    assert any("mined 1 hard negatives" in line for line in crashed.lines)
    assert (tmp_path / "ckpt" / "checkpoint-2").is_dir()

    reporter = MemoryReporter()
    result = run_embedding(args(resume=True), reporter)
    assert any("resuming from" in line and "checkpoint-2" in line for line in reporter.lines)
    assert [m["step"] for m in reporter.metrics if "loss" in m] == [3, 4, 5]
    assert result.steps == 5 and (tmp_path / "model" / "domainrag_embedding.json").exists()
