"""Tables linked to the paragraphs around them (metadata.children / metadata.tables), for PDF and Word alike,
with ids that stay the same across runs and change as a group when a linked paragraph is edited; and the
retriever's child expansion following those links in a real embedded store."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import docx
import numpy as np

from domainrag.data.blocks import Block
from domainrag.data.chunking import NEIGHBOURS, Chunk, chunk_document
from domainrag.data.loaders import Document, load_file
from domainrag.index import open_store, parse_store_config
from domainrag.retrieval.retriever import RetrievalConfig, Retriever


def _linked(chunks: list[Chunk]) -> tuple[Chunk, list[Chunk]]:
    """The table chunk and the chunks it lists as children (checked to exist and to point back)."""
    by_id = {c.chunk_id: c for c in chunks}
    table = next(c for c in chunks if c.metadata["kind"] == "table")
    children = [by_id[i] for i in table.metadata["children"]]
    assert all(c.metadata["tables"] == [table.chunk_id] for c in children)
    unlinked = [c for c in chunks if c is not table and c not in children]
    assert all("children" not in c.metadata and "tables" not in c.metadata for c in unlinked)
    return table, children


def test_pdf_table_links_the_paragraphs_before_and_after_it(outlined_pdf: Path, sample: SimpleNamespace) -> None:
    chunks = chunk_document(load_file(outlined_pdf)[0])
    table, children = _linked(chunks)
    assert [c.metadata["kind"] for c in children] == ["text", "text"]
    assert " ".join(sample.SCOPE) in children[0].text and " ".join(sample.AFTER_TABLE) in children[1].text
    assert {c.metadata["section"] for c in children} == {table.metadata["section"]} == {"1 Introduction > 1.1 Scope"}
    assert all(c.position in (table.position - 1, table.position + 1) for c in children)
    again = chunk_document(load_file(outlined_pdf)[0])  # a second run: the same ids and links
    assert [(c.chunk_id, c.metadata) for c in again] == [(c.chunk_id, c.metadata) for c in chunks]


def test_docx_table_links_stay_inside_its_section(tmp_path: Path) -> None:
    doc = docx.Document()
    doc.add_heading("Installation", level=1)
    doc.add_paragraph("Bolt the pump to a level floor.")
    table = doc.add_table(rows=2, cols=2)
    for r, row in enumerate([["Bolt", "Torque"], ["M8", "25 Nm"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    doc.add_paragraph("Check the torque after 24 hours.")
    doc.add_heading("Wiring", level=1)
    doc.add_paragraph("Connect L1 to the brown wire.")
    doc.save(tmp_path / "m.docx")
    chunks = chunk_document(load_file(tmp_path / "m.docx")[0], max_words=8, overlap_words=2)
    table_chunk, children = _linked(chunks)
    assert "| M8 | 25 Nm |" in table_chunk.text
    assert any("level floor" in c.text for c in children) and any("24 hours" in c.text for c in children)
    assert not any("brown wire" in c.text for c in children)  # the next section is not the table's


def _doc(paragraphs_before: list[str], paragraphs_after: list[str], tail: str) -> Document:
    blocks = [Block("text", p, ("S",)) for p in paragraphs_before]
    blocks += [Block("table", "| a | b |\n|---|---|\n| 1 | 2 |", ("S",), caption="Table 1: ab")]
    blocks += [Block("text", p, ("S",)) for p in paragraphs_after] + [Block("text", tail, ("T",))]
    return Document("d.pdf", "x", "D", {"source": "d.pdf"}, tuple(blocks))


def test_at_most_neighbours_each_side_and_edits_reid_the_group_only() -> None:
    before = [f"before {i} " + "word " * 10 for i in range(NEIGHBOURS + 2)]
    after = [f"after {i} " + "word " * 10 for i in range(NEIGHBOURS + 2)]
    chunks = chunk_document(_doc(before, after, "tail text"), max_words=12, overlap_words=2)
    table, children = _linked(chunks)
    assert [c.text.split("\n\n")[-1].split()[:2] for c in children] == (
        [["before", str(len(before) - NEIGHBOURS + i)] for i in range(NEIGHBOURS)]
        + [["after", str(i)] for i in range(NEIGHBOURS)])

    edited = list(after)
    edited[0] = after[0].replace("word", "term", 1)
    changed = chunk_document(_doc(before, edited, "tail text"), max_words=12, overlap_words=2)
    table2, children2 = _linked(changed)
    group = {table.position, *(c.position for c in children)}
    for old, new in zip(chunks, changed, strict=True):
        # the table and every linked paragraph get new ids (no stored link can point at a gone chunk) ...
        assert (old.chunk_id != new.chunk_id) == (old.position in group)
    assert table2.metadata["children"] == [c.chunk_id for c in children2]


class _Embedder:
    def encode_query(self, query: str) -> np.ndarray:
        return np.array([1, 0, 0, 0], dtype=np.float32)


def test_retrieved_table_pulls_in_its_paragraphs(tmp_path: Path) -> None:
    """The table is the query's nearest chunk; expansion brings the paragraphs around it right after it, and
    not the chunk of the next section, which ranks above them without expansion."""
    doc = Document("r.docx", "x", "R", {"source": "r.docx"}, (
        Block("text", "Seals wear faster in hot water; replace them every spring.", ("Service",)),
        Block("table", "| Seal | Interval |\n|---|---|\n| S-1 | 6 months |", ("Service",)),
        Block("text", "Intervals assume clean inlet filters.", ("Service",)),
        Block("text", "The warranty lasts two years.", ("Warranty",)),
    ))
    chunks = chunk_document(doc)
    vectors = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0.5, 0.5, 0, 0]], dtype=np.float32)
    store = open_store("links", parse_store_config(None), str(tmp_path / "stores"))
    store.create(4)
    store.upsert(chunks, vectors)
    store.refresh()
    cfg = RetrievalConfig(index="links", mode="dense", top_k=3, expand_children=1)
    off = cfg.model_copy(update={"expand_children": 0})
    plain = Retriever(store, _Embedder(), off).run("seal interval")  # type: ignore[arg-type]
    assert [h.metadata["kind"] for h in plain][:2] == ["table", "text"] and "warranty" in plain[1].text
    hits = Retriever(store, _Embedder(), cfg).run("seal interval")  # type: ignore[arg-type]
    texts = [h.text for h in hits]
    assert hits[0].metadata["kind"] == "table"
    assert any("hot water" in t for t in texts[1:]) and any("clean inlet" in t for t in texts[1:])
    assert all(h.ranks["parent"] == 1 for h in hits[1:]) and not any("warranty" in t for t in texts)
