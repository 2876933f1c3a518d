"""Synthetic query candidates: the LLM output cleaner, deduplication and the length/copy filters."""

from __future__ import annotations

from domainrag.training.synthetic import SyntheticConfig
from domainrag.training.synthetic_queries import _clean_llm_output, clean, dedupe, normalise


def test_llm_output_is_cut_to_one_question() -> None:
    assert _clean_llm_output("\n  Question 1: What does E4411 mean? It means a jam.\nMore") == "What does E4411 mean?"
    assert _clean_llm_output('- "Where is Zorblat built"') == "Where is Zorblat built"
    assert _clean_llm_output("   \n") == ""


def test_normalise_is_the_exact_duplicate_key() -> None:
    assert normalise("What does fault E4411 mean?") == normalise("what  does fault E4411 mean") == (
        "what does fault e4411 mean"
    )


def test_dedupe_drops_exact_and_near_duplicates() -> None:
    cands = [
        ("What does fault E4411 mean?", "p1"),
        ("what does fault E4411 mean", "p2"),  # exact after normalisation
        ("What does the fault E4411 mean?", "p3"),  # near: same content words
        ("Where is the Zorblat assembled?", "p1"),
    ]
    kept, exact, near = dedupe(cands, jaccard=0.8)
    assert [q for q, _ in kept] == ["What does fault E4411 mean?", "Where is the Zorblat assembled?"]
    assert (exact, near) == (1, 1)


def test_clean_filters_by_length_and_verbatim_copy() -> None:
    passage = "The Zorblat line of pumps is assembled in the Berlin plant."
    cands = [
        ("Zorblat", passage),  # too short
        (" ".join(["word"] * 40) + " Zorblat?", passage),  # too long
        ("line of pumps is assembled", passage),  # copied verbatim
        ("Where are Zorblat pumps built?", passage),
    ]
    pairs, exact, near, filtered = clean(cands, [passage], SyntheticConfig(roundtrip_k=0), embedder=None)
    assert [p.query for p in pairs] == ["Where are Zorblat pumps built?"]
    assert filtered["too_short"] == filtered["too_long"] == filtered["copied"] == 1
    assert (exact, near, filtered["not_retrievable"]) == (0, 0, 0)
