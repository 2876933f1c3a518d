"""Markdown and HTML pages with tables: headings as sections, tables as table chunks rendered in Markdown
with their caption and header row (also in each row group of a long table), linked to the text around
them; pages without a table chunk exactly as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from domainrag.data.chunking import chunk_document
from domainrag.data.loaders import Document, load_file

ROWS = [(f"P-{100 + i}", str(10 + i)) for i in range(60)]
MD = "\n".join([
    "# Pump guide", "", "Intro text about pumps.", "", "## Limits", "", "The limits are shown below.", "",
    "Table 2: Pressure *limits*", "", "| Model | Max bar |", "|---|---|",
    *(f"| {m} | **{b}** |" for m, b in ROWS), "", "They apply at 20 C.", "", "## Other", "", "Nothing here.", ""])
HTML = ("<html><head><title>Pumps</title><script>var x = 1;</script></head><body><h1>Pump guide</h1>"
        "<p>Intro text about pumps.</p><h2>Limits</h2><p>The limits are <b>shown</b> below.</p>"
        "<table><caption>Table 2: Pressure limits</caption><thead><tr><th>Model</th><th>Max bar</th></tr></thead>"
        "<tbody>" + "".join(f"<tr><td>{m}</td><td>{b}</td></tr>" for m, b in ROWS)
        + "<tr><td colspan='2'>measured at 20 C</td></tr></tbody></table>"
        "<p>They apply at 20 C.</p><h2>Other</h2><p>Nothing here.</p></body></html>")


@pytest.fixture(params=["md", "html"])
def page(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"guide.{request.param}"
    path.write_text(MD if request.param == "md" else HTML)
    return path


def test_table_chunks_keep_caption_and_header_in_every_row_group(page: Path) -> None:
    (doc,) = load_file(page)
    chunks = chunk_document(doc, max_words=40, overlap_words=5)
    tables = [c for c in chunks if c.metadata["kind"] == "table"]
    assert len(tables) >= 2  # 60 rows do not fit one chunk of 3 x 40 words
    caption = "Table 2: Pressure limits"
    for t in tables:
        assert t.metadata["section"] == "Pump guide > Limits"
        assert t.text.startswith(f"Pump guide > Limits\n\n{caption}\n\n| Model | Max bar |\n|---|---|\n| P-")
    cells = [line for t in tables for line in t.text.splitlines() if line.startswith("| P-")]
    assert cells == [f"| {m} | {b} |" for m, b in ROWS]  # every row once, in order, emphasis gone
    assert not any(caption in c.text for c in chunks if c.metadata["kind"] == "text")  # moved into the table
    by_id = {c.chunk_id: c for c in chunks}
    kids = [by_id[i].text for i in tables[0].metadata["children"]]
    assert all(t.metadata["children"] == tables[0].metadata["children"] for t in tables)
    assert len(kids) == 2 and "shown below" in kids[0] and "apply at 20 C" in kids[1]
    other = next(c for c in chunks if "Nothing here" in c.text)
    assert other.metadata["section"] == "Pump guide > Other" and "tables" not in other.metadata
    assert "var x" not in " ".join(c.text for c in chunks)
    if page.suffix == ".html":
        assert "| measured at 20 C |  |" in tables[-1].text  # a cell spanning two columns keeps its text once
        assert doc.title == "Pumps"


def test_pages_without_a_table_chunk_as_plain_text(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Guide\n\nOne paragraph.\n\n## Part\n\nTwo paragraphs.\n")
    (tmp_path / "b.html").write_text("<html><body><table><tr><td>layout</td></tr><tr><td>only</td></tr></table>"
                                     "<p>Text.</p></body></html>")  # one column: a layout table, not data
    for name in ("a.md", "b.html"):
        (doc,) = load_file(tmp_path / name)
        assert doc.blocks == ()
        plain = Document(doc.doc_id, doc.text, doc.title, doc.metadata)
        assert chunk_document(doc) == chunk_document(plain)
