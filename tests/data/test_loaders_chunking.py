from pathlib import Path

import pytest

from domainrag.data.chunking import chunk_document
from domainrag.data.loaders import Document, iter_files, load_file
from domainrag.errors import DatasetError, DomainRagError


def test_loads_every_supported_format(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Pump guide\n\nThe DP-220 doses 12 l/h.")
    (tmp_path / "b.txt").write_text("plain text body")
    (tmp_path / "c.html").write_text(
        "<html><head><title>T</title><script>x=1</script></head><body><h1>H</h1><p>Para one.</p></body></html>"
    )
    (tmp_path / "d.jsonl").write_text('{"id": "x1", "text": "first"}\n{"id": "x2", "text": "second", "title": "S"}\n')
    docs = [d for f in iter_files([tmp_path]) for d in load_file(f)]
    by_id = {d.doc_id: d for d in docs}
    assert set(by_id) == {"a.md", "b.txt", "c.html", "x1", "x2"}
    assert by_id["a.md"].title == "Pump guide"
    assert "Para one." in by_id["c.html"].text and "x=1" not in by_id["c.html"].text
    assert by_id["c.html"].title == "T"
    assert by_id["x2"].title == "S"


def test_bad_jsonl_names_file_line_and_field(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"id": "ok", "text": "fine"}\n{"id": "nope"}\n')
    with pytest.raises(DatasetError) as err:
        load_file(f)
    assert err.value.line == 2 and err.value.field == "text"
    assert "bad.jsonl:2" in str(err.value)


def test_unsupported_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "x.xyz").write_bytes(b"data")
    with pytest.raises(DatasetError, match="unsupported file type"):
        load_file(tmp_path / "x.xyz")
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    with pytest.raises(DatasetError, match="not a valid PDF"):
        load_file(tmp_path / "x.pdf")
    with pytest.raises(DatasetError, match="no such file"):
        iter_files([tmp_path / "missing"])


def test_chunks_are_deterministic_and_bounded() -> None:
    words = " ".join(f"w{i}" for i in range(500))
    doc = Document("d.md", f"intro paragraph\n\n{words}\n\nshort tail", "D")
    a = chunk_document(doc, max_words=100, overlap_words=20)
    b = chunk_document(doc, max_words=100, overlap_words=20)
    assert [c.chunk_id for c in a] == [c.chunk_id for c in b]
    assert all(len(c.text.split()) <= 100 for c in a)
    assert len({c.chunk_id for c in a}) == len(a)
    # overlapping windows: the second window starts 80 words after the first
    long = [c for c in a if c.text.startswith("w")]
    assert long[1].text.split()[0] == "w80"
    # every word of the long paragraph is covered
    covered = {w for c in a for w in c.text.split()}
    assert {f"w{i}" for i in range(500)} <= covered


def test_edited_document_changes_only_affected_chunk_ids() -> None:
    base = "para one words here\n\n" + " ".join(["x"] * 150) + "\n\npara three"
    a = chunk_document(Document("d", base), max_words=100, overlap_words=10)
    b = chunk_document(Document("d", base.replace("para three", "para three edited")), max_words=100, overlap_words=10)
    assert a[0].chunk_id == b[0].chunk_id
    assert a[-1].chunk_id != b[-1].chunk_id


def test_a_malformed_jsonl_line_is_reported_and_the_good_lines_kept(tmp_path: Path) -> None:
    f = tmp_path / "mixed.jsonl"
    f.write_text('{"id": "a", "text": "first"}\n{"id": "b", "text": \n\n{"text": "third"}\n')
    errors: list[str] = []
    docs = load_file(f, "sub/mixed.jsonl", source="s3://bkt/sub/mixed.jsonl", errors=errors)
    assert [d.doc_id for d in docs] == ["a", "sub/mixed.jsonl#4"]  # id-less lines are named after the file
    assert docs[0].metadata == {"source": "s3://bkt/sub/mixed.jsonl"}
    assert len(errors) == 1 and "mixed.jsonl:2" in errors[0] and "invalid JSON" in errors[0]


def test_nul_bytes_are_not_indexed_as_text(tmp_path: Path) -> None:
    (tmp_path / "zeros.txt").write_bytes(b"\x00" * 64)
    with pytest.raises(DatasetError, match="binary content") as err:
        load_file(tmp_path / "zeros.txt")
    assert "zeros.txt" in str(err.value)


def test_structured_chunks_start_with_their_section_path() -> None:
    """A paragraph cut out of "CTL-400 datasheet > Mechanical" still names the product, for BM25 and the embedder."""
    from domainrag.data.blocks import Block, markdown_table

    doc = Document("ctl.pdf", "", "CTL-400", {}, (
        Block("text", "The controller weighs 2.1 kg.", ("CTL-400 datasheet", "Mechanical"), 2),
        Block("table", markdown_table([["a", "b"], ["1", "2"]]), ("Readings",), None, "Readings"),
    ))
    text, table = chunk_document(doc)
    assert text.text == "CTL-400 datasheet > Mechanical\n\nThe controller weighs 2.1 kg."
    assert text.metadata["section"] == "CTL-400 datasheet > Mechanical" and text.metadata["page"] == 2
    assert table.text.startswith("Readings\n\n| a | b |")  # a sheet's name is said once, not twice


def test_contextual_header_off_leaves_the_bare_text_and_new_ids() -> None:
    """``contextual_header=False`` (ingest --no-contextual-header): no section path in the chunk and no title in
    the embedded text; the chunk ids follow the text, so switching re-ids the chunks instead of mixing them."""
    from domainrag.data.blocks import Block
    from domainrag.index.ingest import embed_text

    doc = Document("ctl.pdf", "", "CTL-400", {}, (
        Block("text", "The controller weighs 2.1 kg.", ("CTL-400 datasheet", "Mechanical"), 2),))
    (on,), (off,) = chunk_document(doc), chunk_document(doc, contextual_header=False)
    assert off.text == "The controller weighs 2.1 kg." and off.metadata["section"] == on.metadata["section"]
    assert embed_text(on) == "CTL-400\nCTL-400 datasheet > Mechanical\n\nThe controller weighs 2.1 kg."
    assert embed_text(off, contextual_header=False) == off.text
    assert on.chunk_id != off.chunk_id


@pytest.mark.parametrize(("max_words", "overlap_words"), [(0, 0), (10, 10), (10, 50), (10, -5)])
def test_a_window_that_would_lose_words_is_refused_with_both_options_named(max_words: int, overlap_words: int) -> None:
    with pytest.raises(DomainRagError) as err:
        chunk_document(Document("d", "one two three " * 20), max_words=max_words, overlap_words=overlap_words)
    assert "--max-words" in err.value.hint and "--overlap-words" in err.value.hint
