"""Cross-encoder reranker training: held-out reranking gains, the job path, and model registration."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from domainrag.data.formats import Pair
from domainrag.errors import DomainRagError
from domainrag.training.reporting import MemoryReporter
from domainrag.training.reranker import (
    RerankerArgs,
    negative_tuples,
    ranking_metrics,
    run_reranker,
    worse_than_bi_encoder,
)

pytestmark = pytest.mark.usefixtures("one_thread")

CAUSES = [
    "the coolant pump lost pressure",
    "the spindle motor overheated",
    "a door interlock is open",
    "the air supply is below 5 bar",
    "the encoder cable is loose",
    "the lubrication tank is empty",
]


def fault_codes(path: Path, n: int, seed: int = 0) -> Path:
    """Manuals where every passage looks alike except its fault code, drawn from four digits.

    "What does fault code E1243 mean?" sits close to E1234, E2143, ... for a bi-encoder (the hard
    negatives share almost every word with the query); a cross-encoder can learn to match the code.
    """
    rng = random.Random(seed)
    codes: set[str] = set()
    while len(codes) < n:
        codes.add("".join(rng.choice("1234") for _ in range(4)))
    with path.open("w") as fh:
        for code in sorted(codes):
            text = f"Fault E{code}: {rng.choice(CAUSES)}. Reset the controller after fixing it."
            fh.write(json.dumps({"query": f"What does fault code E{code} mean?", "positive": text}) + "\n")
    return path


def test_ranking_metrics() -> None:
    metrics = ranking_metrics([["a", "x", "b"], ["x", "y"]], [{"a", "b"}, {"z"}])
    assert metrics["mrr@10"] == pytest.approx(0.5)
    assert metrics["recall@5"] == pytest.approx(0.5)
    ideal = 1 + 1 / 1.584962500721156
    assert metrics["ndcg@10"] == pytest.approx((1 + 0.5) / ideal / 2)
    assert ranking_metrics([], []) == {}


def test_a_reranker_worse_than_the_bi_encoder_is_named() -> None:
    before, after = {"ndcg@10": 0.76}, {"ndcg@10": 0.40}
    message = worse_than_bi_encoder(before, after, 14)
    assert message and "0.400 < 0.760" in message and "14 optimizer steps" in message and "epochs" in message
    assert worse_than_bi_encoder(before, {"ndcg@10": 0.80}, 14) is None
    assert worse_than_bi_encoder({}, {}, 0) is None  # no held-out queries: nothing to compare


def test_negative_tuples_put_given_negatives_first_and_never_a_positive() -> None:
    train = [
        Pair("q1", "p1", ("n1",)),
        Pair("q1", "p1b"),  # a second positive of q1: never one of q1's negatives
        Pair("q2", "p2"),
        Pair("q3", "p3", ("n3a", "n3b")),
    ]
    rows = {  # what mining returns: positives (label 1) and mined negatives (label 0)
        "query": ["q1", "q1", "q1", "q2", "q2", "q3"],
        "passage": ["p1", "p1b", "m1", "p1", "m2", "n3a"],
        "label": [1, 1, 0, 0, 0, 0],
    }
    out = negative_tuples(rows, train, seed=0)
    assert list(out) == ["query", "positive", "negative_1", "negative_2"]  # width = most negatives of a query
    assert out["query"] == ["q1", "q1", "q2", "q3"] and out["positive"] == ["p1", "p1b", "p2", "p3"]
    negs = [[out[f"negative_{i}"][r] for i in (1, 2)] for r in range(4)]
    assert negs[0] == ["n1", "m1"] and negs[1] == ["n1", "m1"]  # given before mined, p1b excluded for q1
    assert negs[2] == ["p1", "m2"]  # another query's positive is a fine negative for q2
    assert negs[3] == ["n3a", "n3b"]  # the mined copy of n3a is not repeated
    two = [Pair("q2", "p2"), Pair("q4", "p4")]  # q4 has no negatives: topped up at random, seeded
    again = negative_tuples(rows, two, seed=0)
    q4 = {again["negative_1"][1], again["negative_2"][1]}
    assert len(q4) == 2 and q4 <= {"p2", "p1", "m2"} and again == negative_tuples(rows, two, seed=0)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("loss", ["mnrl", "bce"])
def test_reranker_beats_the_confused_bi_encoder(embedder: str, tmp_path: Path, loss: str) -> None:
    from sentence_transformers import CrossEncoder

    args = RerankerArgs(
        base_model=embedder,
        dataset=fault_codes(tmp_path / "faults.jsonl", 100),
        output_dir=tmp_path / "reranker",
        epochs=2,
        learning_rate=2e-4,
        hard_negatives=3,
        eval_fraction=0.2,
        loss=loss,
        batch_size=16 if loss == "bce" else 8,
    )
    reporter = MemoryReporter()
    result = run_reranker(args, reporter)

    rows = 320 if loss == "bce" else 80  # labelled pairs (1 + 3 negatives each) or one tuple per pair
    assert (result.n_train, result.n_eval, result.n_examples) == (80, 20, rows)
    assert set(result.metrics_before) == {"ndcg@10", "mrr@10", "recall@5"}
    assert result.metrics_before["ndcg@10"] < 0.6  # the bi-encoder is confused by near-identical codes
    assert result.metrics_after["ndcg@10"] > result.metrics_before["ndcg@10"] + 0.15
    assert result.metrics_after["mrr@10"] > result.metrics_before["mrr@10"]
    assert result.steps == 2 * rows // args.batch_size and result.pairs_per_s > 0
    assert any("mined up to 3 hard negatives" in line for line in reporter.lines)

    meta = json.loads((result.output_dir / "domainrag_reranker.json").read_text())
    assert meta["kind"] == "reranker" and meta["metrics_after"] == result.metrics_after
    assert meta["warnings"] == [] and not any("WARNING" in line for line in reporter.lines)
    assert meta["train"]["loss"] == loss
    reloaded = CrossEncoder(str(result.output_dir), device="cpu")
    q = "What does fault code E1234 mean?"
    scores = reloaded.predict(
        [(q, "Fault E1234: a door interlock is open."), (q, "Fault E4321: a door interlock is open.")]
    )
    assert scores.shape == (2,) and scores.min() >= 0 and scores.max() <= 1  # sigmoid scores


@pytest.mark.integration
def test_reranker_needs_negatives(embedder: str, tmp_path: Path) -> None:
    args = RerankerArgs(
        base_model=embedder, dataset=fault_codes(tmp_path / "f.jsonl", 8), output_dir=tmp_path / "out", hard_negatives=0
    )
    with pytest.raises(DomainRagError, match="no negatives"):
        run_reranker(args, MemoryReporter())


@pytest.mark.integration
def test_reranker_job_registers_a_reranker_model(ws, tmp_path: Path) -> None:
    from domainrag.serving.models import create_model
    from domainrag.training.jobs import create_job, wait_job
    from domainrag.training.launch import LaunchConfig
    from domainrag.training.spec import RerankerJobSpec

    spec = RerankerJobSpec(
        name="rr",
        base_model="all-minilm-l6-v2",
        dataset=str(fault_codes(tmp_path / "faults.jsonl", 16)),
        hyperparameters={"epochs": 1, "batch_size": 8, "hard_negatives": 1, "eval_fraction": 0.25},
        launch=LaunchConfig(num_processes=1),  # one process on CPU: a plain python worker
    )
    job = wait_job(ws, create_job(ws, spec).name, timeout=300)
    assert job.state == "succeeded", job.error
    assert job.artifact_format == "cross-encoder" and set((job.metrics or {})["metrics_after"]) == {
        "ndcg@10",
        "mrr@10",
        "recall@5",
    }
    card = json.loads(ws.lake.read_text(f"{job.artifact_key}/model_card.json"))
    assert card["algorithm"] == "reranker" and "chat_template" not in card

    record = create_model(ws, "faults-reranker", job_id=job.name)
    assert (record["kind"], record["format"], record["base_model"]) == ("reranker", "cross-encoder", "all-minilm-l6-v2")
    scores = ws.reranker("faults-reranker").predict([("fault E1234", "Fault E1234: a door interlock is open.")])
    assert scores.shape == (1,)
    with pytest.raises(DomainRagError, match="not an embedding model"):
        ws.embedder("faults-reranker")


@pytest.mark.integration
def test_reranker_on_a_corpus_counts_synthetic_pairs_and_truncation(embedder: str, tmp_path: Path) -> None:
    docs = tmp_path / "docs.jsonl"
    with docs.open("w") as fh:
        for i, cause in enumerate(CAUSES * 2):
            code = f"E{1000 + 37 * i}"
            text = f"Fault {code} on the Vextor line means {cause}. Reset the controller after fixing it."
            fh.write(json.dumps({"id": code, "text": text}) + "\n")
    args = RerankerArgs(
        base_model=embedder,
        dataset=docs,
        output_dir=tmp_path / "job" / "output",
        batch_size=8,
        hard_negatives=1,
        eval_fraction=0.25,
        max_length=24,
        synthetic_queries="heuristic",
    )
    reporter = MemoryReporter()
    result = run_reranker(args, reporter)
    assert result.synthetic is not None and result.synthetic["generated"] == 12
    assert result.synthetic["kept"] == result.n_train + result.n_eval
    assert (tmp_path / "job" / "synthetic_pairs.jsonl").is_file()
    assert result.truncated_examples > 0  # (query, passage) pairs: one tuple holds several
    assert any("exceed the model's limit of 24 tokens" in line for line in reporter.lines)
    meta = json.loads((result.output_dir / "domainrag_reranker.json").read_text())
    assert meta["synthetic"]["kept"] == result.synthetic["kept"] and meta["truncated_examples"] > 0


def test_reranker_options_are_refused_at_job_create() -> None:
    from domainrag.training.spec import parse_job_spec

    base = {"name": "r", "algorithm": "reranker", "base_model": "all-minilm-l6-v2", "dataset": "d.jsonl"}
    for hp, match in (
        ({"loss": "triplet"}, "unknown reranker loss"),
        ({"loss": "cached_mnrl"}, "unknown reranker loss"),  # an embedding loss, not a reranker one
        ({"in_batch_negatives": 0}, "positive integer"),
    ):
        with pytest.raises(DomainRagError, match=match):
            parse_job_spec({**base, "hyperparameters": hp})
    for loss in ("mnrl", "bce"):
        ok = parse_job_spec({**base, "hyperparameters": {"loss": loss, "in_batch_negatives": 3}})
        ok.check_base_model()
