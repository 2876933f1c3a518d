"""Synthetic queries for a corpus-only dataset: detection, generators, dedup/filters, and training on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domainrag.data.chunking import Chunk
from domainrag.errors import DatasetError, DomainRagError
from domainrag.training.synthetic import (
    SyntheticConfig,
    choose_mode,
    generate_pairs,
    is_corpus,
    load_passages,
    write_pairs,
)
from domainrag.training.synthetic_queries import clean, heuristic_queries

pytestmark = pytest.mark.usefixtures("one_thread")

PRODUCTS = [
    ("Zorblat", "pumps", "Berlin", "E4411", "the impeller jammed"),
    ("Quimby", "valves", "Oslo", "E2203", "the seal is worn"),
    ("Vextor", "sensors", "Lisbon", "E3109", "the probe is dry"),
    ("Pallun", "motors", "Madrid", "E7720", "the winding overheated"),
    ("Drennik", "gateways", "Vienna", "E5530", "the modem lost its carrier"),
    ("Moskar", "dosing heads", "Prague", "E6648", "the diaphragm cracked"),
    ("Tavril", "flow switches", "Dublin", "E1187", "the paddle is bent"),
    ("Obrun", "controllers", "Warsaw", "E9902", "the battery is flat"),
]


def corpus_file(path: Path) -> Path:
    """Document JSONL: one short manual page per fictitious product (names no model has seen)."""
    with path.open("w") as fh:
        for name, kind, city, code, cause in PRODUCTS:
            text = (
                f"The {name} line of {kind} is assembled in the {city} plant. "
                f"Fault code {code} on a {name} unit means {cause}; replace the part and restart. "
                f"Every {name} ships with a two-year warranty handled by the {city} service desk."
            )
            fh.write(json.dumps({"id": name.lower(), "title": f"{name} manual", "text": text}) + "\n")
    return path


def chunk(text: str, title: str = "") -> Chunk:
    return Chunk(f"d::{hash(text)}", "d", text, 0, title)


def test_corpus_detection_and_mode(tmp_path: Path) -> None:
    docs = corpus_file(tmp_path / "docs.jsonl")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"query": "q", "positive": "p"}\n')
    (tmp_path / "notes.md").write_text("# Notes\n\nSome text.")
    assert is_corpus(docs) and is_corpus(tmp_path) and is_corpus(tmp_path / "notes.md")
    assert not is_corpus(pairs) and not is_corpus(tmp_path / "pairs.csv")
    assert choose_mode(None, pairs) is None
    assert choose_mode("heuristic", docs) == "heuristic"
    assert choose_mode(None, docs) == "heuristic"  # auto: the cheap mode that measured better
    with pytest.raises(DatasetError, match="already has query/positive"):
        choose_mode("llm", pairs)
    with pytest.raises(DomainRagError, match="unknown synthetic query mode"):
        choose_mode("t5", docs)


def test_load_passages_chunks_and_rejects_an_empty_corpus(tmp_path: Path) -> None:
    passages = load_passages(corpus_file(tmp_path / "docs.jsonl"))
    assert len(passages) == len(PRODUCTS) and passages[0].title == "Zorblat manual"
    long_doc = tmp_path / "long.md"
    long_doc.write_text("# Long\n\n" + " ".join(f"word{i}" for i in range(300)))
    assert len(load_passages(long_doc, chunk_words=120)) == 3  # ingestion's overlapping windows
    (tmp_path / "tiny.txt").write_text("too short")
    with pytest.raises(DatasetError, match="no passage of at least 8 words"):
        load_passages(tmp_path / "tiny.txt")


def test_heuristic_queries_use_the_rarest_terms(tmp_path: Path) -> None:
    passages = load_passages(corpus_file(tmp_path / "docs.jsonl"))
    out = heuristic_queries(passages)
    assert len(out) == len(passages)
    for (query, passage), (name, *_rest) in zip(out, PRODUCTS, strict=True):
        assert query and passage.startswith(f"The {name}")
        words = query.lower().split()
        assert name.lower() in words  # the product name is rare in the corpus: it must be in its query
        assert not {"the", "of", "in", "a"} & set(words)  # stopwords never make a query
        assert len(words) <= 6 + 3


def test_write_pairs_round_trips_through_the_pairs_reader(tmp_path: Path) -> None:
    from domainrag.data.formats import Pair, read_pairs

    pairs = [Pair("where is Zorblat built", "The Zorblat line is assembled in Berlin.")]
    assert read_pairs(write_pairs(pairs, tmp_path / "out" / "p.jsonl")) == pairs


@pytest.mark.integration
def test_roundtrip_filter_with_the_real_embedder(embedder: str, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(embedder, device="cpu")
    passages = load_passages(corpus_file(tmp_path / "docs.jsonl"))
    report = generate_pairs(
        passages, SyntheticConfig(mode="heuristic", roundtrip_k=1), embedder=model, log=lambda _m: None
    )
    assert report.generated == len(PRODUCTS)
    assert report.kept + report.filtered["not_retrievable"] == report.generated and report.kept >= 6
    counts = report.counts()
    assert counts["deduped"] == report.generated and counts["kept"] == report.kept
    # an off-topic query never finds its passage at top-1 and is dropped
    bad = [("chocolate cake recipe with strawberries", passages[0].text)]
    pairs, *_rest, filtered = clean(bad, [p.text for p in passages], SyntheticConfig(roundtrip_k=1), model)
    assert pairs == [] and filtered["not_retrievable"] == 1


@pytest.mark.integration
def test_llm_writes_questions_about_each_passage(tmp_path: Path) -> None:
    """SmolLM2-135M-Instruct (shipped package), greedy, 4 passages in one batch."""
    passages = load_passages(corpus_file(tmp_path / "docs.jsonl"))[:4]
    lines: list[str] = []
    report = generate_pairs(
        passages,
        SyntheticConfig(mode="llm", batch_size=4, max_new_tokens=24, roundtrip_k=0, min_query_words=2),
        log=lines.append,
    )
    assert report.generated == 4 and report.mode == "llm"
    assert any("4/4 passages" in line for line in lines)
    assert report.kept >= 2
    for pair in report.pairs:
        assert pair.query.endswith("?") or len(pair.query.split()) >= 2
        assert pair.query.strip() and "\n" not in pair.query
        assert pair.positive in {p.text for p in passages}
