"""Embedding fine-tuning: query-disjoint split, held-out retrieval gains, hard negatives, resume."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from domainrag.errors import DomainRagError
from domainrag.training.embedding import EmbeddingArgs, run_embedding
from domainrag.training.precision import resolve_precision
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
    assert meta["train"]["precision"] == resolve_precision("auto")  # bf16 autocast on CPUs with AVX512-BF16
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


def corpus_jsonl(path: Path) -> Path:
    """The offices as documents only (no queries): one short page per code-named project."""
    rng = random.Random(1)
    with path.open("w") as fh:
        for n, c in zip(NAMES, CITIES, strict=True):
            text = (
                f"Project {n} is run from the {c} office, which opened in {rng.randint(1950, 2020)}. "
                f"The {n} team of {rng.randint(10, 900)} engineers builds "
                f"{rng.choice(['pumps', 'valves', 'sensors', 'motors'])} for industrial customers."
            )
            fh.write(json.dumps({"id": n.lower(), "title": f"Project {n}", "text": text}) + "\n")
    return path


def causal_lm_folder(path: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    return path


def test_bad_options_and_decoder_base_model_are_refused_before_loading(tmp_path: Path, pairs_file: Path) -> None:
    from domainrag.training.spec import EmbeddingJobSpec, RerankerJobSpec, parse_job_spec

    decoder = causal_lm_folder(tmp_path / "llm")
    args = EmbeddingArgs(base_model=str(decoder), dataset=pairs_file, output_dir=tmp_path / "out")
    with pytest.raises(DomainRagError, match="text generator"):
        run_embedding(args, MemoryReporter())
    for hp, match in (
        ({"loss": "triplet"}, "unknown loss"),
        ({"matryoshka_dims": [256, 256]}, "distinct positive"),
        ({"matryoshka_dims": "384"}, "distinct positive"),
        ({"synthetic_queries": "t5"}, "unknown mode"),
        ({"mini_batch_size": 0}, "positive integer"),
        ({"precision": "fp16"}, "unknown precision"),
    ):
        with pytest.raises(DomainRagError, match=match):
            parse_job_spec({"name": "e", "algorithm": "embedding", "base_model": "all-minilm-l6-v2",
                            "dataset": "d.jsonl", "hyperparameters": hp})
    spec = RerankerJobSpec(name="e", base_model=str(decoder), dataset="d.jsonl")
    with pytest.raises(DomainRagError, match="not an encoder"):
        spec.check_base_model()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nProject Zorblat is run from the Berlin office since 1999.")
    folder = EmbeddingJobSpec(name="e", base_model="all-minilm-l6-v2", dataset=str(docs))
    with pytest.raises(DomainRagError, match="must be one file"):
        folder.check_corpus_dataset()
    one_file = EmbeddingJobSpec(name="e", base_model="all-minilm-l6-v2", dataset=str(docs / "a.md"))
    assert one_file.check_corpus_dataset() is True
    pairs = EmbeddingJobSpec(name="e", base_model="all-minilm-l6-v2", dataset=str(pairs_file))
    assert pairs.check_corpus_dataset() is False


@pytest.mark.integration
def test_duplicates_and_overlong_texts_are_counted(embedder: str, tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    rows = [{"query": f"{n} question", "positive": f"{n} is in {c}. " + "filler words " * 20}
            for n, c in zip(NAMES[:8], CITIES[:8], strict=True)]
    data.write_text("\n".join(json.dumps(r) for r in [*rows, rows[0], rows[1]]) + "\n")
    with pytest.raises(DomainRagError, match="go beyond the model's 384 dimensions"):
        args = EmbeddingArgs(base_model=embedder, dataset=data, output_dir=tmp_path / "m0", matryoshka_dims=[512, 256])
        run_embedding(args, MemoryReporter())
    reporter = MemoryReporter()
    result = run_embedding(
        EmbeddingArgs(base_model=embedder, dataset=data, output_dir=tmp_path / "m", batch_size=4, eval_fraction=0.25,
                      max_seq_length=16),
        reporter,
    )
    assert result.duplicates_dropped == 2 and result.n_train + result.n_eval == 8
    assert result.truncated_texts == 8  # every positive is past 16 tokens, no query is
    assert any("8 of 16 distinct texts exceed the model's limit of 16 tokens" in line for line in reporter.lines)
    assert any("dropped 2 duplicate" in line for line in reporter.lines)


@pytest.mark.integration
def test_corpus_only_dataset_trains_on_synthetic_queries_with_cached_matryoshka(embedder: str, tmp_path: Path) -> None:
    args = EmbeddingArgs(
        base_model=embedder,
        dataset=corpus_jsonl(tmp_path / "docs.jsonl"),
        output_dir=tmp_path / "job" / "output",
        batch_size=8,
        eval_fraction=0.2,
        loss="cached_mnrl",
        mini_batch_size=4,
        matryoshka_dims=[64, 384],
        synthetic_queries="heuristic",
    )
    reporter = MemoryReporter()
    result = run_embedding(args, reporter)

    syn = result.synthetic
    assert syn is not None and syn["mode"] == "heuristic" and syn["passages"] == syn["generated"] == 20
    assert syn["kept"] == result.n_train + result.n_eval and syn["kept"] >= 10
    assert syn["kept"] == syn["deduped"] - sum(syn["filtered"].values())
    written = (tmp_path / "job" / "synthetic_pairs.jsonl").read_text().splitlines()
    assert len(written) == syn["kept"] and all({"query", "positive"} <= set(json.loads(x)) for x in written)
    assert result.dimension == 384 and result.steps == -(-result.n_train // 8)
    assert result.metrics_after_by_dim is not None and set(result.metrics_after_by_dim) == {384, 64}
    assert result.metrics_after_by_dim[384] == result.metrics_after
    losses = [m["loss"] for m in reporter.metrics if "loss" in m]
    assert losses and all(x == x and x > 0 for x in losses)  # finite, positive: the wrapped cached loss ran
    meta = json.loads((result.output_dir / "domainrag_embedding.json").read_text())
    assert meta["loss"] == "cached_mnrl" and meta["matryoshka_dims"] == [64, 384]
    assert meta["synthetic"]["kept"] == syn["kept"]


@pytest.mark.integration
@pytest.mark.slow
def test_corpus_job_records_synthetic_counts_in_the_model_card(ws, tmp_path: Path) -> None:
    from domainrag.training.jobs import create_job, wait_job
    from domainrag.training.spec import EmbeddingJobSpec, parse_job_spec

    docs = corpus_jsonl(tmp_path / "docs.jsonl")
    with pytest.raises(DomainRagError, match="unknown loss"):
        create_job(ws, parse_job_spec({"name": "emb", "algorithm": "embedding", "base_model": "all-minilm-l6-v2",
                                       "dataset": str(docs), "hyperparameters": {"loss": "nope"}}))
    assert ws.catalog.list("job") == []
    spec = EmbeddingJobSpec(
        name="emb",
        base_model="all-minilm-l6-v2",
        dataset=str(docs),  # no query column: synthetic queries are auto-detected
        hyperparameters={"batch_size": 8, "matryoshka_dims": [384, 128]},
    )
    job = wait_job(ws, create_job(ws, spec).name, timeout=300)
    assert job.state == "succeeded", job.error
    card = json.loads(ws.lake.read_text(f"{job.artifact_key}/model_card.json"))
    assert card["output_dimension"] == 384
    assert card["hyperparameters"]["matryoshka_dims"] == [384, 128]
    syn = card["metrics"]["synthetic"]
    assert syn["mode"] == "heuristic" and syn["generated"] == 20 and syn["kept"] >= 10 and "filtered" in syn
    pairs = ws.lake.read_text(f"jobs/{job.name}/synthetic_pairs.jsonl").splitlines()
    assert len(pairs) == syn["kept"]
