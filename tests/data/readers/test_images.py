"""Image reader: OCR through Debian's tesseract (one block per image or TIFF page), and the errors that name
what to install or what is wrong with the file."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from domainrag.data.chunking import chunk_document
from domainrag.data.loaders import load_file
from domainrag.data.readers import READERS, images
from domainrag.errors import DatasetError

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None,
                                     reason="OCR needs Debian's tesseract (apt-get install tesseract-ocr)")


@needs_tesseract
@pytest.mark.parametrize(("suffix", "fmt"), [(".png", "PNG"), (".jpg", "JPEG")])
def test_image_is_ocrd_into_one_block(tmp_path: Path, sample: SimpleNamespace, suffix: str, fmt: str) -> None:
    path = sample.render_scan(tmp_path / f"scan{suffix}", sample.SCAN_LINES, fmt)
    result = READERS[suffix](path)
    assert result.warnings == [] and len(result.blocks) == 1
    block = result.blocks[0]
    assert (block.kind, block.page, block.section) == ("text", None, ())
    assert all(word in block.text for word in sample.SCAN_WORDS) and "420" in block.text


@needs_tesseract
def test_multipage_tiff_gives_a_block_per_page(tmp_path: Path, sample: SimpleNamespace) -> None:
    from PIL import Image

    first = sample.render_scan(tmp_path / "a.png", ["First page about valves"])
    second = sample.render_scan(tmp_path / "b.png", ["Second page about filters"])
    tiff = tmp_path / "fax.tiff"
    Image.open(first).save(tiff, save_all=True, append_images=[Image.open(second)])
    result = READERS[".tiff"](tiff)
    assert [b.page for b in result.blocks] == [1, 2]
    assert "valves" in result.blocks[0].text and "filters" in result.blocks[1].text


@needs_tesseract
def test_image_is_ingested_and_a_blank_one_refused(tmp_path: Path, scan_png: Path) -> None:
    [doc] = load_file(scan_png)
    [chunk] = chunk_document(doc)
    assert chunk.metadata["kind"] == "text" and chunk.metadata["format"] == "png" and "Hydraulic" in chunk.text
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("L", (400, 200), "white").save(blank)
    with pytest.raises(DatasetError, match=r"nothing to ingest .*no text recognised"):
        load_file(blank, errors=[])


@needs_tesseract
def test_missing_language_data_names_the_package(scan_png: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOMAINRAG_OCR_LANG", "xyz")
    with pytest.raises(DatasetError) as info:
        READERS[".png"](scan_png)
    assert "tesseract failed" in str(info.value) and "apt-get install tesseract-ocr-xyz" in (info.value.hint or "")


def test_without_ocr_engine_an_image_is_refused(scan_png: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "tesseract", lambda: None)
    with pytest.raises(DatasetError) as info:
        load_file(scan_png)
    assert info.value.path == str(scan_png) and "no OCR engine" in str(info.value)
    assert "apt-get install tesseract-ocr" in (info.value.hint or "")


def test_damaged_image_is_refused(tmp_path: Path, scan_png: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "tesseract", lambda: "tesseract")  # the file fails before any OCR
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    with pytest.raises(DatasetError, match="not a readable image") as info:
        READERS[".jpg"](bad)
    assert info.value.path == str(bad)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(scan_png.read_bytes()[:300])
    with pytest.raises(DatasetError, match="not a readable image"):
        READERS[".png"](truncated)
