"""References as OpenAI ``url_citation`` annotations: one per ``[n]`` marker, or the whole answer when none is cited."""

from __future__ import annotations

from domainrag.index.base import SearchHit
from domainrag.serving.citations import citation_title, url_citations
from domainrag.serving.rag import reference, source_url

REFS = [
    {"citation": 1, "document": "manual.pdf", "page": 4, "section": "Safety", "url": "domainrag://kb/manual.pdf"},
    {"citation": 3, "document": "pump.md", "url": "https://example.org/pump.md"},
]


def test_each_marker_gets_an_annotation_at_its_span() -> None:
    text = "Wear gloves [1]. The pump reaches 10 bar [3][1]. Not [2] or [12]."
    notes = url_citations(text, REFS)
    spans = [(n["url_citation"]["start_index"], n["url_citation"]["end_index"]) for n in notes]
    assert [text[s:e] for s, e in spans] == ["[1]", "[3]", "[1]"]
    assert spans == sorted(spans)
    assert {n["type"] for n in notes} == {"url_citation"}
    first = notes[0]["url_citation"]
    assert first["url"] == "domainrag://kb/manual.pdf" and first["title"] == "manual.pdf, page 4, Safety"
    assert notes[1]["url_citation"] == {"url": "https://example.org/pump.md", "title": "pump.md",
                                        "start_index": text.index("[3]"), "end_index": text.index("[3]") + 3}


def test_an_answer_that_cites_nothing_rests_on_every_reference() -> None:
    text = "The pump reaches 10 bar."
    notes = url_citations(text, REFS)
    assert [(n["url_citation"]["start_index"], n["url_citation"]["end_index"]) for n in notes] == [(0, len(text))] * 2
    assert url_citations("The knowledge base does not contain this information.", []) == []
    assert citation_title({"document": "a.md", "section": "Intro"}) == "a.md, Intro"


def test_reference_links_are_uris_never_local_paths() -> None:
    def hit(source: str | None, doc_id: str = "docs/warranty terms.md") -> SearchHit:
        return SearchHit("c1", doc_id, "text", 0.5, metadata={"source": source} if source else {})

    assert source_url(hit("s3://lake/raw/warranty.md"), "kb") == "s3://lake/raw/warranty.md"
    assert source_url(hit("https://example.org/w.html"), "kb") == "https://example.org/w.html"
    for local in ("/home/someone/docs/warranty.md", "C:\\docs\\warranty.md", "file:///home/someone/w.md", None):
        assert source_url(hit(local), "my kb") == "domainrag://my%20kb/docs%2Fwarranty%20terms.md"
    ref = reference(2, hit("/tmp/x.md", "x.md"), index="kb")
    assert ref["url"] == "domainrag://kb/x.md" and ref["citation"] == 2
