"""RagApp pieces: references a person can check, and the passage sources the model sees."""

from __future__ import annotations

from domainrag.index.base import SearchHit
from domainrag.serving.rag import passage_source, reference


def test_references_and_sources_carry_page_and_section_when_the_format_has_them() -> None:
    paged = SearchHit("r.pdf::0::a", "r.pdf", "The pump delivers 12 l/h.", 0.9, "Report",
                      metadata={"page": 3, "section": "Report > Pumps", "kind": "text"})
    plain = SearchHit("notes.md::0::b", "notes.md", "Plain text.", 0.5)
    ref = reference(1, paged)
    assert (ref["document"], ref["page"], ref["section"], ref["citation"]) == ("r.pdf", 3, "Report > Pumps", 1)
    assert "page" not in reference(2, plain) and "section" not in reference(2, plain)
    assert passage_source(paged) == "r.pdf, page 3" and passage_source(plain) == "notes.md"
