"""Index names are checked before any engine sees them; index records read as typed fields."""

from __future__ import annotations

import pytest

from domainrag.errors import DomainRagError
from domainrag.index import EmbeddedStoreConfig, IndexRecord, OpenSearchStoreConfig, open_store, validate_index_name


@pytest.mark.parametrize("bad", ["../evil", "a/b", "", ".hidden", "-x", "a b", "a..b", "x" * 129, "a\\b"])
def test_unsafe_index_names_are_refused_with_a_clear_error(bad: str, tmp_path) -> None:
    with pytest.raises(DomainRagError, match="invalid index name"):
        validate_index_name(bad)
    with pytest.raises(DomainRagError, match="invalid index name"):
        open_store(bad, EmbeddedStoreConfig(), str(tmp_path))
    assert not any(tmp_path.iterdir())  # nothing was created on disk


@pytest.mark.parametrize("good", ["kb", "docs__all-minilm-l6-v2", "Team.A_1", "x" * 128])
def test_ordinary_index_names_pass(good: str) -> None:
    assert validate_index_name(good) == good


def test_index_record_reads_stored_json_as_typed_fields() -> None:
    stored = {"name": "kb", "embedding_model": "all-minilm-l6-v2", "dimension": 384,
              "store": {"type": "opensearch", "hosts": ["http://h:9200"]}, "chunks": 12, "created_at": 1.0,
              "future_field": "kept"}
    rec = IndexRecord.model_validate(stored)
    assert isinstance(rec.store, OpenSearchStoreConfig) and rec.store.hosts == ["http://h:9200"]
    assert rec.dimension == 384 and rec.chunks == 12 and rec.documents is None
    assert rec.model_dump()["future_field"] == "kept"
    old = IndexRecord.model_validate({"name": "old", "embedding_model": "m", "dimension": 8, "store": None})
    assert isinstance(old.store, EmbeddedStoreConfig)
