"""Word and PowerPoint readers on files written by python-docx and python-pptx themselves: sections from
headings, tables with merged cells and captions, slides in reading order with notes, bad packages."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import docx
import pptx
import pytest
from PIL import Image
from pptx.util import Inches

from domainrag.data.chunking import chunk_document
from domainrag.data.loaders import load_file
from domainrag.data.readers import READERS
from domainrag.data.readers.office import OLE_MAGIC
from domainrag.errors import DatasetError


def _manual(path: Path, *, core_title: str | None = "Pump Manual") -> Path:
    """A small manual: title, nested headings, a captioned table with a horizontal and a vertical merge."""
    doc = docx.Document()
    if core_title:
        doc.core_properties.title = core_title
    doc.add_paragraph("DP-220 Manual", style="Title")
    doc.add_paragraph("Read this first.")
    doc.add_heading("Installation", level=1)
    doc.add_heading("Mounting", level=2)
    doc.add_paragraph("Bolt the pump to a level floor.")
    doc.add_paragraph("Table 1: Bolt torque", style="Caption")
    table = doc.add_table(rows=3, cols=3)
    for r, row in enumerate([["Bolt", "Torque", "Note"], ["M8", "25 Nm", "dry thread"], ["M10", "50 Nm", ""]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    table.cell(1, 2).merge(table.cell(2, 2))  # "dry thread" spans both bolt rows
    doc.add_paragraph("Check the torque after 24 hours.")
    doc.add_heading("Wiring", level=2)
    doc.add_paragraph("Connect L1 to the brown wire.")
    doc.add_heading("Maintenance", level=1)
    doc.add_paragraph("Change the oil yearly.")
    doc.save(path)
    return path


def test_docx_sections_follow_headings_in_body_order(tmp_path: Path) -> None:
    result = READERS[".docx"](_manual(tmp_path / "m.docx"))
    assert result.title == "Pump Manual"
    assert [(b.kind, b.section) for b in result.blocks] == [
        ("text", ("DP-220 Manual",)),
        ("text", ("DP-220 Manual", "Installation", "Mounting")),
        ("table", ("DP-220 Manual", "Installation", "Mounting")),
        ("text", ("DP-220 Manual", "Installation", "Mounting")),  # the paragraph after the table stays in place
        ("text", ("DP-220 Manual", "Installation", "Wiring")),
        ("text", ("DP-220 Manual", "Maintenance")),
    ]
    # a heading leads the text under it; one directly followed by another heading lives only in the path
    assert result.blocks[1].text == "Mounting\n\nBolt the pump to a level floor."
    assert result.blocks[3].text == "Check the torque after 24 hours."
    assert not any("Installation" in b.text for b in result.blocks)


def test_docx_table_cells_merges_and_caption(tmp_path: Path) -> None:
    table = next(b for b in READERS[".docx"](_manual(tmp_path / "m.docx")).blocks if b.kind == "table")
    assert table.caption == "Table 1: Bolt torque"
    assert table.text.splitlines() == [
        "| Bolt | Torque | Note |",
        "|---|---|---|",
        "| M8 | 25 Nm | dry thread |",
        "| M10 | 50 Nm |  |",  # the vertically merged cell's text appears once
    ]
    # the caption paragraph went into the table, not into the text
    assert sum("Bolt torque" in b.text or "Bolt torque" in b.caption for b in READERS[".docx"](
        tmp_path / "m.docx").blocks) == 1


def test_docx_horizontal_merge_and_caption_below(tmp_path: Path) -> None:
    doc = docx.Document()
    doc.add_paragraph("Intro.")
    table = doc.add_table(rows=2, cols=3)
    table.cell(0, 0).text = "Flow range"
    table.cell(0, 0).merge(table.cell(0, 1))
    table.cell(0, 2).text = "Unit"
    for c, value in enumerate(["1", "12", "l/h"]):
        table.cell(1, c).text = value
    doc.add_paragraph("Table 2. Flow limits")  # plain style, caption by its wording, below the table
    doc.save(tmp_path / "h.docx")
    result = READERS[".docx"](tmp_path / "h.docx")
    assert result.title == ""  # no core title and no Title paragraph: the loader falls back to the file name
    assert [b.kind for b in result.blocks] == ["text", "table"]
    assert result.blocks[1].caption == "Table 2. Flow limits"
    assert result.blocks[1].text.splitlines()[0] == "| Flow range |  | Unit |"


def test_docx_title_style_and_custom_heading_style(tmp_path: Path) -> None:
    doc = docx.Document()
    doc.add_paragraph("Field Guide", style="Title")
    custom = doc.styles.add_style("Chapter", docx.enum.style.WD_STYLE_TYPE.PARAGRAPH)
    custom.base_style = doc.styles["Heading 1"]
    doc.add_paragraph("Safety", style="Chapter")
    doc.add_paragraph("Wear gloves.")
    doc.save(tmp_path / "g.docx")
    result = READERS[".docx"](tmp_path / "g.docx")
    assert result.title == "Field Guide"
    assert result.blocks[-1].section == ("Field Guide", "Safety")


def _deck(path: Path, image: Path | None = None) -> Path:
    prs = pptx.Presentation()
    one = prs.slides.add_slide(prs.slide_layouts[1])  # title and content
    one.shapes.title.text = "Overview"
    one.placeholders[1].text = "Doses 12 l/h"
    one.shapes.add_textbox(Inches(5), Inches(6), Inches(2), Inches(1)).text_frame.text = "bottom right"
    one.shapes.add_textbox(Inches(0.5), Inches(6), Inches(2), Inches(1)).text_frame.text = "bottom left"
    one.shapes.add_textbox(Inches(0.5), Inches(1.2), Inches(2), Inches(0.3)).text_frame.text = "top note"
    one.notes_slide.notes_text_frame.text = "Mention the warranty."
    two = prs.slides.add_slide(prs.slide_layouts[5])  # title only
    two.shapes.title.text = "Spare parts"
    table = two.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(4), Inches(2)).table
    for r, row in enumerate([["Part", "Code"], ["Seal", "S-1"], ["Valve", "V-2"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    table.cell(1, 1).merge(table.cell(2, 1))
    if image is not None:
        three = prs.slides.add_slide(prs.slide_layouts[6])  # blank
        three.shapes.add_picture(str(image), Inches(1), Inches(1))
    prs.core_properties.title = "Sales deck"
    prs.save(path)
    return path


def test_pptx_slides_reading_order_notes_and_tables(tmp_path: Path) -> None:
    result = READERS[".pptx"](_deck(tmp_path / "d.pptx"))
    assert result.title == "Sales deck"
    slide, table = result.blocks
    assert (slide.kind, slide.page, slide.section) == ("slide", 1, ("Overview",))
    assert slide.text.split("\n\n") == [
        "Overview", "top note", "Doses 12 l/h", "bottom left", "bottom right", "Notes: Mention the warranty."]
    assert (table.kind, table.page, table.section, table.caption) == ("table", 2, ("Spare parts",), "Spare parts")
    # python-pptx moves the merged cells' text into the merge origin; the covered cell stays empty
    assert table.text.splitlines()[2:] == ["| Seal | S-1 V-2 |", "| Valve |  |"]


def test_pptx_picture_only_slide_is_warned(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8), "red").save(tmp_path / "p.png")
    result = READERS[".pptx"](_deck(tmp_path / "d.pptx", image=tmp_path / "p.png"))
    assert [b.page for b in result.blocks] == [1, 2]
    assert len(result.warnings) == 1 and "slide(s) 3" in result.warnings[0]


def _ole(path: Path, encrypted: bool) -> Path:
    body = ("EncryptionInfo" if encrypted else "WordDocument").encode("utf-16-le")
    path.write_bytes(OLE_MAGIC + b"\x00" * 504 + body + b"\x00" * 1024)
    return path


@pytest.mark.parametrize("suffix", [".docx", ".pptx", ".xlsx"])
def test_encrypted_legacy_and_corrupt_packages_name_the_file(tmp_path: Path, suffix: str) -> None:
    cases = {
        _ole(tmp_path / f"locked{suffix}", encrypted=True): "password-protected",
        _ole(tmp_path / f"old{suffix}", encrypted=False): "legacy binary Office file",
        tmp_path / f"empty{suffix}": "file is empty",
        tmp_path / f"text{suffix}": "not a ZIP package",
    }
    (tmp_path / f"empty{suffix}").write_bytes(b"")
    (tmp_path / f"text{suffix}").write_text("hello")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("readme.txt", "not an office package")
    (tmp_path / f"zip{suffix}").write_bytes(buffer.getvalue())
    cases[tmp_path / f"zip{suffix}"] = "corrupt"
    for path, words in cases.items():
        with pytest.raises(DatasetError) as err:
            load_file(path)
        assert err.value.path == str(path) and words in str(err.value), str(err.value)
        assert err.value.hint


def test_truncated_docx_is_corrupt(tmp_path: Path) -> None:
    data = _manual(tmp_path / "m.docx").read_bytes()
    (tmp_path / "cut.docx").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"cut\.docx: .*(corrupt|ZIP)"):
        load_file(tmp_path / "cut.docx")


def test_office_files_without_text_are_refused(tmp_path: Path) -> None:
    docx.Document().save(tmp_path / "blank.docx")
    pptx.Presentation().save(tmp_path / "blank.pptx")
    for name in ("blank.docx", "blank.pptx"):
        with pytest.raises(DatasetError, match="nothing to ingest"):
            load_file(tmp_path / name)


def test_end_to_end_chunks_carry_kind_section_and_page(tmp_path: Path) -> None:
    (doc,) = load_file(_manual(tmp_path / "m.docx"))
    assert doc.title == "Pump Manual" and doc.metadata["format"] == "docx"
    chunks = chunk_document(doc)
    table = next(c for c in chunks if c.metadata["kind"] == "table")
    assert table.text.startswith(
        "DP-220 Manual > Installation > Mounting\n\nTable 1: Bolt torque\n\n| Bolt | Torque | Note |")
    assert table.metadata["section"] == "DP-220 Manual > Installation > Mounting"
    assert "page" not in table.metadata
    wiring = next(c for c in chunks if "brown wire" in c.text)
    assert wiring.metadata == {**wiring.metadata, "kind": "text", "section": "DP-220 Manual > Installation > Wiring"}

    (deck,) = load_file(_deck(tmp_path / "d.pptx"))
    by_page = {c.metadata["page"]: c for c in chunk_document(deck)}
    assert by_page[1].metadata["kind"] == "slide" and by_page[1].metadata["section"] == "Overview"
    assert "Mention the warranty." in by_page[1].text
    assert by_page[2].metadata["kind"] == "table" and "| Seal | S-1 V-2 |" in by_page[2].text


def test_docx_caption_between_two_tables_belongs_to_the_lower_one(tmp_path: Path) -> None:
    doc = docx.Document()
    doc.add_table(rows=1, cols=1).cell(0, 0).text = "t1"  # no caption of its own
    doc.add_paragraph("Table 2: numbers")
    doc.add_table(rows=1, cols=1).cell(0, 0).text = "t2"
    doc.save(tmp_path / "two.docx")
    blocks = READERS[".docx"](tmp_path / "two.docx").blocks
    assert [(b.kind, b.caption, b.text.splitlines()[0]) for b in blocks] == [
        ("table", "", "| t1 |"), ("table", "Table 2: numbers", "| t2 |")]
