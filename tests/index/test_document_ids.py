"""Document ids are unique per source: same-named files never overwrite each other (issue 19, item 1).

Runs against the embedded engine with a small deterministic encoder (anything satisfying ``Encoder``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from domainrag.data.loaders import Document
from domainrag.index import EmbeddedStoreConfig, Encoder, open_store
from domainrag.index.base import VectorStore
from domainrag.index.ingest import DocumentIdCollision, ingest_documents, ingest_paths, same_source


class HashEncoder:
    """Deterministic 8-d unit vectors from a text's hash: enough for ids, counts and deletes."""

    name = "hash-8"
    dimension = 8

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:32], dtype=np.uint8)[:8].astype(np.float32) + 1
                for t in texts]
        out = np.asarray(rows, dtype=np.float32).reshape(len(texts), 8)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def enc() -> HashEncoder:
    return HashEncoder()


@pytest.fixture
def store(tmp_path: Path) -> VectorStore:
    return open_store("ids", EmbeddedStoreConfig(), str(tmp_path / "lance"))


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _doc_ids(store: VectorStore) -> set[str]:
    return {h.doc_id for h in store.text_search("notes", 50)}


def test_hash_encoder_satisfies_the_protocol(enc: HashEncoder) -> None:
    assert isinstance(enc, Encoder)


def test_same_name_in_two_subfolders_in_one_run_are_two_documents(tmp_path: Path, store, enc) -> None:
    root = _write(tmp_path / "root", {"a/notes.txt": "team A notes on pumps", "b/notes.txt": "team B notes on probes"})
    report = ingest_paths([root], store, enc)
    assert report.documents == 2 and report.written == 2 and report.deleted_stale == 0
    assert store.count() == 2 and store.document_count() == 2
    assert _doc_ids(store) == {"a/notes.txt", "b/notes.txt"}


def test_same_name_in_two_subfolders_over_two_runs_keeps_both(tmp_path: Path, store, enc) -> None:
    root = _write(tmp_path / "root", {"a/notes.txt": "team A notes on pumps"})
    first = ingest_paths([root], store, enc)
    _write(root, {"b/notes.txt": "team B notes on probes"})
    second = ingest_paths([root], store, enc)
    assert first.written == 1 and second.written == 1 and second.skipped_existing == 1
    assert second.deleted_stale == 0
    assert store.count() == 2 and store.document_count() == 2
    assert _doc_ids(store) == {"a/notes.txt", "b/notes.txt"}


def test_same_id_from_another_root_is_an_error_never_a_delete(tmp_path: Path, store, enc) -> None:
    a = _write(tmp_path / "a", {"notes.txt": "team A notes on pumps"})
    b = _write(tmp_path / "b", {"notes.txt": "team B notes on probes"})
    ingest_paths([a], store, enc)
    with pytest.raises(DocumentIdCollision) as err:
        ingest_paths([b], store, enc)
    assert "notes.txt" in str(err.value) and str(a.resolve()) in str(err.value) and str(b.resolve()) in str(err.value)
    assert store.count() == 1
    assert [h.text for h in store.text_search("notes", 5)] == ["team A notes on pumps"]
    with pytest.raises(DocumentIdCollision):  # the same files given as file arguments: the same refusal
        ingest_paths([b / "notes.txt"], store, enc)
    assert store.count() == 1


def test_duplicate_ids_in_one_run_are_refused_before_any_write(tmp_path: Path, store, enc) -> None:
    files = {"x.jsonl": '{"id": "1", "text": "one"}\n', "y.jsonl": '{"id": "1", "text": "uno"}\n'}
    root = _write(tmp_path / "r", files)
    with pytest.raises(DocumentIdCollision, match="'1'"):
        ingest_paths([root], store, enc)
    assert store.count() == 0


def test_reingest_of_one_folder_removes_only_its_own_stale_chunks(tmp_path: Path, store, enc) -> None:
    a = _write(tmp_path / "a", {"notes.txt": "team A notes, first version", "pumps.md": "# Pumps\n\nDP-220 notes"})
    b = _write(tmp_path / "b", {"probes.md": "# Probes\n\nPX-12 notes"})
    ingest_paths([a], store, enc)
    ingest_paths([b], store, enc)
    assert store.count() == 3
    _write(a, {"notes.txt": "team A notes, second version"})
    report = ingest_paths([a], store, enc)
    assert report.written == 1 and report.skipped_existing == 1 and report.deleted_stale == 1
    assert store.count() == 3 and store.document_count() == 3
    texts = {h.text for h in store.text_search("notes", 10)}
    assert "team A notes, second version" in texts and "team A notes, first version" not in texts
    assert any("PX-12" in t for t in texts)


def test_remote_style_and_legacy_sources() -> None:
    """Legacy chunks (path as given, or a temporary download folder) still match their own source."""
    here = Path("docs/notes.txt")
    assert same_source(str(here), here.resolve().as_uri())
    assert not same_source("docs/other.txt", here.resolve().as_uri())
    assert same_source("/tmp/domainrag-ingest-x1/src0/notes.txt", "s3://bucket/docs/notes.txt")
    assert not same_source("s3://bucket/a/notes.txt", "s3://bucket/b/notes.txt")
    assert same_source("", "s3://bucket/b/notes.txt")  # documents built in code carry no source


def test_documents_without_sources_behave_as_before(tmp_path: Path, store, enc) -> None:
    ingest_documents([Document("pumps.md", "DP-220 twelve litres")], store, enc)
    report = ingest_documents([Document("pumps.md", "DP-220 fifteen litres")], store, enc)
    assert report.written == 1 and report.deleted_stale == 1 and store.count() == 1
