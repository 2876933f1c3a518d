"""The embedded BM25 index's analysis knobs (stemming, stop words) change what matches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from domainrag.data.chunking import Chunk
from domainrag.index.config import EmbeddedStoreConfig
from domainrag.index.embedded import EmbeddedStore


def _store(tmp_path: Path, **cfg: bool) -> EmbeddedStore:
    store = EmbeddedStore("kb", EmbeddedStoreConfig(**cfg), str(tmp_path / "lance"))
    chunks = [Chunk("probe", "probe.md", "The probe is calibrated monthly.", 0),
              Chunk("pump", "pump.md", "The pump delivers twelve litres.", 0)]
    store.upsert(chunks, np.random.default_rng(0).random((2, 4), dtype=np.float32))
    store.refresh()
    return store


@pytest.mark.parametrize(("stem", "expected"), [(True, ["probe"]), (False, [])])
def test_stemming_is_configurable(tmp_path: Path, stem: bool, expected: list[str]) -> None:
    store = _store(tmp_path, fts_stem=stem)
    assert [h.chunk_id for h in store.text_search("calibrating", 5)] == expected
    assert [h.chunk_id for h in store.text_search("calibrated", 5)] == ["probe"]


def test_hits_carry_no_vector_and_scores_are_bm25(tmp_path: Path) -> None:
    store = _store(tmp_path)
    hit = store.text_search("pump litres", 5)[0]
    assert hit.chunk_id == "pump" and hit.score > 0 and hit.ranks == {"bm25": 1}
    assert set(hit.metadata) == set()
