"""Ingest sources: ids relative to the ingest root, origins as URIs, bad files reported not fatal."""

from __future__ import annotations

from pathlib import Path

import pytest

from domainrag.data.sources import fetch_sources, load_sources, local_sources
from domainrag.errors import DatasetError


def _tree(root: Path) -> Path:
    for rel in ("a/notes.txt", "b/notes.txt", "top.md", "skip.pdf", ".git/config.txt", ".DS_Store"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"# {rel}\n\nbody of {rel}")
    return root


def test_ids_are_relative_to_the_folder_given_and_origins_are_uris(tmp_path: Path) -> None:
    root = _tree(tmp_path / "docs")
    found = local_sources([root])
    # sorted; the .pdf is listed so that loading reports it, hidden files are not
    assert [s.doc_id for s in found] == ["a/notes.txt", "b/notes.txt", "skip.pdf", "top.md"]
    assert found[0].uri == (root / "a/notes.txt").resolve().as_uri()
    assert [s.doc_id for s in local_sources([root / "a"])] == ["notes.txt"]
    single = local_sources([f"file://{root / 'b' / 'notes.txt'}"])
    assert single[0].doc_id == "notes.txt" and single[0].uri.endswith("/docs/b/notes.txt")


def test_the_same_tree_gives_the_same_ids_from_any_working_directory(tmp_path: Path, monkeypatch) -> None:
    root = _tree(tmp_path / "docs")
    first = local_sources([root])
    monkeypatch.chdir(tmp_path)
    assert local_sources([Path("docs")]) == [type(s)(Path("docs") / s.doc_id, s.doc_id, s.uri) for s in first]


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file or folder"):
        local_sources([tmp_path / "nope"])
    with pytest.raises(DatasetError):
        fetch_sources([tmp_path / "nope"], tmp_path)


def test_load_sources_reports_bad_files_and_keeps_the_rest(tmp_path: Path) -> None:
    root = _tree(tmp_path / "docs")
    (root / "bin.txt").write_bytes(b"\x00\x01")
    errors: list[str] = []
    outcomes: dict[str, str] = {}
    docs = load_sources(local_sources([root]), errors, outcomes)
    assert sorted(outcomes.values()) == ["ingested"] * 3 + ["skipped"] * 2  # one outcome per file found
    assert sorted(d.doc_id for d in docs) == ["a/notes.txt", "b/notes.txt", "top.md"]
    assert len(errors) == 2 and "bin.txt" in errors[0] and "skip.pdf" in errors[1]  # each skip is named
    assert "not a valid PDF" in errors[1]
    assert docs[0].metadata["source"].startswith("file://")
