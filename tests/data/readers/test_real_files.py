"""Readers on real documents fetched by scripts/fetch_real_docs.py (Debian's documentation PDFs; the real-world
PDFs, Word, PowerPoint and Excel files in pinned PyPI sdists' test suites): text, pages, sections and table
cells as a person reading the file sees them. `make test` fetches them; without them these tests skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from domainrag.data.chunking import chunk_document
from domainrag.data.loaders import load_file
from domainrag.data.readers import READERS
from domainrag.errors import DatasetError

ROOT = Path(__file__).resolve().parents[3]
REAL = Path(os.environ.get("DOMAINRAG_REAL_DOCS") or ROOT / ".cache" / "real-docs")


def real(rel: str) -> Path:
    path = REAL / rel
    if not path.is_file():
        pytest.skip(f"{path} missing: run `python scripts/fetch_real_docs.py` (make test does)")
    return path


def test_debian_texinfo_manual_pages_and_sections() -> None:
    """libtasn1's manual (Texinfo → PDF), from Debian's libtasn1-doc: 36 pages, outline sections."""
    result = READERS[".pdf"](real("debian/libtasn1-doc/libtasn1.pdf"))
    assert result.title == "Libtasn1" and result.warnings == []
    assert max(b.page or 0 for b in result.blocks) == 36
    first = {}
    for b in result.blocks:
        first.setdefault(b.section, b)
    coding = first[("3 Utilities", "Invoking asn1Coding")]
    assert coding.page == 8 and "asn1Coding generates a DER encoding" in coding.text
    assert first[("4 Function reference", "DER functions")].page == 18
    assert first[("A Copying Information", "GNU Free Documentation License")].page == 27


def test_government_report_ruled_table_and_its_paragraphs() -> None:
    """A Natural Resources Canada data-model report (Word → PDF, in pypdf's test resources): the revision
    history table on page 3 with its cells, 19 pages, and the table chunk linked to its neighbours."""
    path = real("pypi/pypdf/GeoBase_NHNC1_Data_Model_UML_EN.pdf")
    result = READERS[".pdf"](path)
    assert max(b.page or 0 for b in result.blocks) == 19
    table = next(b for b in result.blocks if b.kind == "table")
    rows = table.text.splitlines()
    assert table.page == 3 and rows[0] == "| Date | Version | Description |"
    assert "| September 2002 | Draft 01 | First draft for discussion with Nova Scotia |" in rows
    assert table.section[-1] == "REVISION HISTORY"
    assert any("The data model can (and must) extend" in " ".join(b.text.split()) and b.page == 6
               for b in result.blocks)
    chunks = chunk_document(load_file(path)[0])
    table_chunk = next(c for c in chunks if c.metadata["kind"] == "table")
    # The table's section holds no paragraph (only its heading, which is in the section path, not a chunk of
    # its own): nothing to link, and no "REVISION HISTORY"-only chunk for child expansion to pull in.
    assert table_chunk.metadata["page"] == 3 and "REVISION HISTORY" in table_chunk.text
    assert not table_chunk.metadata.get("children")
    assert not any(c.text.split("\n\n")[-1].strip() == "REVISION HISTORY" for c in chunks)


def test_pdf_with_a_table_and_metadata_title() -> None:
    result = READERS[".pdf"](real("pypi/pypdf/example.pdf"))
    assert result.title == "PDF Example Document"
    (table,) = [b for b in result.blocks if b.kind == "table"]
    assert table.page == 1
    assert "| Capital | Jakarta | Berlin | Vienna | Paris | Vatican City |" in table.text.splitlines()
    assert any("Beautiful is better than ugly." in b.text for b in result.blocks if b.kind == "text")


def test_pdflatex_outline_sections_follow_text_across_pages() -> None:
    result = READERS[".pdf"](real("pypi/pypdf/pdflatex-outline.pdf"))
    where = [(b.page, b.section, b.text.split("\n\n")[0]) for b in result.blocks if b.page and b.page > 1]
    assert where[:3] == [(2, ("Foo",), "1 Foo"), (2, ("Bar",), "2 Bar"), (2, ("Baz",), "3 Baz")]
    # section "4 Foo" starts at the foot of page 2 and runs onto page 3: the text there is still under it
    assert where[3][:2] == (2, ("Foo",)) and where[4][:2] == (3, ("Foo",)) and where[4][2].startswith("written")
    assert max(p for p, _, _ in where) == 4


def test_libreoffice_encrypted_pdf_is_skipped_with_its_reason() -> None:
    path = real("pypi/pypdf/libreoffice-writer-password.pdf")
    with pytest.raises(DatasetError, match="encrypted PDF") as info:
        load_file(path)
    assert "qpdf --decrypt" in str(info.value)


def test_word_files_saved_by_word() -> None:
    blocks = READERS[".docx"](real("pypi/python-docx/par-known-styles.docx")).blocks
    assert [(b.section, b.text) for b in blocks][-1] == (("Heading 1",), "Heading 1\n\nBody Text")
    mixed = READERS[".docx"](real("pypi/python-docx/blk-paras-and-tables.docx")).blocks
    assert [b.kind for b in mixed] == ["text", "table", "text"]  # the empty layout tables are dropped
    assert mixed[0].text == "Lorem ipsum dolor sit amet, consectetur adipiscing elit."


def test_powerpoint_tables_and_excel_cells() -> None:
    deck = READERS[".pptx"](real("pypi/python-pptx/tbl-cell.pptx")).blocks
    by_page = {b.page: b for b in deck}
    assert by_page[3].text == "| a | b | c |\n|---|---|---|\n| d | e | f |\n| g | h | i |"
    assert by_page[2].text.startswith("| merged cell |  |  |")  # a merged cell's text once
    (sheet,) = READERS[".xlsx"](real("pypi/python-pptx/shp-embedded-xlsx.xlsx")).blocks
    assert sheet.caption == "Sheet1" and sheet.text.splitlines() == ["| 1 |", "|---|", "| 2 |", "| 3 |"]
