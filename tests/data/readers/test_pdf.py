"""PDF reader on rendered and real files: reading order, pages, sections (outline and font cues), tables,
bad files, pages without a text layer, and ingestion through the loader and the chunker."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from domainrag.data.blocks import markdown_table
from domainrag.data.chunking import chunk_document
from domainrag.data.loaders import load_file
from domainrag.data.readers import READERS, images
from domainrag.errors import DatasetError

read_pdf = READERS[".pdf"]
needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None,
                                     reason="OCR needs Debian's tesseract (apt-get install tesseract-ocr)")


def _joined(lines: list[str]) -> str:
    return " ".join(lines)


@pytest.fixture(params=["outline", "font cues"])
def report(request: pytest.FixtureRequest, outlined_pdf: Path, plain_pdf: Path) -> Path:
    return outlined_pdf if request.param == "outline" else plain_pdf


def test_report_text_pages_sections_and_table(report: Path, sample: SimpleNamespace) -> None:
    s = sample
    result = read_pdf(report)
    assert result.title == s.TITLE and result.warnings == []
    by_text = {b.text: b for b in result.blocks}
    where = [(b.kind, b.page, b.section) for b in result.blocks]
    intro, scope, findings, conclusions = (s.SECTIONS[:1], s.SECTIONS[:2], s.SECTIONS[2:3], s.SECTIONS[3:])
    assert where == [
        ("text", 1, ()),
        ("text", 1, tuple(intro)),
        ("text", 1, tuple(scope)),
        ("table", 1, tuple(scope)),
        ("text", 1, tuple(scope)),
        ("text", 2, tuple(findings)),
        ("text", 3, tuple(conclusions)),
    ]
    assert f"{s.SECTIONS[0]}\n\n{_joined(s.INTRO)}" in by_text
    assert f"{s.SECTIONS[1]}\n\n{_joined(s.SCOPE)}" in by_text
    assert _joined(s.AFTER_TABLE) in by_text and f"{s.SECTIONS[3]}\n\n{_joined(s.CONCLUSION)}" in by_text
    table = result.blocks[3]
    assert table.text == markdown_table(s.TABLE) and table.caption == s.CAPTION
    # Table cells and the caption are not repeated as loose text; footers with page numbers are gone.
    loose = "\n".join(b.text for b in result.blocks if b.kind == "text")
    assert "P-300" not in loose and "Table 1" not in loose
    assert all(b.text.split("\n\n")[-1] not in {"1", "2", "3"} for b in result.blocks)


def test_two_column_page_reads_column_by_column(report: Path, sample: SimpleNamespace) -> None:
    """The content stream interleaves the columns line by line; the reader follows the columns."""
    s = sample
    page2 = next(b for b in read_pdf(report).blocks if b.page == 2)
    paragraphs = [_joined(p) for p in s.LEFT + s.RIGHT]
    assert page2.text == "\n\n".join([s.SECTIONS[2], *paragraphs])


def _headings_pdf(path: Path, outline: bool) -> Path:
    """Headings set in the body font: only an outline can tell where sections start."""
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path))
    c.setFont("Helvetica", 10)
    for page, (heading, body) in enumerate([("Safety rules", "Wear gloves at all times."),
                                            ("Cleaning steps", "Rinse the filter with water.")]):
        c.drawString(72, 720, heading)
        c.drawString(72, 690, body)
        if outline:
            c.bookmarkPage(f"p{page}")
            c.addOutlineEntry(heading, f"p{page}", level=0)
        c.showPage()
    c.save()
    return path


def test_outline_gives_sections_that_fonts_cannot(tmp_path: Path) -> None:
    outlined = read_pdf(_headings_pdf(tmp_path / "o.pdf", outline=True))
    assert [(b.section, b.page) for b in outlined.blocks] == [(("Safety rules",), 1), (("Cleaning steps",), 2)]
    plain = read_pdf(_headings_pdf(tmp_path / "p.pdf", outline=False))
    assert [(b.section, b.page) for b in plain.blocks] == [((), 1), ((), 2)]
    assert plain.blocks[1].text == "Cleaning steps\n\nRinse the filter with water."


def test_text_in_a_form_xobject_is_read_from_its_text_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some generators wrap a whole page in a form XObject; its text must not be mistaken for a scan."""
    from reportlab.pdfgen import canvas

    monkeypatch.setattr(images, "tesseract", lambda: None)  # no OCR to fall back on
    c = canvas.Canvas(str(tmp_path / "form.pdf"))
    c.beginForm("page")
    c.setFont("Helvetica", 10)
    c.drawString(72, 700, "Text inside a form XObject.")
    c.drawString(72, 650, "Second paragraph in the form.")
    c.endForm()
    c.doForm("page")
    c.showPage()
    c.save()
    result = read_pdf(tmp_path / "form.pdf")
    assert result.warnings == []
    assert [b.text for b in result.blocks] == ["Text inside a form XObject.\n\nSecond paragraph in the form."]


def test_blank_page_is_neither_ocrd_nor_warned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reportlab.pdfgen import canvas

    monkeypatch.setattr(images, "ocr_image", lambda *_: pytest.fail("a blank page was sent to OCR"))
    c = canvas.Canvas(str(tmp_path / "blank.pdf"))
    c.drawString(72, 700, "Only page one has text.")
    c.showPage()
    c.showPage()  # intentionally left blank
    c.save()
    result = read_pdf(tmp_path / "blank.pdf")
    assert result.warnings == [] and [(b.page, b.text) for b in result.blocks] == [(1, "Only page one has text.")]


def test_encrypted_pdf_is_refused_with_what_to_do(encrypted_pdf: Path) -> None:
    with pytest.raises(DatasetError) as info:
        read_pdf(encrypted_pdf)
    assert info.value.path == str(encrypted_pdf) and "encrypted" in str(info.value)
    assert "qpdf --decrypt" in (info.value.hint or "")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_pdf_is_refused(tmp_path: Path, plain_pdf: Path, damage: str) -> None:
    raw = plain_pdf.read_bytes()
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.7\n" + b"garbage " * 50 if damage == "garbage" else raw[: len(raw) // 2])
    with pytest.raises(DatasetError) as info:
        load_file(bad)
    assert str(bad) in str(info.value) and "not a valid PDF" in str(info.value) and info.value.hint


@needs_tesseract
def test_page_without_text_layer_is_ocrd(scanned_pdf: Path, sample: SimpleNamespace) -> None:
    s = sample
    result = read_pdf(scanned_pdf)
    assert result.warnings == []
    assert [b.page for b in result.blocks] == [1, 2]
    assert result.blocks[0].text == "Cover page with a real text layer."
    assert all(word in result.blocks[1].text for word in s.SCAN_WORDS)


def test_without_ocr_engine_a_page_is_warned_and_a_scan_is_refused(
    scanned_pdf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample: SimpleNamespace
) -> None:
    monkeypatch.setattr(images, "tesseract", lambda: None)
    result = read_pdf(scanned_pdf)
    assert [b.page for b in result.blocks] == [1]
    assert len(result.warnings) == 1 and result.warnings[0].startswith("page 2: no text layer")
    assert "apt-get install tesseract-ocr" in result.warnings[0]

    from reportlab.pdfgen import canvas

    png = sample.render_scan(tmp_path / "only.png", ["Nothing but pixels"])
    c = canvas.Canvas(str(tmp_path / "scan-only.pdf"))
    for _ in range(3):
        c.drawImage(str(png), 36, 500, width=500, height=100)
        c.showPage()
    c.save()
    errors: list[str] = []
    with pytest.raises(DatasetError) as info:
        load_file(tmp_path / "scan-only.pdf", errors=errors)
    assert "nothing to ingest" in str(info.value) and "pages 1-3: no text layer" in str(info.value)
    assert "apt-get install tesseract-ocr" in str(info.value)


def test_pdf_is_ingested_with_page_section_and_kind(outlined_pdf: Path, sample: SimpleNamespace) -> None:
    s = sample
    errors: list[str] = []
    [doc] = load_file(outlined_pdf, errors=errors)
    assert errors == [] and doc.title == s.TITLE and doc.metadata["format"] == "pdf"
    chunks = chunk_document(doc, max_words=60, overlap_words=10)
    table = next(c for c in chunks if c.metadata["kind"] == "table")
    assert table.metadata["page"] == 1 and table.metadata["section"] == "1 Introduction > 1.1 Scope"
    assert table.text.startswith(f"1 Introduction > 1.1 Scope\n\n{s.CAPTION}") and "| P-200 | 16 | 55 |" in table.text
    findings = [c for c in chunks if c.metadata.get("section") == s.SECTIONS[2]]
    assert findings and {c.metadata["page"] for c in findings} == {2}
    assert all(c.metadata["kind"] == "text" for c in findings) and "Delta" in findings[-1].text
    assert chunks == chunk_document(load_file(outlined_pdf)[0], max_words=60, overlap_words=10)  # stable ids


REAL = Path("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf")


@pytest.mark.skipif(not REAL.is_file(), reason=f"{REAL} comes with Debian's shared-mime-info package")
def test_real_pdf_outline_sections_and_pages() -> None:
    """A LaTeX PDF shipped by Debian (freedesktop.org spec): outline sections, pages, running heads dropped."""
    result = read_pdf(REAL)
    assert result.title == "Shared MIME-info Database" and result.warnings == []
    sections = {b.section for b in result.blocks}
    assert ("1. Introduction", "1.1. Version") in sections
    assert ("2. Unified system", "2.1. Directory layout") in sections
    version = next(b for b in result.blocks if b.section == ("1. Introduction", "1.1. Version"))
    assert version.page == 1 and "This is version 0.21 of the Shared MIME-info Database" in version.text
    assert max(b.page or 0 for b in result.blocks) == 17
    # The running head "Shared MIME-info Database" at the top of pages 2.. is not part of the text.
    assert all(not b.text.startswith("Shared MIME-info Database") for b in result.blocks if b.page != 1)


def test_unmapped_bullet_between_words_keeps_them_apart(tmp_path: Path) -> None:
    """reportlab's Helvetica "•" comes out of pdfminer as "(cid:127)": dropping it must not glue its neighbours
    ("Corporation • 2019" was read as "Corporation2019"), and a leading bullet goes without a trace."""
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(tmp_path / "bullets.pdf"))
    c.setFont("Helvetica", 10)
    c.drawString(72, 700, "American Tower Corporation \u2022 2019 Annual Report")
    c.drawString(72, 650, "\u2022 Leading bullet item")
    c.showPage()
    c.save()
    text = read_pdf(tmp_path / "bullets.pdf").blocks[0].text
    assert "(cid:" not in text
    assert "American Tower Corporation 2019 Annual Report" in text
    assert "Leading bullet item" in text and " Leading" not in text


def test_a_heading_right_above_a_table_is_not_a_chunk_of_its_own(tmp_path: Path) -> None:
    """The heading names the table's section; alone as a text block it became a "Heading / Heading" chunk
    that child expansion pulled into the top hits (seen on TAT-QA rendered to PDF)."""
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Table

    class Outlined(SimpleDocTemplate):
        def afterFlowable(self, flowable: Any) -> None:  # headings get outline entries, as report tools write
            level = getattr(flowable, "outline_level", None)
            if level is not None:
                self.canv.bookmarkPage(key := f"h{id(flowable)}")
                self.canv.addOutlineEntry(flowable.getPlainText(), key, level=level)

    styles = getSampleStyleSheet()
    h1, h2 = Paragraph("Quarterly figures", styles["Heading1"]), Paragraph("Revenue by region", styles["Heading2"])
    h1.outline_level, h2.outline_level = 0, 1
    grid = [("GRID", (0, 0), (-1, -1), 0.5, "black")]
    story = [h1, Paragraph("Revenue grew in every region during the quarter under review. " * 3, styles["BodyText"]),
             h2, Table([["Region", "Revenue"], ["North", "120"], ["South", "95"]], style=grid),
             Paragraph("The south lagged because of a plant shutdown in May. " * 3, styles["BodyText"])]
    Outlined(str(tmp_path / "t.pdf")).build(story)
    blocks = read_pdf(tmp_path / "t.pdf").blocks
    assert all(b.text.strip() != "Revenue by region" for b in blocks), [(b.kind, b.text[:40]) for b in blocks]
    table = next(b for b in blocks if b.kind == "table")
    assert table.section == ("Quarterly figures", "Revenue by region") and "North" in table.text
    chunks = chunk_document(load_file(tmp_path / "t.pdf")[0], max_words=120, overlap_words=20)
    assert all("|" in c.text or "grew" in c.text or "lagged" in c.text for c in chunks), [c.text for c in chunks]
